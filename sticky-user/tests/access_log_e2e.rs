//! The access log of a real `sticky run`: a new session, a pinned request and a re-pin (its backend
//! killed) each write one line with the right fields, read back from the log file; the query string
//! is not logged; `--access-log-rate` drops the excess and counts it.

mod common;

use std::{path::Path, time::Duration};

use common::{TempDir, get_ok, metric, sticky, who, whoami};

/// The log's lines as JSON, once there are at least `n` (the writer is a thread of its own), within 10 s.
fn lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    testkit::wait::until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        out = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a line must be JSON ({e}): {l}")))
            .collect();
        out.len() >= n
    });
    out
}

#[test]
fn new_pinned_and_repinned_requests_each_log_one_line() {
    let mut b1 = whoami("b1");
    let mut b2 = whoami("b2");
    let dir = TempDir::new("access-log");
    let log = dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let lb = sticky(&[&b1, &b2], &["b1", "b2"], &["--access-log", "json", "--access-log-file", &log_arg]);

    let first = get_ok(lb.addr, "/cart?token=secret", &[]);
    let home = who(&first);
    let cookie = format!("sticky={}", first.cookie("sticky").expect("a new session gets a cookie"));
    let again = get_ok(lb.addr, "/again", &[("Cookie", &cookie)]);
    assert_eq!(who(&again), home);
    // the session's backend goes away: the next request is re-pinned
    if home == "b1" {
        b1.kill();
    } else {
        b2.kill();
    }
    let moved = get_ok(lb.addr, "/after", &[("Cookie", &cookie)]);
    let other = who(&moved);
    assert_ne!(other, home, "the request must leave the dead backend");

    let mut got = lines(&log, 3);
    assert_eq!(got.len(), 3, "one line per request: {got:#?}");
    // a line is written when its exchange ends, which may be after the client has read the answer and sent
    // the next request on another connection: the lines are put in the order of the requests by their paths
    let order = |l: &serde_json::Value| ["/cart", "/again", "/after"].iter().position(|p| l["path"] == *p);
    got.sort_by_key(|l| order(l).unwrap_or(usize::MAX));
    for l in &got {
        assert_eq!(l["client"], "127.0.0.1", "{l}");
        assert_eq!(l["service"], "default", "{l}");
        assert_eq!(l["proto"], "http/1.1", "{l}");
        assert_eq!(l["method"], "GET", "{l}");
        assert_eq!(l["status"], 200, "{l}");
        assert!(l["bytes_in"].as_u64().is_some_and(|n| n > 20), "request head bytes: {l}");
        // whoami's answer: a head and `I'm bN\n`
        assert!(l["bytes_out"].as_u64().is_some_and(|n| n > 40), "response bytes: {l}");
        assert!(l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{l}");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
    assert_eq!(got[0]["pick"], "new");
    assert!(got[0]["reason"].is_null());
    assert_eq!(got[0]["backend"], home.as_str());
    assert_eq!(got[0]["path"], "/cart", "the query string is never logged");
    assert!(!std::fs::read_to_string(&log).unwrap_or_default().contains("secret"));
    assert_eq!(got[1]["path"], "/again");
    assert_eq!(got[1]["pick"], "pinned");
    assert_eq!(got[1]["backend"], home.as_str());
    assert_eq!(got[2]["pick"], "repinned");
    assert_eq!(got[2]["reason"], "connect_failed", "the killed backend refused the connect: {}", got[2]);
    assert_eq!(got[2]["backend"], other.as_str());
    assert_eq!(got[2]["path"], "/after");
    let admin = lb.admin.expect("admin");
    assert_eq!(metric(admin, "sticky_access_log_dropped_total"), 0);
}

#[test]
fn the_rate_limit_drops_and_counts_the_excess() {
    const REQUESTS: u64 = 6;
    let b1 = whoami("b1");
    let dir = TempDir::new("access-log-rate");
    let log = dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let lb =
        sticky(&[&b1], &["b1"], &["--access-log", "json", "--access-log-file", &log_arg, "--access-log-rate", "1"]);
    for _ in 0..REQUESTS {
        get_ok(lb.addr, "/", &[]);
    }
    let admin = lb.admin.expect("admin");
    // a line is offered (and written or dropped and counted) when its exchange ends, which may be after the
    // client has read the answer: wait until every request is accounted for, or 10 s
    let (mut logged, mut dropped) = (0, 0);
    testkit::wait::until(Duration::from_secs(10), || {
        dropped = metric(admin, "sticky_access_log_dropped_total");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        logged = u64::try_from(text.lines().count()).expect("a count");
        logged + dropped >= REQUESTS
    });
    // a line a second: the requests span a second or two, never six
    assert!((1..REQUESTS).contains(&logged), "logged {logged} of {REQUESTS}");
    assert_eq!(logged + dropped, REQUESTS, "every request is logged or counted as dropped");
}

#[test]
fn text_lines_are_logfmt_on_stdout_or_a_file() {
    let b1 = whoami("b1");
    let dir = TempDir::new("access-log-text");
    let log = dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let lb = sticky(&[&b1], &["b1"], &["--access-log", "text", "--access-log-file", &log_arg]);
    get_ok(lb.addr, "/a%20b", &[]);
    let mut text = String::new();
    testkit::wait::until(Duration::from_secs(10), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.ends_with('\n')
    });
    assert!(text.starts_with("time="), "{text}");
    assert!(
        text.contains(" client=127.0.0.1 proto=http/1.1 service=default backend=b1 pick=new reason=- status=200 "),
        "{text}"
    );
    assert!(text.trim_end().ends_with(" method=GET path=/a%20b"), "{text}");
}

#[test]
fn http2_requests_are_logged_at_their_response_head() {
    let b1 = whoami("b1");
    let dir = TempDir::new("access-log-h2");
    let log = dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let lb = sticky(&[&b1], &["b1"], &["--h2c", "--access-log", "json", "--access-log-file", &log_arg]);
    // curl speaks h2c with prior knowledge (the h2 end-to-end tests use it too)
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge", &format!("http://{}/h2path?q=1", lb.addr)])
        .output()
        .expect("curl is needed (the project's set-up installs it)");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("I'm b1"), "{out:?}");
    let got = lines(&log, 1);
    assert_eq!(got.len(), 1, "{got:#?}");
    let l = &got[0];
    assert_eq!(l["proto"], "h2", "{l}");
    assert_eq!((l["backend"].as_str(), l["pick"].as_str()), (Some("b1"), Some("new")), "{l}");
    assert_eq!((l["status"].as_u64(), l["method"].as_str()), (Some(200), Some("GET")), "{l}");
    assert_eq!(l["path"], "/h2path", "{l}");
    assert_eq!(l["bytes_out"], 7, "whoami's Content-Length (I'm b1 and a newline): {l}");
}

