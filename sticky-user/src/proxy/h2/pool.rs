//! The HTTP/2 path's upstream connections, pooled per worker thread and backend address like the
//! engine's ([`crate::proxy::upstream`]): HTTP/1.1 senders, one exchange at a time each, and h2c
//! senders, whose one connection multiplexes every stream of the worker to that backend.
//!
//! hyper's client connections are used rather than the engine's HTTP/1 pool: the engine's pool holds
//! raw sockets that its own codec frames, while a stream of an HTTP/2 client arrives as an
//! `http::Request` with a body that hyper reads; handing it to hyper's HTTP/1 client keeps one
//! framing implementation per side and streams bodies both ways without copies through sticky's
//! buffers. The connections are made with the engine's [`upstream::connect`] (its timeout and
//! `TCP_NODELAY`) and a failed connect counts against the backend exactly as on the HTTP/1 path.

use std::{cell::RefCell, collections::HashMap, net::SocketAddr};

use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// Idle HTTP/1.1 connections kept per worker and backend; more are closed once their exchange ends.
const MAX_IDLE: usize = 64;
/// Backends a worker keeps connections to; past it the pool of the first-listed address is dropped
/// (its connections close once their exchanges end): bounded under churn of task addresses.
const MAX_BACKENDS: usize = 4096;

/// A sender of requests to one backend.
#[derive(Debug)]
pub enum Sender {
    /// An HTTP/1.1 connection.
    H1(http1::SendRequest<Incoming>),
    /// An h2c connection (cloned per stream).
    H2(http2::SendRequest<Incoming>),
}

thread_local! {
    static H1: RefCell<HashMap<SocketAddr, Vec<http1::SendRequest<Incoming>>>> = RefCell::new(HashMap::new());
    static H2: RefCell<HashMap<SocketAddr, http2::SendRequest<Incoming>>> = RefCell::new(HashMap::new());
}

/// A pooled sender to `addr` that can take a request now, if any (closed ones are dropped).
#[must_use]
pub fn take(addr: SocketAddr, h2c: bool) -> Option<Sender> {
    if h2c {
        return H2.with(|p| {
            let mut p = p.borrow_mut();
            match p.get(&addr) {
                Some(s) if !s.is_closed() => Some(Sender::H2(s.clone())),
                Some(_) => {
                    p.remove(&addr);
                    None
                }
                None => None,
            }
        });
    }
    H1.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.get_mut(&addr)?;
        while let Some(s) = idle.pop() {
            if s.is_ready() && !s.is_closed() {
                return Some(Sender::H1(s));
            }
        }
        None
    })
}

/// Gives a sender back after its response head arrived (an HTTP/1.1 one becomes ready again once the
/// exchange's bodies are done; [`take`] skips it until then).
pub fn put(addr: SocketAddr, sender: Sender) {
    match sender {
        Sender::H1(s) => H1.with(|p| {
            let mut p = p.borrow_mut();
            if !p.contains_key(&addr) && p.len() >= MAX_BACKENDS {
                let first = p.keys().next().copied();
                if let Some(k) = first {
                    p.remove(&k);
                }
            }
            let idle = p.entry(addr).or_default();
            idle.retain(|s| !s.is_closed());
            if idle.len() < MAX_IDLE {
                idle.push(s);
            }
        }),
        Sender::H2(s) => H2.with(|p| {
            let mut p = p.borrow_mut();
            if !p.contains_key(&addr) && p.len() >= MAX_BACKENDS {
                let first = p.keys().next().copied();
                if let Some(k) = first {
                    p.remove(&k);
                }
            }
            p.insert(addr, s);
        }),
    }
}

/// Starts an HTTP/1.1 or h2c client connection on a connected socket; its I/O runs on a task of the
/// current worker.
///
/// # Errors
/// The h2c handshake failed (the backend does not speak HTTP/2 with prior knowledge).
pub async fn handshake(tcp: TcpStream, h2c: bool) -> Result<Sender, hyper::Error> {
    let io = TokioIo::new(tcp);
    if h2c {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new()).timer(TokioTimer::new()).handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "h2c upstream connection ended with an error");
            }
        });
        return Ok(Sender::H2(sender));
    }
    let (sender, conn) = http1::Builder::new().handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(Sender::H1(sender))
}
