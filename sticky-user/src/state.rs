//! The one shared snapshot: the routing table the proxy reads lock-free, and the live per-backend state
//! (health, drain flag, counters) that outlives each table.
//!
//! Discovery publishes a [`Catalog`]; [`Shared::publish`] compiles it into a [`RoutingTable`] (rules
//! sorted by priority, cookie tags, round-robin schedule) and swaps it in with one atomic store. A
//! request loads the current table (`ArcSwap::load`, no lock), then reads health as one atomic word per
//! backend. Locks are taken only on events: a failed connect, a health check, a drain, a publish.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;

use crate::{
    admin::metrics::{BackendStats, GlobalStats, ServiceStats},
    cookie::{self, Keys, Tag},
    model::{AdminState, BackendId, BackoffSpec, Catalog, HealthCheckSpec, ServiceId, ServiceSpec},
    policy::{
        self,
        health::{Availability, Health},
    },
};

/// Errors of the drain API.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No such service.
    #[error("no service named {service}")]
    NoService {
        /// The name or id asked for.
        service: String,
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

/// Milliseconds since the process started, the time base of the atomic health words.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1)
    }
}

// The health word: 0 = available; DOWN = out until an event; anything else = out until that millisecond
// (stored +1 so that it can never be 0).
const UP: u64 = 0;
const DOWN: u64 = u64::MAX;

/// Live state of one backend, kept across routing tables while the backend exists.
#[derive(Debug)]
pub struct BackendLive {
    health: Mutex<Health>,
    word: AtomicU64,
    drained: AtomicBool,
    /// Request and session counters.
    pub stats: BackendStats,
}

impl BackendLive {
    fn new(active_checks: bool) -> Self {
        let live = Self {
            health: Mutex::new(Health::new(active_checks, Instant::now())),
            word: AtomicU64::new(UP),
            drained: AtomicBool::new(false),
            stats: BackendStats::default(),
        };
        if active_checks {
            live.word.store(DOWN, Ordering::Relaxed);
        }
        live
    }

    fn store(&self, clock: &Clock, a: Availability) {
        let word = match a {
            Availability::Up => UP,
            Availability::Down => DOWN,
            Availability::Until(t) => clock.ms(t).saturating_add(1).min(DOWN - 1),
        };
        self.word.store(word, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // a panic while holding the lock cannot leave Health half-updated (its methods only assign), so poisoning is ignored
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the backend takes traffic at `now_ms` (see [`Clock`]); one atomic load when healthy.
    #[must_use]
    pub fn available_at(&self, now_ms: impl FnOnce() -> u64) -> bool {
        match self.word.load(Ordering::Acquire) {
            UP => true,
            DOWN => false,
            until => now_ms() + 1 >= until,
        }
    }

    /// Whether an admin drained this backend by hand.
    #[must_use]
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// A connect failed: pause the backend. Returns the pause.
    pub fn connect_failed(&self, clock: &Clock, backoff: BackoffSpec) -> Duration {
        let mut h = self.lock();
        let pause = h.connect_failed(Instant::now(), backoff);
        self.store(clock, h.availability());
        pause
    }

    /// A connect succeeded. Returns whether it ended a pause. Lock-free when the backend was healthy.
    pub fn connect_ok(&self, clock: &Clock) -> bool {
        if self.word.load(Ordering::Acquire) == UP {
            return false;
        }
        let mut h = self.lock();
        let ended = h.connect_ok();
        self.store(clock, h.availability());
        ended
    }

    /// An active check ended. Returns whether the backend went in or out.
    pub fn checked(&self, clock: &Clock, passed: bool, spec: &HealthCheckSpec) -> bool {
        let mut h = self.lock();
        let flipped = h.checked(passed, spec);
        self.store(clock, h.availability());
        flipped
    }

    /// Health for reports: "up", "down" or "paused".
    #[must_use]
    pub fn health_label(&self) -> &'static str {
        match self.word.load(Ordering::Acquire) {
            UP => "up",
            DOWN => "down",
            _ => "paused",
        }
    }
}

/// Live state of one service, kept across routing tables.
#[derive(Debug, Default)]
pub struct ServiceLive {
    cursor: AtomicUsize,
    /// Re-pin and reject counters.
    pub stats: ServiceStats,
}

/// One backend in the routing table.
#[derive(Debug)]
pub struct BackendRoute {
    /// Stable identity.
    pub id: BackendId,
    /// Where to connect.
    pub addr: SocketAddr,
    /// New-session weight.
    pub weight: u32,
    /// What discovery says.
    pub admin: AdminState,
    /// Its name in cookies.
    pub tag: Tag,
    /// Health, drain flag, counters.
    pub live: Arc<BackendLive>,
}

impl BackendRoute {
    /// Draining by discovery or by hand.
    #[must_use]
    pub fn draining(&self) -> bool {
        self.admin == AdminState::Draining || self.live.drained()
    }
}

/// One service in the routing table.
#[derive(Debug)]
pub struct ServiceRoute {
    /// The service's options.
    pub spec: ServiceSpec,
    /// `Set-Cookie` attributes after the value.
    pub cookie_attrs: String,
    /// Max-Age in seconds, for cookie expiry.
    pub max_age: Option<u32>,
    /// The backends.
    pub backends: Vec<BackendRoute>,
    /// Smooth weighted round-robin order of backend indices.
    pub schedule: Vec<u32>,
    /// Re-pin counters and the round-robin cursor.
    pub live: Arc<ServiceLive>,
    tags: HashMap<Tag, usize>,
}

impl ServiceRoute {
    /// The index of the backend a cookie tag names.
    #[must_use]
    pub fn find(&self, tag: Tag) -> Option<usize> {
        if self.backends.len() <= 8 {
            return self.backends.iter().position(|b| b.tag == tag);
        }
        self.tags.get(&tag).copied()
    }

