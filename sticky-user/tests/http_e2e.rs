//! End-to-end tests of `sticky run`: real `sticky run` and `sticky whoami` processes on 127.0.0.1.
//! Every assertion about routing reads which backend answered from the response body.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    fmt::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{Proc, TempDir, get, get_ok, metric, sticky, sticky_args, who, whoami, whoami_at};
use testkit::{http::raw, wait};

fn three() -> (Proc, Proc, Proc) {
    (whoami("b1"), whoami("b2"), whoami("b3"))
}

const NAMES: [&str; 3] = ["b1", "b2", "b3"];

fn cookie_header(value: &str) -> String {
    format!("sticky={value}")
}

#[test]
fn a_cookie_keeps_one_backend_for_100_requests_over_new_connections() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &[]);
    let first = get_ok(lb.addr, "/", &[]);
    let pinned = who(&first);
    let value = first.cookie("sticky").expect("a new session must get Set-Cookie").to_owned();
    assert!(
        first.header_values("set-cookie")[0].contains("Path=/")
            && first.header_values("set-cookie")[0].contains("HttpOnly")
    );
    let cookie = cookie_header(&value);
    for i in 0..100 {
        let r = get_ok(lb.addr, "/", &[("Cookie", &cookie)]);
        assert_eq!(who(&r), pinned, "request {i} must stay on the pinned backend");
        assert!(r.header_values("set-cookie").is_empty(), "a valid cookie is not set again");
    }
    let admin = lb.admin.expect("admin");
    assert_eq!(
        metric(admin, &format!("sticky_pinned_requests_total{{service=\"default\",backend=\"{pinned}\"}}")),
        100
    );
}

#[test]
fn fresh_clients_spread_evenly_over_all_backends() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &[]);
    let mut counts = BTreeMap::new();
    let mut cookies = HashSet::new();
    for _ in 0..30 {
        let r = get_ok(lb.addr, "/", &[]);
        *counts.entry(who(&r)).or_insert(0) += 1;
        cookies.insert(r.cookie("sticky").expect("each new session gets a cookie").to_owned());
    }
    // round robin over a shared counter: exactly a third each
    assert_eq!(counts, BTreeMap::from([("b1".to_owned(), 10), ("b2".to_owned(), 10), ("b3".to_owned(), 10)]));
    assert!(cookies.len() >= 3, "cookies name their backend");
}

#[test]
fn backends_from_the_environment_work_like_flags() {
    let (b1, b2, _b3) = three();
    let args = vec!["--cookie-name".to_owned(), "SRV".to_owned()];
    // STICKY_BACKEND carries a comma-separated list
    let list = format!("b1=http://{},b2=http://{}", b1.addr, b2.addr);
    let lb = common::sticky_env(&args, &[("STICKY_BACKEND", &list)]);
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let r = get_ok(lb.addr, "/", &[]);
        assert!(r.cookie("SRV").is_some(), "the cookie name comes from the flag");
        seen.insert(who(&r));
    }
    assert_eq!(seen, HashSet::from(["b1".to_owned(), "b2".to_owned()]));
}

#[test]
fn a_second_instance_with_the_same_key_honours_the_cookie() {
    let dir = TempDir::new("key");
    let key = dir.file("key", "correct horse battery staple 0123456789\n");
    let other_key = dir.file("other", "another secret, also long enough\n");
    let (b1, b2, b3) = three();
    let key_args = ["--cookie-key-file", key.to_str().expect("utf-8 path")];
    let lb1 = sticky(&[&b1, &b2, &b3], &NAMES, &key_args);
    let lb2 = sticky(&[&b1, &b2, &b3], &NAMES, &key_args);
    let lb3 = sticky(&[&b1, &b2, &b3], &NAMES, &["--cookie-key-file", other_key.to_str().expect("utf-8 path")]);
    // three sessions from lb1, so that lb2 agreeing by its own round robin would be a 1-in-27 accident
    for _ in 0..3 {
        let first = get_ok(lb1.addr, "/", &[]);
        let cookie = cookie_header(first.cookie("sticky").expect("cookie"));
        for _ in 0..10 {
            let r = get_ok(lb2.addr, "/", &[("Cookie", &cookie)]);
            assert_eq!(who(&r), who(&first), "the second instance must honour the first one's cookie");
            assert!(r.cookie("sticky").is_none());
        }
        let r = get_ok(lb3.addr, "/", &[("Cookie", &cookie)]);
        assert!(r.cookie("sticky").is_some(), "another key means an invalid cookie: re-pinned with a new one");
    }
}

