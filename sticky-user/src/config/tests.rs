//! Flags and file into a Config: defaults, precedence, every option applied, errors naming the field.

use clap::Parser;

use super::*;
use crate::model::{BackoffSpec, CookieSpec, HealthCheckSpec, Rule, SameSite, SpliceSpec};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn args(list: &[&str]) -> RunArgs {
    let mut argv = vec!["sticky"];
    argv.extend_from_slice(list);
    Cli::try_parse_from(argv).expect("arguments must parse").run
}

fn err(args: &RunArgs, file: Option<&str>) -> String {
    build(args, file).expect_err("configuration must be refused").to_string()
}

/// The http part of a configuration that must have one.
fn http(args: &RunArgs, file: Option<&str>) -> HttpConfig {
    build(args, file).expect("configuration must be valid").http.expect("http mode must configure the proxy")
}

#[test]
fn flags_give_one_catch_all_service_with_defaults() {
    let c = http(
        &args(&["--backend", "b1=http://127.0.0.1:8001", "--backend", "http://localhost:8002/", "--workers", "1"]),
        None,
    );
    assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("address"));
    assert_eq!(c.workers, 1);
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.limits.max_header_size, 32 * 1024);
    let s = &c.services[0];
    assert_eq!(s.spec.rule, Rule::Always);
    assert_eq!(s.spec.cookie, CookieSpec::default());
    assert!(!s.spec.strict);
    assert_eq!(s.backends[0].name.as_deref(), Some("b1"));
    assert_eq!((s.backends[0].host.as_str(), s.backends[0].port), ("127.0.0.1", 8001));
    assert_eq!(s.backends[1].name, None);
    assert_eq!((s.backends[1].host.as_str(), s.backends[1].port), ("localhost", 8002));
}

#[test]
fn every_cookie_and_health_flag_is_applied() {
    let c = http(
        &args(&[
            "--backend=http://[::1]:81",
            "--cookie-name=SRV",
            "--cookie-path=/app",
            "--cookie-domain=example.com",
            "--cookie-secure",
            "--cookie-httponly=false",
            "--cookie-samesite=None",
            "--cookie-max-age=2h",
            "--strict",
            "--health-path=/health",
            "--health-interval=500ms",
            "--health-timeout=1s",
            "--health-fall=3",
            "--health-rise=4",
            "--backoff-min=100ms",
            "--backoff-max=5s",
            "--connect-timeout=1",
            "--idle-timeout=10s",
        ]),
        None,
    );
    let s = &c.services[0].spec;
    assert_eq!(
        s.cookie,
        CookieSpec {
            name: "SRV".into(),
            path: "/app".into(),
            domain: Some("example.com".into()),
            secure: Some(true),
            http_only: false,
            same_site: Some(SameSite::None),
            max_age: Some(Duration::from_secs(7200)),
            ..CookieSpec::default()
        }
    );
    assert!(s.strict);
    assert_eq!(
        s.health,
        HealthCheckSpec {
            path: Some("/health".into()),
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 4
        }
    );
    assert_eq!(s.backoff, BackoffSpec { min: Duration::from_millis(100), max: Duration::from_secs(5) });
    assert_eq!(c.timeouts.connect, Duration::from_secs(1));
    assert_eq!(c.timeouts.idle, Duration::from_secs(10));
    assert_eq!((c.services[0].backends[0].host.as_str(), c.services[0].backends[0].port), ("::1", 81));
}

#[test]
fn bad_flags_are_named() {
    assert!(err(&args(&[]), None).starts_with("--backend:"));
    assert!(err(&args(&["--backend=https://a:1"]), None).contains("scheme https is not supported"));
    assert!(err(&args(&["--backend=http://a:1/path"]), None).contains("cannot have a path"));
    assert!(err(&args(&["--backend=bad name=http://a:1"]), None).contains("name \"bad name\""));
    assert!(
        err(&args(&["--backend=http://a:1", "--cookie-samesite=sometimes"]), None).starts_with("--cookie-samesite:")
    );
    assert!(err(&args(&["--backend=http://a:1", "--cookie-samesite=none"]), None).contains("needs Secure"));
    assert!(err(&args(&["--backend=http://a:1", "--cookie-name=a b"]), None).starts_with("--cookie-name:"));
    assert!(err(&args(&["--backend=http://a:1", "--cookie-max-age=soon"]), None).starts_with("--cookie-max-age:"));
    assert!(err(&args(&["--backend=http://a:1", "--health-path=health"]), None).starts_with("--health-path:"));
    assert!(err(&args(&["--backend=http://a:1", "--connect-timeout=0s"]), None).starts_with("--connect-timeout:"));
    assert!(err(&args(&["--backend=http://a:1", "--backend=http://a:1"]), None).contains("appears twice"));
    assert!(err(&args(&["--backend=http://a:1", "--workers=0"]), None).starts_with("workers:"));
    assert!(
        err(&args(&["--backend=http://a:1", "--backoff-min=2s", "--backoff-max=1s"]), None)
            .starts_with("--backoff-max:")
    );
    assert!(err(&args(&["--backend=http://a:1", "--health-interval=0"]), None).starts_with("--health-interval:"));
    assert!(err(&args(&["--backend=http://a:1", "--health-fall=0"]), None).starts_with("--health-fall:"));
}

