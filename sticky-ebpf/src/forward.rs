//! A translated packet's way out: the rewrite of its family ([`crate::nat`] through
//! [`Family::rewrite`]), then the FIB lookup and the redirect, generic over the address family.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use sticky_common::{ConnValueOf, Counter};

use crate::{action::Action, family::Family, parse::TcpSeg};

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
