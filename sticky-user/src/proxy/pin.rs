//! The pin phase: read and verify the sticky cookie (the first valid one; a Traefik value where the
//! service allows it) and decide with [`crate::policy`]: keep the pinned backend, pin a new session,
//! re-pin, or refuse. [`read`] is the one reader of the cookie, for the proxy path and the splice
//! hand-off alike; the cookie is removed from the request by the rewrite
//! ([`super::h1::write_request`]).

use std::time::{SystemTime, UNIX_EPOCH};

use std::net::IpAddr;

use super::{
    conn::Proxy,
    h1::{ClientAddr, PriorHops},
};
use crate::{
    cookie::{self, Keys},
    model::Affinity,
    policy::{self, Decision, Pinned, RepinReason},
    state::{ServiceRoute, View},
};

/// What the cookie said and what was decided first.
#[derive(Debug)]
pub struct PinState {
    /// What the cookie names.
    pub pinned: Pinned,
    /// The policy's decision (made again without a backend whose connect failed).
    pub decision: Decision,
    /// First-pin time of a valid cookie (kept when it is re-issued).
    pub issued: Option<u32>,
    /// Last (re-)issue time of a valid cookie (for refresh).
    pub seen: Option<u32>,
    /// The pin came from a Traefik cookie (`http://IP:PORT`), or from a cookie signed with an older
    /// key of the ring: answer with sticky's own cookie, signed with the newest key.
    pub legacy: bool,
}

/// What a request's sticky cookie names, before any decision.
#[derive(Clone, Copy, Debug)]
pub struct CookiePin {
    /// The backend it names, or why it names none.
    pub pinned: Pinned,
    /// First-pin time of a valid cookie.
    pub issued: Option<u32>,
    /// Last (re-)issue time of a valid cookie.
    pub seen: Option<u32>,
    /// The backend was named by a Traefik cookie value, not by sticky's own cookie.
    pub legacy: bool,
    /// sticky's cookie verified with an older key of the ring (a rotation is under way).
    pub older_key: bool,
    /// The request carried a cookie of that name at all.
    pub found: bool,
}