const FILE: &str = r#"
listen = "127.0.0.1:8080"
admin = "127.0.0.1:9090"
admin_socket = "/run/sticky/admin.sock"
workers = 2
cookie_key_file = "/run/secrets/sticky"

[timeouts]
connect = "500ms"
response = 30
client = "5s"
tunnel = "2h"

[limits]
max_header_size = 16384

[[services]]
name = "api"
host = ["api.example.com", "API.example.org"]
path_prefix = "/v1"
strict = true
backends = ["a1=http://10.0.0.1:80", { name = "a2", url = "http://10.0.0.2:80", weight = 3 }]
[services.cookie]
name = "api_sticky"
samesite = "lax"
max_age = "1h"
[services.health]
path = "/healthz"
interval = 2

[[services]]
name = "web"
backends = ["http://10.0.1.1:8000"]
"#;

#[test]
fn file_gives_several_services_with_rules() {
    let config = build(&args(&["--config=x.toml", "--listen=127.0.0.1:1"]), Some(FILE)).expect("valid file");
    assert_eq!(config.admin, Some("127.0.0.1:9090".parse().expect("address")));
    assert_eq!(config.admin_socket.as_deref(), Some(std::path::Path::new("/run/sticky/admin.sock")));
    let c = config.http.expect("http mode");
    assert_eq!(c.listen, "127.0.0.1:1".parse().expect("address"), "a flag wins over the file");
    assert_eq!(c.workers, 2);
    assert_eq!(c.key_files, vec![std::path::PathBuf::from("/run/secrets/sticky")]);
    assert_eq!(c.timeouts.connect, Duration::from_millis(500));
    assert_eq!(c.timeouts.response, Duration::from_secs(30));
    assert_eq!(
        (c.timeouts.client, c.timeouts.backend, c.timeouts.tunnel),
        (Duration::from_secs(5), defaults::BACKEND_TIMEOUT, Duration::from_secs(7200)),
        "issue 13's inactivity timeouts come from the file, else their defaults"
    );
    assert_eq!(c.limits.max_header_size, 16384);
    let api = &c.services[0];
    assert_eq!(api.spec.rule.to_traefik(), "Host(`api.example.com`, `API.example.org`) && PathPrefix(`/v1`)");
    assert!(api.spec.rule.matches(Some("api.example.org"), "/v1/users"));
    assert!(!api.spec.rule.matches(Some("api.example.org"), "/v2"));
    assert!(api.spec.strict);
    assert_eq!(api.spec.cookie.name, "api_sticky");
    assert_eq!(api.spec.cookie.same_site, Some(SameSite::Lax));
    assert_eq!(api.spec.cookie.max_age, Some(Duration::from_secs(3600)));
    assert_eq!(api.spec.health.path.as_deref(), Some("/healthz"));
    assert_eq!(api.spec.health.interval, Duration::from_secs(2));
    assert_eq!(api.backends[1].weight, 3);
    assert_eq!(api.backends[1].name.as_deref(), Some("a2"));
    let web = &c.services[1];
    assert_eq!(web.spec.rule, Rule::Always);
    assert!(api.spec.priority > web.spec.priority, "the more specific rule has the higher default priority");
}

#[test]
fn bad_files_are_named() {
    let cfg = args(&["--config=x.toml"]);
    let unknown = err(&cfg, Some("[[services]]\nname = \"a\"\nbackend = [\"http://a:1\"]\n"));
    assert!(unknown.contains("x.toml") && unknown.contains("backend"), "{unknown}");
    assert!(err(&cfg, Some("")).starts_with("services:"));
    assert!(err(&cfg, Some("[[services]]\nname = \"a\"\n")).starts_with("services[0].backends:"));
    let e = err(&cfg, Some("[[services]]\nname = \"a\"\nbackends = [\"http://a:1\", { url = \"ftp://b\" }]\n"));
    assert!(e.starts_with("services[0].backends[1]:"), "{e}");
    let e = err(
        &cfg,
        Some("[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n[services.cookie]\nsamesite = \"x\"\n"),
    );
    assert!(e.starts_with("services[0].cookie.samesite:"), "{e}");
    let e = err(
        &cfg,
        Some(
            "[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n",
        ),
    );
    assert!(e.starts_with("services[1].name:"), "{e}");
    let e = err(
        &cfg,
        Some("[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n[services.health]\ninterval = \"often\"\n"),
    );
    assert!(e.starts_with("services[0].health.interval:"), "{e}");
    let e = err(
        &cfg,
        Some(
            "[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n[services.health]\nbackoff_min = \"5s\"\nbackoff_max = 1\n",
        ),
    );
    assert!(e.starts_with("services[0].health.backoff_max:"), "{e}");
    let e = err(&args(&["--config=x.toml", "--backend=http://a:1"]), Some(FILE));
    assert!(e.starts_with("--backend:") && e.contains("--config"), "{e}");
}

