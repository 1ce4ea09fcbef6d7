//! Connections to backends: the worker's bounded idle pool per backend, and connect.
//!
//! A client connection owns an upstream connection only for the request in flight: it takes an idle
//! one from its worker's pool (or connects), and gives it back once the response body is through and
//! the connection may carry another request. Nothing is held per idle client. The pool is
//! thread-local, which is safe because each worker is a current-thread runtime whose tasks never
//! change threads.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::net::TcpStream;

/// Idle upstream connections kept per backend per worker.
pub const POOL_PER_BACKEND: usize = 64;
/// Idle upstream connections older than this are closed rather than reused (backends close idle ones
/// on their own schedule; Node's default is 5 s, nginx's 75 s). A reused connection found closed
/// before any response byte is replaced transparently anyway; this keeps the pool fresh.
pub const POOL_IDLE: Duration = Duration::from_secs(30);

/// The idle connections of one worker, per backend address, oldest first.
#[derive(Debug, Default)]
pub struct Pool {
    idle: HashMap<SocketAddr, VecDeque<(Instant, TcpStream)>>,
}

impl Pool {
    /// The most recently pooled live connection to `addr` (stale, closed or chatty ones are dropped).
    pub fn take(&mut self, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let list = self.idle.get_mut(&addr)?;
        let mut found = None;
        while let Some((since, stream)) = list.pop_back() {
            if now.duration_since(since) < POOL_IDLE && is_quiet(&stream) {
                found = Some(stream);
                break;
            }
        }
        // an emptied list keeps its allocation for the next put (no allocation per request); empty
        // lists of backends gone are forgotten when a new address arrives ([`Self::put`])
        found
    }

    /// Keeps `stream` for the next request to `addr`; the oldest goes when the backend's list is full,
    /// and connections past [`POOL_IDLE`] are closed on the way.
    pub fn put(&mut self, addr: SocketAddr, stream: TcpStream, now: Instant) {
        if !self.idle.contains_key(&addr) {
            // a new address (Swarm tasks come and go): forget the backends with nothing pooled
            self.idle.retain(|_, list| !list.is_empty());
        }
        let list = self.idle.entry(addr).or_default();
        while list.front().is_some_and(|(since, _)| now.duration_since(*since) >= POOL_IDLE) {
            list.pop_front();
        }
        if list.len() >= POOL_PER_BACKEND {
            list.pop_front();
        }
        list.push_back((now, stream));
    }

    /// Idle connections pooled for `addr`.
    #[must_use]
    pub fn idle(&self, addr: SocketAddr) -> usize {
        self.idle.get(&addr).map_or(0, VecDeque::len)
    }
}

/// Whether an idle connection has nothing to say: no EOF, no reset, no stray bytes (a backend that
/// closed it, or wrote past its last response, must not get the next request). The read is a system
/// call only when the reactor saw the socket readable since the last read drained it
/// ([`super::io::try_read_drained`]); a close it has not seen yet is the race every pool has, and a
/// replayable request is sent again on a fresh connection ([`super::forward`]).
pub(super) fn is_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle connection to `addr` from the worker's pool; `now` is the caller's clock reading.
#[must_use]
pub fn take(addr: SocketAddr, now: Instant) -> Option<TcpStream> {
    POOL.try_with(|p| p.borrow_mut().take(addr, now)).ok().flatten()
}

/// Gives a connection whose exchange is complete back to the worker's pool.
pub fn put(addr: SocketAddr, stream: TcpStream) {
    let _ = POOL.try_with(|p| p.borrow_mut().put(addr, stream, Instant::now()));
}

/// Why a connect failed.
#[derive(Debug)]
pub struct ConnectError {
    /// The connect timeout expired.
    pub timed_out: bool,
    /// The socket error, if not a timeout.
    pub source: Option<std::io::Error>,
}

/// Connects to a backend (`TCP_NODELAY`: heads and small bodies go out at once).
///
/// # Errors
/// Refused, unreachable, or not connected within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(ConnectError { timed_out: false, source: Some(e) }),
        Err(_) => Err(ConnectError { timed_out: true, source: None }),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("loopback connect"), server.expect("loopback accept").0)
    }

    async fn settle() {
        // let the reactor see what the peer did
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn live_connections_are_reused_closed_and_chatty_ones_dropped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut pool = Pool::default();
        let (live, _live_peer) = pair(&listener).await;
        let (closed, closed_peer) = pair(&listener).await;
        let (chatty, mut chatty_peer) = pair(&listener).await;
        let now = Instant::now();
        pool.put(addr, live, now);
        pool.put(addr, closed, now);
        pool.put(addr, chatty, now);
        drop(closed_peer);
        chatty_peer.write_all(b"HTTP/1.1 200 OK\r\n").await.expect("write");
        settle().await;
        assert_eq!(pool.idle(addr), 3);
        assert!(pool.take(addr, now).is_some(), "the live one is found under the other two");
        assert!(pool.take(addr, now).is_none(), "nothing else was fit to reuse");
        assert_eq!(pool.idle(addr), 0);
    }

    #[tokio::test]
    async fn the_pool_is_bounded_per_backend_and_forgets_stale_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut pool = Pool::default();
        let mut peers = Vec::new();
        let start = Instant::now();
        for _ in 0..POOL_PER_BACKEND + 3 {
            let (c, s) = pair(&listener).await;
            peers.push(s);
            pool.put(addr, c, start);
        }
        assert_eq!(pool.idle(addr), POOL_PER_BACKEND, "the oldest go past the bound");
        let later = start + POOL_IDLE;
        assert!(pool.take(addr, later).is_none(), "connections idle for POOL_IDLE are not reused");
        assert_eq!(pool.idle(addr), 0);
        let (c, s) = pair(&listener).await;
        peers.push(s);
        pool.put(addr, c, later);
        assert!(pool.take(addr, later).is_some());
        assert_eq!(pool.idle.len(), 1, "an emptied list is kept for the next put");
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (c, s) = pair(&other).await;
        peers.push(s);
        pool.put(other.local_addr().expect("address"), c, later);
        assert_eq!(pool.idle.len(), 1, "a new address forgets the backends with nothing pooled");
    }
}
