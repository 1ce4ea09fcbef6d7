//! Full NAT on an skb and its forwarding: rewrite addresses and ports with incremental checksum
//! updates, then send the packet out of the interface the FIB names.
//!
//! The checksum helpers (`bpf_l3_csum_replace`, `bpf_l4_csum_replace`) are used rather than
//! arithmetic on the packet because they know the skb's checksum state: a segment from a local or
//! veth peer is often `CHECKSUM_PARTIAL` (only the pseudo-header sum is in the field, the NIC or the
//! stack finishes it), and for those an address change must touch the pseudo-header sum only and a
//! port change nothing; `BPF_F_PSEUDO_HDR` tells the helper which is which.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_PSEUDO_HDR, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use sticky_common::{ConnValue, Counter};

use crate::{
    action::Action,
    parse::{IP_OFF, TCP_OFF, Tcp4},
};

/// Offsets of the rewritten fields (IPv4 without options, see `parse::TCP_OFF`).
const IP_CSUM_OFF: usize = IP_OFF + 10;
const IP_SRC_OFF: usize = IP_OFF + 12;
const IP_DST_OFF: usize = IP_OFF + 16;
const TCP_SPORT_OFF: usize = TCP_OFF;
const TCP_DPORT_OFF: usize = TCP_OFF + 2;
const TCP_CSUM_OFF: usize = TCP_OFF + 16;
/// `AF_INET` for `bpf_fib_lookup`.
const AF_INET: u8 = 2;

/// Rewrites the packet's 4-tuple to `conn`'s and forwards it; the verdict counter says which direction.
#[inline(always)]
pub fn rewrite_and_forward(ctx: &TcContext, pkt: &Tcp4, conn: &ConnValue) -> Result<Action, Action> {
    let counter = if conn.is_forward() { Counter::FwdToBackend } else { Counter::FwdToClient };
    rewrite(ctx, pkt, conn).map_err(|()| Action::Drop(Counter::DropRewrite))?;
    forward(ctx, conn, counter)
}

#[inline(always)]
fn rewrite(ctx: &TcContext, pkt: &Tcp4, conn: &ConnValue) -> Result<(), ()> {
    let key = &pkt.key;
    replace_addr(ctx, IP_SRC_OFF, key.src_addr, conn.src_addr)?;
    replace_addr(ctx, IP_DST_OFF, key.dst_addr, conn.dst_addr)?;
    replace_port(ctx, TCP_SPORT_OFF, key.src_port, conn.src_port)?;
    replace_port(ctx, TCP_DPORT_OFF, key.dst_port, conn.dst_port)
}

/// Replaces an IPv4 address (network order) and updates the IP and TCP (pseudo-header) checksums.
#[inline(always)]
fn replace_addr(ctx: &TcContext, off: usize, from: u32, to: u32) -> Result<(), ()> {
    if from == to {
        return Ok(());
    }
    ctx.l4_csum_replace(TCP_CSUM_OFF, u64::from(from), u64::from(to), u64::from(BPF_F_PSEUDO_HDR) | 4).map_err(drop)?;
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4).map_err(drop)?;
    ctx.store(off, &to, 0).map_err(drop)
}

/// Replaces a TCP port (network order) and updates the TCP checksum.
#[inline(always)]
fn replace_port(ctx: &TcContext, off: usize, from: u16, to: u16) -> Result<(), ()> {
    if from == to {
        return Ok(());
    }
    ctx.l4_csum_replace(TCP_CSUM_OFF, u64::from(from), u64::from(to), 2).map_err(drop)?;
    ctx.store(off, &to, 0).map_err(drop)
}

/// Sends the rewritten packet towards its new destination: the FIB names the interface and the
/// next hop; with a resolved neighbour the program writes the MACs and redirects, without one
/// `bpf_redirect_neigh` lets the kernel resolve it (and queue the packet meanwhile). Anything else
/// (no route, a local destination, a device that needs fragmentation) goes to the stack, rewritten.
#[inline(always)]
fn forward(ctx: &TcContext, conn: &ConnValue, counter: Counter) -> Result<Action, Action> {
    // SAFETY: an all-zero bpf_fib_lookup is a valid input (plain integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = sticky_common::flow::IPPROTO_TCP;
    // tot_len 0: the helper checks the MTU against the skb itself, which is right for GSO packets.
    // SAFETY: the skb pointer is the program's context, valid for its run.
    params.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    params.__bindgen_anon_3.ipv4_src = conn.src_addr;
    params.__bindgen_anon_4.ipv4_dst = conn.dst_addr;
    // SAFETY: params is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), &raw mut params, size_of::<bpf_fib_lookup>() as i32, 0) };
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
