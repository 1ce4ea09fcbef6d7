//! sticky's eBPF programs: entry points only. Each entry runs its steps and turns the result into a
//! verdict and a counter; the steps live in their own modules and read top-down.
//!
//! - `sticky_tc`: tc (TCX) ingress. Classifies every frame (`parse`), then runs the L4 path (`l4`:
//!   connection table, affinity, Maglev, full NAT via `nat`) on IPv4 TCP.
//! - `sticky_xdp`: the same classification at XDP, where malformed frames are cheapest to drop; it
//!   leaves TCP to `sticky_tc`, whose checksum helpers handle `CHECKSUM_PARTIAL` skbs.
//! - `sticky_splice`: sk_skb stream verdict on spliced sockets (`splice`): what arrives on one
//!   socket of a proxied connection leaves through the other.
#![no_std]
#![no_main]

mod l4;
mod maps;
mod nat;
mod parse;
mod splice;
mod stats;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, stream_verdict, xdp},
    programs::{SkBuffContext, TcContext, XdpContext},
};
use sticky_common::Counter;

use crate::parse::Verdict;

/// tc ingress: classify every frame, run the L4 path on IPv4 TCP, pass what is not ours, drop what is malformed.
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
    match parse::classify(&ctx) {
        Verdict::Drop(_) => TC_ACT_SHOT as i32,
        Verdict::Pass(_) => TC_ACT_OK as i32,
        Verdict::Tcp(pkt) => l4::run(&ctx, &pkt),
    }
}

/// XDP: the same classification as `sticky_tc`, with XDP verdicts; TCP is passed on to tc.
#[xdp]
pub fn sticky_xdp(ctx: XdpContext) -> u32 {
    match parse::classify(&ctx) {
        Verdict::Drop(_) => xdp_action::XDP_DROP,
        Verdict::Pass(_) => xdp_action::XDP_PASS,
        Verdict::Tcp(_) => {
            stats::count(Counter::PassToTc);
            xdp_action::XDP_PASS
        }
    }
}

/// sk_skb stream verdict of every socket in `SPLICE_SOCKS`: redirect what arrives to the peer's egress.
#[stream_verdict]
pub fn sticky_splice(ctx: SkBuffContext) -> u32 {
    splice::run(&ctx)
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
