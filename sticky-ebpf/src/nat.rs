//! Full NAT on an skb: rewrite addresses and ports with incremental checksum updates (sending the
//! packet on is `forward`'s).
//!
//! The checksum helpers (`bpf_l3_csum_replace`, `bpf_l4_csum_replace`) are used rather than
//! arithmetic on the packet because they know the skb's checksum state: a segment from a local or
//! veth peer is often `CHECKSUM_PARTIAL` (only the pseudo-header sum is in the field, the NIC or the
//! stack finishes it), and for those an address change must touch the pseudo-header sum only and a
//! port change nothing; `BPF_F_PSEUDO_HDR` tells the helper which is which.
//!
//! IPv6 has no header checksum: an address change touches only the TCP checksum's pseudo-header
//! part, one `bpf_l4_csum_replace` per 32-bit word that differs (the helper takes at most 4 bytes).

use aya_ebpf::{bindings::BPF_F_PSEUDO_HDR, programs::TcContext};
use sticky_common::{ConnValue, ConnValue6, Ip6};

use crate::parse::{IP_OFF, TCP_OFF, Tcp4, Tcp6};

/// Offsets of the rewritten fields (IPv4 without options, see `parse::TCP_OFF`).
const IP_CSUM_OFF: usize = IP_OFF + 10;
const IP_SRC_OFF: usize = IP_OFF + 12;
const IP_DST_OFF: usize = IP_OFF + 16;
/// Offsets of the IPv6 addresses.
const IP6_SRC_OFF: usize = IP_OFF + 8;
const IP6_DST_OFF: usize = IP_OFF + 24;
/// Offsets within the TCP header.
const TCP_SPORT: usize = 0;
const TCP_DPORT: usize = 2;
const TCP_CSUM: usize = 16;

/// The IPv4 rewrite: addresses (IP and TCP checksums), then ports (TCP checksum).
#[inline(always)]
pub fn rewrite4(ctx: &TcContext, pkt: &Tcp4, conn: &ConnValue) -> Result<(), ()> {
    let key = &pkt.key;
    replace_addr(ctx, IP_SRC_OFF, key.src_addr, conn.src_addr)?;
    replace_addr(ctx, IP_DST_OFF, key.dst_addr, conn.dst_addr)?;
    replace_port(ctx, TCP_OFF + TCP_SPORT, TCP_OFF + TCP_CSUM, key.src_port, conn.src_port)?;
    replace_port(ctx, TCP_OFF + TCP_DPORT, TCP_OFF + TCP_CSUM, key.dst_port, conn.dst_port)
}

/// The IPv6 rewrite: addresses (TCP checksum's pseudo-header only), then ports; the TCP header
/// sits after the extension headers the parser walked.
#[inline(always)]
pub fn rewrite6(ctx: &TcContext, pkt: &Tcp6, conn: &ConnValue6) -> Result<(), ()> {
    let key = &pkt.key;
    let csum = pkt.tcp_off + TCP_CSUM;
    replace_addr6(ctx, IP6_SRC_OFF, csum, &key.src_addr, &conn.src_addr)?;
    replace_addr6(ctx, IP6_DST_OFF, csum, &key.dst_addr, &conn.dst_addr)?;
    replace_port(ctx, pkt.tcp_off + TCP_SPORT, csum, key.src_port, conn.src_port)?;
    replace_port(ctx, pkt.tcp_off + TCP_DPORT, csum, key.dst_port, conn.dst_port)
}

/// Replaces an IPv4 address (network order) and updates the IP and TCP (pseudo-header) checksums.
#[inline(always)]
fn replace_addr(ctx: &TcContext, off: usize, from: u32, to: u32) -> Result<(), ()> {
    if from == to {
        return Ok(());
    }
    ctx.l4_csum_replace(TCP_OFF + TCP_CSUM, u64::from(from), u64::from(to), u64::from(BPF_F_PSEUDO_HDR) | 4)
        .map_err(drop)?;
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4).map_err(drop)?;
    ctx.store(off, &to, 0).map_err(drop)
}

/// Replaces an IPv6 address (network order) and updates the TCP checksum's pseudo-header part,
/// word by word (the helper replaces at most 4 bytes per call; equal words need no call).
#[inline(always)]
fn replace_addr6(ctx: &TcContext, off: usize, csum_off: usize, from: &Ip6, to: &Ip6) -> Result<(), ()> {
    if from == to {
        return Ok(());
    }
    for i in 0..4 {
        let (f, t) = (from.0[i], to.0[i]);
        if f != t {
            ctx.l4_csum_replace(csum_off, u64::from(f), u64::from(t), u64::from(BPF_F_PSEUDO_HDR) | 4).map_err(drop)?;
        }
    }
    ctx.store(off, &to.0, 0).map_err(drop)
}

/// Replaces a TCP port (network order) and updates the TCP checksum.
#[inline(always)]
fn replace_port(ctx: &TcContext, off: usize, csum_off: usize, from: u16, to: u16) -> Result<(), ()> {
    if from == to {
        return Ok(());
    }
    ctx.l4_csum_replace(csum_off, u64::from(from), u64::from(to), 2).map_err(drop)?;
    ctx.store(off, &to, 0).map_err(drop)
}
