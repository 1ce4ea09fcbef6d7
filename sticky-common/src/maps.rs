//! The kernel map registry: every map's name, kind, key/value sizes, capacity, writer and reader.
//!
//! `sticky-ebpf/src/maps.rs` declares each map as a static whose identifier equals the name here;
//! user space takes maps only through these names. ARCHITECTURE.md's map table mirrors [`ALL`], and
//! two tests keep them honest: one loads the object and compares each map's kernel-reported sizes with
//! this registry, one checks every entry has a row in ARCHITECTURE.md.

use crate::stats::{Counter, StatsValue};

/// The kind of a kernel map, as the registry documents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PerCpuArray,
    /// `BPF_MAP_TYPE_RINGBUF` (aya-log's `AYA_LOGS`; key and value sizes are 0).
    RingBuf,
}

/// One kernel map: everything ARCHITECTURE.md's table says about it.
#[derive(Clone, Copy, Debug)]
pub struct MapSpec {
    /// Object name; equals the eBPF static's identifier (at most 15 bytes: the kernel truncates longer names).
    pub name: &'static str,
    /// Map type.
    pub kind: MapKind,
    /// Key size in bytes, as the kernel reports it.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps), as the kernel reports it.
    pub value_size: u32,
    /// Capacity (entries, or bytes for a ring buffer).
    pub max_entries: u32,
    /// Who writes it.
    pub writer: &'static str,
    /// Who reads it.
    pub reader: &'static str,
    /// What it holds.
    pub purpose: &'static str,
}

/// Per-CPU packet counters, indexed by [`Counter`].
pub const STATS: &str = "STATS";
/// One slot per [`Counter`].
pub const STATS_MAX_ENTRIES: u32 = Counter::COUNT;

/// aya-log's ring buffer, declared by `aya-log-ebpf`, drained by `aya-log` into sticky's logs.
pub const AYA_LOGS: &str = "AYA_LOGS";
/// aya-log-ebpf 0.2's ring buffer size in bytes (fixed by that crate).
pub const AYA_LOGS_MAX_ENTRIES: u32 = 1 << 17;

/// Every map of the eBPF object.
pub const ALL: &[MapSpec] = &[
    MapSpec {
        name: STATS,
        kind: MapKind::PerCpuArray,
        key_size: size_of::<u32>() as u32,
        value_size: size_of::<StatsValue>() as u32,
        max_entries: STATS_MAX_ENTRIES,
        writer: "sticky_tc, sticky_xdp (per packet)",
        reader: "datapath::Stats (admin /metrics, `sticky demo`)",
        purpose: "packets seen, handled, passed and dropped, by reason",
    },
    MapSpec {
        name: AYA_LOGS,
        kind: MapKind::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: AYA_LOGS_MAX_ENTRIES,
        writer: "aya-log-ebpf macros in every program",
        reader: "aya-log EbpfLogger -> tracing",
        purpose: "kernel log records (rare events only, never per packet)",
    },
];

const _: () = {
    let mut i = 0;
    while i < ALL.len() {
        // BPF_OBJ_NAME_LEN is 16 including the NUL.
        assert!(ALL[i].name.len() <= 15);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn map_names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }
}