#[test]
fn tampered_forged_and_oversized_cookies_are_repinned_never_refused() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &[]);
    let first = get_ok(lb.addr, "/", &[]);
    let value = first.cookie("sticky").expect("cookie").to_owned();
    let mut variants: Vec<String> = Vec::new();
    for i in 0..value.len() {
        let mut v = value.clone().into_bytes();
        v[i] = if v[i] == b'A' { b'B' } else { b'A' };
        variants.push(String::from_utf8(v).expect("ascii"));
    }
    for n in [0, 1, 10, value.len() - 1] {
        variants.push(value[..n].to_owned());
    }
    variants.push(format!("{value}A"));
    variants.push("A".repeat(4000));
    variants.push("http://127.0.0.1:1".to_owned());
    variants.push("%00%ff".to_owned());
    let names: HashSet<String> = NAMES.iter().map(|s| (*s).to_owned()).collect();
    for v in &variants {
        let r = get_ok(lb.addr, "/", &[("Cookie", &format!("a=1; sticky={v}; b=2"))]);
        assert!(names.contains(&who(&r)), "only configured backends answer");
        let new = r.cookie("sticky").expect("a bad cookie is replaced by a new one").to_owned();
        assert_ne!(&new, v);
        let again = get_ok(lb.addr, "/", &[("Cookie", &cookie_header(&new))]);
        assert_eq!(who(&again), who(&r), "the new cookie pins");
    }
    let admin = lb.admin.expect("admin");
    assert_eq!(
        metric(admin, "sticky_repins_total{service=\"default\",reason=\"invalid_cookie\"}"),
        variants.len() as u64
    );
}

#[test]
fn killing_the_pinned_backend_repins_with_a_new_cookie_and_no_failed_request() {
    let (mut b1, b2, b3) = three();
    // a pause longer than the test: on a busy machine the default 1 s could end between two requests,
    // and a second connect failure would be counted
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--backoff-min", "60s", "--backoff-max", "60s"]);
    // pin to b1 (round robin gives each backend a session within three tries)
    let pinned = (0..3)
        .map(|_| get_ok(lb.addr, "/", &[]))
        .find(|r| who(r) == "b1")
        .expect("one of three new sessions lands on b1");
    let cookie = cookie_header(pinned.cookie("sticky").expect("cookie"));
    // make the proxy hold a pooled upstream connection to b1, then kill b1
    get_ok(lb.addr, "/", &[("Cookie", &cookie)]);
    b1.kill();
    let r = get_ok(lb.addr, "/", &[("Cookie", &cookie)]);
    let moved_to = who(&r);
    assert_ne!(moved_to, "b1");
    let new_cookie = cookie_header(r.cookie("sticky").expect("a re-pin rewrites the cookie"));
    for _ in 0..20 {
        let r = get_ok(lb.addr, "/", &[("Cookie", &new_cookie)]);
        assert_eq!(who(&r), moved_to, "the new cookie keeps the new backend");
    }
    // the old cookie keeps being re-pinned while b1 is out (no failure either)
    for _ in 0..5 {
        let r = get_ok(lb.addr, "/", &[("Cookie", &cookie)]);
        assert_ne!(who(&r), "b1");
    }
    let admin = lb.admin.expect("admin");
    assert_eq!(
        metric(admin, "sticky_repins_total{service=\"default\",reason=\"connect_failed\"}"),
        1,
        "the first one found the connect failure"
    );
    assert!(metric(admin, "sticky_repins_total{service=\"default\",reason=\"unhealthy\"}") >= 5);
}

