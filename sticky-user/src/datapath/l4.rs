//! Typed access to the L4 maps: capacities at load, the configuration, services, backends, Maglev
//! rows, and the usage numbers (entries used vs capacity, flows per backend) user space exports.

use std::collections::BTreeMap;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use sticky_common::{
    AffinityKey, AffinityValue, BackendId, BackendValue, ConnValue, DatapathConfig, FlowKey, ServiceKey, ServiceValue,
    hash::MAGLEV_SIZE, maps,
};

use super::{DatapathError, Stats, take_map};

/// Capacities of the resizable maps, set at load (`EbpfLoader::map_max_entries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// `SERVICES` entries; `MAGLEV` gets one row of `MAGLEV_SIZE` slots per service.
    pub services: u32,
    /// `BACKENDS` slots, over all services.
    pub backends: u32,
    /// `CONNS` entries: two per established flow.
    pub conns: u32,
    /// `HALF_OPEN` entries: two per flow whose handshake is in progress.
    pub half_open: u32,
    /// `AFFINITY` entries: one per (client address, service).
    pub affinity: u32,
    /// Entries of each splice map (`SPLICE_PEERS`, `SPLICE_SOCKS`, `SPLICE_BYTES`): two per spliced connection.
    pub splice: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            services: maps::SERVICES_MAX_ENTRIES,
            backends: maps::BACKENDS_MAX_ENTRIES,
            conns: maps::CONNS_MAX_ENTRIES,
            half_open: maps::HALF_OPEN_MAX_ENTRIES,
            affinity: maps::AFFINITY_MAX_ENTRIES,
            splice: maps::SPLICE_MAX_ENTRIES,
        }
    }
}

impl MapSizes {
    /// Sizes for http mode, which uses only the splice maps: the L4 maps at their smallest useful
    /// size (they are created with the object all the same), `pairs` spliced connections.
    #[must_use]
    pub fn http(pairs: u32) -> Self {
        Self { services: 1, backends: 1, conns: 64, half_open: 64, affinity: 64, splice: pairs.saturating_mul(2) }
    }

    /// (map name, max_entries) for every resizable map.
    pub fn overrides(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [
            (maps::SERVICES, self.services),
            (maps::BACKENDS, self.backends),
            (maps::MAGLEV, self.services.saturating_mul(MAGLEV_SIZE)),
            (maps::CONNS, self.conns),
            (maps::HALF_OPEN, self.half_open),
            (maps::AFFINITY, self.affinity),
            (maps::SPLICE_PEERS, self.splice),
            (maps::SPLICE_SOCKS, self.splice),
            (maps::SPLICE_BYTES, self.splice),
        ]
        .into_iter()
    }
}

/// How full one map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapUsage {
    /// Map name (the registry's).
    pub name: &'static str,
    /// Entries present (for arrays: non-empty slots).
    pub used: u64,
    /// Capacity.
    pub max: u64,
}

/// Everything user space exports about the kernel path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// One row per L4 map.
    pub maps: Vec<MapUsage>,
    /// Established flows per backend (forward entries in `CONNS`).
    pub flows_per_backend: BTreeMap<BackendId, u64>,
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
pub struct L4Maps {
    config: Array<MapData, DatapathConfig>,
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: Array<MapData, BackendValue>,
    maglev: Array<MapData, BackendId>,
    conns: HashMap<MapData, FlowKey, ConnValue>,
    half_open: HashMap<MapData, FlowKey, ConnValue>,
    affinity: HashMap<MapData, AffinityKey, AffinityValue>,
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

impl L4Maps {
    pub(super) fn take(ebpf: &mut Ebpf, sizes: &MapSizes) -> Result<Self, DatapathError> {
        Ok(Self {
            config: typed!(ebpf, maps::CONFIG),
            services: typed!(ebpf, maps::SERVICES),
            backends: typed!(ebpf, maps::BACKENDS),
            maglev: typed!(ebpf, maps::MAGLEV),
            conns: typed!(ebpf, maps::CONNS),
            half_open: typed!(ebpf, maps::HALF_OPEN),
            affinity: typed!(ebpf, maps::AFFINITY),
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

    /// Removes a service (absent is fine).
    ///
    /// # Errors
    /// The kernel refuses the delete.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DatapathError> {
        match self.services.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(maps::SERVICES, "delete")(e)),
        }
    }

    /// Writes backend slot `id`.
    ///
    /// # Errors
    /// `id` is out of range or the kernel refuses the write.
    pub fn set_backend(&mut self, id: BackendId, value: &BackendValue) -> Result<(), DatapathError> {
        self.backends.set(id, value, 0).map_err(map_err(maps::BACKENDS, "update"))
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
        for entry in self.conns.iter() {
            // An entry evicted between the key walk and its lookup is simply not counted.
            let Ok((_, value)) = entry else { continue };
            conns += 1;
            if value.is_forward() {
                *flows_per_backend.entry(value.backend).or_insert(0) += 1;
            }
        }
        let half_open = self.half_open.keys().filter(Result::is_ok).count() as u64;
        let affinity = self.affinity.keys().filter(Result::is_ok).count() as u64;
        let services = self.services.keys().filter(Result::is_ok).count() as u64;
        let backends = self.backends.iter().filter(|b| b.as_ref().is_ok_and(|b| b.flags != 0)).count() as u64;
        let s = &self.sizes;
        let maps = vec![
            MapUsage { name: maps::SERVICES, used: services, max: s.services.into() },
            MapUsage { name: maps::BACKENDS, used: backends, max: s.backends.into() },
            MapUsage { name: maps::CONNS, used: conns, max: s.conns.into() },
            MapUsage { name: maps::HALF_OPEN, used: half_open, max: s.half_open.into() },
            MapUsage { name: maps::AFFINITY, used: affinity, max: s.affinity.into() },
        ];
        Ok(Usage { maps, flows_per_backend, stats })
    }
}
