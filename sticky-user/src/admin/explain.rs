//! `GET /api/explain?service=S&cookie=VALUE`: which backend a request of service `S` carrying sticky's
//! cookie `VALUE` (or no cookie: leave it out) would reach now, and why.
//!
//! The answer runs the proxy's own steps on the current routing table: the cookie is read by the
//! proxy's one reader ([`crate::proxy::pin::read`]: signature, Max-Age, the Traefik value inside
//! the legacy window) and decided by [`crate::policy::decide`] against the backends' live health and
//! drain marks. It changes nothing: the round-robin cursor is read, not moved, so "the next new
//! session" is what the next request without a cookie gets from this instance (another instance, or
//! a request arriving in between, may see another turn).
//!
//! A service with hash affinity (issue 18) is explained by the key the proxy would hash: `key=VALUE`
//! (the value of its header, or of the application's cookie for `learn`) or `client=IP` (client-ip
//! affinity); the ring's home for that key and the proxy's own [`crate::policy::hash::decide`] say
//! where it goes. Without the key, the request falls back to the cookie, as in the proxy.
//!
//! `GET /api/explain?service=S&client=IP` explains a tcp service ([`explain_tcp`]): the client's
//! Maglev slot and its owner, and the client's affinity entry (read, not refreshed: on the kernel
//! path one lookup in `AFFINITY`/`AFFINITY6`, judged against the kernel's clock as the eBPF code
//! judges it), which wins while it is fresh and its backend still in the set.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::{
    model::Affinity,
    policy::{self, Decision, Pinned, Reject},
    proxy::{h1::ClientAddr, pin},
    state::{Routing, ServiceRoute, View},
    tcp::{Placement, TcpMetrics},
};

/// The answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Explanation {
    /// The service's name.
    pub service: String,
    /// What the cookie is: `absent`, `valid`, `legacy` (a Traefik value inside the window),
    /// `invalid` (with why), or `gone` (valid, for a backend no longer in the service).
    pub cookie: &'static str,
    /// The backend the cookie names, if it names a current one.
    pub pinned: Option<String>,
    /// `keep` (served by the pinned backend), `pin` (a new session or a re-pin) or `reject` (503).
    pub outcome: &'static str,
    /// The backend that would answer (none for `reject`).
    pub backend: Option<String>,
    /// Its address.
    pub addr: Option<String>,
    /// The re-pin or rejection reason, as in `sticky_repins_total`/`sticky_rejects_total`.
    pub reason: Option<&'static str>,
    /// What placed the request: `cookie` (sticky's cookie, or round robin without one), or the hash
    /// affinity's key: `header`, `client_ip`, `app_cookie`.
    pub placed_by: &'static str,
    /// The same in a sentence.
    pub why: String,
}

/// Why there is no explanation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    /// The query lacks `service`.
    #[error("say which service: /api/explain?service=NAME&cookie=VALUE (leave cookie out for a request without one)")]
    NoService,
    /// `client=` was asked of an http service without client-ip affinity.
    #[error(
        "client= explains a tcp service or an http service with client-ip affinity; use cookie= (or key= for header or learn affinity) for this one"
    )]
    Tcp,
    /// `client=` is not an IP address.
    #[error("client= must be an IP address, e.g. client=192.0.2.7")]
    BadClient,
    /// No such service.
    #[error("{0}")]
    Unknown(String),
}

/// Explains the request described by `query` (the URL's query string).
///
/// # Errors
/// The query names no known http service.
pub fn explain(routing: &Routing, query: Option<&str>) -> Result<Explanation, ExplainError> {
    let mut service = None;
    let mut ask = Ask::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "service" => service = Some(v.into_owned()),
            "cookie" => ask.cookie = Some(v.into_owned()),
            "key" => ask.key = Some(v.into_owned()),
            "client" => ask.client = Some(v.into_owned()),
            _ => {}
        }
    }
    let name = service.ok_or(ExplainError::NoService)?;
    let route = routing.service(&name).map_err(|e| ExplainError::Unknown(e.to_string()))?;
    if ask.client.is_some() && route.spec.cookie.affinity != Affinity::ClientIp {
        return Err(ExplainError::Tcp);
    }
    let client = ask.client.as_deref().map(client_ip).transpose()?;
    Ok(explain_service(routing, &route, &ask, client))
}

/// The `client=` value as an address (surrounding spaces ignored).
fn client_ip(value: &str) -> Result<IpAddr, ExplainError> {
    value.trim().parse().map_err(|_| ExplainError::BadClient)
}

/// What the query says of the request.
#[derive(Debug, Default)]
struct Ask {
    /// sticky's cookie value.
    cookie: Option<String>,
    /// The hash affinity's value: the header's, or the application cookie's.
    key: Option<String>,
    /// The client's address, as given.
    client: Option<String>,
}

