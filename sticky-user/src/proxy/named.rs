//! Upstream connections of services that send the PROXY protocol: a header names one client, so
//! such a connection is reused only for the same client connection (keyed by backend and
//! [`Origin`], whose client port tells connections apart), never across clients.
//!
//! One idle connection per key, at most [`MAX_IDLE`] per worker, each closed after
//! [`upstream::POOL_IDLE`] (a client that left leaves its backend connection here until then, or until
//! the bound pushes it out). Thread-local like [`upstream`]'s pool: a worker's tasks never change
//! threads.

use std::{cell::RefCell, collections::HashMap, net::SocketAddr, time::Instant};

use tokio::net::TcpStream;

use super::upstream;
use crate::proxy_protocol::Origin;

/// Idle connections kept per worker for PROXY protocol services.
pub const MAX_IDLE: usize = 1024;

/// One worker's idle named connections.
#[derive(Debug, Default)]
pub struct Named {
    idle: HashMap<(SocketAddr, Origin), (Instant, TcpStream)>,
}

impl Named {
    /// The idle connection to `addr` of `origin`'s client, if it is fresh and quiet.
    pub fn take(&mut self, addr: SocketAddr, origin: &Origin, now: Instant) -> Option<TcpStream> {
        let (since, stream) = self.idle.remove(&(addr, *origin))?;
        (now.duration_since(since) < upstream::POOL_IDLE && upstream::is_quiet(&stream)).then_some(stream)
    }

    /// Keeps `stream` for `origin`'s next request to `addr`; stale connections go first, then the
    /// oldest when the worker holds [`MAX_IDLE`].
    pub fn put(&mut self, addr: SocketAddr, origin: Origin, stream: TcpStream, now: Instant) {
        if self.idle.len() >= MAX_IDLE {
            self.idle.retain(|_, (since, _)| now.duration_since(*since) < upstream::POOL_IDLE);
        }
        if self.idle.len() >= MAX_IDLE
            && let Some(oldest) = self.idle.iter().min_by_key(|(_, (since, _))| *since).map(|(k, _)| *k)
        {
            self.idle.remove(&oldest);
        }
        self.idle.insert((addr, origin), (now, stream));
    }

    /// Idle connections held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }
}

thread_local! {
    static NAMED: RefCell<Named> = RefCell::new(Named::default());
}

/// The worker's idle connection to `addr` for `origin`'s client.
#[must_use]
pub fn take(addr: SocketAddr, origin: &Origin) -> Option<TcpStream> {
    NAMED.try_with(|p| p.borrow_mut().take(addr, origin, Instant::now())).ok().flatten()
}

/// Gives a connection whose exchange is complete back, for the same client only.
pub fn put(addr: SocketAddr, origin: Origin, stream: TcpStream) {
    let _ = NAMED.try_with(|p| p.borrow_mut().put(addr, origin, stream, Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("loopback connect"), server.expect("loopback accept").0)
    }

    fn origin(client: &str) -> Origin {
        Origin { client: client.parse().expect("addr"), destination: "127.0.0.1:80".parse().expect("addr") }
    }

    #[tokio::test]
    async fn a_connection_goes_back_to_its_own_client_only_and_the_worker_holds_a_bounded_number() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut named = Named::default();
        let now = Instant::now();
        let (c, _s) = conn(&listener).await;
        named.put(addr, origin("192.0.2.1:1000"), c, now);
        assert!(named.take(addr, &origin("192.0.2.1:1001"), now).is_none(), "another connection of the client");
        assert!(named.take(addr, &origin("192.0.2.2:1000"), now).is_none(), "another client");
        assert!(named.take(addr, &origin("192.0.2.1:1000"), now).is_some(), "its own client");
        let mut peers = Vec::new();
        for port in 0..u16::try_from(MAX_IDLE + 2).expect("small") {
            let (c, s) = conn(&listener).await;
            peers.push(s);
            named.put(
                addr,
                origin(&format!("192.0.2.3:{port}")),
                c,
                now + std::time::Duration::from_millis(port.into()),
            );
        }
        assert_eq!(named.len(), MAX_IDLE, "the oldest go past the bound");
        assert!(named.take(addr, &origin("192.0.2.3:0"), now).is_none(), "the oldest went first");
    }
}
