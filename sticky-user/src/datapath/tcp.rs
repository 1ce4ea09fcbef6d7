//! Typed access to the maps of tcp mode's kernel path (the L4 maps): the configuration, services,
//! backends, Maglev rows, and the usage numbers (entries used vs capacity, flows per backend) user
//! space exports.

use std::collections::BTreeMap;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use sticky_common::{
    AffinityKey, AffinityKey6, AffinityValue, BackendId, BackendValue, BackendValue6, ConnValue, ConnValue6,
    DatapathConfig, FlowKey, FlowKey6, ServiceKey, ServiceKey6, ServiceValue, hash::MAGLEV_SIZE, maps,
};

use super::{
    DatapathError, Stats,
    sizes::{MapSizes, MapUsage},
    take_map,
};

/// The kernel's clock now: `bpf_ktime_get_ns` reads `CLOCK_MONOTONIC`, the clock of
/// `AffinityValue::last_used_ns`.
#[must_use]
pub fn kernel_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into valid memory.
    #[expect(unsafe_code, reason = "libc::clock_gettime: std has no CLOCK_MONOTONIC reading in ns")]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
    }
    // CLOCK_MONOTONIC is never negative
    u64::try_from(ts.tv_sec).unwrap_or_default() * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or_default()
}

/// Everything user space exports about the kernel path of tcp mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// One row per L4 map.
    pub maps: Vec<MapUsage>,
    /// Established flows per backend (forward entries in `CONNS`).
    pub flows_per_backend: BTreeMap<BackendId, u64>,
    /// Established IPv6 flows per IPv6 backend (forward entries in `CONNS6`; ids index `BACKENDS6`).
    pub flows_per_backend6: BTreeMap<BackendId, u64>,
    /// The packet counters.
    pub stats: Stats,
}

impl Usage {
    /// The usage row of `name`.
    #[must_use]
    pub fn map(&self, name: &str) -> Option<MapUsage> {
        self.maps.iter().find(|m| m.name == name).copied()
    }
}

/// The L4 maps, typed.
pub struct TcpMaps {
    config: Array<MapData, DatapathConfig>,
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: Array<MapData, BackendValue>,
    maglev: Array<MapData, BackendId>,
    conns: HashMap<MapData, FlowKey, ConnValue>,
    half_open: HashMap<MapData, FlowKey, ConnValue>,
    affinity: HashMap<MapData, AffinityKey, AffinityValue>,
    services6: HashMap<MapData, ServiceKey6, ServiceValue>,
    backends6: Array<MapData, BackendValue6>,
    conns6: HashMap<MapData, FlowKey6, ConnValue6>,
    half_open6: HashMap<MapData, FlowKey6, ConnValue6>,
    affinity6: HashMap<MapData, AffinityKey6, AffinityValue>,
    sizes: MapSizes,
}

fn map_err(name: &'static str, action: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, action, source: Box::new(source) }
}

macro_rules! typed {
    ($ebpf:expr, $name:expr) => {
        take_map($ebpf, $name)?.try_into().map_err(map_err($name, "open"))?
    };
}

impl TcpMaps {
    pub(super) fn take(ebpf: &mut Ebpf, sizes: &MapSizes) -> Result<Self, DatapathError> {
        Ok(Self {
            config: typed!(ebpf, maps::CONFIG),
            services: typed!(ebpf, maps::SERVICES),
            backends: typed!(ebpf, maps::BACKENDS),
            maglev: typed!(ebpf, maps::MAGLEV),
            conns: typed!(ebpf, maps::CONNS),
            half_open: typed!(ebpf, maps::HALF_OPEN),
            affinity: typed!(ebpf, maps::AFFINITY),
            services6: typed!(ebpf, maps::SERVICES6),
            backends6: typed!(ebpf, maps::BACKENDS6),
            conns6: typed!(ebpf, maps::CONNS6),
            half_open6: typed!(ebpf, maps::HALF_OPEN6),
            affinity6: typed!(ebpf, maps::AFFINITY6),
            sizes: *sizes,
        })
    }

