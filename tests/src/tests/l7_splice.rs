//! http mode's kernel splice end to end: `sticky run` in a namespace of its own, echo backends that
//! name themselves and say whether the proxy's headers reached them, WebSocket backends, and a
//! SIGSTOP to show that a spliced connection no longer needs the process.

use std::{net::Shutdown, time::Duration};

use tungstenite::{Message, client::IntoClientRequest as _, http::HeaderValue};

use testkit::{http::Framing, wait};

use crate::{
    l7::{self, Ebpf, L7Lab, LB, Splice},
    require_root,
};

type Ws = tungstenite::WebSocket<std::net::TcpStream>;

/// A WebSocket to the `ws` service; returns it and the sticky cookie its 101 set, if any.
fn websocket(cookie: Option<&str>) -> (Ws, Option<String>) {
    let stream = std::net::TcpStream::connect(LB).expect("connect must work");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut req = format!("ws://{LB}/ws").into_client_request().expect("request");
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", HeaderValue::from_str(&format!("sticky={c}")).expect("header"));
    }
    let (ws, resp) = tungstenite::client(req, stream).expect("the WebSocket handshake must succeed");
    let set = resp.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.strip_prefix("sticky=").map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    });
    (ws, set)
}

/// Sends `text` and returns the echo.
fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).expect("send must work");
    loop {
        match ws.read().expect("the echo must arrive") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Closes a WebSocket cleanly (close frames both ways, then FIN both ways).
fn close(mut ws: Ws) {
    let _ = ws.close(None);
    while ws.read().is_ok() {}
}

fn backend_of(echoed: &str) -> String {
    echoed.strip_prefix("I'm ").and_then(|r| r.split(':').next()).expect("echo names its backend").to_owned()
}

fn stopped(lab: &L7Lab) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", lab.lb.id())).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) == Some('T')
}

fn body(i: usize, len: usize) -> Vec<u8> {
    const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
    (0..len).map(|j| LETTERS[(i + j) % LETTERS.len()]).collect()
}

