//! The http routing state the proxy reads lock-free: the current [`RoutingTable`] behind an
//! `ArcSwap`, and the live per-backend state behind it ([`live`]), which outlives each table.
//!
//! Discovery publishes a [`Catalog`]; [`Routing::publish`] compiles its http services into a
//! [`RoutingTable`] ([`table`]: rules sorted by priority, cookie tags, round-robin schedule) and swaps
//! it in with one atomic store. A request loads the current table (`ArcSwap::load`, no lock), then
//! reads health as one atomic word per backend. Locks are taken only on events: a failed connect, a
//! health check, a drain, a publish.

pub mod live;
pub mod table;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use self::{
    live::{BackendLive, Clock, ServiceLive},
    table::{BackendRoute, RoutingTable, ServiceRoute, View},
};
use crate::{cookie::Keys, lock::lock, model::Catalog};

/// Errors of the drain API.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No such service.
    #[error("no service named {service}")]
    NoService {
        /// The name or id asked for.
        service: String,
    },
    /// A prefix that several backend ids start with.
    #[error("service {service} has several backends starting with {prefix}; give more of the id")]
    Ambiguous {
        /// The service.
        service: String,
        /// The prefix given.
        prefix: String,
    },
    /// No such backend in the service.
    #[error("service {service} has no backend {backend}")]
    NoBackend {
        /// The service.
        service: String,
        /// The backend id asked for.
        backend: String,
    },
}

/// The routing table and the live state behind it, shared by the workers, the admin listener, the
/// health checker and discovery.
#[derive(Debug)]
pub struct Routing {
    table: ArcSwap<RoutingTable>,
    registry: Mutex<live::Registry>,
    /// Services already warned about `--splice`'s limit.
    splice_warned: Mutex<std::collections::HashSet<String>>,
    /// Cookie keys the next table is compiled with (each service route keeps the ring it was compiled
    /// with: its tags and the keys that verify and sign its cookies always agree).
    keys: Mutex<Keys>,
    /// The http services of the last catalog, compiled again when the keys change.
    last: Mutex<Vec<crate::model::HttpService>>,
    /// Time base of the health words.
    pub clock: Clock,
}

impl Routing {
    /// Empty state (no services yet: every request gets 404 until the first publish).
    #[must_use]
    pub fn new(keys: Keys) -> Self {
        Self {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            registry: Mutex::default(),
            splice_warned: Mutex::default(),
            keys: Mutex::new(keys),
            last: Mutex::default(),
            clock: Clock::start(),
        }
    }

