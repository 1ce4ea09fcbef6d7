//! A connection's first wave (issue 15): the requests without a valid cookie that one client
//! connection sends before it sends a cookie back all go to one backend and all get the same cookie
//! value, per service. A page's first requests, sent in parallel on one HTTP/2 connection (or one
//! after the other on an HTTP/1.1 keep-alive connection that has not stored the cookie yet), so start
//! one session, not several (haproxy#2295).
//!
//! The wave's pick is taken when the first cookie-less request is decided (not when it is answered:
//! parallel requests are decided before any answer), and moved if that request ends on another
//! backend (a failed connect re-pins). A request with a valid cookie for the service ends its wave:
//! from then on the client is pinned by its cookie like any other. A pick is only followed while
//! the policy would keep a session on its backend (a draining backend keeps its wave as it keeps its
//! sessions: their cookies are out); otherwise the request is decided as usual and becomes the new
//! pick. Followers take no round-robin turn, so the waves of other connections stay spread.

use super::{
    conn::Proxy,
    pin::{self, PinState},
};
use crate::{
    cookie::{self, Tag},
    policy::{self, Decision, Pinned},
    state::{ServiceRoute, View},
};

/// Services a connection keeps a wave for at once; more (a client spread over many services on one
/// connection) drop the oldest pick, which only costs that service a second session.
const MAX_PICKS: usize = 4;

/// One service's pick: the backend its cookie-less requests go to, and the cookie value the first of
/// them got. Kept small and inline (no allocation of its own): an idle keep-alive connection that
/// made a cookie-less request keeps its picks until it closes (issue 12: its idle memory).
#[derive(Clone, Copy, Debug)]
struct Pick {
    /// The service, by a hash of its name ([`service_key`]): two services whose names collide would
    /// only share a wave's pick, and a pick is followed only to a backend of the request's own
    /// service ([`ServiceRoute::find`]).
    service: u64,
    tag: Tag,
    /// The value of the `Set-Cookie` the wave's first answer carried.
    value: Option<[u8; cookie::ENCODED_LEN]>,
}

/// The first wave of one client connection: nothing (a null slice pointer, no allocation) until a
/// cookie-less request, then one small allocation sized to its picks (one for a connection of one
/// service).
#[derive(Debug, Default)]
pub struct FirstWave {
    picks: Option<Box<[Pick]>>,
}