#[test]
fn a_recovered_backend_takes_new_sessions_again() {
    let (mut b1, b2, b3) = three();
    let port = b1.addr.port();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--backoff-min", "200ms", "--backoff-max", "400ms"]);
    b1.kill();
    let mut seen = HashSet::new();
    for _ in 0..12 {
        seen.insert(who(&get_ok(lb.addr, "/", &[])));
    }
    assert!(!seen.contains("b1"), "a dead backend gets no session");
    assert_eq!(seen.len(), 2);
    let _b1 = whoami_at("b1", Some(port));
    let back = wait::until(Duration::from_secs(5), || who(&get_ok(lb.addr, "/", &[])) == "b1");
    assert!(back, "the restarted backend must take new sessions once its pause is over");
}

#[test]
fn strict_answers_503_instead_of_repinning() {
    let (mut b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--strict"]);
    let pinned = (0..3)
        .map(|_| get_ok(lb.addr, "/", &[]))
        .find(|r| who(r) == "b1")
        .expect("one of three new sessions lands on b1");
    let cookie = cookie_header(pinned.cookie("sticky").expect("cookie"));
    b1.kill();
    for _ in 0..3 {
        let r = get(lb.addr, "/", &[("Cookie", &cookie)]).expect("a response");
        assert_eq!(r.status, 503);
        assert!(r.text().contains("strict"), "the 503 explains itself: {}", r.text());
        assert!(r.cookie("sticky").is_none(), "strict does not re-pin");
    }
    // new sessions still work, and a forged cookie is still just a new session
    assert_ne!(who(&get_ok(lb.addr, "/", &[])), "b1");
    assert!(get_ok(lb.addr, "/", &[("Cookie", "sticky=forged")]).cookie("sticky").is_some());
}

#[test]
fn no_available_backend_is_503() {
    let (mut b1, mut b2, mut b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &[]);
    for b in [&mut b1, &mut b2, &mut b3] {
        b.kill();
    }
    for _ in 0..3 {
        let r = get(lb.addr, "/", &[]).expect("a response");
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.text().contains("no backend"), "{}", r.text());
    }
}

#[test]
fn app_cookies_pass_through_and_sticky_cookie_is_not_forwarded() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &[]);
    let r = get_ok(lb.addr, "/set-cookie", &[]);
    let name = who(&r);
    let set = r.header_values("set-cookie");
    assert!(
        set.contains(&format!("app={name}; Path=/").as_str()),
        "the application's Set-Cookie is untouched: {set:?}"
    );
    let value = r.cookie("sticky").expect("and the sticky cookie is added").to_owned();
    let seen = get_ok(
        lb.addr,
        "/headers",
        &[("Cookie", &format!("a=1; sticky={value}; b=2")), ("X-Forwarded-For", "192.0.2.9")],
    );
    assert_eq!(who(&seen), name);
    let body = seen.text().to_ascii_lowercase();
    assert!(body.contains("\ncookie: a=1; b=2\n"), "the sticky cookie is stripped, the others kept: {body}");
    assert!(body.contains(&format!("\nhost: {}\n", lb.addr)), "Host passes through");
    assert!(body.contains("\nx-forwarded-for: 127.0.0.1\n"), "a client's own X-Forwarded-For is replaced: {body}");
    assert!(body.contains("\nx-forwarded-proto: http\n"));
    assert!(body.contains(&format!("\nx-forwarded-host: {}\n", lb.addr)));
    assert!(body.contains(&format!("\nforwarded: for=127.0.0.1;host=\"{}\";proto=http\n", lb.addr)));
    // only the sticky cookie: the Cookie header disappears
    let only = get_ok(lb.addr, "/headers", &[("Cookie", &format!("sticky={value}"))]);
    assert!(!only.text().to_ascii_lowercase().contains("\ncookie:"), "{}", only.text());
}

