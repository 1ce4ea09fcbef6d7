//! The admin API's JSON documents: `/api/backends` (every http service and backend with its
//! settings, health, drain state and counters) and `/api/overview` (the same plus the proxy's
//! connections and tcp mode's kernel or user-space state), which the dashboard polls.
//!
//! Only counters and states are reported: rates, sparklines and shares are computed by the reader
//! from successive documents, so the admin side keeps no history and no memory that grows.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::access::Writes;
use crate::{
    config::Source,
    lock::lock,
    model::{CookieSpec, SameSite},
    policy::RepinReason,
    state::{BackendRoute, Routing, ServiceRoute},
    stats::{CLASSES, LATENCY_BUCKETS, ProxyStats},
    tcp::TcpMetrics,
};

/// How long tcp mode's part of `/api/overview` is reused: counting the kernel maps walks them (a
/// syscall or two per entry, up to 2 x `--max-flows` entries), and every open dashboard polls every
/// second.
pub const TCP_REFRESH: Duration = Duration::from_secs(5);

/// What the documents read beyond the routing table, for the parts that run.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Where the services come from.
    pub source: Source,
    /// The http proxy's own counters (connections).
    pub proxy: Option<Arc<ProxyStats>>,
    /// tcp mode's numbers (kernel maps or user-space services).
    pub tcp: Option<TcpMetrics>,
    /// tcp mode's last report and when it was made (see [`TCP_REFRESH`]).
    pub tcp_cache: Arc<Mutex<Option<(Instant, TcpReport)>>>,
    /// Swarm discovery's state (`--docker`).
    pub discovery: Option<Arc<crate::discovery::status::Status>>,
}

/// The `/api/backends` document.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Whether the admin API takes writes (drain/activate): `open`, `token` (with
    /// `Authorization: Bearer`) or `disabled`.
    pub writes: Writes,
    /// Where the services come from: `flags`, `file` or `swarm` (labels).
    pub source: &'static str,
    /// Upper bounds (seconds) of the backends' `latency.counts`, `+Inf` after the last.
    pub latency_buckets: &'static [f64],
    /// Every http service.
    pub services: Vec<ServiceReport>,
    /// Every tcp service's backends (with the part of tcp mode that serves each), if tcp mode runs.
    pub tcp_backends: Vec<crate::tcp::BackendRow>,
}

/// One service in the report.
#[derive(Debug, Serialize)]
pub struct ServiceReport {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `http` (tcp services are in `/api/overview`'s `tcp`).
    pub mode: &'static str,
    /// Routing rule, Traefik syntax.
    pub rule: String,
    /// Priority among matching rules.
    pub priority: i64,
    /// Cookie name.
    pub cookie: String,
    /// Every cookie attribute.
    pub cookie_settings: CookieReport,
    /// Strict mode.
    pub strict: bool,
    /// Path of the active health check, if any.
    pub health_check: Option<String>,
    /// Re-pins by reason.
    pub repins: BTreeMap<&'static str, u64>,
    /// 503s by reason: `no_backend`, `strict`.
    pub rejects: BTreeMap<&'static str, u64>,
    /// Responses sticky made itself for this service (no backend), by status class.
    pub local_responses: BTreeMap<&'static str, u64>,
    /// The backends.
    pub backends: Vec<BackendReport>,
}

/// A service's cookie settings.
#[derive(Debug, Serialize)]
pub struct CookieReport {
    /// Whether clients are pinned at all.
    pub enabled: bool,
    /// `Path`.
    pub path: String,
    /// `Domain`, none: host-only.
    pub domain: Option<String>,
    /// `Secure`: `always`, `never`, or `tls` (on the TLS listener only).
    pub secure: &'static str,
    /// `HttpOnly`.
    pub httponly: bool,
    /// `SameSite`: `lax`, `strict`, `none`, or not sent.
    pub samesite: Option<&'static str>,
    /// `Max-Age` in seconds, none: a session cookie.
    pub max_age_seconds: Option<u64>,
}

/// One backend in the report.
#[derive(Debug, Serialize)]
pub struct BackendReport {
    /// Stable id (task id or static name).
    pub id: String,
    /// Address.
    pub addr: String,
    /// Weight.
    pub weight: u32,
    /// `active` or `draining`.
    pub state: &'static str,
    /// `up`, `paused` (passive back-off) or `down` (active checks).
    pub health: &'static str,
    /// Cookies issued for it.
    pub sessions: u64,
    /// Requests that came with its cookie.
    pub pinned_requests: u64,
    /// Responses it gave, every status class.
    pub requests: u64,
    /// Its 5xx responses plus failed connects.
    pub errors: u64,
    /// Responses by status class.
    pub responses: BTreeMap<&'static str, u64>,
    /// Failed connects.
    pub connect_errors: u64,
    /// Upgraded connections.
    pub upgrades: u64,
    /// Pinned keep-alive connections handed to the kernel splice.
    pub spliced_connections: u64,
    /// Upstream connections in use by a request now (HTTP/2: until the response head; idle pooled
    /// connections and upgraded tunnels not counted).
    pub open_connections: u64,
    /// Response times (`sticky_request_duration_seconds`).
    pub latency: LatencyReport,
}

/// A backend's response times since start: the reader takes differences between two documents.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    /// Responses per bucket of [`Report::latency_buckets`], not cumulative, the last one `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of the response times, seconds.
    pub sum_seconds: f64,
}

