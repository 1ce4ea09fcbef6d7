//! sticky's eBPF programs: entry points only. Each entry runs its steps (`try_*`), counts the final
//! [`Action`]'s verdict counter and maps the action to its program type's return code, in one place
//! each; the steps live in their own modules and read top-down.
//!
//! - `sticky_tc`: tc (TCX) ingress. Classifies every frame (`parse`), then runs the L4 path (`l4`:
//!   connection table, affinity, Maglev, full NAT via `nat`) on IPv4 and IPv6 TCP (`family`).
//! - `sticky_xdp`: the same classification at XDP, where malformed frames are cheapest to drop; it
//!   leaves TCP to `sticky_tc`, whose checksum helpers handle `CHECKSUM_PARTIAL` skbs.
//! - `sticky_splice`: sk_skb stream verdict on spliced sockets (`splice`): what arrives on one
//!   socket of a proxied connection leaves through the other.
#![no_std]
#![no_main]

mod action;
mod family;
mod forward;
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

use crate::{action::Action, parse::L3};

/// tc ingress: classify every frame, run the L4 path on IPv4 and IPv6 TCP, pass what is not ours, drop what is malformed.
#[classifier]
pub fn sticky_tc(ctx: TcContext) -> i32 {
    let action = match try_tc(&ctx) {
        Ok(L3::V4) => tc_l4::<family::V4>(&ctx),
        Ok(L3::V6) => tc_l4::<family::V6>(&ctx),
        Err(action) => action.pack(),
    };
    let action = Action::unpack(action);
    parse::log_malformed(&ctx, action);
    stats::count(action.counter());
    tc_code(action)
}

/// The TCP parse and the L4 path of one family, a BPF-to-BPF call of its own: inlined together,
/// the IPv4 and IPv6 paths' locals (flow keys, rewrite targets, FIB parameters) overflow the
/// 512-byte stack frame, and the caller keeps nothing on its stack (the combined depth is checked).
/// Its action comes back packed in one register (`r0`: a larger return would need a hidden
/// pointer argument).
#[inline(never)]
fn tc_l4<F: family::Family>(ctx: &TcContext) -> u64 {
    let (Ok(action) | Err(action)) = F::parse(ctx).and_then(|pkt| l4::process::<F>(ctx, &pkt));
    action.pack()
}

/// Pulls the headers into the linear part and reads the frame's network layer.
#[inline(always)]
fn try_tc(ctx: &TcContext) -> Result<L3, Action> {
    // Headers beyond the linear part of the skb are invisible to direct packet access: pull the
    // largest header stack we parse (Ethernet + IPv6 with extension headers + TCP with options) into it first.
    let linear = ctx.data_end() - ctx.data();
    let wanted = (ctx.len() as usize).min(parse::MAX_HEADERS_LEN);
    if linear < wanted {
        // Failure leaves the skb as it was; parsing then sees the short linear part and reports it.
        let _ = ctx.pull_data(wanted as u32);
    }
    parse::l3(ctx)
}

/// The tc return code of `action`.
#[inline(always)]
fn tc_code(action: Action) -> i32 {
    match action {
        Action::Pass(_) => TC_ACT_OK as i32,
        Action::Drop(_) => TC_ACT_SHOT as i32,
        Action::Redirect(_, code) => code,
    }
}

/// XDP: the same classification as `sticky_tc`, with XDP verdicts; TCP is passed on to tc.
#[xdp]
pub fn sticky_xdp(ctx: XdpContext) -> u32 {
    let (Ok(action) | Err(action)) = try_xdp(&ctx);
    parse::log_malformed(&ctx, action);
    stats::count(action.counter());
    xdp_code(action)
}

#[inline(always)]
fn try_xdp(ctx: &XdpContext) -> Result<Action, Action> {
    match parse::l3(ctx)? {
        L3::V4 => drop(parse::tcp4(ctx)?),
        L3::V6 => drop(parse::tcp6(ctx)?),
    }
    // The L4 rewrite needs the skb's checksum helpers (`CHECKSUM_PARTIAL`), which XDP does not have.
    Ok(Action::Pass(Counter::PassToTc))
}

/// The XDP return code of `action`.
#[inline(always)]
fn xdp_code(action: Action) -> u32 {
    match action {
        Action::Pass(_) => xdp_action::XDP_PASS,
        Action::Drop(_) => xdp_action::XDP_DROP,
        // No XDP step redirects today; at XDP a redirect helper returns an XDP action too.
        Action::Redirect(_, code) => code as u32,
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