/// Seconds since the UNIX epoch, the time base of cookies.
#[must_use]
pub fn now_secs() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Reads the service's sticky cookie from the request's `Cookie` field values: the first valid one if
/// several; else, where the service honours Traefik's cookies, a value `http://IP:PORT` naming a
/// current backend.
#[must_use]
pub fn read<'a>(keys: &Keys, service: &ServiceRoute, cookies: impl IntoIterator<Item = &'a [u8]>) -> CookiePin {
    let absent =
        CookiePin { pinned: Pinned::Absent, issued: None, seen: None, legacy: false, older_key: false, found: false };
    if !service.spec.cookie.enabled {
        // not a sticky service (Traefik labels without stickiness): every request is a new pick
        return absent;
    }
    let name = service.spec.cookie.name.as_bytes();
    let now = if service.lifetimes.any() { now_secs() } else { 0 };
    let mut found = false;
    let mut result: Option<Result<cookie::Pin, cookie::Fault>> = None;
    let mut legacy: Option<usize> = None;
    for value in cookies {
        for (n, v) in cookie::pairs(value) {
            if n != name {
                continue;
            }
            found = true;
            let decoded = keys.decode_within(v, now, &service.lifetimes);
            if decoded.is_err() && legacy.is_none() && service.spec.cookie.legacy_honoured(std::time::SystemTime::now())
            {
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
    let mut older_key = false;
    let mut seen = None;
    let (pinned, issued, legacy) = match (result, legacy) {
        (None, _) => (Pinned::Absent, None, false),
        // a migrating client's Traefik cookie naming a current task (inside the legacy window): keep it
        // there, and re-issue sticky's own cookie
        (Some(Err(_)), Some(i)) => (Pinned::Backend(i), None, true),
        (Some(Err(fault)), None) => (Pinned::Invalid(fault), None, false),
        (Some(Ok(p)), _) => match service.find_keyed(p.key, p.tag) {
            Some(i) => {
                older_key = p.key > 0;
                seen = Some(p.seen);
                (Pinned::Backend(i), Some(p.issued), false)
            }
            None => (Pinned::Gone, None, false),
        },
    };
    CookiePin { pinned, issued, seen, legacy, older_key, found }
}

/// Reads the sticky cookie and decides.
#[must_use]
pub fn pin<'a>(proxy: &Proxy, service: &ServiceRoute, cookies: impl IntoIterator<Item = &'a [u8]>) -> PinState {
    let cookie = read(&service.keys, service, cookies);
    let decision = decide(proxy, service, cookie.pinned, &[]);
    PinState {
        pinned: cookie.pinned,
        decision,
        issued: cookie.issued,
        seen: cookie.seen,
        legacy: cookie.legacy || cookie.older_key,
    }
}

/// The policy's decision on the service's current backends, without the backends in `exclude`.
#[must_use]
pub fn decide(proxy: &Proxy, service: &ServiceRoute, pinned: Pinned, exclude: &[usize]) -> Decision {
    let view = View::new(service, &proxy.routing.clock);
    policy::decide(pinned, service.spec.strict, &view, &service.schedule, || service.next_cursor(), exclude)
}

/// The request's hash-affinity key (issue 18), if its service places requests by one and the request
/// carries it: the value of the service's header, the client's address, or (without a valid sticky
/// cookie) the application's session cookie. `first(name)` gives the first value of a request
/// header, `last(name)` its last value; `cookies` are the `Cookie` field values. The value is hashed,
/// never parsed (the address is parsed only to hash one spelling of it).
#[must_use]
pub fn affinity_key<'a>(
    service: &ServiceRoute,
    pinned: Pinned,
    first: impl FnOnce(&str) -> Option<&'a [u8]>,
    last: impl FnOnce(&str) -> Option<&'a [u8]>,
    cookies: impl IntoIterator<Item = &'a [u8]>,
    client: &ClientAddr,
) -> Option<u64> {
    match &service.spec.cookie.affinity {
        Affinity::Cookie => None,
        Affinity::Header(name) => first(name).filter(|v| !v.is_empty()).map(|v| service.ring.key(v)),
        Affinity::ClientIp => Some(client_key(service, client_ip(client, last("x-forwarded-for")))),
        // a valid sticky cookie pins a learned session; the app's cookie places only the others
        Affinity::Learn(_) if matches!(pinned, Pinned::Backend(_)) => None,
        Affinity::Learn(app) => cookies
            .into_iter()
            .flat_map(cookie::pairs)
            .find(|(n, v)| *n == app.as_bytes() && !v.is_empty())
            .map(|(_, v)| service.ring.key(v)),
    }
}

/// The client-ip affinity key of the address `ip` (an IPv4-mapped IPv6 address as its IPv4 address,
/// so a dual-stack listener keys a client the same way on both).
fn client_key(service: &ServiceRoute, ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => service.ring.key(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => service.ring.key(&v4.octets()),
            None => service.ring.key(&v6.octets()),
        },
    }
}

/// The client's address for client-ip affinity: the last `X-Forwarded-For` hop when the peer is a
/// trusted proxy (`--trusted-proxies`: the client it saw), else the connection's (after the PROXY
/// protocol); an IPv4-mapped IPv6 address as its IPv4 address.
fn client_ip(client: &ClientAddr, xff_last: Option<&[u8]>) -> IpAddr {
    let forwarded = (client.prior() == PriorHops::Keep)
        .then_some(xff_last)
        .flatten()
        .and_then(|v| v.rsplit(|&b| b == b',').next())
        .and_then(|hop| std::str::from_utf8(hop.trim_ascii()).ok())
        .and_then(|hop| hop.parse::<IpAddr>().ok());
    let ip = forwarded.unwrap_or_else(|| client.origin().client.ip());
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The decision for a request with hash-affinity key `key`, without the backends in `exclude`.
#[must_use]
pub fn decide_keyed(proxy: &Proxy, service: &ServiceRoute, key: u64, exclude: &[usize]) -> Decision {
    let view = View::new(service, &proxy.routing.clock);
    let factor = service.spec.cookie.load.balance_factor;
    policy::hash::decide(&service.ring, key, service.spec.strict, &view, factor, exclude)
}

/// Decides again without the backends in `exclude` (a connect failed): by the key if the request
/// has one, else by the cookie.
#[must_use]
pub fn redecide(
    proxy: &Proxy,
    service: &ServiceRoute,
    pin: &PinState,
    key: Option<u64>,
    exclude: &[usize],
) -> Decision {
    match key {
        Some(key) => decide_keyed(proxy, service, key, exclude),
        None => decide(proxy, service, pin.pinned, exclude),
    }
}

/// Whether a response's `Set-Cookie` values start the application's session that a `learn` service
/// follows (a non-empty value for the learned name).
pub fn sets_learned_cookie<'a>(service: &ServiceRoute, set_cookies: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let Affinity::Learn(app) = &service.spec.cookie.affinity else { return false };
    set_cookies.into_iter().any(|line| {
        let pair = line.split(|&b| b == b';').next().unwrap_or_default();
        cookie::pairs(pair).next().is_some_and(|(n, v)| n == app.as_bytes() && !v.is_empty())
    })
}

