//! Connection-table types: the 5-tuple key of a packet and what its flow is rewritten to, for both
//! address families: [`FlowKey`]/[`ConnValue`] (IPv4, `CONNS`, `HALF_OPEN`) and
//! [`FlowKey6`]/[`ConnValue6`] (IPv6, `CONNS6`, `HALF_OPEN6`), one generic layout over the address type.

use crate::addr::Ip6;

/// IPv4 protocol number of TCP (the only protocol the L4 path handles).
pub const IPPROTO_TCP: u8 = 6;

/// A packet's 5-tuple, as it appears on the wire: the key of `CONNS` and `HALF_OPEN` ([`FlowKey`],
/// `A = u32`), and of `CONNS6` and `HALF_OPEN6` ([`FlowKey6`], `A = Ip6`).
///
/// Both directions of a flow have an entry: the client's packets are keyed client -> VIP, the
/// backend's replies backend -> SNAT address. Addresses and ports are in network byte order (copied
/// straight from the headers), so the kernel never converts them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKeyOf<A> {
    /// Source address, network byte order.
    pub src_addr: A,
    /// Destination address, network byte order.
    pub dst_addr: A,
    /// Source port, network byte order.
    pub src_port: u16,
    /// Destination port, network byte order.
    pub dst_port: u16,
    /// IP protocol number ([`IPPROTO_TCP`]).
    pub proto: u8,
    /// Explicit padding, always zero (hash keys compare every byte).
    pub pad: [u8; 3],
}

/// What a packet matching a [`FlowKey`] is rewritten to, and the flow's state.
///
/// The rewrite target of one direction is the other direction's key with source and destination
/// swapped: a forward entry (client -> VIP) rewrites to SNAT -> backend, whose reply is keyed
/// backend -> SNAT and rewrites to VIP -> client. So each entry names its twin ([`ConnValue::twin_key`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnValueOf<A> {
    /// New source address, network byte order.
    pub src_addr: A,
    /// New destination address, network byte order.
    pub dst_addr: A,
    /// New source port, network byte order.
    pub src_port: u16,
    /// New destination port, network byte order.
    pub dst_port: u16,
    /// The backend serving this flow (index into `BACKENDS`); informative only: established flows
    /// never look the backend up again, so removing it from the set does not break them (drain).
    pub backend: u32,
    /// `CONN_F_*` bits.
    pub flags: u32,
}

/// `ConnValue::flags`: this entry is the client -> VIP direction (else backend -> SNAT).
pub const CONN_F_FORWARD: u32 = 1 << 0;
/// `ConnValue::flags`: a FIN was seen in this direction; a later SYN on the same 5-tuple starts a new flow.
pub const CONN_F_FIN: u32 = 1 << 1;

/// The IPv4 flow key (`CONNS`, `HALF_OPEN`).
pub type FlowKey = FlowKeyOf<u32>;
/// The IPv6 flow key (`CONNS6`, `HALF_OPEN6`).
pub type FlowKey6 = FlowKeyOf<Ip6>;
/// The IPv4 rewrite target.
pub type ConnValue = ConnValueOf<u32>;
/// The IPv6 rewrite target.
pub type ConnValue6 = ConnValueOf<Ip6>;

impl<A: Copy> FlowKeyOf<A> {
    /// A TCP key from network-order fields.
    #[must_use]
    pub const fn tcp(src_addr: A, dst_addr: A, src_port: u16, dst_port: u16) -> Self {
        Self { src_addr, dst_addr, src_port, dst_port, proto: IPPROTO_TCP, pad: [0; 3] }
    }
}

impl<A: Copy> ConnValueOf<A> {
    /// The key of the other direction's entry: this entry's rewrite target, reversed.
    #[must_use]
    pub const fn twin_key(&self) -> FlowKeyOf<A> {
        FlowKeyOf::tcp(self.dst_addr, self.src_addr, self.dst_port, self.src_port)
    }

    /// Whether this entry's twin key is `key` (compared field by field, with no key built).
    #[must_use]
    #[inline(always)]
    pub fn is_twin_of(&self, key: &FlowKeyOf<A>) -> bool
    where
        A: PartialEq,
    {
        self.dst_addr == key.src_addr
            && self.src_addr == key.dst_addr
            && self.dst_port == key.src_port
            && self.src_port == key.dst_port
    }

    /// Whether this is the client -> VIP direction.
    #[must_use]
    pub const fn is_forward(&self) -> bool {
        self.flags & CONN_F_FORWARD != 0
    }
}

const _: () = assert!(size_of::<FlowKey>() == 16);
const _: () = assert!(size_of::<ConnValue>() == 20);
const _: () = assert!(size_of::<FlowKey6>() == 40);
const _: () = assert!(size_of::<ConnValue6>() == 44);
