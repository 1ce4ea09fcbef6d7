//! HTTP/2 end to end (issue 15): a real `sticky run` on 127.0.0.1 with `--listen-tls` (certificates of
//! a test CA) and `--h2c`, `sticky whoami` backends, and real clients: curl `--http2` over TLS and
//! `--http2-prior-knowledge`, the `h2` crate's client, and hand-built frames for the abuse cases
//! (rapid reset, CONTINUATION flood). Every wait is bounded; processes and files are removed on drop.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Proc, STICKY, TempDir, free_port, whoami};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use testkit::{ChildGuard, wait};

const TEST: &str = "h2_e2e";

/// Says why a test cannot run: a failure under CI, else a loud line.
fn skip(reason: &str) {
    let ci = std::env::var("CI").as_deref() == Ok("true") || std::env::var("STICKY_REQUIRE_ALL").as_deref() == Ok("1");
    assert!(!ci, "CI=true (or STICKY_REQUIRE_ALL=1) but this test would be skipped: {TEST}: {reason}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {TEST}: {reason}");
}

fn curl_missing() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("nghttp2"));
    if !ok {
        skip("curl with HTTP/2 (nghttp2) is not installed (cargo xtask setup installs it)");
    }
    !ok
}

/// A test CA's leaf for `a.test`: the directory holds `ca.pem`, `a.crt`, `a.key`.
fn certs() -> TempDir {
    let dir = TempDir::new("h2");
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, "sticky h2 test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("a self-signed CA");
    dir.file("ca.pem", &ca.pem());
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().expect("a leaf key");
    let leaf = CertificateParams::new(vec!["a.test".to_owned()])
        .expect("names")
        .signed_by(&key, &issuer)
        .expect("a signed leaf");
    dir.file("a.crt", &leaf.pem());
    dir.file("a.key", &key.serialize_pem());
    dir
}

/// `sticky run` with a plain listener (`--h2c`), a TLS one, an admin listener, these backends and
/// `extra` flags; killed on drop.
struct Lb {
    _child: ChildGuard,
    pid: u32,
    plain: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
}

impl Lb {
    fn start(certs: &TempDir, backends: &[(&str, &Proc)], extra: &[&str]) -> Self {
        for _ in 0..5 {
            let at = || SocketAddr::from(([127, 0, 0, 1], free_port()));
            let (plain, tls, admin) = (at(), at(), at());
            let mut cmd = Command::new(STICKY);
            cmd.arg("run")
                .args(["--listen", &plain.to_string(), "--listen-tls", &tls.to_string(), "--workers", "2"])
                .args(["--admin", &admin.to_string(), "--h2c"])
                .arg("--tls-cert")
                .arg(certs.path().join("a.crt"))
                .arg("--tls-key")
                .arg(certs.path().join("a.key"));
            for (name, b) in backends {
                cmd.args(["--backend", &format!("{name}=http://{}", b.addr)]);
            }
            cmd.args(extra).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = ChildGuard::spawn(&mut cmd);
            let up = wait::until(Duration::from_secs(10), || {
                !child.is_running() || (TcpStream::connect(tls).is_ok() && TcpStream::connect(admin).is_ok())
            });
            if up && child.is_running() {
                return Self { pid: child.id(), _child: child, plain, tls, admin };
            }
        }
        panic!("sticky did not start in 5 attempts");
    }
}

/// `curl -si` with `args`; (success, output).
fn curl(args: &[&str], url: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl must run");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn header<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn body_who(response: &str) -> String {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.strip_prefix("I'm ").map_or_else(|| panic!("a whoami body: {response}"), |b| b.trim().to_owned())
}

