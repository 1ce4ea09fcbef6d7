//! The one verdict type of the packet paths (`parse`, `l4`, `nat`): a packet's final action and its counter.
//!
//! Katran's convention, in Rust: a step returns `Result<T, Action>`. `Ok(T)` is "go on with `T`"
//! (Katran's `FURTHER_PROCESSING`), `Err` is the packet's final action, and `?` hands it straight
//! up, so each step reads as its happy path. The entry points (`main.rs`) count the final action's
//! counter, once per packet, and map it to their program type's return code, in one place each.
//!
//! `sticky_splice` has no `Action`: an sk_skb verdict is always `SK_PASS`, the redirect rides in
//! the skb, and an empty skb counts nothing.

use sticky_common::Counter;

/// A packet's final action and the verdict counter that records it (a `Pass*`, `Drop*` or `Fwd*` counter).
#[derive(Clone, Copy)]
pub enum Action {
    /// Hand the packet to the stack (`TC_ACT_OK`, `XDP_PASS`).
    Pass(Counter),
    /// Drop it (`TC_ACT_SHOT`, `XDP_DROP`).
    Drop(Counter),
    /// The program redirected it; the value is the redirect helper's return, already the program
    /// type's return code (`TC_ACT_REDIRECT` at tc, or `TC_ACT_SHOT` if the helper refused).
    Redirect(Counter, i32),
}

impl Action {
    /// The action as one register (kind in bits 8..10, counter in 0..8, redirect code in 32..64):
    /// what a BPF-to-BPF call returns.
    #[inline(always)]
    pub fn pack(self) -> u64 {
        match self {
            Self::Pass(c) => u64::from(c.index()),
            Self::Drop(c) => 1 << 8 | u64::from(c.index()),
            Self::Redirect(c, code) => 2 << 8 | u64::from(c.index()) | u64::from(code as u32) << 32,
        }
    }

    /// The action [`Action::pack`] packed.
    #[inline(always)]
    pub fn unpack(v: u64) -> Self {
        let index = (v & 0xff) as u32;
        let counter = if index < Counter::COUNT {
            // SAFETY: Counter is repr(u32), and every value below COUNT is a variant (sticky-common
            // checks that `Counter::ALL` lists one per index).
            unsafe { core::mem::transmute::<u32, Counter>(index) }
        } else {
            // `pack` writes only valid indices; this cannot happen.
            Counter::DropRewrite
        };
        match (v >> 8) & 0x3 {
            0 => Self::Pass(counter),
            1 => Self::Drop(counter),
            _ => Self::Redirect(counter, (v >> 32) as u32 as i32),
        }
    }

    /// The verdict counter of this action.
    #[inline(always)]
    pub const fn counter(self) -> Counter {
        match self {
            Self::Pass(c) | Self::Drop(c) | Self::Redirect(c, _) => c,
        }
    }
}
