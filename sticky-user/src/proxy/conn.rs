//! What the proxy's connections share: the settings and the state every connection of a worker
//! reads ([`Proxy`]), and one client connection's own context ([`ConnCtx`]): its client's facts and
//! the upstream connections it keeps.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use super::{
    headers::ClientInfo,
    upstream::{Upstream, Upstreams},
};
use crate::{
    config::{Limits, Timeouts},
    lock::lock,
    splice::Splicer,
    state::Routing,
    stats::ProxyStats,
};

/// Proxy settings shared by every connection.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Per-connection limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// What every connection of the proxy reads: the routing state, the counters, the kernel splice.
#[derive(Debug)]
pub struct Proxy {
    /// Routing table, live backend state, cookie keys.
    pub routing: Arc<Routing>,
    /// Connection and unrouted-request counters.
    pub stats: Arc<ProxyStats>,
    /// The kernel splice, if it loaded (none: pinned and upgraded connections stay in user space).
    pub splicer: Option<Arc<Splicer>>,
    /// Limits and timeouts.
    pub settings: Settings,
}

/// One client connection's context, shared by its requests.
pub struct ConnCtx {
    /// What every connection reads.
    pub proxy: Arc<Proxy>,
    /// Client facts for the forwarding headers.
    pub client: ClientInfo,
    upstreams: Mutex<Upstreams>,
}

impl ConnCtx {
    /// The context of a connection from `peer`.
    #[must_use]
    pub fn new(proxy: Arc<Proxy>, peer: SocketAddr) -> Self {
        Self { proxy, client: ClientInfo::new(peer), upstreams: Mutex::default() }
    }

    /// Limits and timeouts.
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.proxy.settings
    }

    /// An idle upstream connection to `addr`, from this connection or its worker's pool.
    pub fn take_upstream(&self, addr: SocketAddr) -> Option<Upstream> {
        // HTTP/1 serves one request at a time per connection, so the lock is never contended
        lock(&self.upstreams).take(addr)
    }

    /// Gives an upstream connection back for the next request.
    pub fn put_upstream(&self, addr: SocketAddr, up: Upstream) {
        lock(&self.upstreams).put(addr, up);
    }
}
