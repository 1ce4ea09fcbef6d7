//! sticky's eBPF programs: entry points only. Each entry runs its `try_*` body and turns the result into
//! a verdict and a counter; the steps live in their own modules and read top-down.
//!
//! - `sticky_tc`: tc (TCX) ingress classifier, the L4 data path's home (bpf_redirect_neigh needs tc).
//! - `sticky_xdp`: the same classification at XDP, for drivers where the earliest hook pays off.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod stats;

use crate::parse::Verdict;
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// tc ingress: classify every frame, count it, pass what is not ours, drop what is malformed.
#[classifier]
pub fn sticky_tc(ctx: TcContext) -> i32 {
    // Headers beyond the linear part of the skb are invisible to direct packet access: pull the
    // largest header stack we parse (Ethernet + IPv4 with options + TCP with options) into it first.
    let linear = ctx.data_end() - ctx.data();
    let wanted = (ctx.len() as usize).min(parse::MAX_HEADERS_LEN);
    if linear < wanted {
        // Failure leaves the skb as it was; parsing then sees the short linear part and reports it.
        let _ = ctx.pull_data(wanted as u32);
    }
    let verdict = parse::classify(&ctx);
    match verdict {
        Verdict::Drop(_) => TC_ACT_SHOT,
        Verdict::Pass(_) | Verdict::Tcp => TC_ACT_OK,
    }
}

/// XDP: the same classification as `sticky_tc`, with XDP verdicts.
#[xdp]
pub fn sticky_xdp(ctx: XdpContext) -> u32 {
    match parse::classify(&ctx) {
        Verdict::Drop(_) => xdp_action::XDP_DROP,
        Verdict::Pass(_) | Verdict::Tcp => xdp_action::XDP_PASS,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any path that could reach here; the loop only satisfies the type.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
