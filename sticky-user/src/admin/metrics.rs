//! Every metric sticky serves, in one table ([`ALL`]: name, type, labels, help), and its rendering
//! through prometheus-client at each scrape, for every part that runs: the http proxy (the routing
//! table's counters), the kernel splice, tcp mode (kernel or user space), and the TLS listener's
//! certificates.
//!
//! Rendering reads snapshots ([`Sources`]), never the hot path's structures beyond their atomic
//! counters, and names each family from the table, so what `/metrics` serves and [`ALL`] cannot
//! drift; a test holds [`ALL`] against ARCHITECTURE.md's metrics table and against a real scrape.

use std::{fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    datapath::sizes::MapUsage,
    policy::RepinReason,
    splice::SpliceSnapshot,
    state::Routing,
    stats::{CLASSES, ClientError, LATENCY_BUCKETS, LatencySnapshot, ProxyStats, Timeout},
    tcp::TcpSnapshot,
    tls::resolver::Resolver,
};

/// One metric family: its name as samples show it (`_total` for counters), type, label names and help.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The samples' name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricType,
    /// Label names, in order.
    pub labels: &'static [&'static str],
    /// The `# HELP` line.
    pub help: &'static str,
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric { name, kind: MetricType::Counter, labels, help }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric { name, kind: MetricType::Gauge, labels, help }
}

const SERVICE_BACKEND: &[&str] = &["service", "backend"];

/// `sticky_requests_total`
pub const REQUESTS: Metric = counter(
    "sticky_requests_total",
    &["service", "backend", "class"],
    "Responses by service, backend (empty: answered by sticky) and status class.",
);
/// `sticky_request_duration_seconds`
pub const REQUEST_DURATION: Metric = Metric {
    name: "sticky_request_duration_seconds",
    kind: MetricType::Histogram,
    labels: SERVICE_BACKEND,
    help: "Time from forwarding a request (connects included) to the backend's response head, seconds.",
};
/// `sticky_sessions_total`
pub const SESSIONS: Metric =
    counter("sticky_sessions_total", SERVICE_BACKEND, "New sessions (cookies issued) per backend, re-pins included.");
/// `sticky_pinned_requests_total`
pub const PINNED_REQUESTS: Metric = counter(
    "sticky_pinned_requests_total",
    SERVICE_BACKEND,
    "Requests that arrived with a valid cookie for the backend.",
);
/// `sticky_repins_total`
pub const REPINS: Metric =
    counter("sticky_repins_total", &["service", "reason"], "Sessions moved off their backend, by reason.");
/// `sticky_rejects_total`
pub const REJECTS: Metric = counter(
    "sticky_rejects_total",
    &["service", "reason"],
    "Requests answered 503: no backend available, or strict pin unavailable.",
);
/// `sticky_upstream_connect_errors_total`
pub const CONNECT_ERRORS: Metric =
    counter("sticky_upstream_connect_errors_total", SERVICE_BACKEND, "Failed connects to a backend.");
/// `sticky_upgrades_total`
pub const UPGRADES: Metric =
    counter("sticky_upgrades_total", SERVICE_BACKEND, "Upgraded (WebSocket) connections relayed to a backend.");
/// `sticky_spliced_connections_total`
pub const SPLICED_CONNECTIONS: Metric = counter(
    "sticky_spliced_connections_total",
    SERVICE_BACKEND,
    "Pinned keep-alive connections handed to the kernel splice.",
);
/// `sticky_backend_up`
pub const BACKEND_UP: Metric =
    gauge("sticky_backend_up", SERVICE_BACKEND, "1 if the backend takes traffic now (health).");
/// `sticky_backend_draining`
pub const BACKEND_DRAINING: Metric =
    gauge("sticky_backend_draining", SERVICE_BACKEND, "1 if the backend takes no new sessions.");
/// `sticky_backend_requests_in_flight`
pub const BACKEND_IN_FLIGHT: Metric = gauge(
    "sticky_backend_requests_in_flight",
    SERVICE_BACKEND,
    "Requests forwarded to the backend and not yet answered or ended (this process).",
);
/// `sticky_unrouted_requests_total`
pub const UNROUTED: Metric = counter("sticky_unrouted_requests_total", &[], "Requests that matched no service (404).");
/// `sticky_connections_total`
pub const CONNECTIONS: Metric = counter("sticky_connections_total", &[], "Client connections accepted.");
/// `sticky_connections_active`
pub const CONNECTIONS_ACTIVE: Metric = gauge("sticky_connections_active", &[], "Client connections open now.");
/// `sticky_timeouts_total`
pub const TIMEOUTS: Metric = counter(
    "sticky_timeouts_total",
    &["kind"],
    "Connections closed by a timer: idle, client, backend, response (504), tunnel.",
);
/// `sticky_client_errors_total`
pub const CLIENT_ERRORS: Metric =
    counter("sticky_client_errors_total", &["kind"], "Requests refused as malformed (400/431): head, body.");
