//! Counter helpers on the per-CPU `STATS` map.

use sticky_common::Counter;

use crate::maps::STATS;

/// Adds one to `counter` on this CPU. Per-CPU slots need no atomics: a program runs to completion on one CPU.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = STATS.get_ptr_mut(counter.index()) {
        // SAFETY: the pointer comes from a successful lookup of this CPU's slot and is valid for the program's run.
        unsafe { *slot += 1 };
    }
}
