//! The only place that declares kernel maps. Each static's identifier is its name in
//! `sticky_common::maps` (the registry) and its size comes from there.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use sticky_common::{StatsValue, maps::STATS_MAX_ENTRIES};

/// Per-CPU packet counters, indexed by `sticky_common::Counter`. Written per packet by every program,
/// read and summed by user space.
#[map]
pub static STATS: PerCpuArray<StatsValue> = PerCpuArray::with_max_entries(STATS_MAX_ENTRIES, 0);
