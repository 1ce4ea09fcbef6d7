//! The data path's configuration: the one entry of `CONFIG`, written by user space at start-up.

use crate::addr::Ip6;

/// Balancer-wide settings of the L4 path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfig {
    /// The balancer's own address that backend-bound packets leave with (full NAT), network byte order.
    /// 0 disables the L4 path (every packet is passed).
    pub snat_addr: u32,
    /// Lowest source port of the SNAT range, host byte order.
    pub nat_port_min: u16,
    /// Highest source port of the SNAT range (inclusive), host byte order. The range must not
    /// overlap the balancer's own ephemeral ports (`net.ipv4.ip_local_port_range`): a reply to a
    /// port in it that has no connection entry is dropped, never handed to the stack (which would
    /// answer with a RST and kill a flow whose entry the LRU evicted).
    pub nat_port_max: u16,
    /// Explicit padding, always zero.
    pub pad: u64,
    /// The balancer's own IPv6 address for backend-bound packets of IPv6 services, network byte
    /// order; the unspecified address (all zero) disables the IPv6 L4 path. The port range is shared.
    pub snat_addr6: Ip6,
}

impl DatapathConfig {
    /// Whether `port` (host byte order) lies in the SNAT range.
    #[must_use]
    pub const fn is_nat_port(&self, port: u16) -> bool {
        port >= self.nat_port_min && port <= self.nat_port_max
    }
}

const _: () = assert!(size_of::<DatapathConfig>() == 32);