/// `sticky_backend_set_cookies_dropped_total`
pub const SET_COOKIES_DROPPED: Metric = counter(
    "sticky_backend_set_cookies_dropped_total",
    &[],
    "Backend Set-Cookie lines of sticky's own cookie name, dropped.",
);
/// `sticky_splices_total`
pub const SPLICES: Metric = counter("sticky_splices_total", &["outcome"], "Kernel splice pairs by outcome.");
/// `sticky_spliced_connections_active`
pub const SPLICED_ACTIVE: Metric =
    gauge("sticky_spliced_connections_active", &[], "Connections the kernel splices now.");
/// `sticky_splice_skbs_total`
pub const SPLICE_SKBS: Metric =
    counter("sticky_splice_skbs_total", &["verdict"], "Socket buffers the kernel's splice verdict handled.");
/// `sticky_splice_map_entries`
pub const SPLICE_MAP_ENTRIES: Metric = gauge("sticky_splice_map_entries", &["map"], "Entries in each splice map.");
/// `sticky_splice_map_max_entries`
pub const SPLICE_MAP_MAX: Metric = gauge("sticky_splice_map_max_entries", &["map"], "Capacity of each splice map.");
/// `sticky_l4_packets_total`
pub const L4_PACKETS: Metric = counter(
    "sticky_l4_packets_total",
    &["counter"],
    "Packets of the eBPF programs, by counter (verdicts and L4 events).",
);
/// `sticky_l4_map_entries`
pub const L4_MAP_ENTRIES: Metric = gauge(
    "sticky_l4_map_entries",
    &["map"],
    "Entries in an L4 table (kernel maps, or the user-space affinity tables).",
);
/// `sticky_l4_map_max_entries`
pub const L4_MAP_MAX: Metric = gauge("sticky_l4_map_max_entries", &["map"], "Capacity of an L4 table.");
/// `sticky_l4_backend_flows`
pub const L4_BACKEND_FLOWS: Metric =
    gauge("sticky_l4_backend_flows", &["backend_id"], "Established flows per backend id (kernel path).");
/// `sticky_l4_backend_flows6`
pub const L4_BACKEND_FLOWS6: Metric = gauge(
    "sticky_l4_backend_flows6",
    &["backend_id"],
    "Established IPv6 flows per IPv6 backend id (kernel path; ids of BACKENDS6).",
);
/// `sticky_l4_fallback_connections_total`
pub const L4_FALLBACK_CONNECTIONS: Metric = counter(
    "sticky_l4_fallback_connections_total",
    &["service", "outcome"],
    "Connections of tcp mode in user space, by service and outcome.",
);
/// `sticky_l4_fallback_active`
pub const L4_BACKEND_CONNECTIONS: Metric = counter(
    "sticky_l4_backend_connections_total",
    SERVICE_BACKEND,
    "Connections relayed to a tcp service's backend (user space).",
);
pub const L4_BACKEND_ACTIVE: Metric = gauge(
    "sticky_l4_backend_connections_active",
    SERVICE_BACKEND,
    "Connections to a tcp service's backend now (user space: relays open; kernel: its flows in CONNS, finished ones until evicted).",
);
pub const L4_BACKEND_BYTES: Metric = counter(
    "sticky_l4_backend_bytes_total",
    &["service", "backend", "direction"],
    "Bytes relayed for a tcp service's backend, to_backend or to_client, added as each relay ends (user space).",
);
pub const L4_BACKEND_DRAINING: Metric = gauge(
    "sticky_l4_backend_draining",
    SERVICE_BACKEND,
    "1 if a tcp service's backend takes no new connections (Swarm or the admin API drains it).",
);
pub const L4_FALLBACK_ACTIVE: Metric =
    gauge("sticky_l4_fallback_active", &["service"], "Connections tcp mode relays in user space now.");

/// `sticky_tls_certificate_not_after_seconds`
pub const TLS_NOT_AFTER: Metric = gauge(
    "sticky_tls_certificate_not_after_seconds",
    &["cert", "names"],
    "Not-after time of each certificate in force on the TLS listener, seconds since the UNIX epoch.",
);

