//! The life of one request, as phases in order: route -> pin -> forward -> respond (logging and
//! counting where each decision is made).
//!
//! - **route**: the service whose rule matches host and path (404 if none).
//! - **pin** ([`super::pin`]): read and verify the sticky cookie, and decide: keep the pinned
//!   backend, pick one for a new session, re-pin (with a reason), or refuse (503).
//! - **forward** ([`super::forward`]): an idle upstream connection or a new one; a failed connect
//!   pauses the backend and the decision is made again without it.
//! - **respond**: drop hop-by-hop headers, add `Set-Cookie` for a new or refreshed pin (appended: the
//!   application's own cookies stay), count.

use std::sync::Arc;

use bytes::BytesMut;
use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;

use super::{
    body::ProxyBody,
    conn::ConnCtx,
    forward::{Forwarded, forward},
    headers,
    pin::{PinState, now_secs, pin},
    rescue::ProxyError,
};
use crate::{
    cookie,
    model::Rule,
    policy::{Decision, Pinned, RepinReason},
    state::ServiceRoute,
};

/// Serves one request; never fails (errors become responses through [`ProxyError::respond`]).
pub async fn handle(ctx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let service = match route(&ctx, &req) {
        Ok(s) => s,
        Err(e) => {
            if matches!(e, ProxyError::NoRoute) {
                ctx.proxy.stats.unrouted();
            }
            return e.respond();
        }
    };
    let mut pin = pin(&ctx, &service, req.headers_mut());
    match forward(&ctx, &service, &mut pin, req).await {
        Ok(forwarded) => respond(&ctx, &service, &pin, forwarded),
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
///
/// # Errors
/// An HTTP/1.1 request without a host, or no service matches.
pub fn route<B>(ctx: &ConnCtx, req: &Request<B>) -> Result<Arc<ServiceRoute>, ProxyError> {
    let host_header = req.headers().get(header::HOST);
    if req.version() == Version::HTTP_11 && host_header.is_none() && req.uri().authority().is_none() {
        return Err(ProxyError::MissingHost);
    }
    let table = ctx.proxy.routing.table();
    if let [only] = table.services.as_slice() {
        if only.spec.rule == Rule::Always {
            return Ok(only.clone());
        }
    }
    // the rule ignores a port in the host
    let host = req.uri().host().or_else(|| host_header.and_then(|h| h.to_str().ok()));
    table.route(host, req.uri().path()).cloned().ok_or(ProxyError::NoRoute)
}

// === respond ===

fn respond(ctx: &ConnCtx, service: &ServiceRoute, pin: &PinState, forwarded: Forwarded) -> Response<ProxyBody> {
    let Forwarded { index, response: mut resp, upgraded } = forwarded;
    let Some(backend) = service.backends.get(index) else { return resp.map(ProxyBody::Upstream) };
    headers::strip_hop_by_hop(resp.headers_mut(), upgraded);
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
        ctx.proxy.routing.keys.encode_into(backend.tag, now_secs(), &mut value);
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
