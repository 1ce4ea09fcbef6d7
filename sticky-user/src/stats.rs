//! The counters the proxy bumps on every request: per backend, per service and per process.
//!
//! Each counter is sharded per worker thread (one cache line per worker), so the hot path does one
//! uncontended atomic add and never looks a label set up in a shared map; a scrape
//! ([`crate::admin::metrics`]) sums the shards and walks the current routing table, so every label
//! value comes from there.

use std::{
    cell::Cell,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
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

    /// Adds `v` to counter `i` (ignored if out of range).
    #[inline]
    pub fn add(&self, i: usize, v: u64) {
        let shard = SHARD.with(Cell::get);
        if let Some(c) = self.0.get(shard).and_then(|l| l.0.get(i)) {
            c.fetch_add(v, Ordering::Relaxed);
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

/// Per-backend counters, and the histogram of its response times.
#[derive(Debug, Default)]
pub struct BackendStats(Sharded<12>, Latency);

/// Upper bounds (seconds) of the response-time buckets, `+Inf` implied after the last
/// (`sticky_request_duration_seconds`): 1 ms to 10 s, about 2.5x apart.
pub const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counts per bucket (the last one `+Inf`), then the sum in microseconds.
const LATENCY_SLOTS: usize = LATENCY_BUCKETS.len() + 2;

/// A histogram of response times, sharded like the counters: one add to a bucket and one to the sum.
#[derive(Debug, Default)]
pub struct Latency(Sharded<LATENCY_SLOTS>);

/// A [`Latency`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Observations per bucket, not cumulative: one per bound of [`LATENCY_BUCKETS`], then `+Inf`.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observations, seconds.
    pub sum: f64,
}

impl LatencySnapshot {
    /// Observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Latency {
    /// Counts one response that took `d`.
    #[inline]
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.0.inc(bucket);
        self.0.add(LATENCY_SLOTS - 1, u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The buckets and sum now.
    #[must_use]
    pub fn snapshot(&self) -> LatencySnapshot {
        #[expect(clippy::cast_precision_loss, reason = "a sum of microseconds beyond 2^53 (285 years) may round")]
        let sum = self.0.sum(LATENCY_SLOTS - 1) as f64 / 1e6;
        LatencySnapshot { buckets: std::array::from_fn(|i| self.0.sum(i)), sum }
    }
}

const SESSIONS: usize = 5;
const PINNED: usize = 6;
const CONNECT_ERRORS: usize = 7;
const UPGRADES: usize = 8;
const SPLICED: usize = 9;
const OPENED: usize = 10;
const CLOSED: usize = 11;

/// One exchange holding an upstream connection of a backend, counted open until dropped.
#[derive(Debug)]
pub struct OpenGuard<'a>(&'a BackendStats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.0.inc(CLOSED);
    }
}

impl BackendStats {
    /// A response with this status came from the backend.
    #[inline]
    pub fn response(&self, status: u16) {
        self.0.inc(class(status));
    }
    /// A response head came from the backend `d` after the request was forwarded (connects included).
    #[inline]
    pub fn responded_after(&self, d: std::time::Duration) {
        self.1.observe(d);
    }
    /// Response times.
    #[must_use]
    pub fn latency(&self) -> LatencySnapshot {
        self.1.snapshot()
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
    /// A request now holds an upstream connection of the backend, until the guard drops (two
    /// sharded counters, so that no worker writes a shared line).
    #[inline]
    #[must_use = "the connection counts as closed when the guard drops"]
    pub fn open(&self) -> OpenGuard<'_> {
        self.0.inc(OPENED);
        OpenGuard(self)
    }
    /// Upstream connections in use by a request now (idle pooled ones and tunnels not counted).
    #[must_use]
    pub fn open_connections(&self) -> u64 {
        // closed first: the opened read after it is at least as large
        let closed = self.0.sum(CLOSED);
        self.0.sum(OPENED).saturating_sub(closed)
    }
}

/// Per-service counters: re-pins by reason, rejects, and responses sticky made itself.
#[derive(Debug, Default)]
pub struct ServiceStats(Sharded<14>);

/// The re-pin reasons come first, then 5 status classes of local responses, then the rejects.
const LOCAL: usize = RepinReason::ALL.len();
const REJECT_NO_BACKEND: usize = LOCAL + 5;
const REJECT_STRICT: usize = LOCAL + 6;

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

/// Counters of the proxy as a whole: client connections, requests no service took, timeouts,
/// client errors, backend cookies dropped.
#[derive(Debug, Default)]
pub struct ProxyStats {
    counters: Sharded<11>,
    active: AtomicI64,
}

const UNROUTED: usize = 0;
const CONNECTIONS: usize = 1;
/// `TIMEOUTS + Timeout as usize`
const TIMEOUTS: usize = 2;
/// `CLIENT_ERRORS + ClientError as usize`
const CLIENT_ERRORS: usize = 7;
const SET_COOKIES_DROPPED: usize = 9;

/// Which timer closed a connection (`sticky_timeouts_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// No complete request head within `--idle-timeout` (keep-alive idle time included).
    Idle = 0,
    /// The client sent no byte of its body, or took no byte of the response, within `--client-timeout`.
    Client = 1,
    /// The backend took no byte of the request body, or sent none of the response body, within
    /// `--backend-timeout`.
    Backend = 2,
    /// No response head within `--response-timeout` (answered 504).
    Response = 3,
    /// An upgraded connection relayed in user space was silent both ways for `--tunnel-timeout`.
    Tunnel = 4,
}

