use std::path::Path;

use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{Access, Caller, TokenError, Writes};

const TOKEN: &[u8] = b"0123456789abcdef0123";

fn tcp() -> Caller {
    Caller::Tcp("127.0.0.1:5000".parse().expect("addr"))
}

fn socket() -> Caller {
    Caller::Socket { uid: Some(0), pid: Some(42) }
}

fn bearer(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
    h
}

fn with_token() -> Access {
    Access::new(Some((Path::new("t"), b"  0123456789abcdef0123\n")), false).expect("token")
}

#[test]
fn tcp_writes_are_disabled_without_a_token_and_the_socket_is_open() {
    let a = Access::default();
    assert_eq!(a.writes(&tcp()), Writes::Disabled);
    assert_eq!(a.check(&tcp(), &bearer("Bearer anything-at-all-here")).map_err(|e| e.0), Err(StatusCode::FORBIDDEN));
    assert_eq!(a.writes(&socket()), Writes::Open);
    assert_eq!(a.check(&socket(), &HeaderMap::new()), Ok(()));
}

#[test]
fn tcp_writes_need_the_exact_token() {
    let a = with_token();
    assert_eq!(a.writes(&tcp()), Writes::Token);
    assert_eq!(a.check(&tcp(), &HeaderMap::new()).map_err(|e| e.0), Err(StatusCode::UNAUTHORIZED));
    assert_eq!(a.check(&tcp(), &bearer("Bearer 0123456789abcdef012")).map_err(|e| e.0), Err(StatusCode::UNAUTHORIZED));
    assert_eq!(a.check(&tcp(), &bearer("Bearer 0123456789abcdef0124")).map_err(|e| e.0), Err(StatusCode::UNAUTHORIZED));
    assert_eq!(a.check(&tcp(), &bearer("Basic 0123456789abcdef0123")).map_err(|e| e.0), Err(StatusCode::UNAUTHORIZED));
    assert_eq!(a.check(&tcp(), &bearer(&format!("Bearer {}", std::str::from_utf8(TOKEN).expect("utf8")))), Ok(()));
    // the socket needs none, a token there is not checked
    assert_eq!(a.check(&socket(), &bearer("Bearer wrong")), Ok(()));
}

#[test]
fn read_only_refuses_every_write() {
    let a = Access::new(Some((Path::new("t"), TOKEN)), true).expect("token");
    for caller in [tcp(), socket()] {
        assert_eq!(a.writes(&caller), Writes::Disabled);
        let refused = a.check(&caller, &bearer(&format!("Bearer {}", std::str::from_utf8(TOKEN).expect("utf8"))));
        assert_eq!(refused.map_err(|e| e.0), Err(StatusCode::FORBIDDEN), "{caller}");
    }
}

#[test]
fn a_short_token_is_refused_and_the_token_never_printed() {
    let short = Access::new(Some((Path::new("/run/secrets/t"), b"short\n")), false);
    assert!(matches!(short, Err(TokenError::Short { len: 5, .. })), "{short:?}");
    let shown = format!("{:?}", with_token());
    assert!(!shown.contains("0123456789"), "{shown}");
    let missing = Access::load(Some(Path::new("/nonexistent/sticky-token")), false);
    assert!(matches!(missing, Err(TokenError::Read { .. })), "{missing:?}");
}

#[test]
fn callers_are_named_in_the_log() {
    assert_eq!(tcp().to_string(), "tcp 127.0.0.1:5000");
    assert_eq!(socket().to_string(), "unix socket uid 0 pid 42");
    assert_eq!(Caller::Socket { uid: None, pid: None }.to_string(), "unix socket");
}

#[test]
fn host_check_answers_the_listeners_own_names_only() {
    use super::host_allowed;
    let local: std::net::IpAddr = "10.0.0.5".parse().expect("addr");
    let extra = vec!["sticky.example.org".to_owned()];
    for ok in [
        "10.0.0.5",
        "10.0.0.5:9090",
        "127.0.0.1:9090",
        "127.8.9.1",
        "[::1]:9090",
        "[::1]",
        "[::ffff:10.0.0.5]:80",
        "localhost",
        "LOCALHOST:9090",
        "localhost.:9090",
        "dash.localhost:9090",
        "sticky.example.org:9090",
        "Sticky.Example.Org",
    ] {
        assert!(host_allowed(ok.as_bytes(), local, &extra), "{ok} must be answered");
    }
    for refused in [
        "attacker.example:9090",
        "10.0.0.6:9090",
        "[2001:db8::1]:9090",
        "sticky.example.org.attacker.example",
        "localhost.attacker.example",
        "",
        ":9090",
        "[::1",
        "10.0.0.5:90x",
        "evil\u{ff}",
    ] {
        assert!(!host_allowed(refused.as_bytes(), local, &extra), "{refused:?} must be refused");
    }
}

#[test]
fn a_missing_host_is_not_a_browser_and_is_answered() {
    let a = Access::default();
    let local = "127.0.0.1".parse().expect("addr");
    assert!(a.check_host(local, &HeaderMap::new()).is_ok());
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("rebound.example:9090"));
    let refused = a.check_host(local, &h).expect_err("another site's name");
    assert_eq!(refused.0, StatusCode::MISDIRECTED_REQUEST);
    assert!(refused.1.contains("--admin-host"), "{}", refused.1);
    let named = Access::default().with_hosts(vec!["Rebound.Example".into()]);
    assert!(named.check_host(local, &h).is_ok(), "an --admin-host name is answered");
}
