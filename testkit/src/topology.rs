//! A client / balancer / backends topology of network namespaces joined by veth pairs, built from a
//! [`Layout`] of names and addresses: [`DOCS`] is the tests' layout, the bench brings its own.
//!
//! [`DOCS`]:
//! ```text
//!  client ns                 lb ns                                 backend ns i
//!  eth0 192.0.2.2/24 ---- cli0 192.0.2.1/24
//!  (+ 192.0.2.10.. extra    br0 198.51.100.1/24 ---- port bk<i> ---- eth0 198.51.100.<10+i>/24
//!   client addresses)       ip_forward=1
//! ```
//! Addresses come from the documentation ranges (RFC 5737): clients in TEST-NET-1, backends in
//! TEST-NET-2, virtual IPs in TEST-NET-3 (203.0.113.0/24, routed from the client to the balancer).
//!
//! Every layout: no namespace has a default route, so a packet to anything else has nowhere to go.
//! The client reaches the backend network and the layout's VIP networks through the balancer, which
//! forwards; the backends reach the client network through it. Every network is a /24.

use std::{net::Ipv4Addr, time::Duration};

use crate::{
    NetNs, causes,
    netns::{Naming, NetNsError},
};

/// The prefix length of every network of a topology.
pub const PREFIX_LEN: u32 = 24;

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
/// The client's interface.
pub const CLIENT_IFACE: &str = "eth0";
/// The balancer's interface towards the client.
pub const LB_CLIENT_IFACE: &str = "cli0";
/// The balancer's bridge towards the backends.
pub const LB_BACKEND_IFACE: &str = "br0";
/// A backend's interface.
pub const BACKEND_IFACE: &str = "eth0";

/// The address of backend `i` (0-based) in [`DOCS`].
///
/// # Panics
/// `i` is 200 or more.
#[must_use]
pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + u8::try_from(i).ok().filter(|i| *i < 200).expect("at most 200 backends"))
}

/// The `i`-th extra client address (0-based) in [`DOCS`], added with [`TopologyBuilder::extra_client_addrs`].
///
/// # Panics
/// `i` is 200 or more.
#[must_use]
pub fn extra_client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        192,
        0,
        2,
        10 + u8::try_from(i).ok().filter(|i| *i < 200).expect("at most 200 extra client addresses"),
    )
}

/// The tests' layout (the diagram at the top of this file).
pub const DOCS: Layout = Layout {
    naming: Naming::TESTS,
    client_role: "cli",
    lb_role: "lb",
    backend_role: "b",
    client_iface: CLIENT_IFACE,
    client_addr: CLIENT_ADDR,
    extra_client_addr,
    lb_client_iface: LB_CLIENT_IFACE,
    lb_client_addr: LB_CLIENT_ADDR,
    lb_backend_iface: LB_BACKEND_IFACE,
    lb_backend_addr: LB_BACKEND_ADDR,
    backend_iface: BACKEND_IFACE,
    backend_addr,
    backends: Backends::Bridge { port_prefix: "bk" },
    vip_nets: &[VIP_NET],
};

/// How the backend namespaces hang off the balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// One namespace per backend, each on a veth whose balancer end (`<port_prefix><i>`) is a port of
    /// a bridge named [`Layout::lb_backend_iface`]: any number of backends, one network.
    Bridge {
        /// Prefix of the bridge ports' names.
        port_prefix: &'static str,
    },
    /// One backend namespace (its role name without index) on a veth whose balancer end is
    /// [`Layout::lb_backend_iface`]: no bridge on the path (the bench measures that path).
    Veth,
}

