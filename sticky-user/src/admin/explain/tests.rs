use std::net::SocketAddr;

use super::{ExplainError, describe, explain, explain_tcp};
use crate::{
    cookie::Keys,
    model::{
        AdminState, Affinity, Backend, BackendId, BackoffSpec, Catalog, CookieSpec, HealthCheckSpec, HttpService, Rule,
        ServiceId, ServiceSpec,
    },
    state::Routing,
};

fn routing(strict: bool) -> Routing {
    let routing = Routing::new(Keys::from_secret(b"explain-test-secret-0123456789").expect("key"));
    let spec = ServiceSpec {
        id: ServiceId("web-id".into()),
        name: "web".into(),
        priority: Rule::Always.default_priority(),
        rule: Rule::Always,
        cookie: CookieSpec::default(),
        strict,
        health: HealthCheckSpec::default(),
        backoff: BackoffSpec::default(),
        splice: crate::model::SpliceSpec::default(),
        tls: crate::model::TlsSpec::default(),
        backend_protocol: crate::model::BackendProtocol::default(),
        proxy_protocol: crate::proxy_protocol::Version::Off,
    };
    let backends = [("w1", 1), ("w2", 2), ("w3", 3)]
        .iter()
        .map(|(id, port)| Backend {
            id: BackendId((*id).into()),
            addr: SocketAddr::from(([127, 0, 0, 1], *port)),
            weight: 1,
            admin: AdminState::Active,
        })
        .collect();
    routing.publish(&Catalog { tcp: vec![], http: vec![HttpService { spec, backends }] });
    routing
}

/// sticky's cookie value for backend `id` of the service, as the proxy would issue it now.
fn cookie_for(routing: &Routing, id: &str) -> String {
    let service = routing.service("web").expect("web");
    let b = service.backends.iter().find(|b| &*b.id.0 == id).expect("backend");
    routing.keys().encode(b.tag, crate::proxy::pin::now_secs())
}

#[test]
fn a_valid_cookie_is_kept_and_a_drained_backend_still_serves_its_sessions() {
    let r = routing(false);
    let q = format!("service=web&cookie={}", cookie_for(&r, "w2"));
    let e = explain(&r, Some(&q)).expect("explained");
    assert_eq!((e.cookie, e.outcome, e.backend.as_deref(), e.reason), ("valid", "keep", Some("w2"), None));
    assert_eq!(e.addr.as_deref(), Some("127.0.0.1:2"));
    assert!(e.why.contains("a valid cookie for w2 (up, active)"), "{}", e.why);
    r.set_draining("web", "w2", true).expect("drain");
    let e = explain(&r, Some(&q)).expect("explained");
    assert_eq!((e.outcome, e.backend.as_deref()), ("keep", Some("w2")), "draining keeps pinned sessions");
    assert!(e.why.contains("w2 (up, draining)"), "{}", e.why);
}

#[test]
fn a_new_session_gets_the_next_turn_without_moving_it() {
    let r = routing(false);
    let first = explain(&r, Some("service=web")).expect("explained");
    let again = explain(&r, Some("service=web-id")).expect("by id too");
    assert_eq!(first, again, "explaining moves no cursor");
    assert_eq!((first.cookie, first.outcome, first.reason), ("absent", "pin", None));
    // the proxy's next new session goes where explain said
    let service = r.service("web").expect("web");
    let view = crate::state::View::new(&service, &r.clock);
    let picked =
        crate::policy::pick(&view, &service.schedule, service.next_cursor(), &[]).expect("a backend is usable");
    assert_eq!(first.backend.as_deref(), Some(&*service.backends[picked].id.0));
}

#[test]
fn forged_and_gone_cookies_are_re_pins_and_strict_rejects() {
    let r = routing(false);
    let mut forged = cookie_for(&r, "w1");
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let e = explain(&r, Some(&format!("service=web&cookie={forged}"))).expect("explained");
    assert_eq!((e.cookie, e.outcome, e.reason), ("invalid", "pin", Some("invalid_cookie")));
    assert!(e.why.starts_with("the cookie is refused"), "{}", e.why);

    // a valid cookie of a backend this service does not have: sign a tag no backend of it carries
    let service = r.service("web").expect("web");
    let tag = crate::cookie::Tag(0x0005_eed0_f90e);
    assert!(service.find(tag).is_none(), "no backend carries the tag");
    let gone = r.keys().encode(tag, crate::proxy::pin::now_secs());
    let e = explain(&r, Some(&format!("service=web&cookie={gone}"))).expect("explained");
    assert_eq!((e.cookie, e.outcome, e.reason), ("gone", "pin", Some("backend_gone")));

    let strict = routing(true);
    let e = explain(&strict, Some(&format!("service=web&cookie={gone}"))).expect("explained");
    assert_eq!((e.outcome, e.backend, e.reason), ("reject", None, Some("strict")));
}