    /// The next value of the round-robin cursor.
    #[must_use]
    pub fn next_cursor(&self) -> usize {
        self.live.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

/// The backends of a service at one moment, as [`policy::View`].
pub struct View<'a> {
    service: &'a ServiceRoute,
    clock: &'a Clock,
    now: std::cell::Cell<Option<u64>>,
}

impl<'a> View<'a> {
    /// A view at the current time (read lazily: healthy backends need no clock).
    #[must_use]
    pub fn new(service: &'a ServiceRoute, clock: &'a Clock) -> Self {
        Self { service, clock, now: std::cell::Cell::new(None) }
    }
}

impl policy::View for View<'_> {
    fn count(&self) -> usize {
        self.service.backends.len()
    }

    fn available(&self, i: usize) -> bool {
        self.service.backends.get(i).is_some_and(|b| {
            b.live.available_at(|| {
                *self.now.get().get_or_insert_with(|| {
                    let ms = self.clock.ms(Instant::now());
                    self.now.set(Some(ms));
                    ms
                })
            })
        })
    }

    fn draining(&self, i: usize) -> bool {
        self.service.backends.get(i).is_some_and(BackendRoute::draining)
    }
}

/// Every service, most specific rule first.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Services by descending priority.
    pub services: Vec<Arc<ServiceRoute>>,
}

impl RoutingTable {
    /// The service for a request with this host (port removed) and path.
    #[must_use]
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<ServiceRoute>> {
        self.services.iter().find(|s| s.spec.rule.matches(host, path))
    }
}

#[derive(Debug, Default)]
struct Registry {
    services: HashMap<ServiceId, Arc<ServiceLive>>,
    backends: HashMap<(ServiceId, BackendId), Arc<BackendLive>>,
}

/// State shared by the workers, the admin listener, the health checker and discovery.
#[derive(Debug)]
pub struct Shared {
    table: ArcSwap<RoutingTable>,
    registry: Mutex<Registry>,
    /// Cookie keys.
    pub keys: Keys,
    /// Time base of the health words.
    pub clock: Clock,
    /// Process-wide counters.
    pub stats: GlobalStats,
    /// The kernel splice, once loaded (none: no eBPF, pinned connections stay in user space).
    pub splice: OnceLock<Arc<crate::proxy::splice::Splicer>>,
}