impl Timeout {
    /// Every kind, in label order.
    pub const ALL: [Self; 5] = [Self::Idle, Self::Client, Self::Backend, Self::Response, Self::Tunnel];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Client => "client",
            Self::Backend => "backend",
            Self::Response => "response",
            Self::Tunnel => "tunnel",
        }
    }
}

/// What a client got wrong (`sticky_client_errors_total{kind}`): answered 400/431 and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A malformed or oversized request head.
    Head = 0,
    /// A request body not framed as its head said (a malformed chunked body).
    Body = 1,
}

impl ClientError {
    /// Every kind, in label order.
    pub const ALL: [Self; 2] = [Self::Head, Self::Body];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Body => "body",
        }
    }
}

impl ProxyStats {
    /// A request matched no service.
    pub fn unrouted(&self) {
        self.counters.inc(UNROUTED);
    }
    /// A client connection was accepted; returns a guard that counts it as active until dropped.
    pub fn connection(&self) -> ActiveGuard<'_> {
        self.counters.inc(CONNECTIONS);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(&self.active)
    }
    /// [`ProxyStats::connection`] with a guard that owns its handle: taken in the accept loop and
    /// moved into the connection's task, so a connection counts as active from its accept on (a
    /// graceful stop that reads no active connection must not miss one whose task has not run yet).
    #[must_use]
    pub fn accepted(self: &Arc<Self>) -> OwnedActiveGuard {
        self.counters.inc(CONNECTIONS);
        self.active.fetch_add(1, Ordering::Relaxed);
        OwnedActiveGuard(self.clone())
    }
    /// A timer closed a connection.
    pub fn timeout(&self, kind: Timeout) {
        self.counters.inc(TIMEOUTS + kind as usize);
    }
    /// A client's request was refused as malformed.
    pub fn client_error(&self, kind: ClientError) {
        self.counters.inc(CLIENT_ERRORS + kind as usize);
    }
    /// A backend's `Set-Cookie` of sticky's cookie name was dropped.
    pub fn set_cookie_dropped(&self, n: u32) {
        for _ in 0..n {
            self.counters.inc(SET_COOKIES_DROPPED);
        }
    }
    /// Connections closed by each timer.
    #[must_use]
    pub fn timeouts(&self, kind: Timeout) -> u64 {
        self.counters.sum(TIMEOUTS + kind as usize)
    }
    /// Requests refused as malformed, by kind.
    #[must_use]
    pub fn client_errors(&self, kind: ClientError) -> u64 {
        self.counters.sum(CLIENT_ERRORS + kind as usize)
    }
    /// Backend `Set-Cookie` lines of sticky's cookie name dropped.
    #[must_use]
    pub fn set_cookies_dropped(&self) -> u64 {
        self.counters.sum(SET_COOKIES_DROPPED)
    }
    /// Requests that matched no service.
    #[must_use]
    pub fn unrouted_requests(&self) -> u64 {
        self.counters.sum(UNROUTED)
    }
    /// Client connections accepted.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.counters.sum(CONNECTIONS)
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

/// Counts one connection as active while it lives (owns its handle of the counters).
#[derive(Debug)]
pub struct OwnedActiveGuard(Arc<ProxyStats>);

impl Drop for OwnedActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
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

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let l = Latency::default();
        for ms in [0, 1, 3, 10, 20_000] {
            l.observe(std::time::Duration::from_millis(ms));
        }
        let s = l.snapshot();
        assert_eq!(s.count(), 5);
        assert_eq!((s.buckets[0], s.buckets[2], s.buckets[3], s.buckets[13]), (2, 1, 1, 1), "{s:?}");
        assert!((s.sum - 20.014).abs() < 1e-9, "sum in seconds: {}", s.sum);
    }
}