/// The `/api/overview` document: what the dashboard shows.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// As in [`Report::writes`].
    pub writes: Writes,
    /// As in [`Report::source`].
    pub source: &'static str,
    /// As in [`Report::latency_buckets`].
    pub latency_buckets: &'static [f64],
    /// sticky's version.
    pub version: &'static str,
    /// The http proxy's client connections, if it runs.
    pub proxy: Option<ProxyReport>,
    /// The http services (empty in tcp mode).
    pub services: Vec<ServiceReport>,
    /// tcp mode, if it runs.
    pub tcp: Option<TcpReport>,
    /// Swarm discovery's state (`--docker` only): the Docker API, last contact, services left out.
    pub discovery: Option<crate::discovery::status::StatusReport>,
}

/// The http proxy as a whole.
#[derive(Debug, Serialize)]
pub struct ProxyReport {
    /// Client connections accepted.
    pub connections: u64,
    /// Client connections open now.
    pub connections_active: u64,
    /// Requests that matched no service (404).
    pub unrouted_requests: u64,
}

/// tcp mode: which path serves it, and its tables.
#[derive(Clone, Debug, Serialize)]
pub struct TcpReport {
    /// `kernel` (eBPF) or `user space` (the fallback).
    pub path: &'static str,
    /// Interfaces the kernel path is attached to (empty in user space).
    pub interfaces: Vec<String>,
    /// Each table's entries against its capacity (kernel maps, or the user-space affinity tables).
    pub maps: Vec<MapReport>,
    /// Established flows per backend id (kernel path).
    pub flows_per_backend: BTreeMap<String, u64>,
    /// Services relayed in user space, with their connections by outcome.
    pub services: Vec<TcpServiceReport>,
    /// Every tcp service's backends, with drain state and connections.
    pub backends: Vec<crate::tcp::BackendRow>,
}

/// One table's usage.
#[derive(Clone, Debug, Serialize)]
pub struct MapReport {
    /// Map name.
    pub name: &'static str,
    /// Entries.
    pub used: u64,
    /// Capacity.
    pub max: u64,
}

/// A tcp service relayed in user space.
#[derive(Clone, Debug, Serialize)]
pub struct TcpServiceReport {
    /// Name.
    pub name: String,
    /// Connections relayed now.
    pub active: u64,
    /// Connections by outcome (`affinity_hit`, `maglev_pick`, `no_backend`, `connect_failed`).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Clients in its affinity table.
    pub affinity_used: u64,
    /// The affinity table's capacity.
    pub affinity_max: u64,
}

/// Builds `/api/backends` from the current table (http) and tcp mode's services; the kernel
/// path's flows per backend are a walk over its maps.
#[must_use]
pub fn report(routing: Option<&Routing>, writes: Writes, sources: &Sources) -> Report {
    Report {
        writes,
        source: sources.source.as_str(),
        latency_buckets: &LATENCY_BUCKETS,
        services: routing.map(services).unwrap_or_default(),
        tcp_backends: sources.tcp.as_ref().map(|t| t.snapshot().backends).unwrap_or_default(),
    }
}

/// Builds `/api/overview`. Reading tcp mode's kernel maps walks them (a syscall or two per entry):
/// call it off the runtime's thread.
#[must_use]
pub fn overview(routing: Option<&Routing>, writes: Writes, sources: &Sources) -> Overview {
    Overview {
        writes,
        source: sources.source.as_str(),
        latency_buckets: &LATENCY_BUCKETS,
        version: env!("CARGO_PKG_VERSION"),
        proxy: sources.proxy.as_ref().map(|p| ProxyReport {
            connections: p.connections(),
            connections_active: u64::try_from(p.active_connections()).unwrap_or(0),
            unrouted_requests: p.unrouted_requests(),
        }),
        services: routing.map(services).unwrap_or_default(),
        discovery: sources.discovery.as_ref().map(|d| d.report()),
        tcp: sources.tcp.as_ref().map(|metrics| {
            let mut cache = lock(&sources.tcp_cache);
            match &*cache {
                Some((made, report)) if made.elapsed() < TCP_REFRESH => report.clone(),
                _ => {
                    let report = tcp(metrics);
                    *cache = Some((Instant::now(), report.clone()));
                    report
                }
            }
        }),
    }
}