#[test]
fn file_rule_in_traefik_syntax() {
    let file = "[[services]]\nname = \"api\"\nrule = \"Host(`a.example`) && (PathPrefix(`/v1`) || Path(`/health`))\"\nbackends = [\"http://10.0.0.1:80\"]\n";
    let c = http(&args(&["--config=x.toml"]), Some(file));
    let rule = &c.services[0].spec.rule;
    assert!(rule.matches(Some("a.example"), "/health"));
    assert!(rule.matches(Some("a.example:8080"), "/v1/x"));
    assert!(!rule.matches(Some("a.example"), "/healthz"));
    let v1 =
        "[[services]]\nname = \"api\"\nrule = \"Host:a.example;PathPrefix:/v1\"\nbackends = [\"http://10.0.0.1:80\"]\n";
    assert!(http(&args(&["--config=x.toml"]), Some(v1)).services[0].spec.rule.matches(Some("a.example"), "/v1"));
    let both =
        "[[services]]\nname = \"api\"\nrule = \"Host(`a`)\"\nhost = \"a\"\nbackends = [\"http://10.0.0.1:80\"]\n";
    assert!(err(&args(&["--config=x.toml"]), Some(both)).contains("services[0].rule"));
    let bad = "[[services]]\nname = \"api\"\nrule = \"Method(`GET`)\"\nbackends = [\"http://10.0.0.1:80\"]\n";
    let e = err(&args(&["--config=x.toml"]), Some(bad));
    assert!(e.contains("services[0].rule") && e.contains("Method"), "{e}");
}

#[test]
fn docker_takes_shared_flags_and_refuses_service_flags() {
    let a = args(&[
        "--docker",
        "--listen",
        "0.0.0.0:80",
        "--cookie-key-file",
        "/run/secrets/k",
        "--docker-interval",
        "250ms",
    ]);
    let config = build(&a, None).expect("--docker needs no backend");
    let c = config.http.as_ref().expect("the proxy serves Swarm's http services");
    assert!(c.services.is_empty(), "services are discovered at run time");
    assert_eq!(c.key_files, vec![std::path::PathBuf::from("/run/secrets/k")]);
    let tcp = config.tcp.as_ref().expect("Swarm's tcp services are served too");
    assert!(tcp.service.is_none(), "no service of their own");
    assert!(tcp.kernel, "the kernel path may serve services labelled sticky.tcp.path=kernel");
    let d = config.swarm.expect("--docker given");
    assert_eq!(d.interval, Duration::from_millis(250));
    if std::env::var_os("DOCKER_HOST").is_none() {
        assert_eq!(d.host, "unix:///var/run/docker.sock");
    }
    assert_eq!(build(&args(&["--backend", "http://a:1"]), None).expect("valid flags").swarm, None);
    assert!(err(&args(&["--docker", "--cookie-name", "x"]), None).contains("--cookie-name"));
    assert!(err(&args(&["--docker", "--mode", "tcp"]), None).contains("--mode"));
    assert!(err(&args(&["--docker", "--docker-interval", "0s"]), None).starts_with("--docker-interval:"));
}