    /// The capacities this object was loaded with.
    #[must_use]
    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// Writes the configuration; a non-zero `snat_addr` turns the L4 path on.
    ///
    /// # Errors
    /// The kernel refuses the write.
    pub fn set_config(&mut self, config: &DatapathConfig) -> Result<(), DatapathError> {
        self.config.set(0, config, 0).map_err(map_err(maps::CONFIG, "update"))
    }

    /// Adds or replaces a service.
    ///
    /// # Errors
    /// The map is full or the kernel refuses the write.
    pub fn set_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), DatapathError> {
        self.services.insert(key, value, 0).map_err(map_err(maps::SERVICES, "update"))
    }

    /// Writes backend slot `id`.
    ///
    /// # Errors
    /// `id` is out of range or the kernel refuses the write.
    pub fn set_backend(&mut self, id: BackendId, value: &BackendValue) -> Result<(), DatapathError> {
        self.backends.set(id, value, 0).map_err(map_err(maps::BACKENDS, "update"))
    }

    /// Adds or replaces an IPv6 service.
    ///
    /// # Errors
    /// The map is full or the kernel refuses the write.
    pub fn set_service6(&mut self, key: &ServiceKey6, value: &ServiceValue) -> Result<(), DatapathError> {
        self.services6.insert(key, value, 0).map_err(map_err(maps::SERVICES6, "update"))
    }

    /// Writes IPv6 backend slot `id`.
    ///
    /// # Errors
    /// `id` is out of range or the kernel refuses the write.
    pub fn set_backend6(&mut self, id: BackendId, value: &BackendValue6) -> Result<(), DatapathError> {
        self.backends6.set(id, value, 0).map_err(map_err(maps::BACKENDS6, "update"))
    }

    /// One entry of `CONNS6` (tests and diagnostics).
    #[must_use]
    pub fn conn6(&self, key: &FlowKey6) -> Option<ConnValue6> {
        self.conns6.get(key, 0).ok()
    }

    /// One entry of `HALF_OPEN6` (tests and diagnostics).
    #[must_use]
    pub fn half_open6(&self, key: &FlowKey6) -> Option<ConnValue6> {
        self.half_open6.get(key, 0).ok()
    }

    /// One entry of `AFFINITY6` (tests and diagnostics).
    #[must_use]
    pub fn affinity6(&self, key: &AffinityKey6) -> Option<AffinityValue> {
        self.affinity6.get(key, 0).ok()
    }

    /// Writes one `AFFINITY6` entry (tests and diagnostics; the kernel writes them itself).
    ///
    /// # Errors
    /// The kernel refuses the write.
    pub fn set_affinity6(&mut self, key: &AffinityKey6, value: &AffinityValue) -> Result<(), DatapathError> {
        self.affinity6.insert(key, value, 0).map_err(map_err(maps::AFFINITY6, "update"))
    }

    /// Deletes one `CONNS6` entry (tests that simulate an LRU eviction).
    ///
    /// # Errors
    /// The entry is absent or the kernel refuses the delete.
    pub fn evict_conn6(&mut self, key: &FlowKey6) -> Result<(), DatapathError> {
        self.conns6.remove(key).map_err(map_err(maps::CONNS6, "delete"))
    }

    /// Writes slot `slot` of service `service`'s Maglev row.
    ///
    /// # Errors
    /// Out of range, or the kernel refuses the write.
    pub fn set_maglev_slot(&mut self, service: u32, slot: u32, backend: BackendId) -> Result<(), DatapathError> {
        let index = service.checked_mul(MAGLEV_SIZE).and_then(|i| i.checked_add(slot)).unwrap_or(u32::MAX);
        self.maglev.set(index, backend, 0).map_err(map_err(maps::MAGLEV, "update"))
    }

    /// One entry of `CONNS` (tests and diagnostics).
    #[must_use]
    pub fn conn(&self, key: &FlowKey) -> Option<ConnValue> {
        self.conns.get(key, 0).ok()
    }

    /// One entry of `HALF_OPEN` (tests and diagnostics).
    #[must_use]
    pub fn half_open(&self, key: &FlowKey) -> Option<ConnValue> {
        self.half_open.get(key, 0).ok()
    }

    /// One entry of `AFFINITY` (tests and diagnostics).
    #[must_use]
    pub fn affinity(&self, key: &AffinityKey) -> Option<AffinityValue> {
        self.affinity.get(key, 0).ok()
    }

    /// The affinity entry of `client` for the service numbered `service` (`AFFINITY` for an IPv4
    /// client, `AFFINITY6` for an IPv6 one): the backend id and when it was last used (nanoseconds of
    /// `CLOCK_MONOTONIC`). A lookup only: the entry is neither refreshed nor written.
    #[must_use]
    pub fn affinity_of(&self, client: std::net::IpAddr, service: u32) -> Option<AffinityValue> {
        match client {
            std::net::IpAddr::V4(a) => self.affinity(&AffinityKey { client_addr: u32::from(a).to_be(), service }),
            std::net::IpAddr::V6(a) => self
                .affinity6(&AffinityKey6 { client_addr: sticky_common::addr::Ip6::from_octets(a.octets()), service }),
        }
    }

    /// Writes one `AFFINITY` entry (tests and diagnostics; the kernel writes them itself).
    ///
    /// # Errors
    /// The kernel refuses the write.
    pub fn set_affinity(&mut self, key: &AffinityKey, value: &AffinityValue) -> Result<(), DatapathError> {
        self.affinity.insert(key, value, 0).map_err(map_err(maps::AFFINITY, "update"))
    }

    /// Deletes one `CONNS` entry (tests that simulate an LRU eviction).
    ///
    /// # Errors
    /// The entry is absent or the kernel refuses the delete.
    pub fn evict_conn(&mut self, key: &FlowKey) -> Result<(), DatapathError> {
        self.conns.remove(key).map_err(map_err(maps::CONNS, "delete"))
    }

    /// Entries used vs capacity of every L4 map, and established flows per backend.
    ///
    /// # Errors
    /// The kernel refuses a read.
    pub fn usage(&self, stats: Stats) -> Result<Usage, DatapathError> {
        let mut flows_per_backend = BTreeMap::new();
        let mut conns = 0u64;
        for entry in &self.conns {
            // An entry evicted between the key walk and its lookup is simply not counted.
            let Ok((_, value)) = entry else { continue };
            conns += 1;
            if value.is_forward() {
                *flows_per_backend.entry(value.backend).or_insert(0) += 1;
            }
        }
        let mut flows_per_backend6 = BTreeMap::new();
        let mut conns6 = 0u64;
        for entry in &self.conns6 {
            let Ok((_, value)) = entry else { continue };
            conns6 += 1;
            if value.is_forward() {
                *flows_per_backend6.entry(value.backend).or_insert(0) += 1;
            }
        }
        let half_open = self.half_open.keys().flatten().count() as u64;
        let affinity = self.affinity.keys().flatten().count() as u64;
        let services = self.services.keys().flatten().count() as u64;
        let backends = self.backends.iter().filter(|b| b.as_ref().is_ok_and(|b| b.flags != 0)).count() as u64;
        let half_open6 = self.half_open6.keys().flatten().count() as u64;
        let affinity6 = self.affinity6.keys().flatten().count() as u64;
        let services6 = self.services6.keys().flatten().count() as u64;
        let backends6 = self.backends6.iter().filter(|b| b.as_ref().is_ok_and(|b| b.flags != 0)).count() as u64;
        let s = &self.sizes;
        let maps = vec![
            MapUsage { name: maps::SERVICES, used: services, max: s.services.into() },
            MapUsage { name: maps::BACKENDS, used: backends, max: s.backends.into() },
            MapUsage { name: maps::CONNS, used: conns, max: s.conns.into() },
            MapUsage { name: maps::HALF_OPEN, used: half_open, max: s.half_open.into() },
            MapUsage { name: maps::AFFINITY, used: affinity, max: s.affinity.into() },
            MapUsage { name: maps::SERVICES6, used: services6, max: s.services.into() },
            MapUsage { name: maps::BACKENDS6, used: backends6, max: s.backends.into() },
            MapUsage { name: maps::CONNS6, used: conns6, max: s.conns.into() },
            MapUsage { name: maps::HALF_OPEN6, used: half_open6, max: s.half_open.into() },
            MapUsage { name: maps::AFFINITY6, used: affinity6, max: s.affinity.into() },
        ];
        Ok(Usage { maps, flows_per_backend, flows_per_backend6, stats })
    }
}