/// [`answered_by`] for a request placed by its cookie alone.
#[must_use]
pub fn answered(service: &ServiceRoute, pin: &PinState, index: usize, tls: bool) -> Option<Vec<u8>> {
    answered_by(service, pin, index, tls, false, false)
}

/// The backend at `index` answered: count the request (a new session, with its re-pin reason, or a
/// pinned one) and return the `Set-Cookie` value (`name=value; attributes`) to send, for a new pin or
/// a refresh; `tls`: the client came over TLS (the cookie is `Secure` unless the service turns it off).
/// `hashed`: the request was placed by its affinity key; `learned`: the response sets the
/// application cookie a `learn` service follows.
///
/// Header and client-ip affinity set no cookie for a request placed by its key (the key places it
/// again); `learn` sets sticky's cookie when the response starts the application's session, or when
/// the app's cookie placed the request (binding that session to its backend from then on).
#[must_use]
pub fn answered_by(
    service: &ServiceRoute,
    pin: &PinState,
    index: usize,
    tls: bool,
    hashed: bool,
    learned: bool,
) -> Option<Vec<u8>> {
    let backend = service.backends.get(index)?;
    let affinity = &service.spec.cookie.affinity;
    let new_cookie = match affinity {
        Affinity::Cookie => true,
        Affinity::Header(_) | Affinity::ClientIp => !hashed,
        Affinity::Learn(_) => hashed || learned,
    };
    // a kept session keeps its first-pin time (the absolute timeout counts from it); a new one starts now
    let mut issued = None;
    let set_cookie = match pin.decision {
        Decision::Pin { repin, .. } => {
            backend.live.stats.session();
            if let Some(reason) = repin {
                service.live.stats.repin(reason);
                log_repin(service, pin.pinned, &backend.id.0, reason);
            }
            service.spec.cookie.enabled && new_cookie
        }
        Decision::Keep(_) if hashed => {
            backend.live.stats.pinned();
            service.spec.cookie.enabled && matches!(affinity, Affinity::Learn(_))
        }
        Decision::Keep(_) => {
            backend.live.stats.pinned();
            issued = pin.issued;
            // only cookies with a Max-Age or an idle timeout are refreshed; others cost no clock read here
            pin.legacy
                || service.lifetimes.any()
                    && pin.seen.is_some_and(|seen| service.lifetimes.needs_refresh(seen, now_secs()))
        }
        Decision::Reject(_) => false,
    };
    if !set_cookie {
        return None;
    }
    let mut value = [0u8; cookie::ENCODED_LEN];
    let now = now_secs();
    service.keys.encode_into(backend.tag, issued.unwrap_or(now), now, &mut value);
    let name = service.spec.cookie.name.as_bytes();
    let attrs = if tls { &service.cookie_attrs_tls } else { &service.cookie_attrs };
    let mut line = Vec::with_capacity(name.len() + 1 + value.len() + attrs.len());
    line.extend_from_slice(name);
    line.push(b'=');
    line.extend_from_slice(&value);
    line.extend_from_slice(attrs.as_bytes());
    Some(line)
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
    if matches!(reason, RepinReason::InvalidCookie) {
        // the client's own cookie at fault, one line per request at most: debug only, and
        // sticky_repins_total{reason="invalid_cookie"} counts them all (issue 14 point 7)
        tracing::debug!(service = %service.spec.name, to, reason = reason.as_str(), "session re-pinned");
        return;
    }
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
    let affinity = service.spec.cookie.affinity.kind();
    tracing::info!(service = %service.spec.name, affinity, from, to, reason = reason.as_str(), "session re-pinned");
}
