//! The kernel map registry: every map's name, kind, key/value sizes, capacity, writer and reader.
//!
//! `sticky-ebpf/src/maps.rs` declares each map as a static whose identifier equals the name here;
//! user space takes maps only through these names. ARCHITECTURE.md's map table mirrors [`ALL`], and
//! two tests keep them honest: one loads the object and compares each map's kernel-reported sizes with
//! this registry, one checks every entry has a row in ARCHITECTURE.md.

use crate::{
    affinity::{AffinityKey, AffinityKey6, AffinityValue},
    backend::{BackendId, BackendValue, BackendValue6},
    config::DatapathConfig,
    flow::{ConnValue, ConnValue6, FlowKey, FlowKey6},
    hash::MAGLEV_SIZE,
    service::{ServiceKey, ServiceKey6, ServiceValue},
    stats::{Counter, StatsValue},
};

/// The kind of a kernel map, as the registry documents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PerCpuArray,
    /// `BPF_MAP_TYPE_RINGBUF` (aya-log's `AYA_LOGS`; key and value sizes are 0).
    RingBuf,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array,
    /// `BPF_MAP_TYPE_HASH`: entries stay until deleted; an insert into a full map fails.
    Hash,
    /// `BPF_MAP_TYPE_LRU_HASH`: an insert into a full map evicts the least recently used entries.
    LruHash,
    /// `BPF_MAP_TYPE_SOCKHASH`: values are sockets (user space writes fds); a socket leaves every
    /// map it is in when it closes.
    SockHash,
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
    /// Whether the daemon may set its capacity at load (`EbpfLoader::map_max_entries`, from a flag).
    pub resizable: bool,
}

/// Per-CPU packet counters, indexed by [`Counter`].
pub const STATS: &str = "STATS";
/// One slot per [`Counter`].
pub const STATS_MAX_ENTRIES: u32 = Counter::COUNT;

/// aya-log's ring buffer, declared by `aya-log-ebpf`, drained by `aya-log` into sticky's logs.
pub const AYA_LOGS: &str = "AYA_LOGS";
/// aya-log-ebpf 0.2's ring buffer size in bytes (fixed by that crate).
pub const AYA_LOGS_MAX_ENTRIES: u32 = 1 << 17;

/// L4 services: (VIP, port, protocol) -> id, flags, affinity timeout.
pub const SERVICES: &str = "SERVICES";
/// Default number of services (`--max-services`); also the number of rows of `MAGLEV`.
pub const SERVICES_MAX_ENTRIES: u32 = 16;

/// Backends of every L4 service, indexed by [`BackendId`].
pub const BACKENDS: &str = "BACKENDS";
/// Default number of backend slots (`--max-backends`), over all services. 1 backend = 1 address:port.
pub const BACKENDS_MAX_ENTRIES: u32 = 1024;

/// Maglev lookup tables: row `service id`, [`MAGLEV_SIZE`] slots each, slot -> [`BackendId`].
pub const MAGLEV: &str = "MAGLEV";
/// One row of [`MAGLEV_SIZE`] slots per service.
pub const MAGLEV_MAX_ENTRIES: u32 = SERVICES_MAX_ENTRIES * MAGLEV_SIZE;

/// Established flows, both directions: 5-tuple -> rewrite target.
pub const CONNS: &str = "CONNS";
/// Default capacity (`--max-flows` x 2: each flow has two entries).
pub const CONNS_MAX_ENTRIES: u32 = 2 * 65536;

/// Flows whose handshake has not completed (and rebuilt flows not yet confirmed), both directions.
/// Kept apart from `CONNS` so that a SYN flood churns this map only and never evicts established flows.
pub const HALF_OPEN: &str = "HALF_OPEN";
/// Default capacity (`--max-half-open`, entries; two per flow).
pub const HALF_OPEN_MAX_ENTRIES: u32 = 16384;

