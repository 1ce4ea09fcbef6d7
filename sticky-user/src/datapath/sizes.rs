//! Capacities of the resizable maps, set at load, and how full a map is: what the daemon asks of
//! the object and what it reports of it, for every map family (tcp mode's and the splice's).

use sticky_common::{hash::MAGLEV_SIZE, maps};

/// Capacities of the resizable maps, set at load (`EbpfLoader::map_max_entries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// `SERVICES` (and `SERVICES6`) entries; `MAGLEV` gets one row of `MAGLEV_SIZE` slots per service.
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

    /// (map name, `max_entries`) for every resizable map.
    pub fn overrides(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [
            (maps::SERVICES, self.services),
            (maps::BACKENDS, self.backends),
            (maps::MAGLEV, self.services.saturating_mul(MAGLEV_SIZE)),
            (maps::CONNS, self.conns),
            (maps::HALF_OPEN, self.half_open),
            (maps::AFFINITY, self.affinity),
            // The IPv6 twins take the same capacities as their IPv4 maps (same flags).
            (maps::SERVICES6, self.services),
            (maps::BACKENDS6, self.backends),
            (maps::CONNS6, self.conns),
            (maps::HALF_OPEN6, self.half_open),
            (maps::AFFINITY6, self.affinity),
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
