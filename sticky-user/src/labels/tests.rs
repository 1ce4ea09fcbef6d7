//! Label parsing across the three dialects: opt-in, precedence, Traefik's cookie names, errors.

use std::time::Duration;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn seed_recipe_labels_give_traefiks_cookie_name() {
    let svc = parse(
        "whoami-service",
        &labels(&[
            ("traefik.docker.network", "whoaminet"),
            ("traefik.port", "8000"),
            ("traefik.frontend.rule", "PathPrefix:/"),
            ("traefik.backend.loadbalancer.stickiness", "true"),
        ]),
    )
    .unwrap()
    .expect("traefik labels opt in");
    assert_eq!(svc.port, Some(8000));
    assert_eq!(svc.network.as_deref(), Some("whoaminet"));
    assert!(svc.sticky);
    assert_eq!(svc.cookie.name.as_deref(), Some("_a49bc"), "the name the seed tutorial's curl shows");
    assert!(svc.route.rule.matches(Some("localhost"), "/anything"));
    assert_eq!(svc.dialects, vec![Dialect::TraefikV1]);
    assert!(svc.ignored.is_empty(), "{:?}", svc.ignored);
}

#[test]
fn v1_cookie_name_label_and_old_sticky_flag() {
    let svc = parse(
        "app",
        &labels(&[
            ("traefik.backend.loadbalancer.sticky", "true"),
            ("traefik.backend.loadbalancer.stickiness.cookieName", "my cookie"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert!(svc.sticky);
    assert_eq!(svc.cookie.name.as_deref(), Some("my_cookie"));
}

#[test]
fn traefik_labels_without_stickiness_balance_without_pinning() {
    let svc = parse("app", &labels(&[("traefik.port", "80")])).unwrap().unwrap();
    assert!(!svc.sticky);
    assert_eq!(svc.cookie.name, None);
}

#[test]
fn v2_labels() {
    let svc = parse(
        "stack_web",
        &labels(&[
            ("traefik.enable", "true"),
            ("traefik.http.routers.web.rule", "Host(`web.example`)"),
            ("traefik.http.routers.web.entrypoints", "http"),
            ("traefik.http.services.web.loadbalancer.server.port", "8080"),
            ("traefik.http.services.web.loadbalancer.sticky.cookie.httponly", "true"),
            ("traefik.http.services.web.loadbalancer.sticky.cookie.samesite", "strict"),
            ("traefik.http.services.web.loadbalancer.sticky.cookie.maxage", "3600"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(svc.port, Some(8080));
    assert!(svc.sticky);
    assert_eq!(svc.cookie.name.as_deref(), Some(traefik_cookie_name("web@docker").as_str()));
    assert_eq!(svc.cookie.http_only, Some(true));
    assert_eq!(svc.cookie.same_site, Some(SameSite::Strict));
    assert_eq!(svc.cookie.max_age, Some(Duration::from_secs(3600)));
    assert!(svc.route.rule.matches(Some("web.example"), "/"));
    assert!(!svc.route.rule.matches(Some("other.example"), "/"));
    // entry points are read now (HTTPS); `http` alone leaves the service plain
    assert!(svc.ignored.is_empty(), "{:?}", svc.ignored);
    assert!(!svc.tls.enabled);
}

#[test]
fn tls_labels_of_every_dialect_mark_the_service_https() {
    let parse_one = |list: &[(&str, &str)]| parse("stack_web", &labels(list)).unwrap().unwrap();
    let svc = parse_one(&[
        ("traefik.http.routers.web.rule", "Host(`web.example`)"),
        ("traefik.http.routers.web.tls", "true"),
        ("traefik.http.routers.web.tls.certresolver", "le"),
        ("traefik.http.routers.web.tls.domains[0].main", "web.example"),
        ("traefik.http.routers.web.tls.domains[0].sans", "www.web.example,*.cdn.example"),
        ("traefik.http.routers.web.entrypoints", "websecure"),
    ]);
    assert!(svc.tls.enabled);
    assert_eq!(svc.tls.cert_resolver.as_deref(), Some("le"));
    assert_eq!(svc.tls.domains, ["web.example", "www.web.example", "*.cdn.example"]);
    assert!(svc.ignored.is_empty(), "{:?}", svc.ignored);
    assert!(parse_one(&[("traefik.http.routers.web.entrypoints", "web,websecure")]).tls.enabled);
    assert!(!parse_one(&[("traefik.http.routers.web.tls", "false")]).tls.enabled);
    // v1
    assert!(parse_one(&[("traefik.port", "80"), ("traefik.frontend.entryPoints", "http,https")]).tls.enabled);
    assert!(!parse_one(&[("traefik.port", "80"), ("traefik.frontend.entryPoints", "http")]).tls.enabled);
    // sticky's own
    let svc = parse_one(&[
        ("sticky.tls.domains", "a.example, B.example."),
        ("sticky.tls.redirect", "true"),
        ("sticky.tls.hsts", "365d"),
    ]);
    assert!(svc.tls.enabled, "domains imply TLS");
    assert_eq!(svc.tls.domains, ["a.example", "b.example"]);
    assert_eq!(svc.tls.redirect, Some(true));
    assert_eq!(svc.tls.hsts, Some(Duration::from_secs(365 * 86_400)));
    assert!(parse_one(&[("sticky.tls", "true")]).tls.enabled);
    assert!(parse("x", &labels(&[("sticky.tls.domains", "a b")])).is_err(), "a bad name is an error naming the label");
    assert!(
        parse("x", &labels(&[("traefik.http.routers.r.tls.domains[x].main", "a")])).unwrap().unwrap().ignored.len()
            == 1
    );
}

#[test]
fn v2_explicit_name_and_provider_label() {
    let svc = parse(
        "web",
        &labels(&[
            ("traefik.http.services.web.loadbalancer.sticky.cookie", "true"),
            ("sticky.traefik.provider", "swarm"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(svc.cookie.name.as_deref(), Some(traefik_cookie_name("web@swarm").as_str()));
}

#[test]
fn sticky_labels_override_traefik_and_cover_every_option() {
    let svc = parse(
        "db",
        &labels(&[
            ("traefik.port", "80"),
            ("traefik.backend.loadbalancer.stickiness", "true"),
            ("sticky.enable", "true"),
            ("sticky.mode", "tcp"),
            ("sticky.port", "5432"),
            ("sticky.network", "backend"),
            ("sticky.rule", "Host(`db.example`)"),
            ("sticky.cookie.name", "sid"),
            ("sticky.cookie.path", "/app"),
            ("sticky.cookie.domain", "example.com"),
            ("sticky.cookie.secure", "true"),
            ("sticky.cookie.httponly", "false"),
            ("sticky.cookie.samesite", "none"),
            ("sticky.cookie.maxage", "0"),
            ("sticky.strict", "yes"),
            ("sticky.splice", "true"),
            ("sticky.splice.upgrades", "false"),
            ("sticky.healthcheck.path", "/health"),
            ("sticky.healthcheck.interval", "2s"),
            ("sticky.healthcheck.timeout", "500ms"),
            ("sticky.affinity.timeout", "30m"),
            ("sticky.listen.port", "15432"),
            ("sticky.cookie.identity", "slot"),
            ("sticky.cookie.legacy", "false"),
            ("sticky.cookie.legacy.until", "2027-03-31T20:00:00+02:00"),
            ("sticky.bogus", "1"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(svc.mode, Mode::Tcp);
    assert_eq!(svc.port, Some(5432));
    assert_eq!(svc.network.as_deref(), Some("backend"));
    assert_eq!(svc.cookie.name.as_deref(), Some("sid"));
    assert_eq!(svc.cookie.path.as_deref(), Some("/app"));
    assert_eq!(svc.cookie.domain.as_deref(), Some("example.com"));
    assert_eq!((svc.cookie.secure, svc.cookie.http_only), (Some(true), Some(false)));
    assert_eq!(svc.cookie.same_site, Some(SameSite::None));
    assert_eq!(svc.cookie.max_age, None, "0 means a session cookie");
    assert!(svc.strict);
    assert_eq!((svc.splice, svc.splice_upgrades), (Some(true), Some(false)));
    assert_eq!(svc.health.path.as_deref(), Some("/health"));
    assert_eq!(svc.health.interval, Some(Duration::from_secs(2)));
    assert_eq!(svc.health.timeout, Some(Duration::from_millis(500)));
    assert_eq!(svc.affinity_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(svc.listen_port, Some(15432));
    assert_eq!(svc.cookie.identity, Identity::Slot);
    assert_eq!(svc.cookie.legacy, Some(false));
    let until = std::time::UNIX_EPOCH + Duration::from_secs(1_806_516_000);
    assert_eq!(svc.cookie.legacy_until, Some(until), "2027-03-31T18:00:00Z");
    assert_eq!(svc.ignored, vec!["sticky.bogus".to_owned()]);
    assert_eq!(svc.dialects, vec![Dialect::TraefikV1, Dialect::Sticky]);
}

#[test]
fn opt_in_and_opt_out() {
    assert_eq!(parse("x", &labels(&[("com.example", "1")])).unwrap(), None);
    assert_eq!(parse("x", &labels(&[("traefik.port", "80"), ("traefik.enable", "false")])).unwrap(), None);
    assert_eq!(parse("x", &labels(&[("traefik.port", "80"), ("sticky.enable", "false")])).unwrap(), None);
    assert!(parse("x", &labels(&[("sticky.enable", "true")])).unwrap().is_some());
}

#[test]
fn bad_values_name_the_label() {
    let err = parse("x", &labels(&[("sticky.port", "http")])).unwrap_err();
    assert!(err.to_string().contains("sticky.port"), "{err}");
    let err = parse("x", &labels(&[("traefik.frontend.rule", "Method:GET")])).unwrap_err();
    assert!(err.to_string().contains("traefik.frontend.rule") && err.to_string().contains("Method"), "{err}");
    assert!(parse("x", &labels(&[("sticky.cookie.samesite", "sometimes")])).is_err());
    assert!(parse("x", &labels(&[("sticky.healthcheck.interval", "5 parsecs")])).is_err());
    assert!(parse("x", &labels(&[("sticky.cookie.identity", "container")])).is_err());
    let err = parse("x", &labels(&[("sticky.cookie.legacy.until", "next spring")])).unwrap_err();
    assert!(err.to_string().contains("sticky.cookie.legacy.until") && err.to_string().contains("RFC 3339"), "{err}");
    assert!(parse("x", &labels(&[("sticky.cookie.legacy.until", "2027-02-30")])).is_err());
}

#[test]
fn the_legacy_window_reads_a_date_or_a_date_time() {
    let until = |v: &str| {
        parse("x", &labels(&[("sticky.enable", "true"), ("sticky.cookie.legacy.until", v)]))
            .map(|s| s.and_then(|s| s.cookie.legacy_until))
    };
    let at = |secs| Some(std::time::UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(until("2027-03-31"), Ok(at(1_806_451_200)), "a date: its start in UTC");
    assert_eq!(until("2027-03-31T18:00:00Z"), Ok(at(1_806_516_000)));
    let none = parse("x", &labels(&[("sticky.enable", "true")])).unwrap().unwrap();
    assert_eq!((none.cookie.legacy, none.cookie.legacy_until), (None, None), "not set: the defaults decide");
}

#[test]
fn label_durations_take_the_flags_spellings_too() {
    let interval =
        |v: &str| parse("x", &labels(&[("sticky.healthcheck.interval", v)])).map(|s| s.and_then(|s| s.health.interval));
    assert_eq!(interval("1.5s"), Ok(Some(Duration::from_millis(1500))));
    assert_eq!(interval("1m30s"), Ok(Some(Duration::from_secs(90))), "the syntax flags always took");
    assert_eq!(interval("10"), Ok(Some(Duration::from_secs(10))));
    assert!(interval("-1s").is_err());
}

#[test]
fn readme_documents_every_sticky_label() {
    let readme = include_str!("../../../README.md");
    for label in sticky::LABELS {
        let row = format!("| `{}` | {} |", label.key, label.help);
        assert!(readme.contains(&row), "README.md has no row {row}");
    }
}

#[test]
fn v1_normalization() {
    assert_eq!(normalize_v1("my_stack_web"), "my-stack-web");
    assert_eq!(normalize_v1("--a..b--"), "a-b");
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_labels(k in "(sticky|traefik)\\.[a-z.]{0,40}", v in ".{0,20}") {
        let _ = parse("svc", &labels(&[(k.as_str(), v.as_str())]));
    }
}

#[test]
fn the_backend_protocol_comes_from_sticky_or_traefik_labels() {
    use crate::model::BackendProtocol;
    let sticky = parse("g", &labels(&[("sticky.port", "50051"), ("sticky.backend.protocol", "h2c")])).unwrap().unwrap();
    assert_eq!(sticky.backend_protocol, Some(BackendProtocol::H2c));
    let traefik = parse(
        "g",
        &labels(&[
            ("traefik.http.services.g.loadbalancer.server.port", "50051"),
            ("traefik.http.services.g.loadbalancer.server.scheme", "h2c"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(traefik.backend_protocol, Some(BackendProtocol::H2c));
    assert!(traefik.ignored.is_empty(), "server.scheme is understood: {:?}", traefik.ignored);
    let plain = parse("w", &labels(&[("sticky.port", "80")])).unwrap().unwrap();
    assert_eq!(plain.backend_protocol, None);
    let err = parse("g", &labels(&[("sticky.backend.protocol", "https")])).unwrap_err().to_string();
    assert!(err.contains("sticky.backend.protocol") && err.contains("h2c"), "{err}");
}

#[test]
fn proxy_protocol_labels_of_both_dialects_and_sticky_wins() {
    use crate::proxy_protocol::Version;
    let traefik = "traefik.http.services.web.loadbalancer.proxyprotocol.version";
    let svc = parse("app", &labels(&[(traefik, "2"), ("traefik.http.services.web.loadbalancer.server.port", "80")]))
        .unwrap()
        .expect("traefik labels opt in");
    assert_eq!(svc.proxy_protocol, Some(Version::V2));
    assert!(svc.ignored.is_empty(), "the Traefik label is understood: {:?}", svc.ignored);
    let svc = parse("app", &labels(&[(traefik, "2"), ("sticky.proxyprotocol", "off")])).unwrap().expect("opt in");
    assert_eq!(svc.proxy_protocol, Some(Version::Off), "sticky.* wins over Traefik's label");
    let svc = parse("app", &labels(&[("sticky.port", "80")])).unwrap().expect("opt in");
    assert_eq!(svc.proxy_protocol, None);
    let e = parse("app", &labels(&[("sticky.proxyprotocol", "v1")])).expect_err("v1 is not sent");
    assert!(e.to_string().contains("sticky.proxyprotocol"), "{e}");
}

#[test]
fn session_policy_labels_set_affinity_load_bounds_and_cookie_attributes() {
    let svc = parse(
        "api",
        &labels(&[
            ("sticky.enable", "true"),
            ("sticky.port", "8080"),
            ("sticky.affinity.header", "X-Session-Id"),
            ("sticky.backend.maxinflight", "50"),
            ("sticky.backend.shed", "true"),
            ("sticky.backend.balancefactor", "150"),
            ("sticky.cookie.partitioned", "true"),
            ("sticky.cookie.attributes", "Priority=High; ; Foo"),
        ]),
    )
    .unwrap()
    .expect("sticky labels opt in");
    assert!(svc.ignored.is_empty(), "{:?}", svc.ignored);
    let c = &svc.cookie;
    assert_eq!((c.affinity, c.affinity_header.as_deref()), (None, Some("X-Session-Id")), "kind implied later");
    let affinity = crate::model::Affinity::from_parts(c.affinity, c.affinity_header.as_deref(), None);
    assert_eq!(affinity, Ok(crate::model::Affinity::Header("X-Session-Id".into())));
    assert_eq!(c.load, crate::model::LoadSpec { max_inflight: Some(50), shed: true, balance_factor: Some(150) });
    assert_eq!(c.partitioned, Some(true));
    assert_eq!(c.extra, vec!["Priority=High".to_owned(), "Foo".to_owned()]);
    let bad = parse("api", &labels(&[("sticky.enable", "true"), ("sticky.affinity", "sourceip")]));
    assert!(bad.is_err(), "an unknown affinity kind is an error, not a silent cookie");
    let bad = parse("api", &labels(&[("sticky.enable", "true"), ("sticky.backend.maxinflight", "many")]));
    assert!(bad.is_err());
}