#[test]
fn malformed_and_oversized_requests_get_400_and_431() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--max-header-size", "16384"]);
    assert_eq!(raw(lb.addr, b"THIS IS NOT HTTP\r\n\r\n").expect("a response").status, 400);
    assert_eq!(raw(lb.addr, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").expect("a response").status, 400);
    assert_eq!(raw(lb.addr, b"GET / HTTP/1.1\r\n\r\n").expect("a response").status, 400, "HTTP/1.1 without Host");
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw(lb.addr, big.as_bytes()).expect("a response").status, 431);
    let many: String = (0..150).fold(String::new(), |mut many, i| {
        let _ = write!(many, "X-H{i}: v\r\n");
        many
    });
    assert_eq!(
        raw(lb.addr, format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes()).expect("a response").status,
        431
    );
    // still serving
    assert!(NAMES.contains(&who(&get_ok(lb.addr, "/", &[])).as_str()));
}

#[test]
fn a_config_file_routes_by_host_and_path() {
    let (a1, w1, w2) = (whoami("a1"), whoami("w1"), whoami("w2"));
    let dir = TempDir::new("config");
    let file = dir.file(
        "sticky.toml",
        &format!(
            r#"
[[services]]
name = "api"
path_prefix = "/api"
backends = ["a1=http://{}"]
[services.cookie]
name = "api_sticky"

[[services]]
name = "other-host"
host = "other.example"
backends = ["w2=http://{}"]

[[services]]
name = "web"
backends = [{{ name = "w1", url = "http://{}" }}]
"#,
            a1.addr, w2.addr, w1.addr
        ),
    );
    let lb = sticky_args(&["--config".to_owned(), file.to_string_lossy().into_owned()]);
    let api = get_ok(lb.addr, "/api/users", &[]);
    assert_eq!(who(&api), "a1");
    let api_cookie = api.cookie("api_sticky").expect("the api service's own cookie name").to_owned();
    assert_eq!(who(&get_ok(lb.addr, "/", &[])), "w1");
    assert_eq!(who(&get_ok(lb.addr, "/", &[("Host", "other.example:8080")])), "w2");
    // a cookie of one service means nothing to another (the web service does not know it)
    let r = get_ok(lb.addr, "/", &[("Cookie", &format!("sticky={api_cookie}"))]);
    assert_eq!(who(&r), "w1");
    assert!(r.cookie("sticky").is_some(), "re-pinned with the web service's cookie");
}

