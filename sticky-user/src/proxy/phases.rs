//! The life of one request, as phases in order: route → pin → forward → respond (logging and counting
//! where each decision is made).
//!
//! - **route**: the service whose rule matches host and path (404 if none).
//! - **pin**: read and verify the sticky cookie, and decide: keep the pinned backend, pick one for a
//!   new session, re-pin (with a reason), or refuse (503). See [`crate::policy`].
//! - **forward**: take an idle upstream connection or connect; a failed connect pauses the backend and
//!   the decision is made again without it (nothing was sent, so any method is safe to retry); a
//!   reused connection found closed before the request was written is replaced the same way.
//! - **respond**: drop hop-by-hop headers, add `Set-Cookie` for a new or refreshed pin (appended: the
//!   application's own cookies stay), count, and hand upgrades to [`super::upgrade`].

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::BytesMut;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;

use super::{
    ConnCtx, ProxyBody,
    forward::{self, Upstream},
    rescue::{Kind, ProxyError},
    upgrade,
};
use crate::{
    cookie,
    policy::{self, Decision, Pinned, Reject, RepinReason},
    state::{ServiceRoute, View},
};

/// Connect attempts per request (each on another backend, or a fresh connection after a stale one).
const MAX_ATTEMPTS: usize = 4;

/// Serves one request; never fails (errors become responses through [`ProxyError::respond`]).
pub async fn handle(ctx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let service = match route(&ctx, &req) {
        Ok(s) => s,
        Err(e) => {
            if matches!(e.kind, Kind::NoRoute) {
                ctx.shared.stats.unrouted();
            }
            return e.respond();
        }
    };
    let pin = pin(&ctx, &service, &mut req);
    match forward(&ctx, &service, pin, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(service = %service.spec.name, error = %e, "request failed");
            let resp = e.respond();
            service.live.stats.local_response(resp.status().as_u16());
            resp
        }
    }
}

// === route ===

/// The service whose rule matches the request's host and path.
pub(super) fn route<B>(ctx: &ConnCtx, req: &Request<B>) -> Result<Arc<ServiceRoute>, ProxyError> {
    let host_header = req.headers().get(header::HOST);
    if req.version() == Version::HTTP_11 && host_header.is_none() && req.uri().authority().is_none() {
        return Err(ProxyError::new(Kind::MissingHost));
    }
    let table = ctx.shared.table();
    if let [only] = table.services.as_slice() {
        if only.spec.rule == crate::model::Rule::Always {
            return Ok(only.clone());
        }
    }
    let host = req.uri().host().or_else(|| host_header.and_then(|h| h.to_str().ok())).map(strip_port);
    table.route(host, req.uri().path()).cloned().ok_or_else(|| ProxyError::new(Kind::NoRoute))
}

/// `example.com:80` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

// === pin ===

/// What the cookie said and what was decided first.
struct PinState {
    pinned: Pinned,
    decision: Decision,
    /// Issue time of a valid cookie (for refresh).
    issued: Option<u32>,
    /// The pin came from a Traefik cookie (`http://IP:PORT`): answer with sticky's own cookie.
    legacy: bool,
}