/// `sticky_proxy_protocol_rejects_total`
pub const PROXY_PROTOCOL_REJECTS: Metric = counter(
    "sticky_proxy_protocol_rejects_total",
    &["reason"],
    "Connections closed at accept by the PROXY protocol rule: untrusted, malformed, truncated, missing.",
);

/// `sticky_access_log_dropped_total`
pub const ACCESS_LOG_DROPPED: Metric = counter(
    "sticky_access_log_dropped_total",
    &[],
    "Access log lines dropped: over --access-log-rate, or the writer behind (queue full).",
);

/// Every metric sticky can serve (each family only when its part runs).
pub const ALL: &[Metric] = &[
    REQUESTS,
    REQUEST_DURATION,
    SESSIONS,
    PINNED_REQUESTS,
    REPINS,
    REJECTS,
    CONNECT_ERRORS,
    UPGRADES,
    SPLICED_CONNECTIONS,
    BACKEND_UP,
    BACKEND_DRAINING,
    BACKEND_IN_FLIGHT,
    UNROUTED,
    CONNECTIONS,
    CONNECTIONS_ACTIVE,
    TIMEOUTS,
    CLIENT_ERRORS,
    SET_COOKIES_DROPPED,
    SPLICES,
    SPLICED_ACTIVE,
    SPLICE_SKBS,
    SPLICE_MAP_ENTRIES,
    SPLICE_MAP_MAX,
    L4_PACKETS,
    L4_MAP_ENTRIES,
    L4_MAP_MAX,
    L4_BACKEND_FLOWS,
    L4_BACKEND_FLOWS6,
    L4_FALLBACK_CONNECTIONS,
    L4_FALLBACK_ACTIVE,
    L4_BACKEND_CONNECTIONS,
    L4_BACKEND_ACTIVE,
    L4_BACKEND_BYTES,
    L4_BACKEND_DRAINING,
    TLS_NOT_AFTER,
    PROXY_PROTOCOL_REJECTS,
    ACCESS_LOG_DROPPED,
];

/// Reads a snapshot of one part at scrape time.
pub type Probe<T> = Box<dyn Fn() -> T + Send + Sync>;

/// What `/metrics` reads, for the parts that run.
#[derive(Default)]
pub struct Sources {
    /// The http proxy: its routing table (with the per-backend and per-service counters) and its
    /// own counters.
    pub http: Option<(Arc<Routing>, Arc<ProxyStats>)>,
    /// The kernel splice.
    pub splice: Option<Probe<SpliceSnapshot>>,
    /// tcp mode.
    pub tcp: Option<Probe<TcpSnapshot>>,
    /// The TLS listener's certificates in force.
    pub tls: Option<Arc<Resolver>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("http", &self.http.is_some())
            .field("splice", &self.splice.is_some())
            .field("tcp", &self.tcp.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A registry that renders `sources` at each scrape.
#[must_use]
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(sources)));
    registry
}

/// The collector behind [`registry`].
#[derive(Debug)]
struct Scrape(Sources);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        if let Some((routing, stats)) = &self.0.http {
            http(&mut encoder, routing, stats)?;
        }
        if let Some(probe) = &self.0.splice {
            splice(&mut encoder, &probe())?;
        }
        if let Some(probe) = &self.0.tcp {
            tcp(&mut encoder, &probe())?;
        }
        // one rule on every listener (http, https, tcp mode): served while any of them runs
        if self.0.http.is_some() || self.0.tcp.is_some() {
            let rows = crate::proxy_protocol::Reject::ALL
                .map(|r| (vec![r.as_str()], crate::proxy_protocol::accept::rejects(r)));
            family(&mut encoder, &PROXY_PROTOCOL_REJECTS, rows)?;
            // 0 while the access log is off: an alert on it needs no `absent()`
            family(&mut encoder, &ACCESS_LOG_DROPPED, [(Vec::new(), crate::access_log::dropped())])?;
        }
        if let Some(resolver) = &self.0.tls {
            let expiry = resolver.expiry();
            let rows: Vec<(String, String, u64)> = expiry
                .iter()
                .map(|e| (e.cert.display().to_string(), e.names.join(","), u64::try_from(e.not_after).unwrap_or(0)))
                .collect();
            family(&mut encoder, &TLS_NOT_AFTER, rows.iter().map(|(c, n, v)| (vec![c.as_str(), n.as_str()], *v)))?;
        }
        Ok(())
    }
}