/// Client affinity: (client address, service) -> backend, last used.
pub const AFFINITY: &str = "AFFINITY";
/// Default capacity (`--max-affinity`, client addresses over all services).
pub const AFFINITY_MAX_ENTRIES: u32 = 65536;

/// IPv6 twins of the maps above: same roles, 128-bit addresses in keys and values. Separate maps
/// rather than one map with an address-family tag and room for 128 bits in every key: a tagged key
/// would make each IPv4 entry of `CONNS` 40 + 44 bytes instead of 16 + 20 (152 instead of 104 bytes
/// with the kernel's overhead: 1.46x the memory of the table that holds every established flow)
/// for a family most deployments barely use. Each v6 map
/// takes its capacity from the same flag as its v4 twin. Service ids are one space over `SERVICES`
/// and `SERVICES6` (the row in the shared `MAGLEV`); backend ids of an IPv6 service index `BACKENDS6`.
pub const SERVICES6: &str = "SERVICES6";
/// IPv6 backends, indexed by [`BackendId`] (their own id space, see [`SERVICES6`]).
pub const BACKENDS6: &str = "BACKENDS6";
/// IPv6 established flows, both directions.
pub const CONNS6: &str = "CONNS6";
/// IPv6 flows before their handshake completes.
pub const HALF_OPEN6: &str = "HALF_OPEN6";
/// IPv6 client affinity: (128-bit client address, service) -> backend, last used.
pub const AFFINITY6: &str = "AFFINITY6";

/// Per-CPU scratch space for `bpf_fib_lookup`'s parameter block (`struct bpf_fib_lookup`, 64 bytes):
/// kept off the stack, where the IPv6 path's call chain has no 64 bytes to spare under the
/// verifier's 512-byte limit.
pub const FIB_SCRATCH: &str = "FIB_SCRATCH";
/// `sizeof(struct bpf_fib_lookup)` (linux/bpf.h).
pub const FIB_PARAMS_LEN: u32 = 64;

/// The data path's configuration ([`DatapathConfig`]): one entry, written at start-up.
pub const CONFIG: &str = "CONFIG";
/// One entry.
pub const CONFIG_MAX_ENTRIES: u32 = 1;

/// Spliced sockets -> their peers: the socket cookie of a spliced socket -> the socket its incoming
/// bytes are sent out of. No program is attached to this map; the verdict looks the peer up here.
pub const SPLICE_PEERS: &str = "SPLICE_PEERS";
/// Spliced sockets themselves (socket cookie -> the socket): membership attaches `sticky_splice`.
/// Kept apart from [`SPLICE_PEERS`] so that a socket gets its verdict program only once its peer
/// is already known (see `datapath::splice`).
pub const SPLICE_SOCKS: &str = "SPLICE_SOCKS";
/// Bytes `sticky_splice` redirected from each spliced socket to its peer (socket cookie -> bytes):
/// user space compares it with what the peer's TCP has taken before it forwards a FIN.
pub const SPLICE_BYTES: &str = "SPLICE_BYTES";
/// Default capacity of each splice map (`--max-spliced` x 2: one entry per socket, two per connection).
pub const SPLICE_MAX_ENTRIES: u32 = 2 * 16384;

/// The size of `T` as the kernel's map API takes it (`u32`).
const fn size32<T>() -> u32 {
    const { assert!(size_of::<T>() <= u32::MAX as usize) };
    #[expect(clippy::cast_possible_truncation, reason = "asserted at compile time just above")]
    let size = size_of::<T>() as u32;
    size
}