/// The request's hash-affinity key, taken by the proxy's own [`pin::affinity_key`] from the query's
/// value (as the header's, or the application cookie's) and address (as the connection's), with what
/// placed it (for [`Explanation::placed_by`]) and a phrase for the answer.
fn affinity_key(
    service: &ServiceRoute,
    pinned: Pinned,
    key: Option<&str>,
    client: Option<IpAddr>,
) -> Option<(u64, &'static str, String)> {
    let (by, what, cookie) = match &service.spec.cookie.affinity {
        Affinity::Cookie => return None,
        Affinity::Header(name) => ("header", format!("its {name} header"), None),
        Affinity::ClientIp => ("client_ip", format!("its address {}", client?), None),
        Affinity::Learn(app) => {
            ("app_cookie", format!("the application's cookie {app}"), key.map(|v| format!("{app}={v}")))
        }
    };
    let peer = ClientAddr::new(client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    let first = |_: &str| key.map(str::as_bytes);
    let hashed = pin::affinity_key(service, pinned, first, |_| None, cookie.as_deref().map(str::as_bytes), &peer)?;
    Some((hashed, by, what))
}

fn explain_service(routing: &Routing, service: &ServiceRoute, ask: &Ask, client: Option<IpAddr>) -> Explanation {
    let header = ask.cookie.as_deref().map(|v| format!("{}={v}", service.spec.cookie.name));
    let read = pin::read(&service.keys, service, header.as_deref().map(str::as_bytes));
    let view = View::new(service, &routing.clock);
    let cursor = service.live.peek_cursor();
    let keyed = affinity_key(service, read.pinned, ask.key.as_deref(), client);
    let decision = match &keyed {
        Some((key, ..)) => {
            let factor = service.spec.cookie.load.balance_factor;
            policy::hash::decide(&service.ring, *key, service.spec.strict, &view, factor, &[])
        }
        None => policy::decide(read.pinned, service.spec.strict, &view, &service.schedule, || cursor, &[]),
    };
    let id = |i: usize| service.backends.get(i).map(|b| b.id.0.to_string());
    let addr = |i: usize| service.backends.get(i).map(|b| b.addr.to_string());
    let state = |i: usize| {
        service.backends.get(i).map_or_else(String::new, |b| {
            format!("{} ({}, {})", b.id, b.live.health_label(), if b.draining() { "draining" } else { "active" })
        })
    };
    let (cookie_state, pinned) = match read.pinned {
        _ if !service.spec.cookie.enabled => ("absent", None),
        Pinned::Absent => ("absent", None),
        Pinned::Invalid(_) => ("invalid", None),
        Pinned::Gone => ("gone", None),
        Pinned::Backend(i) if read.legacy => ("legacy", id(i)),
        Pinned::Backend(i) => ("valid", id(i)),
    };
    let what = match read.pinned {
        _ if !service.spec.cookie.enabled => {
            "the service is not sticky (no cookie), so every request is a new pick".to_owned()
        }
        Pinned::Absent => "no sticky cookie: a new session".to_owned(),
        Pinned::Invalid(fault) => format!("the cookie is refused ({fault})"),
        Pinned::Gone => "the cookie is valid but names a backend the service no longer has".to_owned(),
        Pinned::Backend(i) if read.legacy => format!("a Traefik cookie naming {} (legacy window open)", state(i)),
        Pinned::Backend(i) if read.older_key => {
            format!(
                "a valid cookie, signed with an older key of the ring (re-issued with the newest), for {}",
                state(i)
            )
        }
        Pinned::Backend(i) => format!("a valid cookie for {}", state(i)),
    };
    let by_ring = keyed.as_ref().map(|(key, _, what)| {
        let home = service.ring.home(*key).map_or_else(|| "no backend".to_owned(), state);
        format!("placed by {what} (hash affinity: its home on the ring is {home})")
    });
    let (outcome, backend, reason, then) = match decision {
        Decision::Keep(i) => ("keep", Some(i), None, format!("served by {}", state(i))),
        Decision::Pin { backend, repin } if keyed.is_some() => (
            "pin",
            Some(backend),
            repin.map(policy::RepinReason::as_str),
            format!(
                "the home cannot take it ({}): the next owner along the ring, {}",
                repin.map_or("-", policy::RepinReason::as_str),
                state(backend)
            ),
        ),
        Decision::Pin { backend, repin } => (
            "pin",
            Some(backend),
            repin.map(policy::RepinReason::as_str),
            match repin {
                Some(r) => format!("re-pinned ({}) to {} by round robin", r.as_str(), state(backend)),
                None => format!("pinned to {} by round robin (the next new session's turn)", state(backend)),
            },
        ),
        Decision::Reject(Reject::NoBackend) => {
            ("reject", None, Some("no_backend"), "answered 503: no backend is usable".to_owned())
        }
        Decision::Reject(Reject::Strict(r)) => (
            "reject",
            None,
            Some("strict"),
            format!("answered 503: the pinned backend is out ({}) and the service is strict", r.as_str()),
        ),
    };
    Explanation {
        service: service.spec.name.clone(),
        cookie: cookie_state,
        pinned,
        outcome,
        backend: backend.and_then(id),
        addr: backend.and_then(addr),
        reason,
        placed_by: keyed.as_ref().map_or("cookie", |(_, by, _)| by),
        why: match by_ring {
            Some(ring) => format!("{ring}; {then}; sticky's cookie: {what}"),
            None => format!("{what}; {then}"),
        },
    }
}

/// The answer for a tcp service.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TcpExplanation {
    /// The service's name.
    pub service: String,
    /// `tcp`.
    pub mode: &'static str,
    /// The client as asked.
    pub client: String,
    /// `kernel` or `user-space`.
    pub path: &'static str,
    /// `affinity` (a fresh entry of a backend still in the set), `maglev` (the slot's owner) or
    /// `none` (no backend: the connection is refused).
    pub outcome: &'static str,
    /// The backend that would be connected to.
    pub backend: Option<String>,
    /// The client's Maglev slot (of 16381).
    pub slot: u32,
    /// The slot's owner.
    pub maglev: Option<String>,
    /// `read`, or `not consulted` (kernel path, before the service reached the kernel's maps).
    pub affinity: &'static str,
    /// The same in a sentence.
    pub why: String,
}