#[test]
fn curl_http2_over_tls_and_h2c_pins_by_cookie() {
    if curl_missing() {
        return;
    }
    let certs = certs();
    let (w1, w2, w3) = (whoami("w1"), whoami("w2"), whoami("w3"));
    let lb = Lb::start(&certs, &[("w1", &w1), ("w2", &w2), ("w3", &w3)], &[]);
    let ca: PathBuf = certs.path().join("ca.pem");
    let ca = ca.to_str().expect("a UTF-8 path");
    let resolve = format!("a.test:{}:127.0.0.1", lb.tls.port());
    let url = format!("https://a.test:{}/", lb.tls.port());
    let tls = ["--http2", "--cacert", ca, "--resolve", &resolve];
    let (ok, first) = curl(&tls, &url);
    assert!(ok && first.starts_with("HTTP/2 200"), "curl --http2 must get an HTTP/2 200: {first}");
    let set = header(&first, "set-cookie");
    assert_eq!(set.len(), 1, "the first request must get sticky's cookie: {first}");
    assert!(set[0].contains("; Secure"), "over TLS the cookie is Secure: {set:?}");
    let cookie = set[0].split(';').next().expect("name=value").to_owned();
    let pinned = body_who(&first);
    for _ in 0..5 {
        let (ok, r) = curl(&[&tls[..], &["-H", &format!("Cookie: {cookie}")]].concat(), &url);
        assert!(ok && r.starts_with("HTTP/2 200"), "{r}");
        assert_eq!(body_who(&r), pinned, "the cookie must pin every HTTP/2 request: {r}");
        assert!(header(&r, "set-cookie").is_empty(), "a kept pin sets no cookie: {r}");
    }
    // the backend sees HTTP/1.1 with the forwarding fields of an HTTPS client
    let (ok, r) = curl(&[&tls[..], &["-H", &format!("Cookie: {cookie}; app=1")]].concat(), &format!("{url}headers"));
    assert!(ok, "{r}");
    assert!(r.contains("X-Forwarded-Proto: https") || r.contains("x-forwarded-proto: https"), "{r}");
    assert!(r.to_ascii_lowercase().contains("forwarded: for=127.0.0.1;host=\"a.test"), "{r}");
    assert!(!r.contains(&cookie) && r.contains("app=1"), "sticky's cookie is stripped, the app's kept: {r}");
    // a client's own X-Forwarded-For is replaced over HTTP/2 too (it is no trusted proxy)
    let spoof = ["-H", "X-Forwarded-For: 198.51.100.66", "-H", "Forwarded: for=198.51.100.66"];
    let (ok, r) = curl(&[&tls[..], &spoof[..]].concat(), &format!("{url}headers"));
    assert!(ok && !r.contains("198.51.100.66"), "a spoofed client address must not reach the backend: {r}");
    assert!(r.to_ascii_lowercase().contains("x-forwarded-for: 127.0.0.1"), "{r}");
    // h2c with prior knowledge on the plain listener, and HTTP/1.1 there still
    let plain = format!("http://127.0.0.1:{}/", lb.plain.port());
    let (ok, r) = curl(&["--http2-prior-knowledge", "-H", &format!("Cookie: {cookie}")], &plain);
    assert!(ok && r.starts_with("HTTP/2 200") && body_who(&r) == pinned, "h2c must pin too: {r}");
    let (ok, r) = curl(&["--http1.1", "-H", &format!("Cookie: {cookie}")], &plain);
    assert!(ok && r.starts_with("HTTP/1.1 200") && body_who(&r) == pinned, "HTTP/1.1 beside h2c: {r}");
    // the same counters move as on the HTTP/1 path
    let metrics = common::get_ok(lb.admin, "/metrics", &[]).into_text();
    let pinned_requests: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("sticky_pinned_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(pinned_requests >= 8, "pinned HTTP/2 requests are counted: {pinned_requests}\n{metrics}");
}

/// An h2 client connection over plain TCP (prior knowledge).
async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to sticky");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake with sticky");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// GET `/` on `send` with optional cookie: (status, set-cookie values, body).
async fn h2_get(mut send: h2::client::SendRequest<Bytes>, cookie: Option<String>) -> (u16, Vec<String>, String) {
    let mut req = http::Request::builder().uri("http://a.test/");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let req = req.body(()).expect("a request");
    send = send.ready().await.expect("the connection takes a stream");
    let (response, _) = send.send_request(req, true).expect("send the request");
    let response = response.await.expect("a response");
    let status = response.status().as_u16();
    let cookies =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap_or_default().to_owned()).collect();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body data");
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, cookies, String::from_utf8_lossy(&text).into_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