#[test]
fn splice_options_from_flags_and_file() {
    let defaults = build(&args(&["--backend=http://a:1"]), None).expect("valid flags");
    assert!(!defaults.no_ebpf);
    let defaults = defaults.http.expect("http mode");
    let spec = defaults.services[0].spec.splice;
    assert!(!spec.pinned, "pinned keep-alive splice is off by default (a proxy in front may multiplex users)");
    assert!(spec.upgrades, "upgraded connections are spliced by default");
    assert_eq!(defaults.limits.max_spliced, 16384);

    let config = build(
        &args(&["--backend=http://a:1", "--splice", "--splice-upgrades=false", "--max-spliced=100", "--no-ebpf"]),
        None,
    )
    .expect("valid flags");
    assert!(config.no_ebpf);
    let c = config.http.expect("http mode");
    assert_eq!(c.services[0].spec.splice, SpliceSpec { pinned: true, upgrades: false });
    assert_eq!(c.limits.max_spliced, 100);

    let file = "[limits]\nmax_spliced = 7\n[[services]]\nname = \"a\"\nsplice = true\nbackends = [\"http://a:1\"]\n\
                [[services]]\nname = \"b\"\nsplice_upgrades = false\nbackends = [\"http://b:1\"]\n";
    let c = http(&args(&["--config=x.toml"]), Some(file));
    assert_eq!(c.services[0].spec.splice, SpliceSpec { pinned: true, upgrades: true });
    assert_eq!(c.services[1].spec.splice, SpliceSpec { pinned: false, upgrades: false });
    assert_eq!(c.limits.max_spliced, 7);

    assert!(err(&args(&["--backend=http://a:1", "--max-spliced=0"]), None).starts_with("max_spliced:"));
    let e = err(&args(&["--config=x.toml", "--splice"]), Some(file));
    assert!(e.starts_with("--splice:") && e.contains("--config"), "{e}");
}

#[test]
fn tcp_mode_takes_a_vip_ipv4_backends_and_its_defaults() {
    let config =
        build(&args(&["--mode=tcp", "--listen=203.0.113.10:5432", "--backend=tcp://198.51.100.10:5432"]), None)
            .expect("valid tcp flags");
    assert!(config.http.is_none(), "tcp mode runs no proxy");
    let tcp = config.tcp.expect("tcp mode");
    let service = tcp.service.expect("the flags' service");
    assert_eq!(service.vip, "203.0.113.10:5432".parse().expect("address"));
    assert_eq!(service.backends, vec!["198.51.100.10:5432".parse().expect("address")]);
    assert!(tcp.kernel, "the kernel path is tried unless --no-ebpf");
    assert_eq!(tcp.affinity_timeout, defaults::AFFINITY_TIMEOUT);
    assert_eq!(tcp.snat_ports, defaults::SNAT_PORTS);
    assert_eq!(tcp.limits.max_flows, defaults::MAX_FLOWS);

    let tcp = build(
        &args(&[
            "--mode=tcp",
            "--listen=203.0.113.10:80",
            "--backends-file=/tmp/b",
            "--affinity-timeout=1.5s",
            "--snat-ports=62000-62010",
            "--max-affinity=7",
            "--no-ebpf",
        ]),
        None,
    )
    .expect("valid tcp flags")
    .tcp
    .expect("tcp mode");
    assert_eq!(tcp.affinity_timeout, Duration::from_millis(1500), "the one duration syntax");
    assert_eq!(tcp.snat_ports, PortRange { low: 62000, high: 62010 });
    assert_eq!(tcp.limits.max_affinity, 7);
    assert!(!tcp.kernel);

    assert!(err(&args(&["--mode=tcp", "--backend=198.51.100.10:1"]), None).starts_with("--listen:"));
    let e = err(&args(&["--mode=tcp", "--listen=[::1]:80", "--backend=198.51.100.10:1"]), None);
    assert!(e.starts_with("--backend") && e.contains("family"), "{e}");
    assert!(err(&args(&["--mode=tcp", "--listen=203.0.113.10:80"]), None).contains("no backend"));
    let e = err(&args(&["--mode=tcp", "--listen=203.0.113.10:80", "--backend=http://a:1"]), None);
    assert!(e.starts_with("--backend") && e.contains("IP:PORT"), "{e}");
    let e =
        err(&args(&["--mode=tcp", "--listen=203.0.113.10:80", "--backend=198.51.100.10:1", "--snat-ports=9-1"]), None);
    assert!(e.starts_with("--snat-ports:"), "{e}");
}

#[test]
fn help_shows_the_defaults_config_applies() {
    use clap::CommandFactory as _;
    let help = Cli::command().render_long_help().to_string();
    let secs = |d: Duration| format!("{}s", d.as_secs());
    let shown = [
        defaults::LISTEN.to_string(),
        secs(defaults::CONNECT_TIMEOUT),
        secs(defaults::RESPONSE_TIMEOUT),
        secs(defaults::IDLE_TIMEOUT),
        secs(defaults::CLIENT_TIMEOUT),
        secs(defaults::BACKEND_TIMEOUT),
        format!("{}h", defaults::TUNNEL_TIMEOUT.as_secs() / 3600),
        secs(defaults::SHUTDOWN_TIMEOUT),
        defaults::MAX_HEADER_SIZE.to_string(),
        defaults::MAX_HEADERS.to_string(),
        defaults::MAX_CONNECTIONS.to_string(),
        defaults::MAX_SPLICED.to_string(),
        defaults::DOCKER_HOST.to_owned(),
        format!("{}ms", defaults::DOCKER_INTERVAL.as_millis()),
        format!("{}h", defaults::AFFINITY_TIMEOUT.as_secs() / 3600),
        format!("{}-{}", defaults::SNAT_PORTS.low, defaults::SNAT_PORTS.high),
        defaults::MAX_FLOWS.to_string(),
        defaults::MAX_HALF_OPEN.to_string(),
        defaults::MAX_AFFINITY.to_string(),
        defaults::MAX_BACKENDS.to_string(),
        defaults::MAX_SERVICES.to_string(),
    ];
    for value in shown {
        assert!(help.contains(&format!("[default: {value}]")), "`sticky run --help` must show the default {value}");
    }
}