impl Shared {
    /// Empty state (no services yet: every request gets 404 until the first publish).
    #[must_use]
    pub fn new(keys: Keys) -> Self {
        Self {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            registry: Mutex::default(),
            keys,
            clock: Clock { epoch: Instant::now() },
            stats: GlobalStats::default(),
            splice: OnceLock::new(),
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

    /// Compiles `catalog` into a routing table and makes it current. Live state of backends that stay
    /// (same service id and backend id) is kept; that of vanished backends is dropped.
    pub fn publish(&self, catalog: &Catalog) {
        let mut reg = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut services_seen = HashMap::new();
        let mut backends_seen = HashMap::new();
        let mut services = Vec::with_capacity(catalog.services.len());
        for entry in &catalog.services {
            let spec = &entry.spec;
            // a new service starts its round robin at a random place, so that LB instances do not all send
            // their first sessions to the same backend
            let service_live = reg.services.get(&spec.id).cloned().unwrap_or_else(|| {
                Arc::new(ServiceLive {
                    cursor: AtomicUsize::new(usize::from(rand::random::<u16>())),
                    stats: ServiceStats::default(),
                })
            });
            services_seen.insert(spec.id.clone(), service_live.clone());
            let active_checks = spec.health.path.is_some();
            let mut backends = Vec::with_capacity(entry.backends.len());
            for b in &entry.backends {
                let key = (spec.id.clone(), b.id.clone());
                let live = match reg.backends.get(&key) {
                    Some(l) => l.clone(),
                    None => {
                        tracing::info!(service = %spec.name, backend = %b.id, addr = %b.addr, "backend added");
                        Arc::new(BackendLive::new(active_checks))
                    }
                };
                backends_seen.insert(key, live.clone());
                backends.push(BackendRoute {
                    id: b.id.clone(),
                    addr: b.addr,
                    weight: b.weight,
                    admin: b.admin,
                    tag: self.keys.tag(&spec.id, &b.id),
                    live,
                });
            }
            let mut tags = HashMap::with_capacity(backends.len());
            for (i, b) in backends.iter().enumerate() {
                if let Some(j) = tags.insert(b.tag, i) {
                    // 2^-64 per pair; if it ever happens, say so rather than mix sessions silently
                    tracing::error!(service = %spec.name, a = %backends[j].id, b = %b.id, "two backends share a cookie tag; one of them will not keep sessions");
                }
            }
            let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
            services.push(Arc::new(ServiceRoute {
                cookie_attrs: cookie::attributes(&spec.cookie),
                max_age: spec.cookie.max_age.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                schedule: policy::schedule(&weights),
                spec: spec.clone(),
                backends,
                live: service_live,
                tags,
            }));
        }
        for ((service, backend), _) in reg.backends.iter().filter(|(k, _)| !backends_seen.contains_key(*k)) {
            tracing::info!(service = %service, backend = %backend, "backend removed");
        }
        reg.services = services_seen;
        reg.backends = backends_seen;
        // stable: equal priorities keep file order
        services.sort_by_key(|s| std::cmp::Reverse(s.spec.priority));
        self.table.store(Arc::new(RoutingTable { services }));
    }

    /// Marks a backend as draining (no new sessions, pinned ones still served) or active again.
    /// `service` is a service name or id, `backend` a backend id. The mark outlives catalog updates.
    ///
    /// # Errors
    /// No such service or backend.
    pub fn set_draining(&self, service: &str, backend: &str, draining: bool) -> Result<(), StateError> {
        let table = self.table();
        let s = table
            .services
            .iter()
            .find(|s| s.spec.name == service || &*s.spec.id.0 == service)
            .ok_or_else(|| StateError::NoService { service: service.to_owned() })?;
        let b = s
            .backends
            .iter()
            .find(|b| &*b.id.0 == backend)
            .ok_or_else(|| StateError::NoBackend { service: service.to_owned(), backend: backend.to_owned() })?;
        b.live.drained.store(draining, Ordering::Relaxed);
        tracing::info!(service = %s.spec.name, backend = %b.id, draining, "drain state changed by admin");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, CookieSpec, HealthCheckSpec, Rule, ServiceEntry};

    fn entry(name: &str, rule: Rule, backends: &[(&str, u16)], health: Option<&str>) -> ServiceEntry {
        ServiceEntry {
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
        let shared = Shared::new(Keys::random());
        let api = entry("api", Rule::PathPrefix(vec!["/api".into()]), &[("a1", 1)], None);
        let web = entry("web", Rule::Always, &[("w1", 2), ("w2", 3)], None);
        shared.publish(&Catalog { services: vec![web.clone(), api.clone()] });
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
        shared.publish(&Catalog { services: vec![web2, api.clone()] });
        let t = shared.table();
        let w2 = &t.services[1].backends[0];
        assert_eq!(w2.addr.port(), 4);
        assert!(w2.draining(), "the admin's drain mark survives a catalog update");
        shared.publish(&Catalog { services: vec![web, api] });
        let t = shared.table();
        assert!(t.services[1].backends[0].live.available_at(|| 0), "a backend that left and came back starts fresh");
        assert!(!Arc::ptr_eq(&t.services[1].backends[0].live, &w1));
    }

    #[test]
    fn health_word_follows_the_state_machine() {
        let shared = Shared::new(Keys::random());
        shared.publish(&Catalog { services: vec![entry("web", Rule::Always, &[("w1", 2)], Some("/health"))] });
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
        let shared = Shared::new(keys.clone());
        let many: Vec<(String, u16)> = (0..20).map(|i| (format!("b{i}"), 1000 + i)).collect();
        let refs: Vec<(&str, u16)> = many.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        shared.publish(&Catalog {
            services: vec![entry("web", Rule::Always, &refs, None), entry("two", Rule::Always, &refs[..2], None)],
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
