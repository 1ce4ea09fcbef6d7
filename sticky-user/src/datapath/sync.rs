//! Backend sets into the kernel: backend ids, `BACKENDS` slots, the Maglev row and the `SERVICES`
//! entry of each L4 service, written in an order that is safe while packets flow.
//!
//! Order of one [`MapSync::apply`]: new backends' slots first (alive), then the Maglev slots that change,
//! then the service entry, then departed backends' slots cleared. A packet meanwhile sees either the
//! old or the new owner of a slot, both alive at that moment; a departed backend's established flows
//! go on (the connection table holds its address), and its clients' affinity stops being trusted.
//!
//! An IPv6 service (IPv6 VIP) goes to `SERVICES6` and its backends to `BACKENDS6`; every backend of
//! a service has the VIP's family (the kernel's full NAT does not translate between families), a
//! backend of the other family is left out with a warning. Service ids are one space over both
//! families (the shared `MAGLEV` rows); backend ids are one space per family (one array each).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
};

use sticky_common::{
    BackendId, BackendValue, BackendValue6, Ip6, ServiceKey, ServiceKey6, ServiceValue,
    backend::{BACKEND_F_ALIVE, NO_BACKEND},
    flow::IPPROTO_TCP,
    service::SVC_F_AFFINITY,
};

use super::{DatapathError, tcp::TcpMaps};
use crate::{model::TcpService, policy::maglev::Maglev};

/// What one [`MapSync::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Backends that joined, with their ids.
    pub added: Vec<(SocketAddr, BackendId)>,
    /// Backends that left (draining: established flows go on, no new ones).
    pub removed: Vec<(SocketAddr, BackendId)>,
    /// Maglev slots whose owner changed.
    pub slots_changed: usize,
}

/// What user space last wrote for each service.
#[derive(Debug, Default)]
pub struct MapSync {
    services: HashMap<SocketAddr, ServiceState>,
    ids: IdAllocator,
    ids6: IdAllocator,
}

#[derive(Debug)]
struct ServiceState {
    id: u32,
    backends: BTreeMap<SocketAddr, BackendId>,
    row: Vec<BackendId>,
}

impl MapSync {
    /// A sync for maps with `max_backends` backend slots.
    #[must_use]
    pub fn new(max_backends: u32) -> Self {
        Self { services: HashMap::new(), ids: IdAllocator::new(max_backends), ids6: IdAllocator::new(max_backends) }
    }

    /// The id of `vip`'s service, once applied.
    #[must_use]
    pub fn service_id(&self, vip: SocketAddr) -> Option<u32> {
        self.services.get(&vip).map(|s| s.id)
    }

    /// The backend id of `backend` in `vip`'s service.
    #[must_use]
    pub fn backend_id(&self, vip: SocketAddr, backend: SocketAddr) -> Option<BackendId> {
        self.services.get(&vip)?.backends.get(&backend).copied()
    }