#[test]
fn draining_keeps_pinned_sessions_and_takes_no_new_ones() {
    let (b1, b2, b3) = three();
    let dir = TempDir::new("admin-token");
    let token_file = dir.file("token", &format!("{TOKEN}\n"));
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--admin-token-file", token_file.to_str().expect("utf-8 path")]);
    let admin = lb.admin.expect("admin");
    let post = |admin, path| post_with_token(admin, path, TOKEN);
    let pinned = (0..3)
        .map(|_| get_ok(lb.addr, "/", &[]))
        .find(|r| who(r) == "b1")
        .expect("one of three new sessions lands on b1");
    let cookie = cookie_header(pinned.cookie("sticky").expect("cookie"));
    // what a web page could make a browser send: refused, and nothing drains
    let simple = testkit::http::request(
        admin,
        "POST",
        "/api/services/default/backends/b1/drain",
        &[("Content-Type", "text/plain")],
        b"x",
    )
    .expect("admin answers");
    assert_eq!(simple.status, 415, "a CORS-simple write is refused: {simple:?}");
    let cross = testkit::http::request(
        admin,
        "POST",
        "/api/services/default/backends/b1/drain",
        &[("Content-Type", "application/json"), ("Origin", "http://evil.example")],
        b"",
    )
    .expect("admin answers");
    assert_eq!(cross.status, 403, "a cross-origin write is refused: {cross:?}");
    // without the token, or with a wrong one: 401, and nothing drains
    let anonymous = common::post(admin, "/api/services/default/backends/b1/drain").expect("admin answers");
    assert_eq!(anonymous.status, 401, "a write without the token is refused: {anonymous:?}");
    let wrong = post_with_token(admin, "/api/services/default/backends/b1/drain", "not-the-token-0000000");
    assert_eq!(wrong.status, 401, "a write with a wrong token is refused: {wrong:?}");
    assert!(
        get_ok(admin, "/api/backends", &[]).into_text().matches("\"state\": \"draining\"").count() == 0,
        "nothing drained"
    );
    assert_eq!(post(admin, "/api/services/default/backends/b1/drain").status, 200);
    assert_eq!(post(admin, "/api/services/default/backends/nope/drain").status, 404);
    for _ in 0..12 {
        assert_ne!(who(&get_ok(lb.addr, "/", &[])), "b1", "no new session on a draining backend");
    }
    for _ in 0..5 {
        assert_eq!(who(&get_ok(lb.addr, "/", &[("Cookie", &cookie)])), "b1", "pinned sessions stay");
    }
    let report = get_ok(admin, "/api/backends", &[]).into_text();
    assert!(report.contains("\"state\": \"draining\""), "{report}");
    assert_eq!(post(admin, "/api/services/default/backends/b1/activate").status, 200);
    let back = (0..6).any(|_| who(&get_ok(lb.addr, "/", &[])) == "b1");
    assert!(back, "an activated backend takes new sessions again");
}

#[test]
fn active_health_checks_gate_traffic() {
    let (b1, b2, b3) = three();
    // whoami answers /ws without an upgrade with 400: every check fails, no backend is ever admitted
    let failing = sticky(&[&b1, &b2, &b3], &NAMES, &["--health-path", "/ws", "--health-interval", "100ms"]);
    std::thread::sleep(Duration::from_millis(300));
    let r = get(failing.addr, "/", &[]).expect("a response");
    assert_eq!(r.status, 503, "{r:?}");
    let passing = sticky(&[&b1, &b2, &b3], &NAMES, &["--health-path", "/", "--health-interval", "100ms"]);
    let ok = wait::until(Duration::from_secs(5), || get(passing.addr, "/", &[]).is_ok_and(|r| r.status == 200));
    assert!(ok, "backends that pass their check take traffic");
}

#[test]
fn bad_configuration_names_the_field() {
    let out = std::process::Command::new(common::STICKY)
        .args(["run", "--listen", "127.0.0.1:0", "--backend", "b1=https://127.0.0.1:1"])
        .output()
        .expect("sticky must run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--backend") && err.contains("https"), "{err}");
    let dir = TempDir::new("badcfg");
    let file = dir.file("bad.toml", "[[services]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n[services.cookie]\nsamesite = \"sometimes\"\n");
    let out = std::process::Command::new(common::STICKY)
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .expect("sticky must run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services[0].cookie.samesite"), "{err}");
}

/// A fake backend on loopback: accepts connections and answers each with `reply` (None: never answers),
/// for as long as the returned listener's thread lives (it stops when the test process ends).
fn fake_backend(reply: Option<&'static [u8]>) -> std::net::SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake backend");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(50) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            match reply {
                Some(r) => {
                    let _ = s.write_all(r);
                }
                // keep the socket open without answering
                None => held.push(s),
            }
        }
    });
    addr
}

