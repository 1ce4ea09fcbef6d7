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

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::Instant,
};

use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::proxy::upstream::POOL_IDLE;

/// Idle HTTP/1.1 connections kept per worker and backend; past it the oldest is closed.
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
    static H1: RefCell<HashMap<SocketAddr, Idle<http1::SendRequest<Incoming>>>> = RefCell::new(HashMap::new());
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
        idle.take(Instant::now(), |s| s.is_ready() && !s.is_closed()).map(Sender::H1)
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
            p.entry(addr).or_default().put(Instant::now(), s, |s| !s.is_closed());
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

/// One backend's idle HTTP/1.1 senders, oldest first, each with the time it was given back: bounded
/// by [`MAX_IDLE`] and by age ([`POOL_IDLE`], the engine's pool's bound: backends close idle
/// connections on their own clock, and a connection kept past it would only fail its next request).
/// Expired ones are dropped (and so closed) whenever the list is touched, as in the engine's pool.
#[derive(Debug)]
struct Idle<T> {
    list: VecDeque<(Instant, T)>,
}

impl<T> Default for Idle<T> {
    fn default() -> Self {
        Self { list: VecDeque::new() }
    }
}

impl<T> Idle<T> {
    /// The newest sender that is still young and `usable`; the expired and unusable met on the way
    /// are dropped.
    fn take(&mut self, now: Instant, usable: impl Fn(&T) -> bool) -> Option<T> {
        self.expire(now);
        while let Some((_, s)) = self.list.pop_back() {
            if usable(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Keeps `sender`; expired and dead ones go first, then the oldest past the bound.
    fn put(&mut self, now: Instant, sender: T, alive: impl Fn(&T) -> bool) {
        self.expire(now);
        self.list.retain(|(_, s)| alive(s));
        if self.list.len() >= MAX_IDLE {
            self.list.pop_front();
        }
        self.list.push_back((now, sender));
    }

    fn expire(&mut self, now: Instant) {
        while self.list.front().is_some_and(|(since, _)| now.duration_since(*since) >= POOL_IDLE) {
            self.list.pop_front();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_senders_expire_and_are_bounded() {
        let start = Instant::now();
        let mut idle = Idle::default();
        for i in 0..MAX_IDLE + 5 {
            idle.put(start, i, |_| true);
        }
        assert_eq!(idle.list.len(), MAX_IDLE, "no more than MAX_IDLE are kept");
        assert_eq!(idle.list.front().map(|(_, s)| *s), Some(5), "the oldest go past the bound");
        assert_eq!(idle.take(start, |_| true), Some(MAX_IDLE + 4), "the newest is reused first");
        assert_eq!(idle.take(start, |s| *s < MAX_IDLE + 2), Some(MAX_IDLE + 1), "unusable ones are skipped");
        assert_eq!(idle.list.len(), MAX_IDLE - 4, "and dropped");
        assert_eq!(idle.take(start + POOL_IDLE, |_| true), None, "senders idle for POOL_IDLE are not reused");
        assert!(idle.list.is_empty(), "and they are dropped, which closes them");
        idle.put(start, 1, |_| true);
        idle.put(start + POOL_IDLE, 2, |_| true);
        assert_eq!(idle.list.len(), 1, "a put drops the expired ones");
    }
}