#[test]
fn flags_and_file_read_booleans_and_durations_alike() {
    let flags = http(&args(&["--backend=http://a:1", "--strict=yes", "--health-interval=1.5s"]), None);
    assert!(flags.services[0].spec.strict, "flags take the labels' boolean spellings");
    let file = "[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n[services.health]\ninterval = \"1.5s\"\n";
    let from_file = http(&args(&["--config=x.toml"]), Some(file));
    assert_eq!(flags.services[0].spec.health.interval, Duration::from_millis(1500));
    assert_eq!(from_file.services[0].spec.health.interval, flags.services[0].spec.health.interval);
}

#[test]
fn tls_flags_and_file_give_the_listener_its_certificates() {
    use crate::tls::{
        resolver::UnknownName,
        source::{Pair, Source},
    };
    let pair = |c: &str, k: &str| Source::Pair(Pair { cert: c.into(), key: k.into() });
    let c = http(
        &args(&[
            "--backend",
            "http://127.0.0.1:8001",
            "--listen-tls",
            "127.0.0.1:8443",
            "--tls-cert",
            "a.crt",
            "--tls-key",
            "a.key",
            "--tls-cert",
            "b.crt",
            "--tls-key",
            "b.key",
            "--tls-dir",
            "/run/secrets",
            "--tls-unknown-sni",
            "refuse",
            "--redirect-https",
            "--hsts",
            "1d",
        ]),
        None,
    );
    let tls = c.tls.expect("a TLS listener");
    assert_eq!(tls.listen, "127.0.0.1:8443".parse().expect("address"));
    assert_eq!(
        tls.sources,
        vec![pair("a.crt", "a.key"), pair("b.crt", "b.key"), Source::Dir("/run/secrets".into())],
        "the first pair is the default certificate"
    );
    assert_eq!(tls.unknown_sni, UnknownName::Reject);
    assert!(c.services[0].spec.tls.redirect);
    assert_eq!(c.services[0].spec.tls.hsts, Some(86_400));
    assert_eq!(c.services[0].spec.cookie.secure, None, "Secure on TLS only, by default");

    let file = r#"
        [tls]
        listen = "0.0.0.0:443"
        unknown_sni = "default"
        dirs = ["/certs"]
        [[tls.certificates]]
        cert = "x.crt"
        key = "x.key"
        [[services]]
        name = "web"
        redirect_https = true
        hsts = 600
        backends = ["http://127.0.0.1:1"]
    "#;
    let c = http(&args(&["--config", "sticky.toml"]), Some(file));
    let tls = c.tls.expect("a TLS listener from the file");
    assert_eq!(tls.sources, vec![pair("x.crt", "x.key"), Source::Dir("/certs".into())]);
    assert_eq!(tls.unknown_sni, UnknownName::Default);
    assert_eq!((c.services[0].spec.tls.redirect, c.services[0].spec.tls.hsts), (true, Some(600)));
    assert!(http(&args(&["--backend", "http://127.0.0.1:1"]), None).tls.is_none(), "no TLS without --listen-tls");
}

#[test]
fn tls_mistakes_are_named() {
    let base = ["--backend", "http://127.0.0.1:8001"];
    let with = |more: &[&str]| {
        let mut list = base.to_vec();
        list.extend_from_slice(more);
        err(&args(&list), None)
    };
    assert!(with(&["--listen-tls", "127.0.0.1:8443"]).contains("a TLS listener needs certificates"));
    assert!(with(&["--tls-cert", "a.crt", "--tls-key", "a.key"]).contains("no TLS listener"));
    assert!(with(&["--tls-dir", "/x"]).starts_with("--tls-dir"));
    assert!(with(&["--listen-tls", "127.0.0.1:8443", "--tls-cert", "a.crt"]).contains("1 --tls-cert but 0 --tls-key"));
    let sni = with(&["--listen-tls", "127.0.0.1:8443", "--tls-dir", "/x", "--tls-unknown-sni", "maybe"]);
    assert!(sni.starts_with("--tls-unknown-sni") && sni.contains("refuse"), "{sni}");
    assert!(with(&["--listen-tls", "127.0.0.1:8443", "--tls-dir", "/x", "--hsts", "soon"]).starts_with("--hsts"));
    let file = "[tls]\nlisten = \"0.0.0.0:443\"\n[[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n";
    assert!(err(&args(&["--config", "f.toml"]), Some(file)).contains("a TLS listener needs certificates"));
}