#[test]
fn twenty_parallel_first_requests_on_one_h2_connection_get_one_backend_and_one_cookie() {
    let certs = certs();
    let (w1, w2, w3) = (whoami("w1"), whoami("w2"), whoami("w3"));
    let lb = Lb::start(&certs, &[("w1", &w1), ("w2", &w2), ("w3", &w3)], &[]);
    runtime().block_on(async {
        let send = h2_connect(lb.plain).await;
        let all = tokio::time::timeout(Duration::from_secs(20), async {
            let tasks: Vec<_> = (0..20).map(|_| tokio::spawn(h2_get(send.clone(), None))).collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("the request task"));
            }
            out
        })
        .await
        .expect("20 requests must be answered within 20 s");
        let backends: std::collections::BTreeSet<String> =
            all.iter().map(|(s, _, b)| format!("{s} {}", b.trim())).collect();
        assert_eq!(backends.len(), 1, "one connection's first wave must reach one backend: {backends:?}");
        let cookies: std::collections::BTreeSet<String> =
            all.iter().map(|(_, c, _)| c.first().cloned().expect("every first-wave answer sets the cookie")).collect();
        assert_eq!(cookies.len(), 1, "one connection's first wave must get one cookie value: {cookies:?}");
        // new connections without a cookie are still spread over the backends (the wave is per connection)
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let (_, _, body) = h2_get(h2_connect(lb.plain).await, None).await;
            seen.insert(body);
        }
        assert!(seen.len() > 1, "new connections must be spread: {seen:?}");
    });
}

#[test]
fn an_http1_keep_alive_connection_s_cookie_less_requests_get_one_backend_and_one_cookie() {
    let certs = certs();
    let (w1, w2, w3) = (whoami("w1"), whoami("w2"), whoami("w3"));
    let lb = Lb::start(&certs, &[("w1", &w1), ("w2", &w2), ("w3", &w3)], &[]);
    let mut client = testkit::http::Client::connect(lb.plain).expect("connect to sticky");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = client.get("/").expect("a response on the keep-alive connection");
        let cookie = r.header("set-cookie").map(|c| c.split(';').next().unwrap_or_default().to_owned());
        seen.insert((r.whoami().map(str::to_owned), cookie));
    }
    assert_eq!(seen.len(), 1, "one keep-alive connection's cookie-less requests: one backend, one cookie: {seen:?}");
    assert!(seen.iter().all(|(w, c)| w.is_some() && c.is_some()), "{seen:?}");
}

// ---- abuse: raw frames -------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small payload");
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// `GET http://a/` in HPACK from the static table: `:method GET`, `:scheme http`, `:path /`,
/// `:authority a` (literal, not indexed).
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'a'];

/// Reads frames until a GOAWAY or the close (bounded in time and bytes); whether one of them came.
fn goaway_or_close(s: &mut TcpStream) -> (bool, bool) {
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let until = Instant::now() + Duration::from_secs(15);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut total = 0usize;
    while Instant::now() < until && total < 64 << 20 {
        match s.read(&mut chunk) {
            Ok(0) => return (false, true),
            Ok(n) => {
                total += n;
                buf.extend_from_slice(&chunk[..n]);
                // walk the complete frames
                let mut at = 0;
                while buf.len() >= at + 9 {
                    let len = usize::from(buf[at]) << 16 | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]);
                    if buf.len() < at + 9 + len {
                        break;
                    }
                    if buf[at + 3] == GOAWAY {
                        return (true, false);
                    }
                    at += 9 + len;
                }
                buf.drain(..at);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (false, true),
        }
    }
    (false, false)
}

/// After an attack: sticky still runs and serves a new HTTP/2 connection.
fn still_serves(lb: &Lb) {
    runtime().block_on(async {
        let r = tokio::time::timeout(Duration::from_secs(10), async { h2_get(h2_connect(lb.plain).await, None).await })
            .await
            .expect("sticky must answer a new connection after the attack");
        assert_eq!(r.0, 200, "{r:?}");
        assert!(r.2.starts_with("I'm "), "{r:?}");
    });
}

/// Resident memory of sticky, KiB.
fn rss_kib(lb: &Lb) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", lb.pid)).expect("sticky's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc status")
}