#[test]
fn answers_without_a_route_are_logged_as_no_route() {
    let w1 = whoami("w1");
    let dir = TempDir::new("access-log-404");
    let log = dir.path().join("access.log");
    let config = dir.file(
        "sticky.toml",
        &format!("[[services]]\nname = \"web\"\nhost = \"web.test\"\nbackends = [\"w1=http://{}\"]\n", w1.addr),
    );
    let args: Vec<String> =
        ["--config", &config.to_string_lossy(), "--h2c", "--access-log", "json", "--access-log-file"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([log.to_string_lossy().into_owned()])
            .collect();
    let lb = common::sticky_args(&args);
    let r = common::get(lb.addr, "/nowhere?secret=1", &[("Host", "other.test")]).expect("an answer");
    assert_eq!(r.status, 404, "{r:?}");
    // the same over HTTP/2 (curl speaks h2c with prior knowledge)
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Host: other.test", &format!("http://{}/h2nowhere", lb.addr)])
        .output()
        .expect("curl is needed (the project's set-up installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404", "{out:?}");
    let mut got = lines(&log, 2);
    assert_eq!(got.len(), 2, "one line per request: {got:#?}");
    got.sort_by_key(|l| l["proto"].as_str().map(str::to_owned));
    for (l, (proto, path)) in got.iter().zip([("h2", "/h2nowhere"), ("http/1.1", "/nowhere")]) {
        assert_eq!(l["proto"], proto, "{l}");
        assert_eq!(l["path"], path, "{l}");
        assert_eq!(l["service"], "-", "no service matched: {l}");
        assert_eq!(l["pick"], "no_route", "{l}");
        assert_eq!(l["status"], 404, "{l}");
        assert!(l["backend"].is_null(), "{l}");
        assert!(l["bytes_out"].as_u64().is_some_and(|n| n > 0), "sticky's own answer has a body: {l}");
    }
    assert!(got[1]["bytes_in"].as_u64().is_some_and(|n| n > 20), "the request head: {}", got[1]);
}