/// The names and addresses of one topology.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// How its namespaces are named (and which stale ones are swept).
    pub naming: Naming,
    /// Role of the client namespace in its name.
    pub client_role: &'static str,
    /// Role of the balancer namespace.
    pub lb_role: &'static str,
    /// Role of a backend namespace; with a bridge, the backend's index follows it.
    pub backend_role: &'static str,
    /// The client's interface.
    pub client_iface: &'static str,
    /// The client's first address.
    pub client_addr: Ipv4Addr,
    /// The `i`-th extra client address (0-based), in the client's network.
    pub extra_client_addr: fn(usize) -> Ipv4Addr,
    /// The balancer's interface towards the client.
    pub lb_client_iface: &'static str,
    /// Its address, in the client's network; the client's gateway.
    pub lb_client_addr: Ipv4Addr,
    /// The balancer's interface towards the backends (a bridge or a veth, see [`Backends`]).
    pub lb_backend_iface: &'static str,
    /// Its address, in the backends' network; the backends' gateway.
    pub lb_backend_addr: Ipv4Addr,
    /// A backend's interface.
    pub backend_iface: &'static str,
    /// The address of backend `i` (0-based), in the backends' network.
    pub backend_addr: fn(usize) -> Ipv4Addr,
    /// How the backends attach.
    pub backends: Backends,
    /// Networks (`a.b.c.d/len`) the client reaches through the balancer besides the backends': the VIPs.
    pub vip_nets: &'static [&'static str],
}