    /// Writes `spec` into the maps, changing only what differs from the last apply.
    ///
    /// # Errors
    /// Out of service ids or backend slots (`--max-services`, `--max-backends`), or a map write fails.
    pub fn apply(&mut self, maps: &mut TcpMaps, spec: &TcpService) -> Result<SyncReport, DatapathError> {
        let max_services = maps.sizes().services;
        let next_id = (0..max_services)
            .find(|id| !self.services.values().any(|s| s.id == *id))
            .ok_or(DatapathError::Full { what: "service ids", max: max_services })?;
        let state = self.services.entry(spec.vip).or_insert_with(|| ServiceState {
            id: next_id,
            backends: BTreeMap::new(),
            row: Vec::new(),
        });
        let mut report = SyncReport::default();
        let v6 = spec.vip.is_ipv6();
        let ids = if v6 { &mut self.ids6 } else { &mut self.ids };
        let same_family: Vec<SocketAddr> = spec.backends.iter().copied().filter(|b| b.is_ipv6() == v6).collect();
        if same_family.len() != spec.backends.len() {
            tracing::warn!(
                service = %spec.name, vip = %spec.vip,
                "backends of the other address family are left out of the kernel path (its NAT keeps the family)"
            );
        }
        let wanted: BTreeSet<SocketAddr> = same_family.iter().copied().collect();

        for backend in &wanted {
            if state.backends.contains_key(backend) {
                continue;
            }
            let id = ids.alloc().ok_or(DatapathError::Full { what: "backend slots", max: ids.max })?;
            write_backend(maps, id, (*backend, state.id))?;
            state.backends.insert(*backend, id);
            report.added.push((*backend, id));
        }

        let table = Maglev::build(&same_family);
        let row: Vec<BackendId> = if table.slots().is_empty() {
            vec![NO_BACKEND; sticky_common::hash::MAGLEV_SIZE as usize]
        } else {
            let ids: Vec<BackendId> = table.backends().iter().map(|b| state.backends[b]).collect();
            table.slots().iter().map(|&i| ids[i as usize]).collect()
        };
        for (slot, &id) in row.iter().enumerate() {
            if state.row.get(slot) != Some(&id) {
                #[expect(clippy::cast_possible_truncation, reason = "a slot is below MAGLEV_SIZE (16381)")]
                maps.set_maglev_slot(state.id, slot as u32, id)?;
                report.slots_changed += 1;
            }
        }
        state.row = row;

        let timeout_ns = u64::try_from(spec.affinity_timeout.as_nanos()).unwrap_or(u64::MAX);
        let value = ServiceValue {
            id: state.id,
            flags: if timeout_ns > 0 { SVC_F_AFFINITY } else { 0 },
            affinity_timeout_ns: timeout_ns,
        };
        let port = spec.vip.port().to_be();
        match spec.vip.ip() {
            IpAddr::V4(ip) => {
                let key = ServiceKey { addr: u32::from(ip).to_be(), port, proto: IPPROTO_TCP, pad: 0 };
                maps.set_service(&key, &value)?;
            }
            IpAddr::V6(ip) => {
                let key = ServiceKey6 { addr: Ip6::from_octets(ip.octets()), port, proto: IPPROTO_TCP, pad: 0 };
                maps.set_service6(&key, &value)?;
            }
        }

        let gone: Vec<(SocketAddr, BackendId)> =
            state.backends.iter().filter(|(b, _)| !wanted.contains(*b)).map(|(b, id)| (*b, *id)).collect();
        for (backend, id) in gone {
            clear_backend(maps, id, backend.is_ipv6())?;
            state.backends.remove(&backend);
            ids.free(id);
            report.removed.push((backend, id));
        }
        Ok(report)
    }
}

/// Writes slot `id` of the backend's family's array: alive in `service`.
fn write_backend(maps: &mut TcpMaps, id: BackendId, (addr, service): (SocketAddr, u32)) -> Result<(), DatapathError> {
    let port = addr.port().to_be();
    match addr.ip() {
        IpAddr::V4(ip) => maps.set_backend(
            id,
            &BackendValue { addr: u32::from(ip).to_be(), port, flags: BACKEND_F_ALIVE, service, pad: 0 },
        ),
        IpAddr::V6(ip) => maps.set_backend6(
            id,
            &BackendValue6 { addr: Ip6::from_octets(ip.octets()), port, flags: BACKEND_F_ALIVE, service, pad: 0 },
        ),
    }
}

/// Clears slot `id` of the IPv4 or IPv6 backend array.
fn clear_backend(maps: &mut TcpMaps, id: BackendId, v6: bool) -> Result<(), DatapathError> {
    if v6 { maps.set_backend6(id, &BackendValue6::default()) } else { maps.set_backend(id, &BackendValue::default()) }
}

/// Backend ids: the lowest free id after the last one handed out, wrapping, so an id that was just
/// freed is reused as late as possible (a stale affinity entry naming it is long expired by then).
#[derive(Debug, Default)]
pub struct IdAllocator {
    used: Vec<bool>,
    next: u32,
    max: u32,
}

impl IdAllocator {
    /// Ids `0..max`.
    #[must_use]
    pub fn new(max: u32) -> Self {
        Self { used: vec![false; max as usize], next: 0, max }
    }

    /// A free id, or `None` when all `max` are in use.
    pub fn alloc(&mut self) -> Option<u32> {
        for i in 0..self.max {
            let id = (self.next + i) % self.max;
            if !self.used[id as usize] {
                self.used[id as usize] = true;
                self.next = (id + 1) % self.max;
                return Some(id);
            }
        }
        None
    }

    /// Returns `id` to the pool.
    pub fn free(&mut self, id: u32) {
        if let Some(slot) = self.used.get_mut(id as usize) {
            *slot = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdAllocator;

    #[test]
    fn freed_ids_come_back_last() {
        let mut ids = IdAllocator::new(3);
        assert_eq!((ids.alloc(), ids.alloc(), ids.alloc(), ids.alloc()), (Some(0), Some(1), Some(2), None));
        ids.free(0);
        ids.free(1);
        assert_eq!(ids.alloc(), Some(0));
        ids.free(2);
        assert_eq!(ids.alloc(), Some(1), "after 0 comes 1, not the more recently freed 2");
        assert_eq!(ids.alloc(), Some(2));
    }
}
