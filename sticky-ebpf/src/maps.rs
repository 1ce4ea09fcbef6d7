//! The only place that declares kernel maps. Each static's identifier is its name in
//! `sticky_common::maps` (the registry) and its default size comes from there; user space may
//! resize the `resizable` ones at load (`EbpfLoader::map_max_entries`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, SockHash},
};
use sticky_common::{
    AffinityKey, AffinityKey6, AffinityValue, BackendId, BackendValue, BackendValue6, ConnValue, ConnValue6,
    DatapathConfig, FlowKey, FlowKey6, ServiceKey, ServiceKey6, ServiceValue, StatsValue,
    maps::{
        AFFINITY_MAX_ENTRIES, BACKENDS_MAX_ENTRIES, CONFIG_MAX_ENTRIES, CONNS_MAX_ENTRIES, HALF_OPEN_MAX_ENTRIES,
        MAGLEV_MAX_ENTRIES, SERVICES_MAX_ENTRIES, SPLICE_MAX_ENTRIES, STATS_MAX_ENTRIES,
    },
};

/// Per-CPU packet counters, indexed by `sticky_common::Counter`. Written per packet by every program,
/// read and summed by user space.
#[map]
pub static STATS: PerCpuArray<StatsValue> = PerCpuArray::with_max_entries(STATS_MAX_ENTRIES, 0);

/// L4 services by frontend (VIP, port, protocol). Written by user space, read for packets with no flow entry.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::with_max_entries(SERVICES_MAX_ENTRIES, 0);

/// Backends by id (array index). Written by user space, read when a flow picks its backend.
#[map]
pub static BACKENDS: Array<BackendValue> = Array::with_max_entries(BACKENDS_MAX_ENTRIES, 0);

/// Maglev rows, one per service id: `MAGLEV[id * MAGLEV_SIZE + slot]` is a backend id.
#[map]
pub static MAGLEV: Array<BackendId> = Array::with_max_entries(MAGLEV_MAX_ENTRIES, 0);

/// Established flows, both directions (key: the packet's 5-tuple as on the wire).
#[map]
pub static CONNS: LruHashMap<FlowKey, ConnValue> = LruHashMap::with_max_entries(CONNS_MAX_ENTRIES, 0);

/// Flows whose handshake is not complete yet, both directions; a SYN flood churns only this map.
#[map]
pub static HALF_OPEN: LruHashMap<FlowKey, ConnValue> = LruHashMap::with_max_entries(HALF_OPEN_MAX_ENTRIES, 0);

/// Client affinity: (client address, service id) -> backend and when it was last used.
#[map]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> = LruHashMap::with_max_entries(AFFINITY_MAX_ENTRIES, 0);

/// IPv6 services (their ids share the `MAGLEV` rows with `SERVICES`' ids).
#[map]
pub static SERVICES6: HashMap<ServiceKey6, ServiceValue> = HashMap::with_max_entries(SERVICES_MAX_ENTRIES, 0);

/// IPv6 backends by id: the ids in an IPv6 service's `MAGLEV` row index this array.
#[map]
pub static BACKENDS6: Array<BackendValue6> = Array::with_max_entries(BACKENDS_MAX_ENTRIES, 0);

/// Established IPv6 flows, both directions.
#[map]
pub static CONNS6: LruHashMap<FlowKey6, ConnValue6> = LruHashMap::with_max_entries(CONNS_MAX_ENTRIES, 0);

/// IPv6 flows whose handshake is not complete yet, both directions.
#[map]
pub static HALF_OPEN6: LruHashMap<FlowKey6, ConnValue6> = LruHashMap::with_max_entries(HALF_OPEN_MAX_ENTRIES, 0);

/// IPv6 client affinity: (128-bit client address, service id) -> backend, last used.
#[map]
pub static AFFINITY6: LruHashMap<AffinityKey6, AffinityValue> = LruHashMap::with_max_entries(AFFINITY_MAX_ENTRIES, 0);

/// Scratch space for `bpf_fib_lookup`'s parameters (one per CPU; a program runs to completion on
/// its CPU): off the stack, where the IPv6 path's call chain is at the verifier's 512-byte limit.
#[map]
pub static FIB_SCRATCH: PerCpuArray<aya_ebpf::bindings::bpf_fib_lookup> = PerCpuArray::with_max_entries(1, 0);

const _: () = assert!(size_of::<aya_ebpf::bindings::bpf_fib_lookup>() == sticky_common::maps::FIB_PARAMS_LEN as usize);

/// The balancer-wide configuration, one entry (index 0).
#[map]
pub static CONFIG: Array<DatapathConfig> = Array::with_max_entries(CONFIG_MAX_ENTRIES, 0);

/// Spliced socket (socket cookie) -> its peer socket: where `sticky_splice` sends what arrives.
/// Written by user space; a socket leaves it when it closes. No program is attached to this map.
#[map]
pub static SPLICE_PEERS: SockHash<u64> = SockHash::with_max_entries(SPLICE_MAX_ENTRIES, 0);

/// Spliced sockets (socket cookie -> the socket itself). `sticky_splice` is attached to this map,
/// so a socket runs it from the moment user space inserts it here (after its peer is in `SPLICE_PEERS`).
#[map]
pub static SPLICE_SOCKS: SockHash<u64> = SockHash::with_max_entries(SPLICE_MAX_ENTRIES, 0);

/// Bytes redirected from each spliced socket (socket cookie) to its peer; user space inserts 0 at
/// splice time and deletes the entry when the pair closes.
#[map]
pub static SPLICE_BYTES: HashMap<u64, u64> = HashMap::with_max_entries(SPLICE_MAX_ENTRIES, 0);
