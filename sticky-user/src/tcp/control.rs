//! Draining tcp backends through the admin API, as for http ones: a drained backend leaves the set
//! the kernel maps or the user-space Maglev table are built from, so it takes no new connections,
//! affinity entries naming it are no longer trusted (both paths check that an entry's backend is
//! in the set), and its open connections go on. The drained set is keyed by (service, backend id)
//! and outlives catalog changes, like http's drain state; entries whose backend is gone are
//! dropped at the next catalog, so it never grows beyond the backends that exist.

use std::{collections::BTreeSet, sync::Mutex};

use crate::{
    lock::lock,
    model::{ServiceId, TcpService},
    state::MIN_ID_PREFIX,
};

/// Why a drain or activate was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DrainError {
    /// No tcp service with that name or id.
    #[error("no tcp service named {0}")]
    NoService(String),
    /// No backend with that id (or unique prefix of at least 12 characters, or address).
    #[error("tcp service {service} has no backend {backend}")]
    NoBackend {
        /// The service.
        service: String,
        /// The backend asked for.
        backend: String,
    },
    /// Several backends start with the prefix.
    #[error("tcp service {service} has several backends starting with {prefix}; give more of the id")]
    Ambiguous {
        /// The service.
        service: String,
        /// The prefix given.
        prefix: String,
    },
}

/// The tcp services as discovery last gave them, and the backends the admin API drains.
#[derive(Debug, Default)]
pub struct Control {
    /// The services as discovery last published them (drained backends still in).
    pub(super) services: Mutex<Vec<TcpService>>,
    /// (service id, backend id) drained by the admin API.
    drained: Mutex<BTreeSet<(ServiceId, String)>>,
    /// Woken when `drained` changes: tcp mode serves its services again without them.
    changed: tokio::sync::Notify,
}

impl Control {
    /// Marks `backend` of `service` draining (`drain`) or active again; `service` is a name or id,
    /// `backend` an id, a prefix of one of at least 12 characters (what `docker service ps`
    /// prints), or an address.
    ///
    /// # Errors
    /// No such service or backend, or an ambiguous prefix.
    pub fn set_draining(&self, service: &str, backend: &str, drain: bool) -> Result<(), DrainError> {
        let (service_id, name, member) = {
            let services = lock(&self.services);
            let s = services
                .iter()
                .find(|s| s.name == service || &*s.id.0 == service)
                .ok_or_else(|| DrainError::NoService(service.to_owned()))?;
            let missing = || DrainError::NoBackend { service: s.name.clone(), backend: backend.to_owned() };
            let exact = s.members.iter().find(|m| m.id == backend || m.addr.to_string() == backend);
            let member = match exact {
                Some(m) => m.id.clone(),
                None if backend.len() < MIN_ID_PREFIX => return Err(missing()),
                None => {
                    let mut matching = s.members.iter().filter(|m| m.id.starts_with(backend));
                    match (matching.next(), matching.next()) {
                        (Some(m), None) => m.id.clone(),
                        (None, _) => return Err(missing()),
                        (Some(_), Some(_)) => {
                            return Err(DrainError::Ambiguous { service: s.name.clone(), prefix: backend.to_owned() });
                        }
                    }
                }
            };
            (s.id.clone(), s.name.clone(), member)
        };
        let changed = {
            let mut drained = lock(&self.drained);
            if drain {
                drained.insert((service_id, member.clone()))
            } else {
                drained.remove(&(service_id, member.clone()))
            }
        };
        tracing::info!(service = %name, backend = %member, draining = drain, "tcp backend drain state changed by admin");
        if changed {
            self.changed.notify_one();
        }
        Ok(())
    }

    /// Whether the admin API drains `backend` of `service`.
    #[must_use]
    pub fn drained(&self, service: &ServiceId, backend: &str) -> bool {
        lock(&self.drained).contains(&(service.clone(), backend.to_owned()))
    }

    /// Waits until the drained set changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// `services` without the backends the admin API drains; forgets drained entries whose
    /// backend no longer exists.
    #[must_use]
    pub fn effective(&self, services: &[TcpService]) -> Vec<TcpService> {
        let mut drained = lock(&self.drained);
        drained.retain(|(sid, mid)| services.iter().any(|s| &s.id == sid && s.members.iter().any(|m| &m.id == mid)));
        services
            .iter()
            .map(|s| {
                let out: Vec<_> = s
                    .members
                    .iter()
                    .filter(|m| drained.contains(&(s.id.clone(), m.id.clone())))
                    .map(|m| m.addr)
                    .collect();
                if out.is_empty() {
                    return s.clone();
                }
                TcpService { backends: s.backends.iter().copied().filter(|b| !out.contains(b)).collect(), ..s.clone() }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use super::*;
    use crate::model::TcpMember;

    fn service() -> TcpService {
        let a: SocketAddr = "10.0.1.3:5432".parse().unwrap();
        let b: SocketAddr = "10.0.1.4:5432".parse().unwrap();
        let mut s = TcpService::at("0.0.0.0:15432".parse().unwrap(), vec![a, b], Duration::from_secs(60));
        s.name = "db".into();
        s.members = vec![
            TcpMember { id: "k3q0v7wz1m2n4p5r6s7t8u9v0".into(), addr: a, draining: false },
            TcpMember { id: "k3q0v7wz1m2nxxxxxxxxxxxxx".into(), addr: b, draining: false },
        ];
        s
    }

    #[test]
    fn a_drained_backend_leaves_the_set_until_activated() {
        let control = Control::default();
        let s = service();
        *lock(&control.services) = vec![s.clone()];
        control.set_draining("db", "k3q0v7wz1m2n4p5", true).expect("a unique prefix names the backend");
        let effective = control.effective(std::slice::from_ref(&s));
        assert_eq!(effective[0].backends, vec!["10.0.1.4:5432".parse::<SocketAddr>().unwrap()]);
        assert!(control.drained(&s.id, "k3q0v7wz1m2n4p5r6s7t8u9v0"));
        control.set_draining(&s.id.0, "10.0.1.3:5432", false).expect("an address names the backend");
        assert_eq!(control.effective(std::slice::from_ref(&s))[0].backends.len(), 2);
    }

    #[test]
    fn unknown_short_and_ambiguous_names_are_refused() {
        let control = Control::default();
        *lock(&control.services) = vec![service()];
        assert_eq!(control.set_draining("web", "x", true), Err(DrainError::NoService("web".into())));
        assert!(matches!(control.set_draining("db", "k3q0v7", true), Err(DrainError::NoBackend { .. })));
        assert!(matches!(control.set_draining("db", "k3q0v7wz1m2n", true), Err(DrainError::Ambiguous { .. })));
    }

    #[test]
    fn drained_entries_of_departed_backends_are_forgotten() {
        let control = Control::default();
        let s = service();
        *lock(&control.services) = vec![s.clone()];
        control.set_draining("db", "k3q0v7wz1m2n4p5r6s7t8u9v0", true).unwrap();
        let without = TcpService { members: s.members[1..].to_vec(), ..s.clone() };
        let _ = control.effective(&[without]);
        assert!(!control.drained(&s.id, "k3q0v7wz1m2n4p5r6s7t8u9v0"));
    }
}
