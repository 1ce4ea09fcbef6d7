//! The address family seam of the L4 path: `l4` is written once over [`Family`], and each family
//! names its maps, its hashes and its rewrite. Monomorphised at compile time, so each family's
//! path is as straight as if it were written out; the verifier sees two copies.

use aya_ebpf::{
    bindings::bpf_fib_lookup,
    maps::{Array, HashMap, LruHashMap},
    programs::TcContext,
};
use sticky_common::{
    AffinityKeyOf, AffinityValue, BackendValueOf, ConnValueOf, DatapathConfig, FlowKeyOf, Ip6, ServiceKeyOf,
    ServiceValue,
    hash::{maglev_slot, maglev_slot6, nat_port_start, nat_port_start6},
};

use crate::{action::Action, maps, nat, parse, parse::TcpSeg};

/// One address family's maps, hashes and rewrite.
pub trait Family {
    /// The address as the maps hold it (network byte order).
    type Addr: Copy + PartialEq + 'static;
    /// `AF_INET` or `AF_INET6`, for `bpf_fib_lookup`.
    const AF: u8;

    /// `CONNS` or `CONNS6`.
    fn conns() -> &'static LruHashMap<FlowKeyOf<Self::Addr>, ConnValueOf<Self::Addr>>;
    /// `HALF_OPEN` or `HALF_OPEN6`.
    fn half_open() -> &'static LruHashMap<FlowKeyOf<Self::Addr>, ConnValueOf<Self::Addr>>;
    /// `AFFINITY` or `AFFINITY6`.
    fn affinity() -> &'static LruHashMap<AffinityKeyOf<Self::Addr>, AffinityValue>;
    /// `SERVICES` or `SERVICES6`.
    fn services() -> &'static HashMap<ServiceKeyOf<Self::Addr>, ServiceValue>;
    /// `BACKENDS` or `BACKENDS6`.
    fn backends() -> &'static Array<BackendValueOf<Self::Addr>>;
    /// This family's SNAT address, if the daemon enabled its L4 path.
    fn snat_addr(cfg: &DatapathConfig) -> Option<Self::Addr>;
    /// The Maglev slot of a client address.
    fn maglev_slot(client: &Self::Addr) -> u32;
    /// The first SNAT-port candidate of a client-side key.
    fn nat_port_start(key: &FlowKeyOf<Self::Addr>) -> u32;
    /// Parses the frame to this family's TCP segment (counting its class), or the final action.
    fn parse(ctx: &TcContext) -> Result<TcpSeg<Self::Addr>, Action>;
    /// Rewrites the packet's addresses and ports to `conn`'s, checksums included.
    fn rewrite(ctx: &TcContext, pkt: &TcpSeg<Self::Addr>, conn: &ConnValueOf<Self::Addr>) -> Result<(), ()>;
    /// Puts `conn`'s addresses into the FIB lookup's parameters.
    fn fib_addrs(params: &mut bpf_fib_lookup, conn: &ConnValueOf<Self::Addr>);
}

/// IPv4.
pub struct V4;
/// IPv6.
pub struct V6;

impl Family for V4 {
    type Addr = u32;
    const AF: u8 = 2;

    #[inline(always)]
    fn conns() -> &'static LruHashMap<FlowKeyOf<u32>, ConnValueOf<u32>> {
        &maps::CONNS
    }
    #[inline(always)]
    fn half_open() -> &'static LruHashMap<FlowKeyOf<u32>, ConnValueOf<u32>> {
        &maps::HALF_OPEN
    }
    #[inline(always)]
    fn affinity() -> &'static LruHashMap<AffinityKeyOf<u32>, AffinityValue> {
        &maps::AFFINITY
    }
    #[inline(always)]
    fn services() -> &'static HashMap<ServiceKeyOf<u32>, ServiceValue> {
        &maps::SERVICES
    }
    #[inline(always)]
    fn backends() -> &'static Array<BackendValueOf<u32>> {
        &maps::BACKENDS
    }
    #[inline(always)]
    fn snat_addr(cfg: &DatapathConfig) -> Option<u32> {
        (cfg.snat_addr != 0).then_some(cfg.snat_addr)
    }
    #[inline(always)]
    fn maglev_slot(client: &u32) -> u32 {
        maglev_slot(u32::from_be(*client))
    }
    #[inline(always)]
    fn nat_port_start(key: &FlowKeyOf<u32>) -> u32 {
        nat_port_start(
            u32::from_be(key.src_addr),
            u16::from_be(key.src_port),
            u32::from_be(key.dst_addr),
            u16::from_be(key.dst_port),
        )
    }
    #[inline(always)]
    fn parse(ctx: &TcContext) -> Result<TcpSeg<u32>, Action> {
        parse::tcp4(ctx)
    }
    #[inline(always)]
    fn rewrite(ctx: &TcContext, pkt: &TcpSeg<u32>, conn: &ConnValueOf<u32>) -> Result<(), ()> {
        nat::rewrite4(ctx, pkt, conn)
    }
    #[inline(always)]
    fn fib_addrs(params: &mut bpf_fib_lookup, conn: &ConnValueOf<u32>) {
        params.__bindgen_anon_3.ipv4_src = conn.src_addr;
        params.__bindgen_anon_4.ipv4_dst = conn.dst_addr;
    }
}

impl Family for V6 {
    type Addr = Ip6;
    const AF: u8 = 10;

    #[inline(always)]
    fn conns() -> &'static LruHashMap<FlowKeyOf<Ip6>, ConnValueOf<Ip6>> {
        &maps::CONNS6
    }
    #[inline(always)]
    fn half_open() -> &'static LruHashMap<FlowKeyOf<Ip6>, ConnValueOf<Ip6>> {
        &maps::HALF_OPEN6
    }
    #[inline(always)]
    fn affinity() -> &'static LruHashMap<AffinityKeyOf<Ip6>, AffinityValue> {
        &maps::AFFINITY6
    }
    #[inline(always)]
    fn services() -> &'static HashMap<ServiceKeyOf<Ip6>, ServiceValue> {
        &maps::SERVICES6
    }
    #[inline(always)]
    fn backends() -> &'static Array<BackendValueOf<Ip6>> {
        &maps::BACKENDS6
    }
    #[inline(always)]
    fn snat_addr(cfg: &DatapathConfig) -> Option<Ip6> {
        (!cfg.snat_addr6.is_unspecified()).then_some(cfg.snat_addr6)
    }
    #[inline(always)]
    fn maglev_slot(client: &Ip6) -> u32 {
        maglev_slot6(client.host_words())
    }
    #[inline(always)]
    fn nat_port_start(key: &FlowKeyOf<Ip6>) -> u32 {
        nat_port_start6(
            key.src_addr.host_words(),
            u16::from_be(key.src_port),
            key.dst_addr.host_words(),
            u16::from_be(key.dst_port),
        )
    }
    #[inline(always)]
    fn parse(ctx: &TcContext) -> Result<TcpSeg<Ip6>, Action> {
        parse::tcp6(ctx)
    }
    #[inline(always)]
    fn rewrite(ctx: &TcContext, pkt: &TcpSeg<Ip6>, conn: &ConnValueOf<Ip6>) -> Result<(), ()> {
        nat::rewrite6(ctx, pkt, conn)
    }
    #[inline(always)]
    fn fib_addrs(params: &mut bpf_fib_lookup, conn: &ConnValueOf<Ip6>) {
        params.__bindgen_anon_3.ipv6_src = conn.src_addr.0;
        params.__bindgen_anon_4.ipv6_dst = conn.dst_addr.0;
    }
}
