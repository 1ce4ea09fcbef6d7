//! Counters the proxy bumps on every request, and their Prometheus rendering.
//!
//! Each counter is sharded per worker thread (one cache line per worker), so the hot path does one
//! uncontended atomic add and never looks a label set up in a shared map; a scrape sums the shards
//! and walks the current routing table, so every label value comes from there.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sticky_requests_total` | counter | service, backend, class | responses by status class (`backend=""`: answered by sticky itself) |
//! | `sticky_sessions_total` | counter | service, backend | new sessions (cookies issued) per backend, re-pins included |
//! | `sticky_pinned_requests_total` | counter | service, backend | requests that arrived with a valid cookie for the backend |
//! | `sticky_repins_total` | counter | service, reason | sessions moved off their backend, by reason |
//! | `sticky_rejects_total` | counter | service, reason | 503s: `no_backend` or `strict` |
//! | `sticky_upstream_connect_errors_total` | counter | service, backend | failed connects (each pauses the backend) |
//! | `sticky_upgrades_total` | counter | service, backend | upgraded (WebSocket) connections relayed |
//! | `sticky_spliced_connections_total` | counter | service, backend | pinned keep-alive connections handed to the kernel splice |
//! | `sticky_splices_total` | counter | outcome | kernel splice pairs: `joined`, ended `finished` (FIN both ways) or `aborted` (reset), `refused` (maps full: relayed in user space) |
//! | `sticky_spliced_connections_active` | gauge | | connections the kernel splices now |
//! | `sticky_splice_skbs_total` | counter | verdict | skbs the kernel's splice verdict handled: `redirect` (sent on by the kernel) or `no_peer` |
//! | `sticky_splice_map_entries` | gauge | map | entries in each splice map (two per spliced connection) |
//! | `sticky_splice_map_max_entries` | gauge | map | capacity of each splice map |
//! | `sticky_backend_up` | gauge | service, backend | 1 if the backend takes traffic now |
//! | `sticky_backend_draining` | gauge | service, backend | 1 if it takes no new sessions |
//! | `sticky_unrouted_requests_total` | counter | | requests no service rule matched (404) |
//! | `sticky_connections_total` | counter | | client connections accepted |
//! | `sticky_connections_active` | gauge | | client connections open now |

use std::{
    cell::Cell,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use crate::policy::RepinReason;

const SHARDS: usize = 16;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread count into shard `worker` (mod the shard count). Workers call it once.
pub fn set_worker_shard(worker: usize) {
    SHARD.with(|s| s.set(worker % SHARDS));
}

#[repr(align(64))]
#[derive(Debug)]
struct Line<const N: usize>([AtomicU64; N]);

/// `N` counters, one cache line per worker shard.
#[derive(Debug)]
pub struct Sharded<const N: usize>(Box<[Line<N>]>);

impl<const N: usize> Default for Sharded<N> {
    fn default() -> Self {
        Self((0..SHARDS).map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0)))).collect())
    }
}