#[test]
fn a_silent_backend_gives_504_and_a_broken_one_502() {
    let silent = fake_backend(None);
    let lb = common::sticky_args(&[
        "--backend".into(),
        format!("s1=http://{silent}"),
        "--response-timeout".into(),
        "300ms".into(),
    ]);
    let started = Instant::now();
    let r = get(lb.addr, "/", &[]).expect("a response");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "the response timeout applies");
    let broken = fake_backend(Some(b"this is not HTTP\r\n\r\n"));
    let lb = common::sticky_args(&["--backend".into(), format!("x1=http://{broken}")]);
    let r = get(lb.addr, "/", &[]).expect("a response");
    assert_eq!(r.status, 502, "{r:?}");
    let closing = fake_backend(Some(b""));
    let lb = common::sticky_args(&["--backend".into(), format!("c1=http://{closing}")]);
    let r = get(lb.addr, "/", &[]).expect("a response");
    assert_eq!(r.status, 502, "{r:?}");
}

#[test]
fn a_slow_client_is_disconnected_after_the_idle_timeout() {
    use std::io::{Read as _, Write as _};
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--idle-timeout", "300ms"]);
    // half a request head, then nothing: the connection must be closed by the proxy
    let mut s = std::net::TcpStream::connect(lb.addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("write");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after about 300 ms, not {waited:?}"
    );
    // an idle keep-alive connection is closed too
    let mut s = std::net::TcpStream::connect(lb.addr).expect("connect");
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", lb.addr).as_bytes()).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).contains("I'm b"), "the request was answered first");
    assert!(started.elapsed() < Duration::from_secs(3), "then the idle connection was closed");
}

#[test]
fn max_age_cookies_are_refreshed_at_half_time_and_expire_server_side() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &["--cookie-max-age", "4s"]);
    let first = get_ok(lb.addr, "/", &[]);
    assert!(first.header_values("set-cookie")[0].contains("Max-Age=4"), "{:?}", first.header_values("set-cookie"));
    let old = first.cookie("sticky").expect("cookie").to_owned();
    let pinned = who(&first);
    let young = get_ok(lb.addr, "/", &[("Cookie", &cookie_header(&old))]);
    assert!(young.cookie("sticky").is_none(), "a young cookie is not re-issued");
    // issue times are whole seconds: 3.05 s later the cookie's age is 3 or 4, past half of Max-Age but
    // not past Max-Age: re-issued for the same backend
    std::thread::sleep(Duration::from_millis(3050));
    let r = get_ok(lb.addr, "/", &[("Cookie", &cookie_header(&old))]);
    assert_eq!(who(&r), pinned, "a refresh keeps the backend");
    let refreshed = r.cookie("sticky").expect("past half of Max-Age the cookie is re-issued").to_owned();
    assert_ne!(refreshed, old);
    // 2 s later the old cookie's age is 5 or 6: expired server-side (a browser would have dropped it;
    // this is a replayed cookie), treated as absent and counted; the refreshed one is still good
    std::thread::sleep(Duration::from_secs(2));
    let r = get_ok(lb.addr, "/", &[("Cookie", &cookie_header(&old))]);
    assert!(r.cookie("sticky").is_some(), "an expired cookie is replaced");
    let admin = lb.admin.expect("admin");
    assert_eq!(metric(admin, "sticky_repins_total{service=\"default\",reason=\"expired\"}"), 1);
    let r = get_ok(lb.addr, "/", &[("Cookie", &cookie_header(&refreshed))]);
    assert_eq!(who(&r), pinned);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    use std::io::{Read as _, Write as _};
    // a backend that answers after 700 ms
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a slow backend");
    let slow = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(700));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nI'm slow\n");
            });
        }
    });
    let mut lb = common::sticky_args(&["--backend".into(), format!("slow=http://{slow}")]);
    let addr = lb.addr;
    let in_flight = std::thread::spawn(move || get(addr, "/", &[]));
    std::thread::sleep(Duration::from_millis(200));
    let pid = lb.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let r = in_flight.join().expect("the client thread").expect("the request in flight is answered");
    assert_eq!((r.status, r.text().as_ref()), (200, "I'm slow\n"));
    wait::until(Duration::from_secs(5), || !lb.running());
    assert!(!lb.running(), "sticky exits once nothing is in flight");
    assert!(std::net::TcpStream::connect(addr).is_err(), "and no longer accepts");
}