#[test]
fn acme_flags_and_file() {
    use crate::tls::challenge::Kind;
    let c = http(
        &args(&[
            "--backend",
            "http://127.0.0.1:8001",
            "--listen-tls",
            "127.0.0.1:8443",
            "--acme-directory",
            "https://ca.example/dir",
            "--acme-state",
            "/var/lib/sticky/acme",
            "--acme-email",
            "ops@example.com",
            "--acme-domain",
            "a.example,b.example",
            "--acme-challenge",
            "tls-alpn-01",
        ]),
        None,
    );
    let acme = c.tls.expect("a TLS listener").acme.expect("ACME");
    assert_eq!(acme.directory, "https://ca.example/dir");
    assert_eq!(acme.state, PathBuf::from("/var/lib/sticky/acme"));
    assert_eq!(acme.email.as_deref(), Some("ops@example.com"));
    assert_eq!(acme.domains, ["a.example", "b.example"]);
    assert_eq!(acme.challenge, Kind::TlsAlpn01);
    let file = "[tls]\nlisten = \"0.0.0.0:443\"\n[tls.acme]\ndirectory = \"https://ca.example/dir\"\nstate = \"/acme\"\n\
                [[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n";
    let acme = http(&args(&["--config", "f.toml"]), Some(file)).tls.expect("TLS").acme.expect("ACME");
    assert_eq!((acme.challenge, acme.state), (Kind::Http01, PathBuf::from("/acme")));

    let base = ["--backend", "http://127.0.0.1:8001"];
    let with = |more: &[&str]| {
        let mut list = base.to_vec();
        list.extend_from_slice(more);
        err(&args(&list), None)
    };
    assert!(with(&["--acme-directory", "https://ca/dir", "--acme-state", "/a"]).contains("needs a TLS listener"));
    assert!(with(&["--listen-tls", "127.0.0.1:1", "--acme-directory", "https://ca/dir"]).contains("state directory"));
    assert!(with(&["--acme-email", "a@b"]).contains("need --acme-directory"));
    let bad = with(&[
        "--listen-tls",
        "127.0.0.1:1",
        "--acme-directory",
        "https://ca/dir",
        "--acme-state",
        "/a",
        "--acme-challenge",
        "dns-01",
    ]);
    assert!(bad.contains("is not http-01 or tls-alpn-01"), "{bad}");
}

#[test]
fn cookie_keys_and_admin_access_from_flags_and_file() {
    let ring = r#"
cookie_key_file = ["/run/secrets/new", "/run/secrets/old"]
admin = "9090"
admin_token_file = "/run/secrets/admin"
admin_read_only = true

[[services]]
name = "web"
backends = [{ name = "w1", url = "http://127.0.0.1:1" }]
"#;
    let a = args(&["--config=sticky.toml"]);
    let config = build(&a, Some(ring)).expect("a key ring in the file");
    let keys: Vec<&str> = config.http.as_ref().expect("http").key_files.iter().filter_map(|p| p.to_str()).collect();
    assert_eq!(keys, ["/run/secrets/new", "/run/secrets/old"], "newest first, as written");
    assert_eq!(config.admin, Some("127.0.0.1:9090".parse().expect("addr")), "a port alone is loopback");
    assert_eq!(config.admin_token_file.as_deref(), Some(std::path::Path::new("/run/secrets/admin")));
    assert!(config.admin_read_only);
    // flags: repeated, newest first; the variable's form is comma-separated
    let a =
        args(&["--backend=http://a:1", "--cookie-key-file=/k/new", "--cookie-key-file=/k/old", "--admin=0.0.0.0:9"]);
    let config = build(&a, None).expect("flags");
    assert_eq!(config.http.expect("http").key_files.len(), 2);
    assert_eq!(config.admin, Some("0.0.0.0:9".parse().expect("addr")));
    assert!(!config.admin_read_only, "writes allowed unless asked");
    let nine: Vec<String> = (0..9).map(|i| format!("--cookie-key-file=/k/{i}")).collect();
    let mut list = vec!["--backend=http://a:1"];
    list.extend(nine.iter().map(String::as_str));
    assert!(err(&args(&list), None).starts_with("cookie-key-file:"), "at most 8 keys");
}

