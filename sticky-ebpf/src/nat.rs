//! Full NAT on an skb and its forwarding: rewrite addresses and ports with incremental checksum
//! updates, then send the packet out of the interface the FIB names.
//!
//! The checksum helpers (`bpf_l3_csum_replace`, `bpf_l4_csum_replace`) are used rather than
//! arithmetic on the packet because they know the skb's checksum state: a segment from a local or
//! veth peer is often `CHECKSUM_PARTIAL` (only the pseudo-header sum is in the field, the NIC or the
//! stack finishes it), and for those an address change must touch the pseudo-header sum only and a
//! port change nothing; `BPF_F_PSEUDO_HDR` tells the helper which is which.
//!
//! IPv6 has no header checksum: an address change touches only the TCP checksum's pseudo-header
//! part, one `bpf_l4_csum_replace` per 32-bit word that differs (the helper takes at most 4 bytes).

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_PSEUDO_HDR, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use sticky_common::{ConnValue, ConnValue6, ConnValueOf, Counter, Ip6};

use crate::{
    action::Action,
    family::Family,
    parse::{IP_OFF, TCP_OFF, Tcp4, Tcp6, TcpSeg},
};

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

/// Rewrites the packet's 4-tuple to `conn`'s and forwards it; the verdict counter says which direction.
/// A BPF-to-BPF call of its own (the FIB parameters and the rewrite's helper calls get their own
/// frame, which keeps the IPv6 path's frame under the verifier's 512 bytes), its action packed.
#[inline(always)]
pub fn rewrite_and_forward<F: Family>(
    ctx: &TcContext,
    pkt: &TcpSeg<F::Addr>,
    conn: &ConnValueOf<F::Addr>,
) -> Result<Action, Action> {
    Err(Action::unpack(rewrite_and_forward_call::<F>(ctx, pkt, conn)))
}

#[inline(never)]
fn rewrite_and_forward_call<F: Family>(ctx: &TcContext, pkt: &TcpSeg<F::Addr>, conn: &ConnValueOf<F::Addr>) -> u64 {
    let (Ok(action) | Err(action)) = rewrite_and_forward_inline::<F>(ctx, pkt, conn);
    action.pack()
}

#[inline(always)]
fn rewrite_and_forward_inline<F: Family>(
    ctx: &TcContext,
    pkt: &TcpSeg<F::Addr>,
    conn: &ConnValueOf<F::Addr>,
) -> Result<Action, Action> {
    let counter = if conn.is_forward() { Counter::FwdToBackend } else { Counter::FwdToClient };
    F::rewrite(ctx, pkt, conn).map_err(|()| Action::Drop(Counter::DropRewrite))?;
    forward::<F>(ctx, conn, counter)
}

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

/// Sends the rewritten packet towards its new destination: the FIB names the interface and the
/// next hop; with a resolved neighbour the program writes the MACs and redirects, without one
/// `bpf_redirect_neigh` lets the kernel resolve it (and queue the packet meanwhile). Anything else
/// (no route, a local destination, a device that needs fragmentation) goes to the stack, rewritten.
#[inline(always)]
fn forward<F: Family>(ctx: &TcContext, conn: &ConnValueOf<F::Addr>, counter: Counter) -> Result<Action, Action> {
    let params = crate::maps::FIB_SCRATCH.get_ptr_mut(0).ok_or(Action::Drop(Counter::DropRewrite))?;
    // SAFETY: this CPU's slot, valid for the program's run, used by nothing else meanwhile; an
    // all-zero bpf_fib_lookup is a valid input (plain integers and unions of them).
    let params = unsafe {
        core::ptr::write_bytes(params, 0, 1);
        &mut *params
    };
    params.family = F::AF;
    params.l4_protocol = sticky_common::flow::IPPROTO_TCP;
    // tot_len 0: the helper checks the MTU against the skb itself, which is right for GSO packets.
    // SAFETY: the skb pointer is the program's context, valid for its run.
    params.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    F::fib_addrs(params, conn);
    // SAFETY: params is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), core::ptr::from_mut(params), size_of::<bpf_fib_lookup>() as i32, 0) };
    let ifindex = params.ifindex;
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&params.dmac);
        macs[6..].copy_from_slice(&params.smac);
        ctx.store(0, &macs, 0).map_err(|_| Action::Drop(Counter::DropRewrite))?;
        // SAFETY: bpf_redirect takes plain integers.
        let ret = unsafe { bpf_redirect(ifindex, 0) };
        return Ok(Action::Redirect(counter, ret as i32));
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        // SAFETY: a null parameter block tells the helper to route the packet's own destination.
        let ret = unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) };
        return Ok(Action::Redirect(counter, ret as i32));
    }
    Err(Action::Pass(Counter::PassFibFailed))
}
