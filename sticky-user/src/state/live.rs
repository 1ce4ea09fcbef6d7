//! Live state that outlives routing tables: per backend, its health (a state machine behind a lock,
//! mirrored into one atomic word the hot path reads), its drain mark and its counters; per service,
//! the round-robin cursor and its counters.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    lock::lock,
    model::{BackendId, BackoffSpec, HealthCheckSpec, ServiceId},
    policy::health::{Availability, Health},
    stats::{BackendStats, ServiceStats},
};

/// Milliseconds since the process started, the time base of the atomic health words.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    #[must_use]
    pub fn start() -> Self {
        Self { epoch: Instant::now() }
    }

    /// `t` in this clock's milliseconds.
    #[must_use]
    pub fn ms(&self, t: Instant) -> u64 {
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
    inflight: AtomicU32,
    /// Request and session counters.
    pub stats: BackendStats,
}

/// One request in flight to a backend: counted while this lives (see [`BackendLive::busy`]).
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendLive {
    fn new(active_checks: bool) -> Self {
        let live = Self {
            health: Mutex::new(Health::new(active_checks, Instant::now())),
            word: AtomicU64::new(UP),
            drained: AtomicBool::new(false),
            inflight: AtomicU32::new(0),
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

    /// Whether the backend takes traffic at `now_ms` (see [`Clock`]); one atomic load when healthy.
    #[must_use]
    pub fn available_at(&self, now_ms: impl FnOnce() -> u64) -> bool {
        match self.word.load(Ordering::Acquire) {
            UP => true,
            DOWN => false,
            until => now_ms() + 1 >= until,
        }
    }

    /// Counts a request in flight to this backend until the guard drops (the load bounds of issue 18
    /// read it). One atomic add and one subtract per forwarded request.
    #[must_use = "the request counts as in flight while the guard lives"]
    pub fn busy(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.inflight)
    }

    /// Requests in flight to this backend now (this process).
    #[must_use]
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Whether an admin drained this backend by hand.
    #[must_use]
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Marks the backend drained by hand (or not).
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// The identity now answers at another address (a replica slot's replacement task, a task's new
    /// address): a new process there, so its health starts afresh, starting window included (a
    /// replacement is listed as running a moment before it listens). The drain mark and the counters
    /// stay with the identity.
    fn readdressed(&self, clock: &Clock, active_checks: bool) {
        let mut h = lock(&self.health);
        *h = Health::new(active_checks, Instant::now());
        self.store(clock, if active_checks { Availability::Down } else { Availability::Up });
    }

    /// A connect failed: pause the backend. Returns the pause.
    pub fn connect_failed(&self, clock: &Clock, backoff: BackoffSpec) -> Duration {
        let mut h = lock(&self.health);
        let pause = h.connect_failed(Instant::now(), backoff);
        self.store(clock, h.availability());
        pause
    }

    /// A connect succeeded. Returns whether it ended a pause. Lock-free when the backend was healthy.
    pub fn connect_ok(&self, clock: &Clock) -> bool {
        if self.word.load(Ordering::Acquire) == UP {
            return false;
        }
        let mut h = lock(&self.health);
        let ended = h.connect_ok();
        self.store(clock, h.availability());
        ended
    }

    /// An active check ended. Returns whether the backend went in or out.
    pub fn checked(&self, clock: &Clock, passed: bool, spec: &HealthCheckSpec) -> bool {
        let mut h = lock(&self.health);
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
#[derive(Debug)]
pub struct ServiceLive {
    cursor: AtomicUsize,
    /// Re-pin and reject counters.
    pub stats: ServiceStats,
}

impl ServiceLive {
    fn new() -> Self {
        // a new service starts its round robin at a random place, so that LB instances do not all
        // send their first sessions to the same backend
        Self { cursor: AtomicUsize::new(usize::from(rand::random::<u16>())), stats: ServiceStats::default() }
    }

    /// The next value of the round-robin cursor.
    #[must_use]
    pub fn next_cursor(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// The value [`Self::next_cursor`] would return now, without moving the cursor (the admin's
    /// explain asks what a new session would get, and must not change it).
    #[must_use]
    pub fn peek_cursor(&self) -> usize {
        self.cursor.load(Ordering::Relaxed)
    }
}

/// The live state of every service and backend of the current table, by identity.
#[derive(Debug, Default)]
pub struct Registry {
    services: HashMap<ServiceId, Arc<ServiceLive>>,
    backends: HashMap<(ServiceId, BackendId), (Arc<BackendLive>, SocketAddr)>,
}

impl Registry {
    /// Starts a new generation: what [`Registry::service`] and [`Registry::backend`] hand out until
    /// [`Generation::finish`] is all that is kept.
    pub fn generation(&mut self, clock: Clock) -> Generation<'_> {
        Generation { registry: self, services: HashMap::new(), backends: HashMap::new(), clock }
    }
}

/// The live states one catalog keeps or creates.
#[derive(Debug)]
pub struct Generation<'a> {
    registry: &'a mut Registry,
    services: HashMap<ServiceId, Arc<ServiceLive>>,
    backends: HashMap<(ServiceId, BackendId), (Arc<BackendLive>, SocketAddr)>,
    clock: Clock,
}

/// How a backend of a new catalog relates to the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not in the last catalog: new live state.
    New,
    /// Same identity, same address: live state kept.
    Same,
    /// Same identity at another address (the one given): health started afresh, drain mark kept.
    Moved(SocketAddr),
}

impl Generation<'_> {
    /// The service's live state: the one it had, or a new one.
    pub fn service(&mut self, id: &ServiceId) -> Arc<ServiceLive> {
        let live = self.registry.services.get(id).cloned().unwrap_or_else(|| Arc::new(ServiceLive::new()));
        self.services.insert(id.clone(), live.clone());
        live
    }

    /// The backend's live state at `addr`, and how it relates to the last catalog (a new one, or one
    /// that moved, with active checks starts out).
    pub fn backend(
        &mut self,
        service: &ServiceId,
        backend: &BackendId,
        addr: SocketAddr,
        active_checks: bool,
    ) -> (Arc<BackendLive>, Seen) {
        let key = (service.clone(), backend.clone());
        let (live, seen) = match self.registry.backends.get(&key) {
            Some((l, was)) if *was == addr => (l.clone(), Seen::Same),
            Some((l, was)) => {
                l.readdressed(&self.clock, active_checks);
                (l.clone(), Seen::Moved(*was))
            }
            None => (Arc::new(BackendLive::new(active_checks)), Seen::New),
        };
        self.backends.insert(key, (live.clone(), addr));
        (live, seen)
    }

    /// Keeps what this generation handed out and drops the rest; returns the backends dropped.
    #[must_use = "the caller reports the backends that left"]
    pub fn finish(self) -> Vec<(ServiceId, BackendId)> {
        let gone =
            self.registry.backends.keys().filter(|k| !self.backends.contains_key(*k)).cloned().collect::<Vec<_>>();
        self.registry.services = self.services;
        self.registry.backends = self.backends;
        gone
    }
}