#[test]
fn http2_flags_over_the_file_and_backend_protocol_per_service() {
    use super::Http2 as Settings;
    use crate::model::BackendProtocol;
    let file = "[http2]\nh2c = true\nmax_concurrent_streams = 50\n\n[[services]]\nname = \"g\"\n\
                backend_protocol = \"h2c\"\nbackends = [\"http://127.0.0.1:50051\"]\n";
    let c = http(&args(&["--config", "f.toml"]), Some(file));
    assert_eq!(c.h2, Settings { tls: true, h2c: true, max_concurrent_streams: 50 });
    assert_eq!(c.services[0].spec.backend_protocol, BackendProtocol::H2c);
    let c = http(&args(&["--config", "f.toml", "--h2=false", "--h2-max-streams", "10"]), Some(file));
    assert_eq!(c.h2, Settings { tls: false, h2c: true, max_concurrent_streams: 10 });
    let c = http(&args(&["--backend", "http://127.0.0.1:1"]), None);
    assert_eq!(c.h2, Settings::default());
    assert_eq!(c.services[0].spec.backend_protocol, BackendProtocol::Http1);
    let bad = file.replace("\"h2c\"\nbackends", "\"grpc\"\nbackends");
    assert!(err(&args(&["--config", "f.toml"]), Some(&bad)).starts_with("services[0].backend_protocol: "));
    assert!(
        err(&args(&["--backend", "http://127.0.0.1:1", "--h2-max-streams", "0"]), None).starts_with("h2_max_streams")
    );
}

#[test]
fn client_address_flags_and_keys_are_read_and_bad_ranges_named() {
    let c = http(
        &args(&[
            "--backend=http://127.0.0.1:81",
            "--proxy-protocol-from=10.0.0.0/8, 192.0.2.7",
            "--trusted-proxies=127.0.0.1",
            "--backend-proxy-protocol=v2",
        ]),
        None,
    );
    assert!(c.clients.proxy_protocol_from.contains("10.1.2.3".parse().expect("address")));
    assert!(c.clients.proxy_protocol_from.contains("192.0.2.7".parse().expect("address")));
    assert!(!c.clients.proxy_protocol_from.contains("192.0.2.8".parse().expect("address")));
    assert!(c.clients.trusted_proxies.contains("127.0.0.1".parse().expect("address")));
    assert_eq!(c.services[0].spec.proxy_protocol, crate::proxy_protocol::Version::V2);

    let file = "proxy_protocol_from = \"10.0.0.0/8\"\ntrusted_proxies = [\"::1\", \"127.0.0.0/8\"]\n\
                [[services]]\nname = \"a\"\nproxy_protocol = \"v2\"\nbackends = [\"http://127.0.0.1:80\"]\n";
    let c = http(&args(&["--config=x.toml"]), Some(file));
    assert!(c.clients.proxy_protocol_from.contains("10.9.9.9".parse().expect("address")));
    assert!(c.clients.trusted_proxies.contains("::1".parse().expect("address")));
    assert_eq!(c.services[0].spec.proxy_protocol, crate::proxy_protocol::Version::V2);
    // the flag wins over the key
    let c = http(&args(&["--config=x.toml", "--trusted-proxies=192.0.2.1"]), Some(file));
    assert!(!c.clients.trusted_proxies.contains("::1".parse().expect("address")));

    let e = err(&args(&["--backend=http://127.0.0.1:81", "--proxy-protocol-from=10.0.0.0/33"]), None);
    assert!(e.starts_with("--proxy-protocol-from: ") && e.contains("10.0.0.0/33"), "{e}");
    let e = err(
        &args(&["--config=x.toml"]),
        Some("trusted_proxies = \"example.com\"\n[[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:80\"]\n"),
    );
    assert!(e.starts_with("trusted_proxies: "), "{e}");
    let e = err(&args(&["--backend=http://127.0.0.1:81", "--backend-proxy-protocol=v1"]), None);
    assert!(e.starts_with("--backend-proxy-protocol: "), "{e}");
    let e = err(
        &args(&["--config=x.toml"]),
        Some("[[services]]\nname = \"a\"\nproxy_protocol = \"3\"\nbackends = [\"http://127.0.0.1:80\"]\n"),
    );
    assert!(e.starts_with("services[0].proxy_protocol: "), "{e}");
}