    /// The current routing table (lock-free).
    #[must_use]
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    /// The current routing table as an owned pointer (for long-lived readers).
    #[must_use]
    pub fn table_full(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Compiles `catalog`'s http services into a routing table and makes it current. Live state of
    /// backends that stay (same service id and backend id) is kept; that of vanished backends is dropped.
    pub fn publish(&self, catalog: &Catalog) {
        let mut registry = lock(&self.registry);
        let mut generation = registry.generation(self.clock);
        let keys = self.keys();
        let table = RoutingTable::compile(&catalog.http, &keys, &mut generation);
        lock(&self.last).clone_from(&catalog.http);
        for s in table.services.iter().filter(|s| s.spec.splice.pinned) {
            // once per service and process: --splice's limit is worth a warning, not one per listing
            if lock(&self.splice_warned).insert(s.spec.name.clone()) {
                tracing::warn!(
                    service = %s.spec.name,
                    "splice: only the first request of a spliced connection is rewritten; later requests on it \
                     reach the backend unmodified (the client's own X-Forwarded-*/Forwarded fields, sticky's \
                     cookie not stripped); a first request carrying forwarding fields is not spliced"
                );
            }
        }
        for (service, backend) in generation.finish() {
            tracing::info!(service = %service, backend = %backend, "backend removed");
        }
        self.table.store(Arc::new(table));
    }

    /// The cookie key ring of the current table.
    #[must_use]
    pub fn keys(&self) -> Keys {
        lock(&self.keys).clone()
    }

    /// Makes `keys` the cookie key ring (a rotation: `--cookie-key-file` re-read) and compiles the last
    /// catalog's services again with it, so tags and keys change together in one table swap.
    pub fn set_keys(&self, keys: Keys) {
        *lock(&self.keys) = keys;
        let http = lock(&self.last).clone();
        self.publish(&Catalog { tcp: vec![], http });
    }

    /// The service named `service` (its name or id) in the current table.
    ///
    /// # Errors
    /// No such service.
    pub fn service(&self, service: &str) -> Result<Arc<ServiceRoute>, StateError> {
        self.table()
            .services
            .iter()
            .find(|s| s.spec.name == service || &*s.spec.id.0 == service)
            .cloned()
            .ok_or_else(|| StateError::NoService { service: service.to_owned() })
    }

    /// Marks a backend as draining (no new sessions, pinned ones still served) or active again.
    /// `service` is a service name or id, `backend` a backend id. The mark outlives catalog updates.
    ///
    /// # Errors
    /// No such service or backend.
    pub fn set_draining(&self, service: &str, backend: &str, draining: bool) -> Result<(), StateError> {
        let s = self.service(service)?;
        let b = find_backend(&s, backend)?;
        b.live.set_drained(draining);
        tracing::info!(service = %s.spec.name, backend = %b.id, draining, "drain state changed by admin");
        Ok(())
    }
}

/// A task-id prefix names a backend when it is at least this long and only one id starts with it:
/// `docker service ps` prints 12 characters of a task id.
pub const MIN_ID_PREFIX: usize = 12;

/// The backend of `service` whose id is `backend`, or the only one whose id starts with it (at
/// least [`MIN_ID_PREFIX`] characters).
fn find_backend<'a>(service: &'a ServiceRoute, backend: &str) -> Result<&'a table::BackendRoute, StateError> {
    let missing = || StateError::NoBackend { service: service.spec.name.clone(), backend: backend.to_owned() };
    if let Some(b) = service.backends.iter().find(|b| &*b.id.0 == backend) {
        return Ok(b);
    }
    if backend.len() < MIN_ID_PREFIX {
        return Err(missing());
    }
    let mut matching = service.backends.iter().filter(|b| b.id.0.starts_with(backend));
    match (matching.next(), matching.next()) {
        (Some(b), None) => Ok(b),
        (Some(_), Some(_)) => {
            Err(StateError::Ambiguous { service: service.spec.name.clone(), prefix: backend.to_owned() })
        }
        (None, _) => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        time::{Duration, Instant},
    };

    use super::*;
    use crate::model::{
        AdminState, Backend, BackendId, BackoffSpec, CookieSpec, HealthCheckSpec, HttpService, Rule, ServiceId,
        ServiceSpec,
    };

    fn entry(name: &str, rule: Rule, backends: &[(&str, u16)], health: Option<&str>) -> HttpService {
        HttpService {
            spec: ServiceSpec {
                id: ServiceId(name.into()),
                name: name.into(),
                priority: rule.default_priority(),
                rule,
                cookie: CookieSpec::default(),
                strict: false,
                health: HealthCheckSpec { path: health.map(str::to_owned), ..HealthCheckSpec::default() },
                backoff: BackoffSpec::default(),
                splice: crate::model::SpliceSpec::default(),
                tls: crate::model::TlsSpec::default(),
                backend_protocol: crate::model::BackendProtocol::default(),
                proxy_protocol: crate::proxy_protocol::Version::Off,
            },
            backends: backends
                .iter()
                .map(|(id, port)| Backend {
                    id: BackendId((*id).into()),
                    addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                    weight: 1,
                    admin: AdminState::Active,
                })
                .collect(),
        }
    }

    #[test]
    fn routes_by_priority_and_keeps_live_state_across_publishes() {
        let shared = Routing::new(Keys::random());
        let api = entry("api", Rule::PathPrefix(vec!["/api".into()]), &[("a1", 1)], None);
        let web = entry("web", Rule::Always, &[("w1", 2), ("w2", 3)], None);
        shared.publish(&Catalog { tcp: vec![], http: vec![web.clone(), api.clone()] });
        let t = shared.table();
        assert_eq!(t.route(None, "/api/x").map(|s| s.spec.name.as_str()), Some("api"));
        assert_eq!(t.route(None, "/x").map(|s| s.spec.name.as_str()), Some("web"));
        let w1 = t.services[1].backends[0].live.clone();
        w1.connect_failed(&shared.clock, BackoffSpec::default());
        shared.set_draining("web", "w2", true).expect("w2 exists");
        assert!(shared.set_draining("web", "nope", true).is_err());
        assert!(shared.set_draining("nope", "w2", true).is_err());
        // w2 moves to another address: same identity, same live state; w1 leaves and comes back fresh
        let web2 = entry("web", Rule::Always, &[("w2", 4)], None);
        shared.publish(&Catalog { tcp: vec![], http: vec![web2, api.clone()] });
        let t = shared.table();
        let w2 = &t.services[1].backends[0];
        assert_eq!(w2.addr.port(), 4);
        assert!(w2.draining(), "the admin's drain mark survives a catalog update");
        shared.publish(&Catalog { tcp: vec![], http: vec![web, api] });
        let t = shared.table();
        assert!(t.services[1].backends[0].live.available_at(|| 0), "a backend that left and came back starts fresh");
        assert!(!Arc::ptr_eq(&t.services[1].backends[0].live, &w1));
    }

    #[test]
    fn a_task_id_prefix_of_12_characters_names_one_backend() {
        let shared = Routing::new(Keys::random());
        let tasks = [("y3v2kq1x9m8nabcdefghij01", 2), ("y3v2kq1x9m8nzzzzzzzzzz02", 3), ("p0q9r8s7t6u5vvvvvvvvvv03", 4)];
        shared.publish(&Catalog { tcp: vec![], http: vec![entry("web", Rule::Always, &tasks, None)] });
        shared.set_draining("web", "p0q9r8s7t6u5", true).expect("a unique 12-character prefix names the task");
        assert!(shared.table().services[0].backends[2].draining());
        assert!(
            matches!(shared.set_draining("web", "y3v2kq1x9m8n", true), Err(StateError::Ambiguous { .. })),
            "a prefix two tasks share is refused"
        );
        assert!(
            matches!(shared.set_draining("web", "p0q9r8", true), Err(StateError::NoBackend { .. })),
            "a prefix shorter than 12 characters names nothing"
        );
    }

    #[test]
    fn a_backend_at_a_new_address_starts_its_health_afresh() {
        // A replica slot's replacement task (cookie identity "slot") keeps the identity at a new address.
        let shared = Routing::new(Keys::random());
        shared.publish(&Catalog { tcp: vec![], http: vec![entry("web", Rule::Always, &[("slot1", 2)], None)] });
        let old = shared.table().services[0].backends[0].live.clone();
        // the old task fails: paused
        let slow = BackoffSpec { min: Duration::from_secs(30), max: Duration::from_secs(60) };
        shared.set_draining("web", "slot1", true).expect("slot1 exists");
        let paused = old.connect_failed(&shared.clock, slow);
        assert!(!old.available_at(|| shared.clock.ms(Instant::now())), "paused for {paused:?}");

        shared.publish(&Catalog { tcp: vec![], http: vec![entry("web", Rule::Always, &[("slot1", 3)], None)] });
        let t = shared.table();
        let moved = &t.services[0].backends[0];
        assert!(Arc::ptr_eq(&moved.live, &old), "the identity keeps its live state (counters)");
        assert!(moved.draining(), "and the admin's drain mark");
        assert!(
            moved.live.available_at(|| shared.clock.ms(Instant::now())),
            "the new task is not paused for the old one's failure"
        );
        let pause = moved.live.connect_failed(&shared.clock, slow);
        assert_eq!(pause, crate::policy::health::STARTING_MIN_PAUSE, "its first refused connect pauses it briefly");
    }

    #[test]
    fn health_word_follows_the_state_machine() {
        let shared = Routing::new(Keys::random());
        shared.publish(&Catalog { tcp: vec![], http: vec![entry("web", Rule::Always, &[("w1", 2)], Some("/health"))] });
        let t = shared.table();
        let b = &t.services[0].backends[0];
        assert!(!b.live.available_at(|| 0), "with active checks a backend starts out");
        let spec = HealthCheckSpec { path: Some("/health".into()), ..HealthCheckSpec::default() };
        assert!(b.live.checked(&shared.clock, true, &spec));
        assert!(b.live.available_at(|| 0));
        let pause = b.live.connect_failed(
            &shared.clock,
            BackoffSpec { min: Duration::from_millis(100), max: Duration::from_secs(1) },
        );
        assert_eq!(pause, Duration::from_millis(100));
        let now = shared.clock.ms(Instant::now());
        assert!(!b.live.available_at(|| now));
        assert!(b.live.available_at(|| now + 101), "available again once the pause is over");
        assert!(b.live.connect_ok(&shared.clock));
        assert!(b.live.available_at(|| now));
        assert_eq!(b.live.health_label(), "up");
    }

    #[test]
    fn cookie_tags_find_backends() {
        let keys = Keys::random();
        let shared = Routing::new(keys.clone());
        let many: Vec<(String, u16)> = (0..20).map(|i| (format!("b{i}"), 1000 + i)).collect();
        let refs: Vec<(&str, u16)> = many.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        shared.publish(&Catalog {
            tcp: vec![],
            http: vec![entry("web", Rule::Always, &refs, None), entry("two", Rule::Always, &refs[..2], None)],
        });
        let t = shared.table();
        for s in &t.services {
            for (i, b) in s.backends.iter().enumerate() {
                assert_eq!(s.find(keys.tag(&s.spec.id, &b.id)), Some(i));
            }
            assert_eq!(
                s.find(keys.tag(&ServiceId("other".into()), &s.backends[0].id)),
                None,
                "another service's cookie names nothing here"
            );
        }
    }
}