/// sticky's memory after an attack stays within this (a debug build serving a few connections uses
/// ~20 MiB; an unbounded buffer of the attack's 64 MiB would pass it).
const RSS_BOUND_KIB: u64 = 160 * 1024;

#[test]
fn rapid_reset_gets_a_goaway_and_sticky_keeps_serving() {
    let certs = certs();
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", &w1)], &[]);
    let mut s = TcpStream::connect(lb.plain).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    // HEADERS then RST_STREAM(CANCEL) at once, stream after stream: the CVE-2023-44487 pattern
    let mut sent_pairs = 0u32;
    for batch in 0..50u32 {
        for i in 0..200u32 {
            let id = 1 + 2 * (batch * 200 + i);
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, GET_BLOCK));
            out.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
            sent_pairs += 1;
        }
        if s.write_all(&out).is_err() {
            // sticky closed the connection while the pairs were still going out
            break;
        }
        out.clear();
    }
    let (goaway, closed) = goaway_or_close(&mut s);
    assert!(
        goaway || closed,
        "after {sent_pairs} HEADERS+RST_STREAM pairs sticky must send GOAWAY or close the connection"
    );
    still_serves(&lb);
    let rss = rss_kib(&lb);
    assert!(rss < RSS_BOUND_KIB, "sticky must stay bounded after a rapid reset: {rss} KiB");
}

#[test]
fn a_continuation_flood_gets_a_goaway_and_sticky_keeps_serving() {
    let certs = certs();
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", &w1)], &[]);
    let mut s = TcpStream::connect(lb.plain).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    // a header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames of literal
    // fields (`x: 0123456789`, valid HPACK) without END_HEADERS (CVE-2024-27316)
    out.extend(frame(HEADERS, END_STREAM, 1, GET_BLOCK));
    let field: &[u8] = &[0x00, 0x01, b'x', 0x0a, b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', b'9'];
    let payload: Vec<u8> = field.iter().copied().cycle().take(field.len() * 64).collect();
    let mut sent = 0usize;
    // at most 64 MiB, far past any header list limit
    for _ in 0..(64 << 20) / (payload.len() * 64) {
        for _ in 0..64 {
            out.extend(frame(CONTINUATION, 0, 1, &payload));
        }
        sent += out.len();
        if s.write_all(&out).is_err() {
            // sticky closed the connection while the flood was still going out (its GOAWAY is read below)
            break;
        }
        out.clear();
    }
    let (goaway, closed) = goaway_or_close(&mut s);
    assert!(
        goaway || closed,
        "after {sent} bytes of CONTINUATION frames sticky must send GOAWAY or close the connection"
    );
    still_serves(&lb);
    let rss = rss_kib(&lb);
    assert!(rss < RSS_BOUND_KIB, "sticky must stay bounded after a CONTINUATION flood: {rss} KiB");
}

// ---- gRPC to h2c tasks -------------------------------------------------------------------------

/// A tiny unary gRPC server over hyper's h2c: every call is answered with one message
/// `I'm NAME: <request message>` and the trailers `grpc-status: 0`, `x-served-by: NAME`.
struct Grpc {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// A gRPC message frame: flag 0 (not compressed), length (u32 big-endian), bytes.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(5 + message.len());
    f.push(0);
    f.extend_from_slice(&u32::try_from(message.len()).expect("a small message").to_be_bytes());
    f.extend_from_slice(message);
    Bytes::from(f)
}

impl Grpc {
    fn start(name: &'static str) -> Self {
        use http_body_util::BodyExt as _;
        let runtime = runtime();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind the gRPC server");
        let addr = listener.local_addr().expect("address");
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                                .unwrap_or_default();
                            let message = body.get(5..).unwrap_or_default();
                            let reply = [format!("I'm {name}: ").as_bytes(), message].concat();
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            trailers.insert("x-served-by", http::HeaderValue::from_static(name));
                            let frames = vec![
                                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(grpc_frame(&reply))),
                                Ok(hyper::body::Frame::trailers(trailers)),
                            ];
                            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                            let response = http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .expect("a response");
                            Ok::<_, std::convert::Infallible>(response)
                        });
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, _runtime: runtime }
    }
}