impl<const N: usize> Sharded<N> {
    /// Adds one to counter `i` (ignored if out of range).
    #[inline]
    pub fn inc(&self, i: usize) {
        let shard = SHARD.with(Cell::get);
        if let Some(c) = self.0.get(shard).and_then(|l| l.0.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counter `i` summed over the shards.
    #[must_use]
    pub fn sum(&self, i: usize) -> u64 {
        self.0.iter().filter_map(|l| l.0.get(i)).map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Status classes, by index.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class index of a status code.
#[must_use]
pub fn class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Per-backend counters.
#[derive(Debug, Default)]
pub struct BackendStats(Sharded<10>);

const SESSIONS: usize = 5;
const PINNED: usize = 6;
const CONNECT_ERRORS: usize = 7;
const UPGRADES: usize = 8;
const SPLICED: usize = 9;

impl BackendStats {
    /// A response with this status came from the backend.
    #[inline]
    pub fn response(&self, status: u16) {
        self.0.inc(class(status));
    }
    /// A cookie was issued for the backend.
    #[inline]
    pub fn session(&self) {
        self.0.inc(SESSIONS);
    }
    /// A request arrived with a valid cookie for the backend.
    #[inline]
    pub fn pinned(&self) {
        self.0.inc(PINNED);
    }
    /// A connect to the backend failed.
    pub fn connect_error(&self) {
        self.0.inc(CONNECT_ERRORS);
    }
    /// A connection to the backend was upgraded.
    pub fn upgrade(&self) {
        self.0.inc(UPGRADES);
    }
    /// A pinned keep-alive connection to the backend was handed to the kernel splice.
    pub fn spliced(&self) {
        self.0.inc(SPLICED);
    }
    /// Responses by class index.
    #[must_use]
    pub fn responses(&self, class: usize) -> u64 {
        self.0.sum(class)
    }
    /// Cookies issued.
    #[must_use]
    pub fn sessions(&self) -> u64 {
        self.0.sum(SESSIONS)
    }
    /// Requests with a valid cookie.
    #[must_use]
    pub fn pinned_requests(&self) -> u64 {
        self.0.sum(PINNED)
    }
    /// Failed connects.
    #[must_use]
    pub fn connect_errors(&self) -> u64 {
        self.0.sum(CONNECT_ERRORS)
    }
    /// Upgraded connections.
    #[must_use]
    pub fn upgrades(&self) -> u64 {
        self.0.sum(UPGRADES)
    }
    /// Pinned keep-alive connections handed to the kernel splice.
    #[must_use]
    pub fn spliced_connections(&self) -> u64 {
        self.0.sum(SPLICED)
    }
}

/// Per-service counters: re-pins by reason, rejects, and responses sticky made itself.
#[derive(Debug, Default)]
pub struct ServiceStats(Sharded<12>);

const LOCAL: usize = 5; // 5 status classes of local responses from here
const REJECT_NO_BACKEND: usize = 10;
const REJECT_STRICT: usize = 11;

fn repin_index(r: RepinReason) -> usize {
    RepinReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

impl ServiceStats {
    /// A session left its backend.
    pub fn repin(&self, reason: RepinReason) {
        self.0.inc(repin_index(reason));
    }
    /// Re-pins for a reason.
    #[must_use]
    pub fn repins(&self, reason: RepinReason) -> u64 {
        self.0.sum(repin_index(reason))
    }
    /// Sticky answered a request of this service itself (no backend) with this status.
    pub fn local_response(&self, status: u16) {
        self.0.inc(LOCAL + class(status));
    }
    /// Local responses by class index.
    #[must_use]
    pub fn local_responses(&self, class: usize) -> u64 {
        self.0.sum(LOCAL + class)
    }
    /// A 503 because no backend was available (`strict = false`) or the pinned one was not (`strict = true`).
    pub fn reject(&self, strict: bool) {
        self.0.inc(if strict { REJECT_STRICT } else { REJECT_NO_BACKEND });
    }
    /// 503s for either reason.
    #[must_use]
    pub fn rejects(&self, strict: bool) -> u64 {
        self.0.sum(if strict { REJECT_STRICT } else { REJECT_NO_BACKEND })
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct GlobalStats {
    counters: Sharded<2>,
    active: AtomicI64,
}

impl GlobalStats {
    /// A request matched no service.
    pub fn unrouted(&self) {
        self.counters.inc(0);
    }
    /// A client connection was accepted; returns a guard that counts it as active until dropped.
    pub fn connection(&self) -> ActiveGuard<'_> {
        self.counters.inc(1);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(&self.active)
    }
    /// Client connections open now.
    #[must_use]
    pub fn active_connections(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts one connection as active while it lives.
#[derive(Debug)]
pub struct ActiveGuard<'a>(&'a AtomicI64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Renders the counters of a [`crate::state::Shared`] at each scrape.
#[derive(Debug)]
pub struct StateCollector(pub std::sync::Arc<crate::state::Shared>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, i64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let shared = &self.0;
        let table = shared.table_full();
        let mut requests = Vec::new();
        let mut sessions = Vec::new();
        let mut pinned = Vec::new();
        let mut connect_errors = Vec::new();
        let mut upgrades = Vec::new();
        let mut spliced = Vec::new();
        let mut up = Vec::new();
        let mut draining = Vec::new();
        let mut repins = Vec::new();
        let mut rejects = Vec::new();
        for s in &table.services {
            let sn = s.spec.name.as_str();
            for b in &s.backends {
                let bn: &str = &b.id.0;
                let labels = vec![("service", sn), ("backend", bn)];
                for (i, c) in CLASSES.iter().enumerate() {
                    requests.push((vec![("service", sn), ("backend", bn), ("class", *c)], b.live.stats.responses(i)));
                }
                sessions.push((labels.clone(), b.live.stats.sessions()));
                pinned.push((labels.clone(), b.live.stats.pinned_requests()));
                connect_errors.push((labels.clone(), b.live.stats.connect_errors()));
                upgrades.push((labels.clone(), b.live.stats.upgrades()));
                spliced.push((labels.clone(), b.live.stats.spliced_connections()));
                up.push((labels.clone(), i64::from(b.live.health_label() == "up")));
                draining.push((labels, i64::from(b.draining())));
            }
            for (i, c) in CLASSES.iter().enumerate() {
                requests.push((vec![("service", sn), ("backend", ""), ("class", *c)], s.live.stats.local_responses(i)));
            }
            for r in RepinReason::ALL {
                repins.push((vec![("service", sn), ("reason", r.as_str())], s.live.stats.repins(r)));
            }
            rejects.push((vec![("service", sn), ("reason", "no_backend")], s.live.stats.rejects(false)));
            rejects.push((vec![("service", sn), ("reason", "strict")], s.live.stats.rejects(true)));
        }
        counter(
            &mut encoder,
            "sticky_requests",
            "Responses by service, backend (empty: answered by sticky) and status class.",
            &requests,
        )?;
        counter(
            &mut encoder,
            "sticky_sessions",
            "New sessions (cookies issued) per backend, re-pins included.",
            &sessions,
        )?;
        counter(
            &mut encoder,
            "sticky_pinned_requests",
            "Requests that arrived with a valid cookie for the backend.",
            &pinned,
        )?;
        counter(&mut encoder, "sticky_repins", "Sessions moved off their backend, by reason.", &repins)?;
        counter(
            &mut encoder,
            "sticky_rejects",
            "Requests answered 503: no backend available, or strict pin unavailable.",
            &rejects,
        )?;
        counter(&mut encoder, "sticky_upstream_connect_errors", "Failed connects to a backend.", &connect_errors)?;
        counter(&mut encoder, "sticky_upgrades", "Upgraded (WebSocket) connections relayed to a backend.", &upgrades)?;
        counter(
            &mut encoder,
            "sticky_spliced_connections",
            "Pinned keep-alive connections handed to the kernel splice.",
            &spliced,
        )?;
        if let Some(splice) = shared.splice.get() {
            let st = splice.stats();
            let outcomes = [
                ("joined", st.joined()),
                ("finished", st.finished()),
                ("aborted", st.aborted()),
                ("refused", st.refused()),
            ];
            let rows: Vec<_> = outcomes.iter().map(|(o, v)| (vec![("outcome", *o)], *v)).collect();
            counter(&mut encoder, "sticky_splices", "Kernel splice pairs by outcome.", &rows)?;
            gauge(
                &mut encoder,
                "sticky_spliced_connections_active",
                "Connections the kernel splices now.",
                &[(Vec::new(), i64::try_from(splice.live()).unwrap_or(i64::MAX))],
            )?;
            let (redirect, no_peer) = splice.kernel_counters();
            counter(
                &mut encoder,
                "sticky_splice_skbs",
                "Socket buffers the kernel's splice verdict handled.",
                &[(vec![("verdict", "redirect")], redirect), (vec![("verdict", "no_peer")], no_peer)],
            )?;
            let usage = splice.usage();
            let used: Vec<_> =
                usage.iter().map(|u| (vec![("map", u.name)], i64::try_from(u.used).unwrap_or(i64::MAX))).collect();
            let max: Vec<_> =
                usage.iter().map(|u| (vec![("map", u.name)], i64::try_from(u.max).unwrap_or(i64::MAX))).collect();
            gauge(&mut encoder, "sticky_splice_map_entries", "Entries in each splice map.", &used)?;
            gauge(&mut encoder, "sticky_splice_map_max_entries", "Capacity of each splice map.", &max)?;
        }
        gauge(&mut encoder, "sticky_backend_up", "1 if the backend takes traffic now (health).", &up)?;
        gauge(&mut encoder, "sticky_backend_draining", "1 if the backend takes no new sessions.", &draining)?;
        counter(
            &mut encoder,
            "sticky_unrouted_requests",
            "Requests that matched no service (404).",
            &[(Vec::new(), shared.stats.counters.sum(0))],
        )?;
        counter(
            &mut encoder,
            "sticky_connections",
            "Client connections accepted.",
            &[(Vec::new(), shared.stats.counters.sum(1))],
        )?;
        gauge(
            &mut encoder,
            "sticky_connections_active",
            "Client connections open now.",
            &[(Vec::new(), shared.stats.active_connections())],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_classes_map() {
        let s = Sharded::<2>::default();
        s.inc(0);
        std::thread::scope(|t| {
            t.spawn(|| {
                set_worker_shard(3);
                s.inc(0);
                s.inc(1);
            });
        });
        s.inc(5);
        assert_eq!((s.sum(0), s.sum(1)), (2, 1));
        assert_eq!(
            [class(101), class(200), class(304), class(431), class(503), class(999), class(0)],
            [0, 1, 2, 3, 4, 4, 0]
        );
    }
}