#[test]
fn l7_spliced_websocket_echoes_in_the_kernel_stays_pinned_and_empties_its_maps() {
    require_root!();
    let lab = L7Lab::start(Ebpf::Kernel, Splice { pinned: false, upgrades: true });
    let (ws, backend) = lab.run(|| {
        let (mut first, cookie) = websocket(None);
        let cookie = cookie.expect("a new WebSocket session gets a cookie on its 101");
        let backend = backend_of(&echo(&mut first, "hello"));
        close(first);
        let (mut ws, again) = websocket(Some(&cookie));
        assert!(again.is_none(), "a valid cookie is not set again");
        for i in 0..20 {
            assert_eq!(echo(&mut ws, &format!("m{i}")), format!("I'm {backend}: m{i}"), "stays on its backend");
        }
        (ws, backend)
    });
    assert!(lab.sample(r#"sticky_splices_total{outcome="joined"}"#) >= 2, "both WebSockets were spliced");
    assert_eq!(lab.sample("sticky_spliced_connections_active{}"), 1);
    assert_eq!(lab.sample(r#"sticky_splice_map_entries{map="SPLICE_SOCKS"}"#), 2, "two sockets in the kernel");
    let redirected = lab.sample(r#"sticky_splice_skbs_total{verdict="redirect"}"#);
    assert!(redirected >= 42, "the kernel carried the messages both ways ({redirected} skbs)");

    // user space out of the path: the process is stopped, the WebSocket goes on
    lab.signal(libc::SIGSTOP);
    assert!(wait::until(Duration::from_secs(2), || stopped(&lab)), "sticky must be stopped");
    let ws = lab.run(move || {
        let mut ws = ws;
        for i in 0..20 {
            assert_eq!(echo(&mut ws, &format!("s{i}")), format!("I'm {backend}: s{i}"), "echo while sticky is stopped");
        }
        ws
    });
    lab.signal(libc::SIGCONT);
    lab.run(move || close(ws));
    lab.assert_splice_empty();
    assert!(lab.sample(r#"sticky_splices_total{outcome="finished"}"#) >= 2, "closed with FINs, not resets");
    assert_eq!(lab.sample(r#"sticky_splices_total{outcome="aborted"}"#), 0);
}

#[test]
fn l7_splice_leaves_a_first_request_with_forwarding_fields_on_the_proxy_path() {
    require_root!();
    let lab = L7Lab::start(Ebpf::Kernel, Splice { pinned: true, upgrades: true });
    let pinned = lab.run(|| {
        let mut fresh = l7::client();
        let r = fresh.request("GET", "/", &[], b"").expect("the response must arrive");
        let cookie = r.cookie("sticky").expect("a new session gets a cookie").to_owned();
        let pinned = r.header("x-backend").expect("echo names itself").to_owned();
        // a valid cookie, but the client speaks for itself: later requests would pass unmodified
        // through the kernel, so the connection is not spliced (issue 13 item 3)
        let mut claims = l7::client();
        let cookie = format!("sticky={cookie}");
        let r = claims
            .request("GET", "/", &[("cookie", &cookie), ("x-forwarded-proto", "https")], b"")
            .expect("the response must arrive");
        assert_eq!(r.header("x-backend"), Some(pinned.as_str()), "the pinned backend answers");
        let r = claims.request("GET", "/", &[("cookie", &cookie)], b"").expect("the response must arrive");
        assert_eq!(r.header("x-saw-forwarded"), Some("yes"), "its later requests still pass the proxy");
        pinned
    });
    assert_eq!(lab.sample(&format!(r#"sticky_spliced_connections_total{{service="echo",backend="{pinned}"}}"#)), 0);
}

#[test]
fn l7_splice_keeps_a_pinned_keep_alive_connection_on_its_backend_while_sticky_is_stopped() {
    require_root!();
    let lab = L7Lab::start(Ebpf::Kernel, Splice { pinned: true, upgrades: true });
    let (fresh, spliced, pinned, cookie) = lab.run(|| {
        // a new session stays on the proxy path, also for its later requests
        let mut fresh = l7::client();
        let r = fresh.request("GET", "/", &[], b"").expect("the response must arrive");
        let cookie = r.cookie("sticky").expect("a new session gets a cookie").to_owned();
        let pinned = r.header("x-backend").expect("echo names itself").to_owned();
        let r = fresh.request("GET", "/", &[], b"").expect("the response must arrive");
        assert_eq!(r.header("x-saw-forwarded"), Some("yes"), "a non-spliced connection's requests pass the proxy");
        // a connection whose first request carries the cookie is spliced after that request's head
        let mut spliced = l7::client();
        let r = spliced
            .request("POST", "/", &[("cookie", &format!("sticky={cookie}"))], b"first")
            .expect("the response must arrive");
        assert_eq!(r.header("x-backend"), Some(pinned.as_str()), "the pinned backend answers");
        assert_eq!(r.header("x-saw-forwarded"), Some("yes"), "the first request got the forwarding headers");
        assert_eq!(r.body, format!("I'm {pinned}\nfirst").as_bytes());
        assert!(r.cookie("sticky").is_none(), "a valid cookie is not set again");
        (fresh, spliced, pinned, cookie)
    });
    assert_eq!(lab.sample("sticky_spliced_connections_active{}"), 1);
    assert_eq!(lab.sample(&format!(r#"sticky_spliced_connections_total{{service="echo",backend="{pinned}"}}"#)), 1);

    lab.signal(libc::SIGSTOP);
    assert!(wait::until(Duration::from_secs(2), || stopped(&lab)), "sticky must be stopped");
    let fresh = lab.run(|| {
        let mut spliced = spliced;
        for i in 0..50 {
            let len = if i == 7 { 1 << 20 } else { 1 + i * 37 };
            let b = body(i, len);
            let framing = if i % 2 == 1 { Framing::Chunked } else { Framing::Length };
            spliced.send("POST", &format!("/r{i}"), &[], &b, framing).expect("a request must be written");
            let r = spliced.read_response().expect("a spliced request is answered while sticky is stopped");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-backend"), Some(pinned.as_str()), "request {i} stays on its backend");
            assert_eq!(r.header("x-saw-forwarded"), Some("no"), "request {i} went through the kernel, not the proxy");
            let mut want = format!("I'm {pinned}\n").into_bytes();
            want.extend_from_slice(&b);
            assert!(r.body == want, "request {i}'s body ({len} bytes, chunked: {}) arrives intact", i % 2 == 1);
        }
        // the control: a connection on the proxy path gets nothing while the process is stopped
        let mut fresh = fresh;
        fresh.stream().set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
        fresh
            .send("GET", "/", &[("cookie", &format!("sticky={cookie}"))], b"", Framing::Length)
            .expect("a request must be written");
        assert!(fresh.read_response().is_err(), "a non-spliced connection must stall while sticky is stopped");
        fresh
    });
    lab.signal(libc::SIGCONT);
    lab.run(|| {
        let mut fresh = fresh;
        fresh.stream().set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let r = fresh.read_response().expect("answered once sticky runs again");
        assert_eq!(r.header("x-backend"), Some(pinned.as_str()));
    });
}

#[test]
fn l7_spliced_connections_pass_fin_and_reset_on_and_empty_their_maps() {
    require_root!();
    let lab = L7Lab::start(Ebpf::Kernel, Splice { pinned: true, upgrades: true });
    let cookie = lab.run(|| {
        l7::client()
            .request("GET", "/", &[], b"")
            .expect("the response must arrive")
            .cookie("sticky")
            .expect("cookie")
            .to_owned()
    });
    let with_cookie = format!("sticky={cookie}");
    let cookie_header = [("cookie", with_cookie.as_str())];

    // the client half-closes: the backend sees EOF and closes, which the client sees as EOF
    lab.run(|| {
        let mut c = l7::client();
        assert_eq!(c.request("GET", "/", &cookie_header, b"").expect("the response must arrive").status, 200);
        assert_eq!(
            c.request("GET", "/", &[], b"").expect("the response must arrive").header("x-saw-forwarded"),
            Some("no"),
            "spliced"
        );
        c.stream().shutdown(Shutdown::Write).expect("shutdown");
        assert_eq!(c.read_to_end().expect("EOF, not an error"), b"", "the backend's FIN comes back");
    });
    lab.assert_splice_empty();
    assert_eq!(lab.sample(r#"sticky_splices_total{outcome="finished"}"#), 1);

    // the backend closes first (after answering `connection: close`): the client reads the answer, then EOF
    lab.run(|| {
        let mut c = l7::client();
        assert_eq!(c.request("GET", "/", &cookie_header, b"").expect("the response must arrive").status, 200);
        let r = c.request("GET", "/", &[("connection", "close")], b"").expect("the response must arrive");
        assert_eq!(r.header("x-saw-forwarded"), Some("no"), "spliced");
        assert_eq!(c.read_to_end().expect("EOF, not an error"), b"", "the backend's FIN reaches the client");
        // the client may still write after the backend's FIN (half-open) before it closes
        c.stream().shutdown(Shutdown::Write).expect("shutdown");
    });
    lab.assert_splice_empty();
    assert_eq!(lab.sample(r#"sticky_splices_total{outcome="finished"}"#), 2);

    // the client resets: the pair is torn down
    lab.run(|| {
        let mut c = l7::client();
        assert_eq!(c.request("GET", "/", &cookie_header, b"").expect("the response must arrive").status, 200);
        socket2::SockRef::from(c.stream()).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(c);
    });
    lab.assert_splice_empty();
    assert_eq!(lab.sample(r#"sticky_splices_total{outcome="aborted"}"#), 1);
}

fn falls_back(ebpf: Ebpf) {
    let lab = L7Lab::start(ebpf, Splice { pinned: true, upgrades: true });
    lab.run(|| {
        let mut c = l7::client();
        let r = c.request("GET", "/", &[], b"").expect("the response must arrive");
        let cookie = format!("sticky={}", r.cookie("sticky").expect("cookie"));
        let pinned = r.header("x-backend").expect("echo names itself").to_owned();
        let mut c = l7::client();
        for i in 0..20 {
            let b = body(i, 100 + i);
            let framing = if i % 2 == 0 { Framing::Chunked } else { Framing::Length };
            c.send("POST", "/", &[("cookie", &cookie)], &b, framing).expect("a request must be written");
            let r = c.read_response().expect("answered");
            assert_eq!(r.header("x-backend"), Some(pinned.as_str()), "{ebpf:?}: request {i} stays pinned");
            assert_eq!(r.header("x-saw-forwarded"), Some("yes"), "{ebpf:?}: request {i} went through the proxy");
        }
        let (mut ws, cookie) = websocket(None);
        let backend = backend_of(&echo(&mut ws, "a"));
        close(ws);
        let (mut ws, _) = websocket(cookie.as_deref());
        for i in 0..5 {
            assert_eq!(echo(&mut ws, &format!("u{i}")), format!("I'm {backend}: u{i}"), "{ebpf:?}: relayed, pinned");
        }
        close(ws);
    });
    let log = lab.log();
    let lines = log.lines().filter(|l| l.contains("kernel splice unavailable")).count();
    assert_eq!(lines, 1, "{ebpf:?}: exactly one log line says the splice is off:\n{log}");
    assert!(lab.sample(r#"sticky_spliced_connections_total{service="echo",backend="b1"}"#) == 0);
    assert!(lab.sample(r#"sticky_spliced_connections_total{service="echo",backend="b2"}"#) == 0);
}

#[test]
fn l7_splice_falls_back_to_the_proxy_with_no_ebpf() {
    require_root!();
    falls_back(Ebpf::Disabled);
}

#[test]
fn l7_splice_falls_back_to_the_proxy_when_unprivileged() {
    require_root!();
    falls_back(Ebpf::Unprivileged);
}

#[test]
fn l7_websocket_is_relayed_in_user_space_when_the_service_turns_the_splice_off() {
    require_root!();
    let lab = L7Lab::start(Ebpf::Kernel, Splice { pinned: false, upgrades: false });
    lab.run(|| {
        let (mut ws, _) = websocket(None);
        let backend = backend_of(&echo(&mut ws, "a"));
        assert_eq!(echo(&mut ws, "b"), format!("I'm {backend}: b"));
        close(ws);
    });
    assert_eq!(lab.sample(r#"sticky_splices_total{outcome="joined"}"#), 0, "splice_upgrades = false is obeyed");
    assert!(
        lab.sample(r#"sticky_upgrades_total{service="ws",backend="ws1"}"#)
            + lab.sample(r#"sticky_upgrades_total{service="ws",backend="ws2"}"#)
            == 1
    );
}
