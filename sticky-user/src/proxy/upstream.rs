//! Connections to backends: per client connection, then a per-worker idle pool, then a new connect.
//!
//! Reuse without a shared lock: each client connection keeps the upstream connections it used (a
//! handful, usually one: its session's backend) and hands them to its worker's idle pool when it
//! closes. The pool is thread-local, which is safe because each worker is a current-thread runtime
//! whose tasks never change threads.

use std::{
    cell::RefCell,
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A connection to a backend, able to carry one request at a time.
pub type Upstream = http1::SendRequest<Incoming>;

/// Idle upstream connections kept per backend per worker.
const POOL_PER_BACKEND: usize = 64;
/// Idle upstream connections older than this are not reused (backends close idle ones on their own
/// schedule; Node's default is 5 s, nginx's 75 s). A reused connection that turns out closed before the
/// request is written is retried transparently anyway; this only keeps the pool fresh.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Upstream connections a client connection keeps for itself (one per backend it talks to).
const PER_CONNECTION: usize = 4;

thread_local! {
    static POOL: RefCell<HashMap<SocketAddr, Vec<(Instant, Upstream)>>> = RefCell::new(HashMap::new());
}

fn pool_take(addr: SocketAddr) -> Option<Upstream> {
    POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(&addr)?;
        let mut found = None;
        while let Some((since, up)) = list.pop() {
            if since.elapsed() < POOL_IDLE && up.is_ready() {
                found = Some(up);
                break;
            }
        }
        // forget backends that have nothing pooled (addresses come and go with Swarm tasks)
        if list.is_empty() {
            p.remove(&addr);
        }
        found
    })
    .ok()
    .flatten()
}

fn pool_put(addr: SocketAddr, up: Upstream) {
    if up.is_closed() {
        return;
    }
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        let list = p.entry(addr).or_default();
        if list.len() >= POOL_PER_BACKEND {
            list.remove(0);
        }
        list.push((Instant::now(), up));
    });
}

/// The upstream connections one client connection holds; they go to the worker's pool when it closes.
#[derive(Default)]
pub struct Upstreams {
    held: Vec<(SocketAddr, Upstream)>,
}

impl Upstreams {
    /// An idle connection to `addr`, from this client connection or the worker's pool.
    pub fn take(&mut self, addr: SocketAddr) -> Option<Upstream> {
        while let Some(i) = self.held.iter().position(|(a, _)| *a == addr) {
            let (_, up) = self.held.swap_remove(i);
            if !up.is_closed() {
                return Some(up);
            }
        }
        pool_take(addr)
    }

    /// Gives a connection back after its response head arrived (its body may still be streaming: the
    /// next user waits for `ready()`).
    pub fn put(&mut self, addr: SocketAddr, up: Upstream) {
        if up.is_closed() {
            return;
        }
        if self.held.len() >= PER_CONNECTION {
            let (a, old) = self.held.remove(0);
            pool_put(a, old);
        }
        self.held.push((addr, up));
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        for (addr, up) in self.held.drain(..) {
            pool_put(addr, up);
        }
    }
}

/// Why a connect failed.
#[derive(Debug)]
pub struct ConnectError {
    /// The connect timeout expired.
    pub timed_out: bool,
    /// The socket or handshake error, if not a timeout.
    pub source: Option<std::io::Error>,
}

/// Connects to a backend and starts the HTTP/1 client on the connection (driven by its own task).
///
/// # Errors
/// Refused, unreachable, or not connected within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Upstream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError { timed_out: false, source: Some(e) }),
        Err(_) => return Err(ConnectError { timed_out: true, source: None }),
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError { timed_out: false, source: Some(std::io::Error::other(e)) })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