/// A service's key in a wave: FNV-1a of its name (stable across routing-table publishes, no
/// allocation, unlike the name itself).
fn service_key(service: &ServiceRoute) -> u64 {
    service.spec.name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl FirstWave {
    /// Reads the sticky cookie and decides like [`pin::pin`]; a request without a valid cookie follows
    /// the connection's pick for the service when the policy would keep a session there.
    #[must_use]
    pub fn pin<'a>(
        &mut self,
        proxy: &Proxy,
        service: &ServiceRoute,
        cookies: impl IntoIterator<Item = &'a [u8]>,
    ) -> PinState {
        let cookie = pin::read(&service.keys, service, cookies);
        let state = |decision| PinState {
            pinned: cookie.pinned,
            decision,
            issued: cookie.issued,
            seen: cookie.seen,
            legacy: cookie.legacy || cookie.older_key,
        };
        if !service.spec.cookie.enabled {
            return state(pin::decide(proxy, service, cookie.pinned, &[]));
        }
        let key = service_key(service);
        if matches!(cookie.pinned, Pinned::Backend(_)) {
            // the client sent its cookie: the wave is over, the cookie pins from now on
            self.forget(key);
            return state(pin::decide(proxy, service, cookie.pinned, &[]));
        }
        let followed = self
            .find(key)
            .and_then(|p| service.find(p.tag))
            .filter(|&i| matches!(pin::decide(proxy, service, Pinned::Backend(i), &[]), Decision::Keep(_)));
        if let Some(i) = followed {
            // the re-pin reason of this request's own cookie (invalid, gone...), without moving the
            // round-robin cursor: a follower takes no new pick
            let view = View::new(service, &proxy.routing.clock);
            let own = policy::decide(cookie.pinned, service.spec.strict, &view, &service.schedule, || 0, &[]);
            if let Decision::Pin { repin, .. } = own {
                return state(Decision::Pin { backend: i, repin });
            }
        }
        let decision = pin::decide(proxy, service, cookie.pinned, &[]);
        if let Decision::Pin { backend, .. } = decision {
            self.note(service, key, backend);
        }
        state(decision)
    }

    /// The `Set-Cookie` line for a request of the wave answered by backend `index`: the one the wave's
    /// first answer got, so that every request of the wave carries the same value; `line` is what
    /// [`pin::answered`] made (its value recorded if it is the first, or if the wave moved to `index`;
    /// else replaced in place by the recorded one: no copy of the line).
    #[must_use]
    pub fn set_cookie(
        &mut self,
        service: &ServiceRoute,
        state: &PinState,
        index: usize,
        line: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        // a kept pin's refresh (or no cookie at all) is not the wave's business
        if !matches!(state.decision, Decision::Pin { .. }) {
            return line;
        }
        let mut line = line?;
        let Some(tag) = service.backends.get(index).map(|b| b.tag) else { return Some(line) };
        let key = service_key(service);
        let Some(pick) = self.picks.as_deref_mut().and_then(|p| p.iter_mut().find(|p| p.service == key)) else {
            return Some(line);
        };
        // the line is `name=value; attributes`, the value ENCODED_LEN bytes (pin::answered)
        let at = service.spec.cookie.name.len() + 1;
        let Some(value) = line.get_mut(at..at + cookie::ENCODED_LEN) else { return Some(line) };
        if pick.tag == tag
            && let Some(first) = &pick.value
        {
            value.copy_from_slice(first);
            return Some(line);
        }
        pick.tag = tag;
        let mut first = [0u8; cookie::ENCODED_LEN];
        first.copy_from_slice(value);
        pick.value = Some(first);
        Some(line)
    }

    fn find(&self, key: u64) -> Option<&Pick> {
        self.picks.as_deref()?.iter().find(|p| p.service == key)
    }

    /// Ends the service's wave (the allocation goes with the last pick).
    fn forget(&mut self, key: u64) {
        let Some(picks) = self.picks.as_deref() else { return };
        if picks.iter().any(|p| p.service == key) {
            let kept: Box<[Pick]> = picks.iter().filter(|p| p.service != key).copied().collect();
            self.picks = (!kept.is_empty()).then_some(kept);
        }
    }

    fn note(&mut self, service: &ServiceRoute, key: u64, index: usize) {
        let Some(tag) = service.backends.get(index).map(|b| b.tag) else { return };
        let pick = Pick { service: key, tag, value: None };
        if let Some(p) = self.picks.as_deref_mut().and_then(|p| p.iter_mut().find(|p| p.service == key)) {
            *p = pick;
            return;
        }
        let old = self.picks.as_deref().unwrap_or_default();
        // the oldest goes past MAX_PICKS
        let skip = (old.len() + 1).saturating_sub(MAX_PICKS);
        let picks: Box<[Pick]> = old.iter().skip(skip).copied().chain(std::iter::once(pick)).collect();
        self.picks = Some(picks);
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::Arc, time::Duration};

    use super::*;
    use crate::{
        config::{Limits, Timeouts},
        model::{
            AdminState, Backend, BackendId, BackendProtocol, BackoffSpec, Catalog, CookieSpec, HealthCheckSpec,
            HttpService, Rule, ServiceId, ServiceSpec, SpliceSpec, TlsSpec,
        },
        proxy::conn::Settings,
        state::Routing,
        stats::ProxyStats,
    };

    fn proxy() -> Proxy {
        let routing = Arc::new(Routing::new(crate::cookie::Keys::random()));
        let spec = ServiceSpec {
            id: ServiceId("web".into()),
            name: "web".into(),
            priority: 0,
            rule: Rule::Always,
            cookie: CookieSpec::default(),
            strict: false,
            health: HealthCheckSpec::default(),
            backoff: BackoffSpec::default(),
            splice: SpliceSpec::default(),
            tls: TlsSpec::default(),
            backend_protocol: BackendProtocol::default(),
            proxy_protocol: crate::proxy_protocol::Version::Off,
        };
        let backends = (1..=3u16)
            .map(|i| Backend {
                id: BackendId(format!("b{i}").into()),
                addr: SocketAddr::from(([127, 0, 0, 1], i)),
                weight: 1,
                admin: AdminState::Active,
            })
            .collect();
        routing.publish(&Catalog { tcp: vec![], http: vec![HttpService { spec, backends }] });
        let second = Duration::from_secs(1);
        let timeouts = Timeouts {
            connect: second,
            response: second,
            idle: second,
            client: second,
            backend: second,
            tunnel: second,
            shutdown: second,
        };
        Proxy {
            routing,
            stats: Arc::new(ProxyStats::default()),
            splicer: None,
            settings: Settings {
                limits: Limits { max_header_size: 8192, max_headers: 100, max_connections: 1, max_spliced: 1 },
                timeouts,
            },
            challenges: Arc::default(),
            https_port: None,
            h2: crate::config::Http2::default(),
            clients: crate::config::ClientTrust::default(),
        }
    }

    fn backend(state: &PinState) -> usize {
        match state.decision {
            Decision::Keep(i) | Decision::Pin { backend: i, .. } => i,
            Decision::Reject(r) => panic!("a backend must be picked, not {r:?}"),
        }
    }

    #[test]
    fn cookie_less_requests_of_a_connection_follow_its_first_pick_until_a_cookie_comes() {
        let proxy = proxy();
        let service = proxy.routing.table().services[0].clone();
        let mut wave = FirstWave::default();
        let first = wave.pin(&proxy, &service, []);
        let i = backend(&first);
        let line = wave.set_cookie(&service, &first, i, pin::answered(&service, &first, i, false));
        let line = line.expect("a new session gets the cookie");
        for _ in 0..5 {
            let next = wave.pin(&proxy, &service, []);
            assert_eq!(backend(&next), i, "the wave stays on its backend");
            let again = wave.set_cookie(&service, &next, i, pin::answered(&service, &next, i, false));
            assert_eq!(again.as_ref(), Some(&line), "and every answer carries the first cookie");
        }
        // another connection is balanced as usual
        let other = FirstWave::default().pin(&proxy, &service, []);
        assert_ne!(backend(&other), i, "round robin moves on for a new connection");
        // the client sends its cookie: pinned by it, the wave ends
        let cookie = line.split(|&b| b == b';').next().expect("name=value").to_vec();
        let pinned = wave.pin(&proxy, &service, [cookie.as_slice()]);
        assert!(matches!(pinned.decision, Decision::Keep(k) if k == i), "{:?}", pinned.decision);
        assert!(wave.picks.is_none(), "a valid cookie ends the wave (and frees its picks)");
    }

    #[test]
    fn a_wave_costs_an_idle_connection_two_words_and_one_small_allocation() {
        // what every idle keep-alive connection carries (client::Connection), and what one that made a
        // cookie-less request keeps allocated until it closes
        assert_eq!(std::mem::size_of::<FirstWave>(), 2 * std::mem::size_of::<usize>(), "a slice's pointer and length");
        assert!(std::mem::size_of::<Pick>() <= 64, "a pick is {} bytes", std::mem::size_of::<Pick>());
        let proxy = proxy();
        let service = proxy.routing.table().services[0].clone();
        let mut wave = FirstWave::default();
        let first = wave.pin(&proxy, &service, []);
        assert_eq!(wave.picks.as_deref().map(<[Pick]>::len), Some(1), "one service, one pick");
        let i = backend(&first);
        let line = wave.set_cookie(&service, &first, i, pin::answered(&service, &first, i, false));
        let next = wave.pin(&proxy, &service, []);
        assert_eq!(wave.picks.as_deref().map(<[Pick]>::len), Some(1), "a follower adds no pick");
        // a line made for the follower (another value: another second, or the same) gets the first's
        let mut other = pin::answered(&service, &next, i, false).expect("a Pin gets a Set-Cookie");
        let at = service.spec.cookie.name.len() + 1;
        other[at] = if other[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(wave.set_cookie(&service, &next, i, Some(other)), line, "the follower's value is the first's");
    }

    #[test]
    fn a_refresh_of_a_kept_pin_passes_untouched() {
        let proxy = proxy();
        let service = proxy.routing.table().services[0].clone();
        let mut wave = FirstWave::default();
        let keep = PinState {
            pinned: Pinned::Backend(0),
            decision: Decision::Keep(0),
            issued: Some(1),
            seen: Some(1),
            legacy: false,
        };
        let line = Some(b"sticky=refreshed".to_vec());
        assert_eq!(wave.set_cookie(&service, &keep, 0, line.clone()), line);
    }
}
