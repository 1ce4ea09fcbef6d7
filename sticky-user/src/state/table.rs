//! The routing table: every http service, most specific rule first, compiled from a catalog once
//! (cookie tags, `Set-Cookie` attributes, the round-robin schedule) so that a request only reads it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use super::live::{BackendLive, Clock, Generation, Seen, ServiceLive};
use crate::{
    cookie::{self, Keys, Tag},
    model::{AdminState, BackendId, HttpService, ServiceSpec},
    policy,
};

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
    /// Its name in cookies (under the newest key: the one that signs).
    pub tag: Tag,
    /// Its names under the ring's older keys (index `k - 1` for key `k`), for cookies signed before a
    /// rotation; empty with one key.
    pub older_tags: Box<[Tag]>,
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
    /// `Set-Cookie` attributes after the value, for plain HTTP.
    pub cookie_attrs: String,
    /// `Set-Cookie` attributes after the value, for connections over TLS (`Secure` by default).
    pub cookie_attrs_tls: String,
    /// `Strict-Transport-Security` field line (with its CRLF) for responses over TLS, if the service sets HSTS.
    pub hsts: Option<Box<[u8]>>,
    /// Max-Age and the server-side session lifetimes, in seconds.
    pub lifetimes: cookie::Lifetimes,
    /// The backends.
    pub backends: Vec<BackendRoute>,
    /// The cookie key ring its tags were computed with: it verifies and signs this service's cookies.
    pub keys: Keys,
    /// Smooth weighted round-robin order of backend indices.
    pub schedule: Vec<u32>,
    /// Re-pin counters and the round-robin cursor.
    pub live: Arc<ServiceLive>,
    /// The Maglev table of hash affinity (header, client-ip, learn); empty for cookie affinity.
    pub ring: policy::hash::Ring,
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

    /// The index of the backend a cookie verified with key `key` of the ring names: the newest key's
    /// tags are indexed; an older key's (a cookie from before a rotation, re-issued at once) scanned.
    #[must_use]
    pub fn find_keyed(&self, key: usize, tag: Tag) -> Option<usize> {
        match key {
            0 => self.find(tag),
            k => self.backends.iter().position(|b| b.older_tags.get(k - 1) == Some(&tag)),
        }
    }

    /// The next value of the round-robin cursor.
    #[must_use]
    pub fn next_cursor(&self) -> usize {
        self.live.next_cursor()
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

    fn inflight(&self, i: usize) -> u32 {
        self.service.backends.get(i).map_or(0, |b| b.live.inflight())
    }

    fn saturated(&self, i: usize) -> bool {
        self.service.spec.cookie.load.max_inflight.is_some_and(|max| self.inflight(i) >= max)
    }

    fn shed(&self) -> bool {
        self.service.spec.cookie.load.shed
    }
}

/// Every service, most specific rule first.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Services by descending priority.
    pub services: Vec<Arc<ServiceRoute>>,
}

/// A cookie spec's Max-Age and server-side lifetimes in whole seconds, as the proxy checks them.
fn lifetimes(spec: &crate::model::CookieSpec) -> cookie::Lifetimes {
    let secs = |d: Option<std::time::Duration>| d.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    cookie::Lifetimes {
        max_age: secs(spec.max_age),
        idle: secs(spec.idle_timeout),
        absolute: secs(spec.absolute_timeout),
    }
}

impl RoutingTable {
    /// Compiles `services` with the live states of `generation` (kept for identities it had,
    /// new for the others).
    pub fn compile(services: &[HttpService], keys: &Keys, generation: &mut Generation<'_>) -> Self {
        let mut routes = Vec::with_capacity(services.len());
        for entry in services {
            let spec = &entry.spec;
            let live = generation.service(&spec.id);
            let active_checks = spec.health.path.is_some();
            let mut backends = Vec::with_capacity(entry.backends.len());
            for b in &entry.backends {
                let (backend_live, seen) = generation.backend(&spec.id, &b.id, b.addr, active_checks);
                match seen {
                    Seen::New => tracing::info!(service = %spec.name, backend = %b.id, addr = %b.addr, "backend added"),
                    Seen::Moved(from) => tracing::info!(
                        service = %spec.name, backend = %b.id, from = %from, to = %b.addr,
                        "backend moved to a new address; its health starts afresh"
                    ),
                    Seen::Same => {}
                }
                backends.push(BackendRoute {
                    id: b.id.clone(),
                    addr: b.addr,
                    weight: b.weight,
                    admin: b.admin,
                    tag: keys.tag(&spec.id, &b.id),
                    older_tags: keys.older_tags(&spec.id, &b.id),
                    live: backend_live,
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
            let ring = if spec.cookie.affinity == crate::model::Affinity::Cookie {
                policy::hash::Ring::default()
            } else {
                policy::hash::Ring::build(spec.id.0.as_bytes(), backends.iter().map(|b| b.id.0.as_bytes()))
            };
            routes.push(Arc::new(ServiceRoute {
                cookie_attrs: cookie::attributes(&spec.cookie, false),
                cookie_attrs_tls: cookie::attributes(&spec.cookie, true),
                hsts: spec
                    .tls
                    .hsts
                    .map(|age| format!("Strict-Transport-Security: max-age={age}\r\n").into_bytes().into()),
                lifetimes: lifetimes(&spec.cookie),
                schedule: policy::schedule(&weights),
                spec: spec.clone(),
                backends,
                live,
                ring,
                tags,
                keys: keys.clone(),
            }));
        }
        // stable: equal priorities keep file order
        routes.sort_by_key(|s| std::cmp::Reverse(s.spec.priority));
        Self { services: routes }
    }

    /// The service for a request with this host (a port, if any, is ignored) and path.
    #[must_use]
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<ServiceRoute>> {
        self.services.iter().find(|s| s.spec.rule.matches(host, path))
    }
}