/// One family: `rows` are label values (in the order of `metric.labels`) and a value.
fn family<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    metric: &Metric,
    rows: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
) -> fmt::Result {
    // prometheus-client appends `_total` to a counter's samples itself
    let name = match metric.kind {
        MetricType::Counter => metric.name.strip_suffix("_total").unwrap_or(metric.name),
        _ => metric.name,
    };
    let mut family = encoder.encode_descriptor(name, metric.help, None, metric.kind)?;
    for (values, value) in rows {
        let labels: Vec<(&str, &str)> = metric.labels.iter().copied().zip(values).collect();
        let series = family.encode_family(&labels)?;
        match metric.kind {
            MetricType::Counter => ConstCounter::new(value).encode(series)?,
            _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(series)?,
        }
    }
    Ok(())
}

/// One histogram family: `rows` are the label values of `metric.labels` and a snapshot.
fn histogram<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    metric: &Metric,
    rows: impl IntoIterator<Item = ([&'a str; 2], LatencySnapshot)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(metric.name, metric.help, None, MetricType::Histogram)?;
    for (values, snapshot) in rows {
        let labels: Vec<(&str, &str)> = metric.labels.iter().copied().zip(values).collect();
        // the last bucket is `+Inf`, which prometheus-client writes for an upper bound of f64::MAX
        let bounds = LATENCY_BUCKETS.iter().copied().chain(std::iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> = bounds.zip(snapshot.buckets).collect();
        family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            snapshot.sum,
            snapshot.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

/// The proxy's families: per backend and per service from the current routing table, and its own.
fn http(encoder: &mut DescriptorEncoder<'_>, routing: &Routing, stats: &ProxyStats) -> fmt::Result {
    let table = routing.table_full();
    let per_backend = |read: &dyn Fn(&crate::state::BackendRoute) -> u64| {
        table
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
            .map(|(s, b)| (vec![s.spec.name.as_str(), &*b.id.0], read(b)))
            .collect::<Vec<_>>()
    };
    let mut requests = Vec::new();
    for s in &table.services {
        for b in &s.backends {
            for (i, c) in CLASSES.iter().enumerate() {
                requests.push((vec![s.spec.name.as_str(), &*b.id.0, *c], b.live.stats.responses(i)));
            }
        }
        for (i, c) in CLASSES.iter().enumerate() {
            requests.push((vec![s.spec.name.as_str(), "", *c], s.live.stats.local_responses(i)));
        }
    }
    family(encoder, &REQUESTS, requests)?;
    let latency = table
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| ([s.spec.name.as_str(), &*b.id.0], b.live.stats.latency())));
    histogram(encoder, &REQUEST_DURATION, latency)?;
    family(encoder, &SESSIONS, per_backend(&|b| b.live.stats.sessions()))?;
    family(encoder, &PINNED_REQUESTS, per_backend(&|b| b.live.stats.pinned_requests()))?;
    let repins = table.services.iter().flat_map(|s| {
        RepinReason::ALL.iter().map(move |r| (vec![s.spec.name.as_str(), r.as_str()], s.live.stats.repins(*r)))
    });
    family(encoder, &REPINS, repins)?;
    let rejects = table.services.iter().flat_map(|s| {
        [("no_backend", false), ("strict", true)]
            .into_iter()
            .map(move |(reason, strict)| (vec![s.spec.name.as_str(), reason], s.live.stats.rejects(strict)))
    });
    family(encoder, &REJECTS, rejects)?;
    family(encoder, &CONNECT_ERRORS, per_backend(&|b| b.live.stats.connect_errors()))?;
    family(encoder, &UPGRADES, per_backend(&|b| b.live.stats.upgrades()))?;
    family(encoder, &SPLICED_CONNECTIONS, per_backend(&|b| b.live.stats.spliced_connections()))?;
    family(encoder, &BACKEND_UP, per_backend(&|b| u64::from(b.live.health_label() == "up")))?;
    family(encoder, &BACKEND_DRAINING, per_backend(&|b| u64::from(b.draining())))?;
    family(encoder, &BACKEND_IN_FLIGHT, per_backend(&|b| u64::from(b.live.inflight())))?;
    family(encoder, &UNROUTED, [(Vec::new(), stats.unrouted_requests())])?;
    family(encoder, &CONNECTIONS, [(Vec::new(), stats.connections())])?;
    let active = u64::try_from(stats.active_connections()).unwrap_or(0);
    family(encoder, &CONNECTIONS_ACTIVE, [(Vec::new(), active)])?;
    family(encoder, &TIMEOUTS, Timeout::ALL.map(|k| (vec![k.as_str()], stats.timeouts(k))))?;
    family(encoder, &CLIENT_ERRORS, ClientError::ALL.map(|k| (vec![k.as_str()], stats.client_errors(k))))?;
    family(encoder, &SET_COOKIES_DROPPED, [(Vec::new(), stats.set_cookies_dropped())])
}

/// The kernel splice's families.
fn splice(encoder: &mut DescriptorEncoder<'_>, s: &SpliceSnapshot) -> fmt::Result {
    let outcomes = [("joined", s.joined), ("finished", s.finished), ("aborted", s.aborted), ("refused", s.refused)];
    family(encoder, &SPLICES, outcomes.map(|(o, v)| (vec![o], v)))?;
    family(encoder, &SPLICED_ACTIVE, [(Vec::new(), s.live)])?;
    let skbs = [(vec!["redirect"], s.redirected_skbs), (vec!["no_peer"], s.no_peer_skbs)];
    family(encoder, &SPLICE_SKBS, skbs)?;
    family(encoder, &SPLICE_MAP_ENTRIES, s.maps.iter().map(|m| (vec![m.name], m.used)))?;
    family(encoder, &SPLICE_MAP_MAX, s.maps.iter().map(|m| (vec![m.name], m.max)))
}

/// tcp mode's families: the kernel path's counters, map usage and flows, or each user-space
/// service's connections (their affinity tables summed as the `AFFINITY` map).
/// The (service, backend) labels of a tcp backend's series.
fn key(b: &crate::tcp::BackendRow) -> Vec<&str> {
    vec![b.service.as_str(), b.id.as_str()]
}

fn tcp(encoder: &mut DescriptorEncoder<'_>, t: &TcpSnapshot) -> fmt::Result {
    let maps: Vec<MapUsage> = match &t.kernel {
        Some(usage) => usage.maps.clone(),
        None if t.services.is_empty() => Vec::new(),
        None => vec![MapUsage {
            name: sticky_common::maps::AFFINITY,
            used: t.services.iter().map(|(_, s)| s.affinity_used).sum(),
            max: t.services.iter().map(|(_, s)| s.affinity_max).sum(),
        }],
    };
    if let Some(usage) = &t.kernel {
        family(encoder, &L4_PACKETS, usage.stats.iter().map(|(c, v)| (vec![c.name()], v)))?;
    }
    if !maps.is_empty() {
        family(encoder, &L4_MAP_ENTRIES, maps.iter().map(|m| (vec![m.name], m.used)))?;
        family(encoder, &L4_MAP_MAX, maps.iter().map(|m| (vec![m.name], m.max)))?;
    }
    if let Some(usage) = &t.kernel {
        for (metric, flows) in
            [(&L4_BACKEND_FLOWS, &usage.flows_per_backend), (&L4_BACKEND_FLOWS6, &usage.flows_per_backend6)]
        {
            let ids: Vec<(String, u64)> = flows.iter().map(|(id, n)| (id.to_string(), *n)).collect();
            family(encoder, metric, ids.iter().map(|(id, n)| (vec![id.as_str()], *n)))?;
        }
    }
    if !t.services.is_empty() {
        let outcomes = t
            .services
            .iter()
            .flat_map(|(name, s)| s.outcomes().into_iter().map(move |(outcome, v)| (vec![name.as_str(), outcome], v)));
        family(encoder, &L4_FALLBACK_CONNECTIONS, outcomes)?;
        family(encoder, &L4_FALLBACK_ACTIVE, t.services.iter().map(|(name, s)| (vec![name.as_str()], s.active)))?;
    }
    // per backend, like http's: every tcp service's members, whichever path serves them
    let rows = &t.backends;
    let user = || rows.iter().filter(|b| b.connections.is_some());
    family(encoder, &L4_BACKEND_CONNECTIONS, user().map(|b| (key(b), b.connections.unwrap_or(0))))?;
    family(encoder, &L4_BACKEND_ACTIVE, rows.iter().map(|b| (key(b), b.active)))?;
    let bytes = user().flat_map(|b| {
        [("to_backend", b.bytes_to_backend), ("to_client", b.bytes_to_client)]
            .map(|(direction, v)| (vec![b.service.as_str(), b.id.as_str(), direction], v.unwrap_or(0)))
    });
    family(encoder, &L4_BACKEND_BYTES, bytes)?;
    family(encoder, &L4_BACKEND_DRAINING, rows.iter().map(|b| (key(b), u64::from(b.state == "draining"))))
}

#[cfg(test)]
mod tests;