fn now_secs() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Reads the sticky cookie (the first valid one if several), removes it from the request (the backend
/// never sees it, like HAProxy's `indirect`), and decides.
fn pin(ctx: &ConnCtx, service: &ServiceRoute, req: &mut Request<Incoming>) -> PinState {
    if !service.spec.cookie.enabled {
        // not a sticky service (Traefik labels without stickiness): every request is a new pick
        let pinned = Pinned::Absent;
        return PinState { pinned, decision: decide(ctx, service, pinned, &[]), issued: None, legacy: false };
    }
    let name = service.spec.cookie.name.as_bytes();
    let now = if service.max_age.is_some() { now_secs() } else { 0 };
    let mut found = false;
    let mut result: Option<Result<cookie::Pin, cookie::Fault>> = None;
    let mut legacy: Option<usize> = None;
    for value in req.headers().get_all(header::COOKIE) {
        for (n, v) in cookie::pairs(value.as_bytes()) {
            if n != name {
                continue;
            }
            found = true;
            let decoded = ctx.shared.keys.decode(v, now, service.max_age);
            if decoded.is_err() && legacy.is_none() && service.spec.cookie.legacy_traefik {
                legacy = cookie::legacy_traefik_addr(v)
                    .and_then(|addr| service.backends.iter().position(|b| b.addr == addr));
            }
            if decoded.is_ok() || result.is_none() {
                result = Some(decoded);
            }
            if decoded.is_ok() {
                break;
            }
        }
        if matches!(result, Some(Ok(_))) {
            break;
        }
    }
    if found {
        strip_cookie(req, name);
    }
    let (pinned, issued, legacy) = match (result, legacy) {
        (None, _) => (Pinned::Absent, None, false),
        // a migrating client's Traefik cookie naming a current task: keep it there, once
        (Some(Err(_)), Some(i)) => (Pinned::Backend(i), None, true),
        (Some(Err(fault)), None) => (Pinned::Invalid(fault), None, false),
        (Some(Ok(p)), _) => match service.find(p.tag) {
            Some(i) => (Pinned::Backend(i), Some(p.issued), false),
            None => (Pinned::Gone, None, false),
        },
    };
    PinState { pinned, decision: decide(ctx, service, pinned, &[]), issued, legacy }
}

/// The policy's decision on the service's current backends, without the backends in `exclude`.
fn decide(ctx: &ConnCtx, service: &ServiceRoute, pinned: Pinned, exclude: &[usize]) -> Decision {
    let view = View::new(service, &ctx.shared.clock);
    policy::decide(pinned, service.spec.strict, &view, &service.schedule, || service.next_cursor(), exclude)
}

fn strip_cookie(req: &mut Request<Incoming>, name: &[u8]) {
    strip_cookie_headers(req.headers_mut(), name);
}

/// Removes the cookie `name` from the `Cookie` headers (other cookies stay).
pub(super) fn strip_cookie_headers(headers: &mut http::HeaderMap, name: &[u8]) {
    // the common case, a single Cookie header holding only sticky's cookie: drop it, no allocation
    let mut all = headers.get_all(header::COOKIE).iter();
    if let (Some(only), None) = (all.next(), all.next()) {
        if cookie::pairs(only.as_bytes()).all(|(n, _)| n == name) && !only.as_bytes().contains(&b';') {
            headers.remove(header::COOKIE);
            return;
        }
    }
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    headers.remove(header::COOKIE);
    for v in values {
        if let Some(rest) = cookie::without(v.as_bytes(), name) {
            if let Ok(rest) = HeaderValue::from_bytes(&rest) {
                headers.append(header::COOKIE, rest);
            }
        }
    }
}

// === forward ===

async fn forward(
    ctx: &ConnCtx,
    service: &ServiceRoute,
    mut pin: PinState,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let upgrade = forward::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    forward::prepare_request(&mut parts, &ctx.client, upgrade);
    let mut req = Some(Request::from_parts(parts, body));
    let mut exclude: Vec<usize> = Vec::new();
    let mut last_connect: Option<(String, forward::ConnectError)> = None;
    for _ in 0..MAX_ATTEMPTS {
        let index = match pin.decision {
            Decision::Keep(i) | Decision::Pin { backend: i, .. } => i,
            Decision::Reject(r) => return Err(reject(service, r, last_connect)),
        };
        let Some(backend) = service.backends.get(index) else { break };
        let Some(mut up) = upstream(ctx, service, index, &mut exclude, &mut last_connect).await else {
            // the connect failed and paused the backend: decide again without it
            pin.decision = decide(ctx, service, pin.pinned, &exclude);
            continue;
        };
        let Some(mut request) = req.take() else { break };
        if !request.headers().contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&backend.addr.to_string()) {
                request.headers_mut().insert(header::HOST, v);
            }
        }
        let sent = tokio::time::timeout(ctx.settings.timeouts.response, up.try_send_request(request)).await;
        match sent {
            Ok(Ok(mut resp)) => {
                let upgraded = upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                if upgraded {
                    if let Some(client) = client_upgrade {
                        let splicer = ctx.shared.splice.get().filter(|_| service.spec.splice.upgrades);
                        upgrade::spawn(client, hyper::upgrade::on(&mut resp), &backend.live, splicer.cloned());
                    }
                } else if !upgrade {
                    ctx.put_upstream(backend.addr, up);
                }
                return Ok(respond(ctx, service, &pin, index, resp, upgraded));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // the connection closed before the request was written (a reused connection the
                // backend had just closed): nothing was sent, try again on a fresh one
                Some(back) => {
                    tracing::debug!(backend = %backend.id, error = %e.error(), "reused upstream connection was closed; retrying");
                    req = Some(back);
                }
                None => {
                    return Err(ProxyError::new(Kind::Upstream {
                        backend: backend.id.to_string(),
                        source: e.into_error(),
                    }));
                }
            },
            // dropping the send future closed that upstream connection; it is not reused
            Err(_) => return Err(ProxyError::new(Kind::ResponseTimeout { backend: backend.id.to_string() })),
        }
    }
    Err(match last_connect {
        Some((backend, e)) => ProxyError::new(Kind::Connect {
            service: service.spec.name.clone(),
            backend,
            timed_out: e.timed_out,
            source: e.source,
        }),
        None => ProxyError::new(Kind::NoBackend { service: service.spec.name.clone() }),
    })
}