#[test]
fn bad_queries_say_what_to_ask() {
    let r = routing(false);
    assert_eq!(explain(&r, None), Err(ExplainError::NoService));
    assert_eq!(explain(&r, Some("service=nope")).map(|_| ()).map_err(|e| e.to_string().contains("nope")), Err(true));
    assert_eq!(explain(&r, Some("service=web&client=10.0.0.1")), Err(ExplainError::Tcp), "a cookie service");
}

/// The test service with `affinity`.
fn keyed(affinity: Affinity) -> Routing {
    let r = routing(false);
    let service = r.service("web").expect("web");
    let mut spec = service.spec.clone();
    spec.cookie.affinity = affinity;
    let backends = service
        .backends
        .iter()
        .map(|b| Backend { id: b.id.clone(), addr: b.addr, weight: 1, admin: AdminState::Active })
        .collect();
    r.publish(&Catalog { tcp: vec![], http: vec![HttpService { spec, backends }] });
    r
}

/// Where the proxy places `key` on the service's ring (its home: every backend is up here).
fn home(r: &Routing, key: u64) -> String {
    let service = r.service("web").expect("web");
    let i = service.ring.home(key).expect("a backend");
    service.backends[i].id.0.to_string()
}

#[test]
fn header_affinity_is_explained_by_the_ring_home_of_its_value() {
    let r = keyed(Affinity::Header("X-Session-Id".into()));
    let service = r.service("web").expect("web");
    let mut homes = std::collections::BTreeSet::new();
    for id in 0..30 {
        let value = format!("user-{id}");
        let e = explain(&r, Some(&format!("service=web&key={value}"))).expect("explained");
        assert_eq!((e.placed_by, e.outcome), ("header", "keep"), "{e:?}");
        let want = home(&r, service.ring.key(value.as_bytes()));
        assert_eq!(e.backend.as_deref(), Some(&*want));
        assert!(e.why.starts_with("placed by its X-Session-Id header (hash affinity"), "{}", e.why);
        homes.insert(want);
    }
    assert_eq!(homes.len(), 3, "30 values over 3 backends");
    // without the header's value: the cookie path, round robin for a request without a cookie
    let e = explain(&r, Some("service=web")).expect("explained");
    assert_eq!((e.placed_by, e.outcome), ("cookie", "pin"));
}

#[test]
fn client_ip_affinity_keys_a_mapped_address_as_its_ipv4_one() {
    let r = keyed(Affinity::ClientIp);
    let v4 = explain(&r, Some("service=web&client=192.0.2.7")).expect("explained");
    let mapped = explain(&r, Some("service=web&client=::ffff:192.0.2.7")).expect("explained");
    assert_eq!((v4.placed_by, v4.outcome), ("client_ip", "keep"));
    assert_eq!(v4.backend, mapped.backend);
    let service = r.service("web").expect("web");
    let key = service.ring.key(&[192, 0, 2, 7]);
    assert_eq!(v4.backend.as_deref(), Some(&*home(&r, key)));
    assert_eq!(explain(&r, Some("service=web&client=nope")), Err(ExplainError::BadClient));
}

#[test]
fn learn_affinity_follows_a_valid_cookie_before_the_apps_value() {
    let r = keyed(Affinity::Learn("JSESSIONID".into()));
    let e = explain(&r, Some("service=web&key=abc123")).expect("explained");
    assert_eq!((e.placed_by, e.outcome), ("app_cookie", "keep"));
    let service = r.service("web").expect("web");
    assert_eq!(e.backend.as_deref(), Some(&*home(&r, service.ring.key(b"abc123"))));
    // a valid sticky cookie pins the learned session: the app's value is not consulted
    let q = format!("service=web&key=abc123&cookie={}", cookie_for(&r, "w3"));
    let e = explain(&r, Some(&q)).expect("explained");
    assert_eq!((e.placed_by, e.outcome, e.backend.as_deref()), ("cookie", "keep", Some("w3")));
}