/// A topology that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A namespace, link, address or route could not be set up.
    #[error("failed to build the topology")]
    NetNs(#[from] NetNsError),
    /// The builder asked for something the layout cannot have.
    #[error("layout with backend role {role:?}: {reason}")]
    Layout {
        /// The layout's backend role.
        role: &'static str,
        /// What does not fit.
        reason: String,
    },
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
#[derive(Debug)]
pub struct TopologyBuilder {
    layout: Layout,
    backends: usize,
    extra_client_addrs: usize,
    grace: Option<Duration>,
}

impl Topology {
    /// A builder for the tests' layout: `Topology::builder().backends(3).build()`.
    #[must_use]
    pub fn builder() -> TopologyBuilder {
        Self::with_layout(DOCS)
    }

    /// A builder for `layout`.
    #[must_use]
    pub fn with_layout(layout: Layout) -> TopologyBuilder {
        TopologyBuilder { layout, backends: 1, extra_client_addrs: 0, grace: None }
    }
}

impl TopologyBuilder {
    /// Number of backend namespaces (default 1; exactly 1 with [`Backends::Veth`]).
    #[must_use]
    pub fn backends(mut self, n: usize) -> Self {
        self.backends = n;
        self
    }

    /// Extra addresses on the client's interface ([`Layout::extra_client_addr`] 0 to `n - 1`), to act
    /// as many clients.
    #[must_use]
    pub fn extra_client_addrs(mut self, n: usize) -> Self {
        self.extra_client_addrs = n;
        self
    }

    /// Gives the processes inside each namespace `grace` between SIGTERM and SIGKILL on drop.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Creates the namespaces, links, addresses and routes.
    ///
    /// # Panics
    /// Any `ip` command fails (not root). Namespaces created so far are removed.
    #[must_use]
    pub fn build(self) -> Topology {
        self.try_build().unwrap_or_else(|e| panic!("{e}: {}", causes(&e)))
    }

    /// Creates the namespaces, links, addresses and routes.
    ///
    /// # Errors
    /// Any `ip` command fails (not root), or a veth layout asks for other than one backend. Namespaces
    /// created so far are removed.
    pub fn try_build(self) -> Result<Topology, TopologyError> {
        let l = self.layout;
        if l.backends == Backends::Veth && self.backends != 1 {
            let reason = format!("a veth layout has exactly one backend namespace, not {}", self.backends);
            return Err(TopologyError::Layout { role: l.backend_role, reason });
        }
        let create = |role: &str| -> Result<NetNs, NetNsError> {
            let ns = NetNs::try_create(l.naming, role)?;
            Ok(match self.grace {
                Some(g) => ns.with_grace(g),
                None => ns,
            })
        };
        let client = create(l.client_role)?;
        let lb = create(l.lb_role)?;
        veth(&lb, l.lb_client_iface, &client, l.client_iface)?;
        address_up(&lb, l.lb_client_iface, l.lb_client_addr)?;
        if let Backends::Bridge { .. } = l.backends {
            lb.try_ip(&["link", "add", l.lb_backend_iface, "type", "bridge"])?;
            address_up(&lb, l.lb_backend_iface, l.lb_backend_addr)?;
        }
        lb.try_sysctl("net.ipv4.ip_forward", "1")?;

        client.try_ip(&["addr", "add", &cidr(l.client_addr), "dev", l.client_iface])?;
        for i in 0..self.extra_client_addrs {
            client.try_ip(&["addr", "add", &cidr((l.extra_client_addr)(i)), "dev", l.client_iface])?;
        }
        client.try_ip(&["link", "set", l.client_iface, "up"])?;
        let via = l.lb_client_addr.to_string();
        for net in std::iter::once(network(l.lb_backend_addr)).chain(l.vip_nets.iter().map(|n| (*n).to_owned())) {
            client.try_ip(&["route", "add", &net, "via", &via])?;
        }

        let mut backends = Vec::with_capacity(self.backends);
        for i in 0..self.backends {
            let ns = match l.backends {
                Backends::Bridge { port_prefix } => {
                    let ns = create(&format!("{}{i}", l.backend_role))?;
                    let port = format!("{port_prefix}{i}");
                    veth(&lb, &port, &ns, l.backend_iface)?;
                    lb.try_ip(&["link", "set", &port, "master", l.lb_backend_iface])?;
                    lb.try_ip(&["link", "set", &port, "up"])?;
                    ns
                }
                Backends::Veth => {
                    let ns = create(l.backend_role)?;
                    veth(&lb, l.lb_backend_iface, &ns, l.backend_iface)?;
                    address_up(&lb, l.lb_backend_iface, l.lb_backend_addr)?;
                    ns
                }
            };
            address_up(&ns, l.backend_iface, (l.backend_addr)(i))?;
            ns.try_ip(&["route", "add", &network(l.lb_client_addr), "via", &l.lb_backend_addr.to_string()])?;
            backends.push(ns);
        }
        Ok(Topology { client, lb, backends })
    }
}

/// A veth pair: `end` in `ns`, `peer_end` in `peer`.
fn veth(ns: &NetNs, end: &str, peer: &NetNs, peer_end: &str) -> Result<(), NetNsError> {
    // Created inside a namespace with its peer moved straight into the other one: nothing appears in
    // the root namespace, so parallel tests cannot collide on names.
    ns.try_ip(&["link", "add", end, "type", "veth", "peer", "name", peer_end, "netns", peer.name()])
}

/// Gives `iface` in `ns` the address `addr` in its /24 and brings it up.
fn address_up(ns: &NetNs, iface: &str, addr: Ipv4Addr) -> Result<(), NetNsError> {
    ns.try_ip(&["addr", "add", &cidr(addr), "dev", iface])?;
    ns.try_ip(&["link", "set", iface, "up"])
}

/// `addr/24`.
fn cidr(addr: Ipv4Addr) -> String {
    format!("{addr}/{PREFIX_LEN}")
}

/// The /24 network `addr` is in, as `a.b.c.0/24`.
fn network(addr: Ipv4Addr) -> String {
    let mask = u32::MAX << (32 - PREFIX_LEN);
    format!("{}/{PREFIX_LEN}", Ipv4Addr::from(u32::from(addr) & mask))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::{DOCS, backend_addr, extra_client_addr, network};

    #[test]
    fn routes_name_the_network_of_the_gateway() {
        assert_eq!(network(DOCS.lb_client_addr), "192.0.2.0/24", "backends route the client range via the balancer");
        assert_eq!(network(DOCS.lb_backend_addr), "198.51.100.0/24", "the client routes the backend range via it");
        assert_eq!(network(Ipv4Addr::new(198, 18, 2, 1)), "198.18.2.0/24");
    }

    #[test]
    fn the_docs_layout_keeps_backends_and_clients_in_their_ranges() {
        assert_eq!(backend_addr(0), Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(network(backend_addr(2)), network(DOCS.lb_backend_addr), "backends share the bridge's network");
        assert_eq!(network(extra_client_addr(29)), network(DOCS.client_addr), "extra clients share the client's");
    }

    #[test]
    #[should_panic(expected = "at most 200 backends")]
    fn a_backend_beyond_the_range_is_refused() {
        let _ = backend_addr(200);
    }
}
