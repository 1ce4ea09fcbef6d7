//! The pin phase: read and verify the sticky cookie (the first valid one; a Traefik value where the
//! service allows it), remove it from the request, and decide with [`crate::policy`]: keep the
//! pinned backend, pin a new session, re-pin, or refuse. The one reader of the cookie, for the
//! proxy path and the splice hand-off alike.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, header};

use super::conn::ConnCtx;
use crate::{
    cookie::{self, Keys},
    policy::{self, Decision, Pinned},
    state::{ServiceRoute, View},
};

/// What the cookie said and what was decided first.
#[derive(Debug)]
pub struct PinState {
    /// What the cookie names.
    pub pinned: Pinned,
    /// The policy's decision (made again without a backend whose connect failed).
    pub decision: Decision,
    /// Issue time of a valid cookie (for refresh).
    pub issued: Option<u32>,
    /// The pin came from a Traefik cookie (`http://IP:PORT`): answer with sticky's own cookie.
    pub legacy: bool,
}

/// What a request's sticky cookie names, before any decision.
#[derive(Clone, Copy, Debug)]
pub struct CookiePin {
    /// The backend it names, or why it names none.
    pub pinned: Pinned,
    /// Issue time of a valid cookie.
    pub issued: Option<u32>,
    /// The backend was named by a Traefik cookie value, not by sticky's own cookie.
    pub legacy: bool,
    /// The request carried a cookie of that name at all.
    pub found: bool,
}

/// Seconds since the UNIX epoch, the time base of cookies.
#[must_use]
pub fn now_secs() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Reads the service's sticky cookie from `headers`: the first valid one if several; else, where
/// the service honours Traefik's cookies, a value `http://IP:PORT` naming a current backend.
#[must_use]
pub fn read(keys: &Keys, service: &ServiceRoute, headers: &HeaderMap) -> CookiePin {
    let absent = CookiePin { pinned: Pinned::Absent, issued: None, legacy: false, found: false };
    if !service.spec.cookie.enabled {
        // not a sticky service (Traefik labels without stickiness): every request is a new pick
        return absent;
    }
    let name = service.spec.cookie.name.as_bytes();
    let now = if service.max_age.is_some() { now_secs() } else { 0 };
    let mut found = false;
    let mut result: Option<Result<cookie::Pin, cookie::Fault>> = None;
    let mut legacy: Option<usize> = None;
    for value in headers.get_all(header::COOKIE) {
        for (n, v) in cookie::pairs(value.as_bytes()) {
            if n != name {
                continue;
            }
            found = true;
            let decoded = keys.decode(v, now, service.max_age);
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
    CookiePin { pinned, issued, legacy, found }
}

/// Reads the sticky cookie, removes it from the request (the backend never sees it, like `HAProxy`'s
/// `indirect`), and decides.
pub fn pin(ctx: &ConnCtx, service: &ServiceRoute, headers: &mut HeaderMap) -> PinState {
    let cookie = read(&ctx.proxy.routing.keys, service, headers);
    if cookie.found {
        strip_cookie_headers(headers, service.spec.cookie.name.as_bytes());
    }
    let decision = decide(ctx, service, cookie.pinned, &[]);
    PinState { pinned: cookie.pinned, decision, issued: cookie.issued, legacy: cookie.legacy }
}

/// The policy's decision on the service's current backends, without the backends in `exclude`.
pub fn decide(ctx: &ConnCtx, service: &ServiceRoute, pinned: Pinned, exclude: &[usize]) -> Decision {
    let view = View::new(service, &ctx.proxy.routing.clock);
    policy::decide(pinned, service.spec.strict, &view, &service.schedule, || service.next_cursor(), exclude)
}

/// Removes the cookie `name` from the `Cookie` headers (other cookies stay).
pub fn strip_cookie_headers(headers: &mut HeaderMap, name: &[u8]) {
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