#[test]
fn session_policy_keys_of_the_file_and_their_errors() {
    let cfg = args(&["--config=x.toml"]);
    let file = "[[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n[services.cookie]\n\
                affinity = \"client-ip\"\npartitioned = true\nattributes = [\"Priority=High\"]\n\
                [services.load]\nmax_inflight = 8\nshed = true\nbalance_factor = 125\n";
    let c = http(&cfg, Some(file));
    let spec = &c.services[0].spec.cookie;
    assert_eq!(spec.affinity, crate::model::Affinity::ClientIp);
    assert!(spec.partitioned);
    assert_eq!(spec.extra, vec!["Priority=High".to_owned()]);
    assert_eq!(spec.load, crate::model::LoadSpec { max_inflight: Some(8), shed: true, balance_factor: Some(125) });
    let with = |cookie: &str| {
        format!("[[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n[services.cookie]\n{cookie}\n")
    };
    let e = err(&cfg, Some(&with("affinity = \"header\"")));
    assert!(e.contains("services[0].cookie.affinity_header"), "{e}");
    let e = err(&cfg, Some(&with("name = \"__Host-s\"\nsecure = true\npath = \"/app\"")));
    assert!(e.contains("services[0].cookie.path"), "{e}");
    let e = err(&cfg, Some(&with("attributes = [\"a\\r\\nX-Injected: 1\"]")));
    assert!(e.contains("services[0].cookie.attributes"), "{e}");
    let e = err(
        &cfg,
        Some("[[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n[services.load]\nbalance_factor = 90\n"),
    );
    assert!(e.contains("services[0].load.balance_factor"), "{e}");
}

#[test]
fn session_policy_flags_go_through_the_same_validation() {
    let flags = args(&[
        "--backend=http://127.0.0.1:1",
        "--cookie-affinity-learn=JSESSIONID",
        "--load-max-inflight=3",
        "--load-shed",
        "--cookie-attributes=Priority=High",
        "--cookie-attributes=Foo",
    ]);
    let spec = &http(&flags, None).services[0].spec.cookie;
    assert_eq!(spec.affinity, crate::model::Affinity::Learn("JSESSIONID".into()));
    assert_eq!(spec.load, crate::model::LoadSpec { max_inflight: Some(3), shed: true, balance_factor: None });
    assert_eq!(spec.extra, vec!["Priority=High".to_owned(), "Foo".to_owned()]);
    let e = err(&args(&["--backend=http://127.0.0.1:1", "--cookie-affinity=header"]), None);
    assert!(e.contains("--cookie-affinity-header"), "{e}");
    let e = err(&args(&["--backend=http://127.0.0.1:1", "--load-balance-factor=50"]), None);
    assert!(e.contains("--load-balance-factor"), "{e}");
    let e = err(
        &args(&["--config=x.toml", "--load-shed"]),
        Some("[[services]]\nname = \"a\"\nbackends = [\"http://a:1\"]\n"),
    );
    assert!(e.contains("--load-shed"), "a service flag beside --config is refused by name: {e}");
}

#[test]
fn access_log_and_admin_hosts_from_flags_and_file() {
    use crate::access_log::{Format, Settings};
    assert_eq!(build(&args(&["--backend=http://a:1"]), None).expect("flags").access_log, None, "off by default");
    let on = build(&args(&["--backend=http://a:1", "--access-log"]), None).expect("flags");
    assert_eq!(on.access_log, Some(Settings { format: Format::Text, file: None, sample: 1, rate: None }));
    let json = build(
        &args(&[
            "--backend=http://a:1",
            "--access-log=json",
            "--access-log-file=/var/log/a.log",
            "--access-log-sample=10",
            "--access-log-rate=500",
            "--admin-host=Dash.Example,other.example",
        ]),
        None,
    )
    .expect("flags");
    assert_eq!(
        json.access_log,
        Some(Settings { format: Format::Json, file: Some("/var/log/a.log".into()), sample: 10, rate: Some(500) })
    );
    assert_eq!(json.admin_hosts, ["dash.example", "other.example"]);
    let file = r#"
admin_hosts = "dash.example"

[access_log]
format = "json"
sample = 4

[[services]]
name = "web"
backends = [{ name = "w1", url = "http://127.0.0.1:1" }]
"#;
    let from_file = build(&args(&["--config=sticky.toml"]), Some(file)).expect("file");
    assert_eq!(from_file.access_log, Some(Settings { format: Format::Json, file: None, sample: 4, rate: None }));
    assert_eq!(from_file.admin_hosts, ["dash.example"]);
    let flag_wins = build(&args(&["--config=sticky.toml", "--access-log=text"]), Some(file)).expect("file");
    assert_eq!(flag_wins.access_log.map(|s| (s.format, s.sample)), Some((Format::Text, 4)), "key by key");

    assert!(err(&args(&["--backend=http://a:1", "--access-log=xml"]), None).contains("expected text, json or off"));
    assert!(
        err(&args(&["--backend=http://a:1", "--access-log", "--access-log-sample=0"]), None).contains("at least 1")
    );
    assert!(err(&args(&["--backend=http://a:1", "--access-log-rate=5"]), None).contains("the access log is off"));
}