fn placement(kernel: bool, affinity: Option<&str>, maglev: Option<&str>) -> crate::tcp::Placement {
    crate::tcp::Placement {
        kernel,
        vip: "10.0.0.1:5432".parse().expect("an address"),
        slot: 4242,
        maglev: maglev.map(|m| m.parse().expect("an address")),
        affinity: affinity.map(|a| a.parse().expect("an address")),
        affinity_read: true,
        affinity_timeout: std::time::Duration::from_secs(300),
        affinity_age: None,
    }
}

#[test]
fn tcp_affinity_wins_over_maglev_in_user_space() {
    let client = "192.0.2.7".parse().expect("an address");
    let e = describe("db", client, &placement(false, Some("10.0.1.2:5432"), Some("10.0.1.3:5432")));
    assert_eq!(e.outcome, "affinity");
    assert_eq!(e.backend.as_deref(), Some("10.0.1.2:5432"));
    assert_eq!(e.maglev.as_deref(), Some("10.0.1.3:5432"));
    assert_eq!(e.affinity, "read");
    assert!(e.why.contains("fresh affinity entry") && e.why.contains("Maglev slot 4242"), "{}", e.why);
}

#[test]
fn tcp_without_an_entry_is_the_maglev_slot() {
    let client = "192.0.2.7".parse().expect("an address");
    let e = describe("db", client, &placement(false, None, Some("10.0.1.3:5432")));
    assert_eq!((e.outcome, e.backend.as_deref(), e.slot), ("maglev", Some("10.0.1.3:5432"), 4242));
    assert!(e.why.contains("no fresh affinity entry"), "{}", e.why);
}

#[test]
fn tcp_kernel_entry_names_its_backend_and_age() {
    let client = "192.0.2.7".parse().expect("an address");
    let mut p = placement(true, Some("10.0.1.2:5432"), Some("10.0.1.3:5432"));
    p.affinity_age = Some(std::time::Duration::from_millis(42_900));
    let e = describe("db", client, &p);
    assert_eq!((e.path, e.affinity, e.outcome), ("kernel", "read", "affinity"));
    assert_eq!(e.backend.as_deref(), Some("10.0.1.2:5432"));
    assert!(e.why.contains("affinity entry -> backend 10.0.1.2:5432 (last used 42 s ago, timeout 5m)"), "{}", e.why);
    // read, but no fresh entry of a current backend: the Maglev slot
    let m = describe("db", client, &placement(true, None, Some("10.0.1.3:5432")));
    assert_eq!((m.affinity, m.outcome, m.backend.as_deref()), ("read", "maglev", Some("10.0.1.3:5432")));
    assert!(m.why.contains("no fresh affinity entry"), "{}", m.why);
}

#[test]
fn tcp_kernel_path_before_the_maps_says_affinity_was_not_consulted() {
    let client = "192.0.2.7".parse().expect("an address");
    let mut p = placement(true, None, Some("10.0.1.3:5432"));
    p.affinity_read = false;
    let e = describe("db", client, &p);
    assert_eq!((e.path, e.affinity, e.outcome), ("kernel", "not consulted", "maglev"));
    assert!(e.why.contains("affinity not consulted"), "{}", e.why);
    let none = describe("db", client, &placement(true, None, None));
    assert_eq!((none.outcome, none.backend), ("none", None));
}

#[test]
fn tcp_explain_needs_an_address() {
    let metrics = crate::tcp::TcpMetrics::default();
    assert_eq!(explain_tcp(&metrics, Some("service=db&client=nope")).map(|_| ()), Err(ExplainError::BadClient));
    assert_eq!(explain_tcp(&metrics, Some("client=192.0.2.7")).map(|_| ()), Err(ExplainError::NoService));
    let unknown = explain_tcp(&metrics, Some("service=db&client=192.0.2.7")).map(|_| ());
    assert!(matches!(unknown, Err(ExplainError::Unknown(_))), "{unknown:?}");
}
