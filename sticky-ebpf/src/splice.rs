//! The L7 kernel splice: bytes arriving on a spliced socket leave through its peer socket, without
//! waking user space.
//!
//! `sticky_splice` is an sk_skb stream verdict attached to `SPLICE_SOCKS`. It runs in the receive
//! path of every socket in that map (client side and upstream side of a proxied connection) and
//! redirects each skb to the egress of the socket `SPLICE_PEERS` names for it: the kernel then sends
//! the bytes as if user space had written them to the peer. Steps, top-down:
//!
//! 1. the socket's cookie (the key user space used for both maps);
//! 2. redirect to the peer's egress; count the bytes in `SPLICE_BYTES` (user space waits for the
//!    peer's TCP to have taken them all before it forwards a FIN);
//! 3. no peer (user space is closing the pair, or the peer was reset): pass, so the bytes stay on
//!    this socket's own queue and nothing is dropped silently.
//!
//! An skb without payload (a bare FIN is queued as one) is passed, never redirected: the kernel's
//! send worker treats a zero-byte send as a broken pipe and would put an error on the peer
//! socket (`sk_psock_backlog`: `ret <= 0` -> `sk_psock_report_error(psock, EPIPE)`, Linux 6.18).
//! FINs are forwarded by user space once the bytes before them have left.

use aya_ebpf::{EbpfContext as _, bindings::sk_action, helpers::bpf_get_socket_cookie, programs::SkBuffContext};
use sticky_common::Counter;

use crate::{
    maps::{SPLICE_BYTES, SPLICE_PEERS},
    stats::count,
};

/// Flags of `bpf_sk_redirect_hash`: 0 is the peer's egress (`BPF_F_INGRESS` would queue the bytes
/// for the peer's own reader, which is not what a proxy wants).
const TO_EGRESS: u64 = 0;

/// Runs the splice on one skb; always `SK_PASS` (with or without a redirect set).
pub fn run(ctx: &SkBuffContext) -> u32 {
    // SAFETY: the context pointer is the skb the kernel handed to this program.
    let mut cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let len = u64::from(ctx.len());
    if len == 0 {
        return sk_action::SK_PASS;
    }
    // The helper returns SK_PASS with the redirect recorded in the skb, or SK_DROP if the key is absent.
    if SPLICE_PEERS.redirect_skb(ctx, &mut cookie, TO_EGRESS) == i64::from(sk_action::SK_PASS) {
        if let Some(bytes) = SPLICE_BYTES.get_ptr_mut(&cookie) {
            // SAFETY: the pointer comes from a successful lookup and stays valid for this run.
            // A plain add is enough: the verdicts of one socket run with that socket locked
            // (softirq under bh_lock_sock, or its owner's release_sock), and each socket has its
            // own entry. (The bpfel target's `core` has no atomic read-modify-write to offer.)
            unsafe { *bytes += len };
        }
        count(Counter::SpliceRedirect);
    } else {
        count(Counter::SpliceNoPeer);
    }
    sk_action::SK_PASS
}
