//! A client / balancer / backends topology of network namespaces joined by veth pairs.
//!
//! ```text
//!  client ns                 lb ns                                 backend ns i
//!  eth0 192.0.2.2/24 ---- cli0 192.0.2.1/24
//!  (+ 192.0.2.10.. extra    br0 198.51.100.1/24 ---- port bk<i> ---- eth0 198.51.100.<10+i>/24
//!   client addresses)       ip_forward=1
//! ```
//! Addresses come from the documentation ranges (RFC 5737): clients in TEST-NET-1, backends in
//! TEST-NET-2, virtual IPs in TEST-NET-3 (203.0.113.0/24, routed from the client to the balancer).
//! No namespace has a default route: a packet to anything else has nowhere to go. The client reaches
//! the backends and the VIP range through the balancer; backends reach the client range through it.

use std::net::Ipv4Addr;

use crate::NetNs;

/// The balancer's address on the client side.
pub const LB_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The client's first address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The balancer's address on the backend side (the bridge).
pub const LB_BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The virtual-IP range, routed from the client to the balancer.
pub const VIP_NET: &str = "203.0.113.0/24";
/// The first virtual IP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Interface names inside each namespace.
pub const CLIENT_IFACE: &str = "eth0";
/// The balancer's interface towards the client.
pub const LB_CLIENT_IFACE: &str = "cli0";
/// The balancer's bridge towards the backends.
pub const LB_BACKEND_IFACE: &str = "br0";
/// A backend's interface.
pub const BACKEND_IFACE: &str = "eth0";

/// The address of backend `i` (0-based).
#[must_use]
pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + u8::try_from(i).expect("at most 200 backends"))
}

/// The `i`-th extra client address (0-based), added with [`TopologyBuilder::extra_client_addrs`].
#[must_use]
pub fn extra_client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + u8::try_from(i).expect("at most 200 extra client addresses"))
}

/// The namespaces of one topology; dropping it removes them all (and every process inside).
#[derive(Debug)]
pub struct Topology {
    /// The client namespace.
    pub client: NetNs,
    /// The balancer namespace.
    pub lb: NetNs,
    /// One namespace per backend.
    pub backends: Vec<NetNs>,
}

/// Builds a [`Topology`].
#[derive(Debug, Default)]
pub struct TopologyBuilder {
    backends: usize,
    extra_client_addrs: usize,
}

impl Topology {
    /// A builder; `Topology::builder().backends(3).build()`.
    #[must_use]
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder { backends: 1, extra_client_addrs: 0 }
    }
}

impl TopologyBuilder {
    /// Number of backend namespaces (default 1).
    #[must_use]
    pub fn backends(mut self, n: usize) -> Self {
        self.backends = n;
        self
    }

    /// Extra addresses on the client's interface (192.0.2.10 and up), to act as many clients.
    #[must_use]
    pub fn extra_client_addrs(mut self, n: usize) -> Self {
        self.extra_client_addrs = n;
        self
    }

    /// Creates the namespaces, links, addresses and routes.
    ///
    /// # Panics
    /// Any `ip` command fails (not root). Namespaces created so far are removed.
    #[must_use]
    pub fn build(self) -> Topology {
        let client = NetNs::new("cli");
        let lb = NetNs::new("lb");
        // Create each veth inside a namespace, with its peer moved straight into the other one:
        // nothing appears in the root namespace, so parallel tests cannot collide on names.
        lb.ip(&["link", "add", LB_CLIENT_IFACE, "type", "veth", "peer", "name", CLIENT_IFACE, "netns", client.name()]);
        lb.ip(&["addr", "add", &format!("{LB_CLIENT_ADDR}/24"), "dev", LB_CLIENT_IFACE]);
        lb.ip(&["link", "set", LB_CLIENT_IFACE, "up"]);
        lb.ip(&["link", "add", LB_BACKEND_IFACE, "type", "bridge"]);
        lb.ip(&["addr", "add", &format!("{LB_BACKEND_ADDR}/24"), "dev", LB_BACKEND_IFACE]);
        lb.ip(&["link", "set", LB_BACKEND_IFACE, "up"]);
        lb.sysctl("net.ipv4.ip_forward", "1");

        client.ip(&["addr", "add", &format!("{CLIENT_ADDR}/24"), "dev", CLIENT_IFACE]);
        for i in 0..self.extra_client_addrs {
            client.ip(&["addr", "add", &format!("{}/24", extra_client_addr(i)), "dev", CLIENT_IFACE]);
        }
        client.ip(&["link", "set", CLIENT_IFACE, "up"]);
        client.ip(&["route", "add", "198.51.100.0/24", "via", &LB_CLIENT_ADDR.to_string()]);
        client.ip(&["route", "add", VIP_NET, "via", &LB_CLIENT_ADDR.to_string()]);

        let mut backends = Vec::with_capacity(self.backends);
        for i in 0..self.backends {
            let ns = NetNs::new(&format!("b{i}"));
            let port = format!("bk{i}");
            lb.ip(&["link", "add", &port, "type", "veth", "peer", "name", BACKEND_IFACE, "netns", ns.name()]);
            lb.ip(&["link", "set", &port, "master", LB_BACKEND_IFACE]);
            lb.ip(&["link", "set", &port, "up"]);
            ns.ip(&["addr", "add", &format!("{}/24", backend_addr(i)), "dev", BACKEND_IFACE]);
            ns.ip(&["link", "set", BACKEND_IFACE, "up"]);
            ns.ip(&["route", "add", "192.0.2.0/24", "via", &LB_BACKEND_ADDR.to_string()]);
            backends.push(ns);
        }
        Topology { client, lb, backends }
    }
}