/// Whether `query` asks about a tcp client (`client=`).
#[must_use]
pub fn asks_client(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, _)| k == "client")
}

/// Explains a new connection of `client=IP` to the tcp service `service=S`.
///
/// # Errors
/// No service named, an unknown one, or a client that is not an address.
pub fn explain_tcp(tcp: &TcpMetrics, query: Option<&str>) -> Result<TcpExplanation, ExplainError> {
    let mut service = None;
    let mut client = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "service" => service = Some(v.into_owned()),
            "client" => client = Some(v.into_owned()),
            _ => {}
        }
    }
    let name = service.ok_or(ExplainError::NoService)?;
    let ip = client_ip(client.as_deref().unwrap_or_default())?;
    // tcp mode's key: the whole address (an IPv6 client by all 128 bits), a v4-mapped one unmapped
    let key = crate::cidr::unmap(ip);
    let placement = tcp.placement(&name, key).ok_or_else(|| {
        ExplainError::Unknown(format!("no tcp service {name:?}; tcp services: {}", tcp.service_names().join(", ")))
    })?;
    Ok(describe(&name, ip, &placement))
}

/// The explanation of a placement (pure: tested without a runtime).
#[must_use]
pub fn describe(service: &str, client: IpAddr, p: &Placement) -> TcpExplanation {
    let path = if p.kernel { "kernel" } else { "user-space" };
    let slot_owner = p.maglev.map_or_else(|| "no backend".to_owned(), |b| b.to_string());
    let maglev = format!("Maglev slot {} -> {slot_owner}", p.slot);
    let (outcome, backend, why) = match (p.affinity, p.maglev) {
        (Some(a), _) => (
            "affinity",
            Some(a),
            match p.affinity_age {
                Some(age) => format!(
                    "affinity entry -> backend {a} (last used {} s ago, timeout {}), still a backend: it wins over {maglev}",
                    age.as_secs(),
                    humantime::format_duration(p.affinity_timeout)
                ),
                None => format!(
                    "a fresh affinity entry (timeout {}) names {a}, still a backend: it wins over {maglev}",
                    humantime::format_duration(p.affinity_timeout)
                ),
            },
        ),
        (None, Some(m)) => {
            let affinity = if !p.affinity_read {
                "affinity not consulted (the service is not in the kernel's maps yet)"
            } else if p.affinity_timeout.is_zero() {
                "affinity is off for this service"
            } else {
                "no fresh affinity entry for this client"
            };
            ("maglev", Some(m), format!("{affinity}; {maglev}"))
        }
        (None, None) => ("none", None, "the service has no backend: the connection is refused".to_owned()),
    };
    TcpExplanation {
        service: service.to_owned(),
        mode: "tcp",
        client: client.to_string(),
        path,
        outcome,
        backend: backend.map(|b| b.to_string()),
        slot: p.slot,
        maglev: p.maglev.map(|b| b.to_string()),
        affinity: if p.affinity_read { "read" } else { "not consulted" },
        why: format!("{path} path (VIP {}): {why}", p.vip),
    }
}

#[cfg(test)]
mod tests;