fn services(routing: &Routing) -> Vec<ServiceReport> {
    routing.table_full().services.iter().map(|s| service(s)).collect()
}

fn service(s: &ServiceRoute) -> ServiceReport {
    let stats = &s.live.stats;
    ServiceReport {
        id: s.spec.id.to_string(),
        name: s.spec.name.clone(),
        mode: "http",
        rule: s.spec.rule.to_traefik(),
        priority: s.spec.priority,
        cookie: s.spec.cookie.name.clone(),
        cookie_settings: cookie(&s.spec.cookie),
        strict: s.spec.strict,
        health_check: s.spec.health.path.clone(),
        repins: RepinReason::ALL.iter().map(|r| (r.as_str(), stats.repins(*r))).collect(),
        rejects: [("no_backend", stats.rejects(false)), ("strict", stats.rejects(true))].into_iter().collect(),
        local_responses: CLASSES.iter().enumerate().map(|(i, c)| (*c, stats.local_responses(i))).collect(),
        backends: s.backends.iter().map(backend).collect(),
    }
}

fn cookie(c: &CookieSpec) -> CookieReport {
    CookieReport {
        enabled: c.enabled,
        path: c.path.clone(),
        domain: c.domain.clone(),
        secure: match c.secure {
            Some(true) => "always",
            Some(false) => "never",
            None => "tls",
        },
        httponly: c.http_only,
        samesite: c.same_site.map(|s| match s {
            SameSite::Lax => "lax",
            SameSite::Strict => "strict",
            SameSite::None => "none",
        }),
        max_age_seconds: c.max_age.map(|d| d.as_secs()),
    }
}

fn backend(b: &BackendRoute) -> BackendReport {
    let stats = &b.live.stats;
    let responses: BTreeMap<&'static str, u64> =
        CLASSES.iter().enumerate().map(|(i, c)| (*c, stats.responses(i))).collect();
    let server_errors = responses.get("5xx").copied().unwrap_or(0);
    BackendReport {
        id: b.id.to_string(),
        addr: b.addr.to_string(),
        weight: b.weight,
        state: if b.draining() { "draining" } else { "active" },
        health: b.live.health_label(),
        sessions: stats.sessions(),
        pinned_requests: stats.pinned_requests(),
        requests: responses.values().sum(),
        errors: server_errors.saturating_add(stats.connect_errors()),
        responses,
        connect_errors: stats.connect_errors(),
        upgrades: stats.upgrades(),
        spliced_connections: stats.spliced_connections(),
        open_connections: stats.open_connections(),
        latency: {
            let l = stats.latency();
            LatencyReport { counts: l.buckets.to_vec(), sum_seconds: l.sum }
        },
    }
}

fn tcp(metrics: &TcpMetrics) -> TcpReport {
    let snapshot = metrics.snapshot();
    let attached = metrics.attached();
    let maps = match &snapshot.kernel {
        Some(usage) => usage.maps.iter().map(|m| MapReport { name: m.name, used: m.used, max: m.max }).collect(),
        // in user space the affinity tables are the one table, summed as /metrics does
        None if snapshot.services.is_empty() => Vec::new(),
        None => vec![MapReport {
            name: sticky_common::maps::AFFINITY,
            used: snapshot.services.iter().map(|(_, s)| s.affinity_used).sum(),
            max: snapshot.services.iter().map(|(_, s)| s.affinity_max).sum(),
        }],
    };
    TcpReport {
        path: if attached.is_some() { "kernel" } else { "user space" },
        interfaces: attached.map(<[String]>::to_vec).unwrap_or_default(),
        maps,
        flows_per_backend: snapshot
            .kernel
            .as_ref()
            .map(|u| u.flows_per_backend.iter().map(|(id, n)| (id.to_string(), *n)).collect())
            .unwrap_or_default(),
        services: snapshot
            .services
            .iter()
            .map(|(name, s)| TcpServiceReport {
                name: name.clone(),
                active: s.active,
                outcomes: s.outcomes().into_iter().collect(),
                affinity_used: s.affinity_used,
                affinity_max: s.affinity_max,
            })
            .collect(),
        backends: snapshot.backends,
    }
}

#[cfg(test)]
mod tests;