#[test]
fn a_pooled_connection_the_backend_closed_is_replaced_without_an_error() {
    use std::io::{Read as _, Write as _};
    // a backend that keeps nothing alive: it answers one request (announcing keep-alive) and closes
    // the connection 50 ms later, as a backend with a short keep-alive timeout does
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a backend");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(40) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if matches!(s.read(&mut buf), Ok(n) if n > 0) {
                let _ =
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\nI'm brief\n");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let lb = common::sticky_args(&["--backend".into(), format!("brief=http://{addr}")]);
    for i in 0..10 {
        let r = get(lb.addr, "/", &[]).expect("a response");
        assert_eq!(
            (r.status, r.text().as_ref()),
            (200, "I'm brief\n"),
            "request {i}: a stale pooled connection must not fail the request"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// The admin token of the tests that write through the admin API.
const TOKEN: &str = "e2e-admin-token-0123456789";

/// `POST path` (JSON, empty body) with `Authorization: Bearer token`.
fn post_with_token(admin: SocketAddr, path: &str, token: &str) -> testkit::http::Response {
    let auth = format!("Bearer {token}");
    testkit::http::request(admin, "POST", path, &[("Content-Type", "application/json"), ("Authorization", &auth)], b"")
        .expect("admin answers")
}

#[test]
fn admin_writes_are_refused_without_a_token_file_and_when_read_only() {
    let b1 = whoami("b1");
    let dir = TempDir::new("admin-read-only");
    let token_file = dir.file("token", TOKEN);
    let open = sticky(&[&b1], &["b1"], &[]);
    let read_only =
        sticky(&[&b1], &["b1"], &["--admin-token-file", token_file.to_str().expect("utf-8 path"), "--admin-read-only"]);
    for (lb, why) in [(&open, "no --admin-token-file"), (&read_only, "--admin-read-only")] {
        let admin = lb.admin.expect("admin");
        let refused = post_with_token(admin, "/api/services/default/backends/b1/drain", TOKEN);
        assert_eq!(refused.status, 403, "{why}: writes are disabled: {refused:?}");
        let report = get_ok(admin, "/api/backends", &[]).into_text();
        assert!(!report.contains("\"state\": \"draining\""), "{why}: nothing drained: {report}");
        assert!(report.contains("\"b1\""), "{why}: reads still work: {report}");
    }
}

#[test]
fn explain_names_the_backend_that_answers_a_cookie() {
    let (b1, b2, b3) = three();
    let lb = sticky(&[&b1, &b2, &b3], &NAMES, &[]);
    let admin = lb.admin.expect("admin");
    let first = get_ok(lb.addr, "/", &[]);
    let value = first.cookie("sticky").expect("cookie").to_owned();
    let explained = get_ok(admin, &format!("/api/explain?service=default&cookie={value}"), &[]).into_text();
    let answer: serde_json::Value = serde_json::from_str(&explained).expect("JSON");
    assert_eq!(answer["outcome"], "keep", "{explained}");
    assert_eq!(answer["backend"], who(&first), "explain names the backend that answered: {explained}");
    // and a request with that cookie still goes there
    assert_eq!(who(&get_ok(lb.addr, "/", &[("Cookie", &format!("sticky={value}"))])), who(&first));
    let fresh = get_ok(admin, "/api/explain?service=default", &[]).into_text();
    assert!(fresh.contains("\"outcome\": \"pin\""), "{fresh}");
    let unknown = get(admin, "/api/explain?service=nope", &[]).expect("admin answers");
    assert_eq!(unknown.status, 404, "{unknown:?}");
}
