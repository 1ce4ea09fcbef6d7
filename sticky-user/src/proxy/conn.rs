//! What the proxy's connections share: the settings and the state every connection of a worker
//! reads ([`Proxy`]).

use std::sync::Arc;

use crate::{
    config::{Limits, Timeouts},
    splice::Splicer,
    state::Routing,
    stats::ProxyStats,
    tls::challenge::Challenges,
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
    /// ACME HTTP-01 answers, served on the plain listener before routing (and before a redirect).
    pub challenges: Arc<Challenges>,
    /// Port of the TLS listener, for redirects to HTTPS (none: no TLS listener, no redirect).
    pub https_port: Option<u16>,
    /// HTTP/2 on the listeners and its limits.
    pub h2: crate::config::Http2,
    /// Who may say who the client is: PROXY protocol sources, trusted proxies.
    pub clients: crate::config::ClientTrust,
}