/// Every map of the eBPF object.
pub const ALL: &[MapSpec] = &[
    MapSpec {
        name: STATS,
        kind: MapKind::PerCpuArray,
        key_size: size32::<u32>(),
        value_size: size32::<StatsValue>(),
        max_entries: STATS_MAX_ENTRIES,
        writer: "sticky_tc, sticky_xdp (per packet)",
        reader: "datapath::Stats (admin /metrics, `sticky demo`)",
        purpose: "packets seen, forwarded, passed and dropped, by reason; L4 events",
        resizable: false,
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
        resizable: false,
    },
    MapSpec {
        name: SERVICES,
        kind: MapKind::Hash,
        key_size: size32::<ServiceKey>(),
        value_size: size32::<ServiceValue>(),
        max_entries: SERVICES_MAX_ENTRIES,
        writer: "datapath::sync (user space)",
        reader: "sticky_tc (packets with no flow entry)",
        purpose: "which destinations are L4 services, with their id and affinity timeout",
        resizable: true,
    },
    MapSpec {
        name: BACKENDS,
        kind: MapKind::Array,
        key_size: size32::<u32>(),
        value_size: size32::<BackendValue>(),
        max_entries: BACKENDS_MAX_ENTRIES,
        writer: "datapath::sync (user space)",
        reader: "sticky_tc (new flows only)",
        purpose: "backend address, port, service and alive flag by id",
        resizable: true,
    },
    MapSpec {
        name: MAGLEV,
        kind: MapKind::Array,
        key_size: size32::<u32>(),
        value_size: size32::<BackendId>(),
        max_entries: MAGLEV_MAX_ENTRIES,
        writer: "datapath::sync (policy::maglev tables)",
        reader: "sticky_tc (new flows without fresh affinity)",
        purpose: "consistent-hash lookup tables, one prime-sized row per service",
        resizable: true,
    },
    MapSpec {
        name: CONNS,
        kind: MapKind::LruHash,
        key_size: size32::<FlowKey>(),
        value_size: size32::<ConnValue>(),
        max_entries: CONNS_MAX_ENTRIES,
        writer: "sticky_tc (handshake done, twin restore, RST delete)",
        reader: "sticky_tc (every packet); datapath usage (count)",
        purpose: "established flows, both directions: 5-tuple -> NAT rewrite",
        resizable: true,
    },
    MapSpec {
        name: HALF_OPEN,
        kind: MapKind::LruHash,
        key_size: size32::<FlowKey>(),
        value_size: size32::<ConnValue>(),
        max_entries: HALF_OPEN_MAX_ENTRIES,
        writer: "sticky_tc (SYN, rebuild)",
        reader: "sticky_tc (CONNS misses); datapath usage (count)",
        purpose: "flows before their handshake completes; a SYN flood churns only this map",
        resizable: true,
    },
    MapSpec {
        name: AFFINITY,
        kind: MapKind::LruHash,
        key_size: size32::<AffinityKey>(),
        value_size: size32::<AffinityValue>(),
        max_entries: AFFINITY_MAX_ENTRIES,
        writer: "sticky_tc (handshake done, FIN/RST)",
        reader: "sticky_tc (new flows); datapath usage (count)",
        purpose: "client affinity: (client, service) -> backend, last used",
        resizable: true,
    },
    MapSpec {
        name: SERVICES6,
        kind: MapKind::Hash,
        key_size: size32::<ServiceKey6>(),
        value_size: size32::<ServiceValue>(),
        max_entries: SERVICES_MAX_ENTRIES,
        writer: "datapath::sync (user space)",
        reader: "sticky_tc (IPv6 packets with no flow entry)",
        purpose: "SERVICES for IPv6 VIPs (ids shared with SERVICES: one MAGLEV row each)",
        resizable: true,
    },
    MapSpec {
        name: BACKENDS6,
        kind: MapKind::Array,
        key_size: size32::<u32>(),
        value_size: size32::<BackendValue6>(),
        max_entries: BACKENDS_MAX_ENTRIES,
        writer: "datapath::sync (user space)",
        reader: "sticky_tc (new IPv6 flows only)",
        purpose: "IPv6 backend address, port, service and alive flag by id",
        resizable: true,
    },
    MapSpec {
        name: CONNS6,
        kind: MapKind::LruHash,
        key_size: size32::<FlowKey6>(),
        value_size: size32::<ConnValue6>(),
        max_entries: CONNS_MAX_ENTRIES,
        writer: "sticky_tc (handshake done, twin restore, RST delete)",
        reader: "sticky_tc (every IPv6 packet); datapath usage (count)",
        purpose: "CONNS for IPv6 flows (separate: a tagged v4/v6 key would cost every v4 entry 1.46x)",
        resizable: true,
    },
    MapSpec {
        name: HALF_OPEN6,
        kind: MapKind::LruHash,
        key_size: size32::<FlowKey6>(),
        value_size: size32::<ConnValue6>(),
        max_entries: HALF_OPEN_MAX_ENTRIES,
        writer: "sticky_tc (SYN, rebuild)",
        reader: "sticky_tc (CONNS6 misses); datapath usage (count)",
        purpose: "HALF_OPEN for IPv6 flows",
        resizable: true,
    },
    MapSpec {
        name: AFFINITY6,
        kind: MapKind::LruHash,
        key_size: size32::<AffinityKey6>(),
        value_size: size32::<AffinityValue>(),
        max_entries: AFFINITY_MAX_ENTRIES,
        writer: "sticky_tc (handshake done)",
        reader: "sticky_tc (new IPv6 flows); datapath usage (count)",
        purpose: "client affinity keyed by the 128-bit client address",
        resizable: true,
    },
    MapSpec {
        name: FIB_SCRATCH,
        kind: MapKind::PerCpuArray,
        key_size: size32::<u32>(),
        value_size: FIB_PARAMS_LEN,
        max_entries: 1,
        writer: "sticky_tc (per forwarded packet)",
        reader: "sticky_tc (bpf_fib_lookup)",
        purpose: "the FIB lookup's parameter block, off the stack",
        resizable: false,
    },
    MapSpec {
        name: CONFIG,
        kind: MapKind::Array,
        key_size: size32::<u32>(),
        value_size: size32::<DatapathConfig>(),
        max_entries: CONFIG_MAX_ENTRIES,
        writer: "datapath (user space, at start-up)",
        reader: "sticky_tc (new flows and packets with no flow entry)",
        purpose: "SNAT addresses (IPv4, IPv6) and port range",
        resizable: false,
    },
    MapSpec {
        name: SPLICE_PEERS,
        kind: MapKind::SockHash,
        key_size: size32::<u64>(),
        value_size: size32::<u32>(),
        max_entries: SPLICE_MAX_ENTRIES,
        writer: "proxy::splice (join; the kernel removes a socket when it closes)",
        reader: "sticky_splice (every skb of a spliced socket)",
        purpose: "spliced socket (cookie) -> peer socket, the redirect target",
        resizable: true,
    },
    MapSpec {
        name: SPLICE_SOCKS,
        kind: MapKind::SockHash,
        key_size: size32::<u64>(),
        value_size: size32::<u32>(),
        max_entries: SPLICE_MAX_ENTRIES,
        writer: "proxy::splice (join, after SPLICE_PEERS; the kernel removes a socket when it closes)",
        reader: "kernel: membership runs sticky_splice on the socket's data",
        purpose: "spliced sockets; the map sticky_splice is attached to",
        resizable: true,
    },
    MapSpec {
        name: SPLICE_BYTES,
        kind: MapKind::Hash,
        key_size: size32::<u64>(),
        value_size: size32::<u64>(),
        max_entries: SPLICE_MAX_ENTRIES,
        writer: "proxy::splice (insert at join, delete at close); sticky_splice (adds per skb)",
        reader: "proxy::splice (before forwarding a FIN); datapath usage (count)",
        purpose: "bytes redirected from each spliced socket to its peer",
        resizable: true,
    },
];

/// The registry entry of the map called `name`.
#[must_use]
pub fn spec(name: &str) -> Option<&'static MapSpec> {
    ALL.iter().find(|s| s.name.as_bytes() == name.as_bytes())
}

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
