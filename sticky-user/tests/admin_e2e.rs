//! The admin listener of a real `sticky run`: the Host check against DNS rebinding, and
//! `/api/explain?client=IP` for a tcp service relayed in user space, checked against where the
//! connection really went (and its access log line).

mod common;

use std::time::Duration;

use common::{TempDir, get, get_ok, sticky, sticky_args, who, whoami};

#[test]
fn admin_reads_answer_only_for_the_listeners_own_names() {
    let b1 = whoami("b1");
    let lb = sticky(&[&b1], &["b1"], &[]);
    let admin = lb.admin.expect("admin");
    let own = admin.to_string();
    for host in [own.as_str(), "localhost", &format!("localhost:{}", admin.port())] {
        let r = get(admin, "/api/backends", &[("Host", host)]).expect("admin answers");
        assert_eq!(r.status, 200, "Host {host}: {r:?}");
        assert!(r.text().contains("\"b1\""), "the backends document: {}", r.text());
    }
    let rebound = format!("rebound.example:{}", admin.port());
    for path in ["/api/backends", "/metrics", "/", "/api/overview"] {
        let r = get(admin, path, &[("Host", &rebound)]).expect("admin answers");
        assert_eq!(r.status, 421, "{path} with another site's Host: {r:?}");
        assert!(!r.text().contains("b1"), "nothing of the state is shown: {}", r.text());
    }
    let health = get(admin, "/healthz", &[("Host", &rebound)]).expect("admin answers");
    assert_eq!((health.status, &*health.text()), (200, "ok\n"), "/healthz is exempt");
    drop(lb);

    let named = sticky(&[&b1], &["b1"], &["--admin-host", "rebound.example"]);
    let admin = named.admin.expect("admin");
    let r = get(admin, "/api/backends", &[("Host", &format!("rebound.example:{}", admin.port()))]).expect("answers");
    assert_eq!(r.status, 200, "an --admin-host name is answered: {r:?}");
    let other = get(admin, "/api/backends", &[("Host", "other.example")]).expect("answers");
    assert_eq!(other.status, 421, "{other:?}");
}

#[test]
fn tcp_explain_names_the_backend_a_client_reaches_and_the_log_says_so() {
    let b1 = whoami("b1");
    let b2 = whoami("b2");
    let names = |addr: &str| if addr == b1.addr.to_string() { "b1" } else { "b2" };
    let dir = TempDir::new("tcp-explain");
    let log = dir.path().join("access.log");
    let args: Vec<String> = [
        "--mode",
        "tcp",
        "--no-ebpf",
        "--backend",
        &b1.addr.to_string(),
        "--backend",
        &b2.addr.to_string(),
        "--access-log",
        "json",
        "--access-log-file",
        &log.to_string_lossy(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let lb = sticky_args(&args);
    let admin = lb.admin.expect("admin");
    let explain = |what: &str| -> serde_json::Value {
        let body = get_ok(admin, &format!("/api/explain?service=default&client=127.0.0.1{what}"), &[]).into_text();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("explain must answer JSON ({e}): {body}"))
    };

    let before = explain("");
    assert_eq!(before["path"], "user-space", "{before}");
    assert_eq!(before["outcome"], "maglev", "a new client has no affinity entry: {before}");
    assert_eq!(before["affinity"], "read", "{before}");
    let picked = before["backend"].as_str().expect("a backend").to_owned();
    assert_eq!(before["maglev"], picked.as_str());
    assert!(before["slot"].as_u64().is_some_and(|s| s < 16381), "{before}");

    let r = get_ok(lb.addr, "/", &[]);
    assert_eq!(who(&r), names(&picked), "the connection went where explain said");

    let after = explain("");
    assert_eq!(after["outcome"], "affinity", "the connection left an affinity entry: {after}");
    assert_eq!(after["backend"], picked.as_str());

    let unknown = get(admin, "/api/explain?service=nope&client=127.0.0.1", &[]).expect("answers");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let bad = get(admin, "/api/explain?service=default&client=not-an-ip", &[]).expect("answers");
    assert_eq!(bad.status, 400, "{bad:?}");

    // the relay's line, written when the connection closed
    let mut line = serde_json::Value::Null;
    testkit::wait::until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        line = text.lines().next().and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
        !line.is_null()
    });
    assert_eq!(line["proto"], "tcp", "{line}");
    assert_eq!(line["service"], "default", "{line}");
    assert_eq!(line["client"], "127.0.0.1", "{line}");
    assert_eq!(line["backend"], picked.as_str(), "{line}");
    assert_eq!(line["pick"], "maglev", "{line}");
    assert!(line["bytes_in"].as_u64().is_some_and(|n| n > 10), "the request's bytes: {line}");
    assert!(line["bytes_out"].as_u64().is_some_and(|n| n > 10), "the answer's bytes: {line}");
    assert!(line.get("method").is_none(), "{line}");
}

#[test]
fn a_request_in_flight_counts_as_an_open_connection_of_its_backend() {
    // a backend that accepts and reads but does not answer until told to
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let silent_addr = silent.local_addr().expect("its address");
    let lb = common::sticky_args(&["--backend".to_owned(), format!("slow=http://{silent_addr}")]);
    let admin = lb.admin.expect("admin");
    let open = || -> u64 {
        let doc: serde_json::Value =
            serde_json::from_str(&get_ok(admin, "/api/overview", &[]).into_text()).expect("/api/overview is JSON");
        doc["services"][0]["backends"][0]["open_connections"].as_u64().expect("open_connections")
    };
    assert_eq!(open(), 0);
    let proxy = lb.addr;
    let client = std::thread::spawn(move || get(proxy, "/held", &[]));
    silent.set_nonblocking(false).expect("blocking accept");
    let (mut upstream, _) = silent.accept().expect("sticky connects to the backend");
    let mut held = 0;
    testkit::wait::until(Duration::from_secs(10), || {
        held = open();
        held == 1
    });
    assert_eq!(held, 1, "the request holds one upstream connection of its backend");
    // the backend answers: the exchange ends, the connection is no longer in use
    std::io::Write::write_all(&mut upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nI'm slow\n")
        .expect("the answer is written");
    let r = client.join().expect("the client thread").expect("the client gets the answer");
    assert_eq!((r.status, who(&r)), (200, "slow".to_owned()));
    let mut after = 1;
    testkit::wait::until(Duration::from_secs(10), || {
        after = open();
        after == 0
    });
    assert_eq!(after, 0, "the exchange is over");
}