/// A ready upstream connection to backend `index`, or `None` after a failed connect (recorded in
/// `exclude`, the backend's health and `last`).
async fn upstream(
    ctx: &ConnCtx,
    service: &ServiceRoute,
    index: usize,
    exclude: &mut Vec<usize>,
    last: &mut Option<(String, forward::ConnectError)>,
) -> Option<Upstream> {
    let backend = service.backends.get(index)?;
    // an idle connection: wait until it can take a request (it may still be finishing a response body)
    while let Some(mut up) = ctx.take_upstream(backend.addr) {
        if up.ready().await.is_ok() {
            return Some(up);
        }
    }
    match forward::connect(backend.addr, ctx.settings.timeouts.connect).await {
        Ok(up) => {
            if backend.live.connect_ok(&ctx.shared.clock) {
                tracing::info!(service = %service.spec.name, backend = %backend.id, "backend is back: connect succeeded");
            }
            Some(up)
        }
        Err(e) => {
            let pause = backend.live.connect_failed(&ctx.shared.clock, service.spec.backoff);
            backend.live.stats.connect_error();
            tracing::warn!(
                service = %service.spec.name, backend = %backend.id, addr = %backend.addr, timed_out = e.timed_out,
                error = ?e.source.as_ref().map(ToString::to_string), pause_ms = pause.as_millis() as u64,
                "connect to backend failed; backend paused"
            );
            exclude.push(index);
            *last = Some((backend.id.to_string(), e));
            None
        }
    }
}

fn reject(service: &ServiceRoute, r: Reject, last_connect: Option<(String, forward::ConnectError)>) -> ProxyError {
    match r {
        Reject::Strict(reason) => {
            service.live.stats.reject(true);
            tracing::info!(service = %service.spec.name, reason = reason.as_str(), "strict: pinned backend unavailable, answering 503");
            ProxyError::new(Kind::StrictUnavailable { service: service.spec.name.clone(), reason })
        }
        Reject::NoBackend => {
            service.live.stats.reject(false);
            match last_connect {
                // every candidate refused: say what the last one did
                Some((backend, e)) if e.timed_out => ProxyError::new(Kind::Connect {
                    service: service.spec.name.clone(),
                    backend,
                    timed_out: true,
                    source: e.source,
                }),
                _ => ProxyError::new(Kind::NoBackend { service: service.spec.name.clone() }),
            }
        }
    }
}

// === respond ===

fn respond(
    ctx: &ConnCtx,
    service: &ServiceRoute,
    pin: &PinState,
    index: usize,
    mut resp: Response<Incoming>,
    upgraded: bool,
) -> Response<ProxyBody> {
    let Some(backend) = service.backends.get(index) else { return resp.map(ProxyBody::Upstream) };
    forward::strip_hop_by_hop(resp.headers_mut(), upgraded);
    let set_cookie = match pin.decision {
        Decision::Pin { repin, .. } => {
            backend.live.stats.session();
            if let Some(reason) = repin {
                service.live.stats.repin(reason);
                log_repin(service, pin.pinned, &backend.id.0, reason);
            }
            service.spec.cookie.enabled
        }
        Decision::Keep(_) => {
            backend.live.stats.pinned();
            // only cookies with a Max-Age are refreshed; session cookies cost no clock read here
            pin.legacy
                || service.max_age.is_some()
                    && pin.issued.is_some_and(|issued| cookie::needs_refresh(issued, now_secs(), service.max_age))
        }
        Decision::Reject(_) => false,
    };
    if set_cookie {
        // one allocation: the header line is built in place and handed to the header map as is
        let mut value = [0u8; cookie::ENCODED_LEN];
        ctx.shared.keys.encode_into(backend.tag, now_secs(), &mut value);
        let name = service.spec.cookie.name.as_bytes();
        let mut line = BytesMut::with_capacity(name.len() + 1 + value.len() + service.cookie_attrs.len());
        line.extend_from_slice(name);
        line.extend_from_slice(b"=");
        line.extend_from_slice(&value);
        line.extend_from_slice(service.cookie_attrs.as_bytes());
        if let Ok(v) = HeaderValue::from_maybe_shared(line.freeze()) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    backend.live.stats.response(resp.status().as_u16());
    resp.map(ProxyBody::Upstream)
}

/// Re-pin lines logged per worker and second. Normally every re-pin gets its line; past this rate (a
/// client replaying garbage cookies, or thousands of sessions leaving a dead backend at once, or a client
/// that ignores Set-Cookie) the rest are summed in one line, and `sticky_repins_total` counts them all.
const REPIN_LINES_PER_SECOND: u32 = 20;

thread_local! {
    /// (second of the window, lines logged in it, lines suppressed in it)
    static REPIN_LOG: std::cell::Cell<(u64, u32, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
}

fn log_repin(service: &ServiceRoute, pinned: Pinned, to: &str, reason: RepinReason) {
    let from = match pinned {
        Pinned::Backend(i) => service.backends.get(i).map_or("-", |b| &b.id.0),
        _ => "-",
    };
    let second = u64::from(now_secs());
    let allowed = REPIN_LOG.with(|c| {
        let (window, lines, suppressed) = c.get();
        if window != second {
            if suppressed > 0 {
                tracing::info!(suppressed, "session re-pins not logged (over {REPIN_LINES_PER_SECOND} a second); sticky_repins_total counts them all");
            }
            c.set((second, 1, 0));
            true
        } else if lines < REPIN_LINES_PER_SECOND {
            c.set((window, lines + 1, suppressed));
            true
        } else {
            c.set((window, lines, suppressed + 1));
            false
        }
    });
    if !allowed {
        return;
    }
    tracing::info!(service = %service.spec.name, from, to, reason = reason.as_str(), "session re-pinned");
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
