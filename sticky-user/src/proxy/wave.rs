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
    cookie::Tag,
    policy::{self, Decision, Pinned},
    state::{ServiceRoute, View},
};

/// Services a connection keeps a wave for at once; more (a client spread over many services on one
/// connection) drop the oldest pick, which only costs that service a second session.
const MAX_PICKS: usize = 4;

/// One service's pick: the backend its cookie-less requests go to, and the `Set-Cookie` line the
/// first of them got.
#[derive(Debug)]
struct Pick {
    service: Box<str>,
    tag: Tag,
    set_cookie: Option<Vec<u8>>,
}

/// The first wave of one client connection (empty, without allocation, until a cookie-less request).
#[derive(Debug, Default)]
pub struct FirstWave {
    picks: Vec<Pick>,
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
        if matches!(cookie.pinned, Pinned::Backend(_)) {
            // the client sent its cookie: the wave is over, the cookie pins from now on
            self.picks.retain(|p| *p.service != *service.spec.name);
            return state(pin::decide(proxy, service, cookie.pinned, &[]));
        }
        let followed = self
            .find(service)
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
            self.note(service, backend);
        }
        state(decision)
    }

    /// The `Set-Cookie` line for a request of the wave answered by backend `index`: the one the wave's
    /// first answer got, so that every request of the wave carries the same value; `line` is what
    /// [`pin::answered`] made (recorded if it is the first, or if the wave moved to `index`).
    #[must_use]
    pub fn set_cookie(
        &mut self,
        service: &ServiceRoute,
        state: &PinState,
        index: usize,
        line: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        // a kept pin's refresh (or no cookie at all) is not the wave's business
        let (Decision::Pin { .. }, Some(line)) = (state.decision, &line) else { return line };
        let line = line.clone();
        let Some(tag) = service.backends.get(index).map(|b| b.tag) else { return Some(line) };
        let Some(pick) = self.picks.iter_mut().find(|p| *p.service == *service.spec.name) else { return Some(line) };
        if pick.tag == tag
            && let Some(first) = &pick.set_cookie
        {
            return Some(first.clone());
        }
        pick.tag = tag;
        pick.set_cookie = Some(line.clone());
        Some(line)
    }

    fn find(&self, service: &ServiceRoute) -> Option<&Pick> {
        self.picks.iter().find(|p| *p.service == *service.spec.name)
    }

    fn note(&mut self, service: &ServiceRoute, index: usize) {
        let Some(tag) = service.backends.get(index).map(|b| b.tag) else { return };
        self.picks.retain(|p| *p.service != *service.spec.name);
        if self.picks.len() >= MAX_PICKS {
            self.picks.remove(0);
        }
        self.picks.push(Pick { service: service.spec.name.as_str().into(), tag, set_cookie: None });
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
        assert!(wave.picks.is_empty(), "a valid cookie ends the wave");
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