/// One unary call `path` with `message` (and a cookie): (HTTP status, response headers, reply
/// message, trailers).
async fn grpc_call(
    mut send: h2::client::SendRequest<Bytes>,
    path: &str,
    message: &[u8],
    cookie: Option<&str>,
) -> (u16, http::HeaderMap, Vec<u8>, http::HeaderMap) {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://grpc.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    send = send.ready().await.expect("the connection takes a stream");
    let (response, mut body) = send.send_request(req.body(()).expect("a request"), false).expect("send the call");
    body.send_data(grpc_frame(message), true).expect("send the message");
    let response = response.await.expect("a response head");
    let status = response.status().as_u16();
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
    let reply = data.get(5..).unwrap_or_default().to_vec();
    (status, parts.headers, reply, trailers)
}

#[test]
fn a_grpc_round_trip_through_sticky_to_h2c_tasks_keeps_trailers_pins_and_maps_errors() {
    let (g1, g2) = (Grpc::start("g1"), Grpc::start("g2"));
    let dir = TempDir::new("h2-grpc");
    let down = free_port();
    let config = dir.file(
        "sticky.toml",
        &format!(
            "[[services]]\nname = \"echo\"\npath_prefix = \"/echo.Echo/\"\nbackend_protocol = \"h2c\"\n\
             backends = [\"g1=http://{}\", \"g2=http://{}\"]\n\n\
             [[services]]\nname = \"down\"\npath_prefix = \"/down.Down/\"\nbackend_protocol = \"h2c\"\n\
             backends = [\"d=http://127.0.0.1:{down}\"]\n",
            g1.addr, g2.addr
        ),
    );
    let proc = common::sticky_args(&[
        "--config".to_owned(),
        config.to_str().expect("a UTF-8 path").to_owned(),
        "--h2c".to_owned(),
    ]);
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            let send = h2_connect(proc.addr).await;
            let (status, headers, reply, trailers) = grpc_call(send.clone(), "/echo.Echo/Say", b"hello", None).await;
            assert_eq!(status, 200);
            let reply = String::from_utf8(reply).expect("a text reply");
            assert!(reply.starts_with("I'm g") && reply.ends_with(": hello"), "the task's reply: {reply}");
            assert_eq!(trailers.get("grpc-status").map(http::HeaderValue::as_bytes), Some(&b"0"[..]), "{trailers:?}");
            let served = trailers.get("x-served-by").and_then(|v| v.to_str().ok()).expect("the task's own trailer");
            assert!(reply.starts_with(&format!("I'm {served}")), "trailers come from the same task: {reply} {served}");
            let cookie = headers
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|c| c.split(';').next())
                .expect("a gRPC client that keeps cookies gets sticky's")
                .to_owned();
            // a client that keeps the cookie stays on its task, over new connections too
            for _ in 0..4 {
                let (_, _, again, trailers) =
                    grpc_call(h2_connect(proc.addr).await, "/echo.Echo/Say", b"x", Some(&cookie)).await;
                assert!(String::from_utf8_lossy(&again).starts_with(&format!("I'm {served}")), "pinned by the cookie");
                assert_eq!(trailers.get("x-served-by").and_then(|v| v.to_str().ok()), Some(served));
            }
            // sticky's own failure, in gRPC's terms
            let (status, headers, reply, _) = grpc_call(send.clone(), "/down.Down/Call", b"x", None).await;
            assert_eq!(status, 200, "a gRPC client gets HTTP 200 and a grpc-status, not a 502/503 page");
            assert_eq!(headers.get("grpc-status").map(http::HeaderValue::as_bytes), Some(&b"14"[..]), "{headers:?}");
            assert!(headers.get("grpc-message").is_some() && reply.is_empty(), "{headers:?}");
            // a path no service takes: UNIMPLEMENTED
            let (status, headers, _, _) = grpc_call(send, "/nope.Nope/Call", b"x", None).await;
            assert_eq!((status, headers.get("grpc-status").map(http::HeaderValue::as_bytes)), (200, Some(&b"12"[..])));
        })
        .await
        .expect("the gRPC calls must finish within 20 s");
    });
}
