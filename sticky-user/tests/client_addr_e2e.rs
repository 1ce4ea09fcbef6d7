//! The client's real address end to end (issue 16): HAProxy in front of sticky with the PROXY
//! protocol (v2 and v1, http, https and tcp listeners), the backend sees the original client; a spoofed
//! `X-Forwarded-For` from an untrusted client never reaches the backend as the client; untrusted,
//! malformed, truncated and missing headers close the connection and count; PROXY protocol v2 out of
//! sticky is read by HAProxy as a backend (`accept-proxy`), which answers with the source it parsed.
//!
//! Clients connect from other loopback addresses (127.0.0.7, 127.0.0.8, 127.0.0.9) than HAProxy's
//! (127.0.0.1), so an address that reached the backend says which hop it came from. HAProxy is
//! required: a missing one fails the test with what to install (`cargo xtask setup` installs it).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Proc, TempDir, free_port, metric, sticky, sticky_args, whoami};
use testkit::{ChildGuard, http::Client, net::can_connect, wait};

/// The client addresses of the tests (loopback, so on this host; not HAProxy's 127.0.0.1).
const CLIENT: [u8; 4] = [127, 0, 0, 7];
const OTHER_CLIENT: [u8; 4] = [127, 0, 0, 8];
const UNTRUSTED: [u8; 4] = [127, 0, 0, 9];

/// A HAProxy process with a configuration of the test, killed on drop.
struct HaProxy {
    _child: ChildGuard,
    _dir: TempDir,
}

/// The HAProxy binary, or a failure saying how to get it (never a silent skip).
fn haproxy_bin() -> &'static str {
    let found = Command::new("haproxy").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "haproxy is required by the PROXY protocol tests and was not found: run `cargo xtask setup` \
         (it installs Debian's haproxy) or `apt-get install -y haproxy`"
    );
    "haproxy"
}

/// Starts HAProxy with `sections` (after a global/defaults preamble) and waits until every address
/// in `listens` accepts connections.
fn haproxy(sections: &str, listens: &[SocketAddr]) -> HaProxy {
    let dir = TempDir::new("haproxy");
    let cfg = dir.file(
        "haproxy.cfg",
        &format!(
            "global\n  maxconn 200\ndefaults\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n{sections}"
        ),
    );
    let mut cmd = Command::new(haproxy_bin());
    cmd.args(["-db", "-q", "-f"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::inherit());
    let mut child = ChildGuard::spawn(&mut cmd).named("haproxy");
    let up = wait::until(Duration::from_secs(10), || listens.iter().all(|a| can_connect(*a)));
    assert!(up && child.is_running(), "haproxy must listen on {listens:?} (its config: {})", cfg.display());
    HaProxy { _child: child, _dir: dir }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET path` from `from` to `addr`, on a connection of its own, with `headers`; the response body.
fn get_from(addr: SocketAddr, from: [u8; 4], path: &str, headers: &[(&str, &str)]) -> String {
    let mut c = Client::to(addr).from(IpAddr::from(from)).open().expect("the connection must open");
    let r = c.request("GET", path, headers, b"").expect("the request must get a response");
    assert_eq!(r.status, 200, "the request must succeed: {r:?}");
    r.text().to_ascii_lowercase()
}

/// What HAProxy in front forwards to sticky at `target`: `v2` and `v1` front ports.
fn front_sections(v2: u16, v1: u16, target: SocketAddr) -> String {
    format!(
        "listen front_v2\n  mode tcp\n  bind 127.0.0.1:{v2}\n  server s {target} send-proxy-v2\n\
         listen front_v1\n  mode tcp\n  bind 127.0.0.1:{v1}\n  server s {target} send-proxy\n"
    )
}

#[test]
fn haproxy_in_front_gives_the_backend_the_original_client_address() {
    let b = whoami("pp-1");
    let lb = sticky(&[&b], &["pp-1"], &["--proxy-protocol-from", "127.0.0.1"]);
    let (v2, v1) = (free_port(), free_port());
    let _front = haproxy(&front_sections(v2, v1, lb.addr), &[local(v2), local(v1)]);
    for port in [v2, v1] {
        // a client's own X-Forwarded-For is no more trusted behind the balancer than without it
        let body = get_from(local(port), CLIENT, "/headers", &[("X-Forwarded-For", "6.6.6.6")]);
        assert!(body.starts_with("i'm pp-1"), "the backend must answer: {body}");
        assert!(body.contains("\nx-forwarded-for: 127.0.0.7\n"), "the backend sees the client, not HAProxy: {body}");
        assert!(body.contains("\nforwarded: for=127.0.0.7;"), "Forwarded names the client too: {body}");
        assert!(!body.contains("6.6.6.6"), "the spoofed address never reaches the backend: {body}");
    }
    let admin = lb.admin.expect("the test sticky has an admin listener");
    let rejected: u64 = ["untrusted", "malformed", "truncated", "missing"]
        .iter()
        .map(|r| metric(admin, &format!("sticky_proxy_protocol_rejects_total{{reason=\"{r}\"}}")))
        .sum();
    assert_eq!(rejected, 0, "HAProxy's connections all carried a valid header");
}

#[test]
fn a_spoofed_x_forwarded_for_is_replaced_unless_the_peer_is_a_trusted_proxy() {
    let b = whoami("xff-1");
    let lb = sticky(&[&b], &["xff-1"], &["--trusted-proxies", "127.0.0.8"]);
    let spoofed = [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6")];
    let body = get_from(lb.addr, CLIENT, "/headers", &spoofed);
    assert!(body.contains("\nx-forwarded-for: 127.0.0.7\n"), "an untrusted client's chain is replaced: {body}");
    assert!(!body.contains("6.6.6.6"), "the spoofed address never reaches the backend: {body}");
    let body = get_from(lb.addr, OTHER_CLIENT, "/headers", &spoofed);
    assert!(body.contains("\nx-forwarded-for: 6.6.6.6, 127.0.0.8\n"), "a trusted proxy's chain is kept: {body}");
    assert!(body.contains("\nforwarded: for=6.6.6.6\n"), "and its Forwarded element: {body}");
}

/// Sends `bytes` from `from` and reads until the connection ends (at most 10 s): what came back.
fn send_and_read(addr: SocketAddr, from: [u8; 4], bytes: &[u8]) -> Vec<u8> {
    let mut s = testkit::net::connect(addr, Some(IpAddr::from(from)), Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    s.write_all(bytes).expect("the bytes must be sent");
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection must be closed by sticky, not left open: {e} (read {got:?})"),
    }
    got
}

#[test]
fn untrusted_malformed_truncated_and_missing_headers_are_closed_and_counted() {
    let b = whoami("pp-2");
    let lb = sticky(&[&b], &["pp-2"], &["--proxy-protocol-from", "127.0.0.1,127.0.0.7"]);
    let admin = lb.admin.expect("the test sticky has an admin listener");
    let count = |reason: &str| metric(admin, &format!("sticky_proxy_protocol_rejects_total{{reason=\"{reason}\"}}"));
    let get = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

    // a header from a source that may not send one
    let got = send_and_read(lb.addr, UNTRUSTED, &[&b"PROXY TCP4 192.0.2.1 127.0.0.1 5 80\r\n"[..], get].concat());
    assert!(got.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&got));
    assert_eq!(count("untrusted"), 1);
    // the same source without a header is an ordinary client
    let body = get_from(lb.addr, UNTRUSTED, "/headers", &[]);
    assert!(body.contains("\nx-forwarded-for: 127.0.0.9\n"), "{body}");

    // a trusted source: the header is required and must be well-formed and whole
    let got = send_and_read(lb.addr, CLIENT, &[&b"PROXY TCP4 192.0.2.1 nonsense\r\n"[..], get].concat());
    assert!(got.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&got));
    assert_eq!(count("malformed"), 1);
    let got = send_and_read(lb.addr, CLIENT, get);
    assert!(got.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&got));
    assert_eq!(count("missing"), 1);
    // a v2 header cut after its length: closed once the header's time is up
    let got = send_and_read(lb.addr, CLIENT, b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00");
    assert!(got.is_empty(), "nothing is answered: {:?}", String::from_utf8_lossy(&got));
    assert_eq!(count("truncated"), 1);

    // and a whole one from it works, its client being the header's
    let header = sticky::proxy_protocol::encode::v2("192.0.2.44:5000".parse().expect("addr"), lb.addr);
    let got = send_and_read(
        lb.addr,
        CLIENT,
        &[&header[..], b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"].concat(),
    );
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("\nx-forwarded-for: 192.0.2.44\n"), "{text}");
}

/// HAProxy as a backend that reads a PROXY header (`accept-proxy`) and answers `I'm NAME src=ADDR`
/// with the source address it parsed, at `port`.
fn proxy_reading_backend(name: &str, port: u16) -> String {
    format!(
        "listen back_{name}\n  mode http\n  bind 127.0.0.1:{port} accept-proxy\n  \
         http-request return status 200 content-type text/plain lf-string \"I'm {name} src=%[src]\\n\"\n"
    )
}

#[test]
fn proxy_protocol_v2_out_names_each_client_in_http_mode() {
    let port = free_port();
    let _back = haproxy(&proxy_reading_backend("hap", port), &[local(port)]);
    let args: Vec<String> = ["--backend", &format!("hap=http://127.0.0.1:{port}"), "--backend-proxy-protocol", "v2"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let lb = sticky_args(&args);
    // one keep-alive client, then another: a pooled upstream connection would name the first
    let mut c = Client::to(lb.addr).from(IpAddr::from(CLIENT)).open().expect("the connection must open");
    for _ in 0..3 {
        let r = c.get("/").expect("a response");
        assert_eq!(r.text(), "I'm hap src=127.0.0.7\n", "{r:?}");
    }
    let r = Client::to(lb.addr).from(IpAddr::from(OTHER_CLIENT)).open().expect("open").get("/").expect("a response");
    assert_eq!(r.text(), "I'm hap src=127.0.0.8\n", "another client is named as itself: {r:?}");
}

#[test]
fn tcp_mode_reads_the_proxy_protocol_from_haproxy_and_sends_it_to_the_backend() {
    let back_port = free_port();
    let _back = haproxy(&proxy_reading_backend("tcpback", back_port), &[local(back_port)]);
    let args: Vec<String> = [
        "--mode",
        "tcp",
        "--no-ebpf",
        "--backend",
        &format!("127.0.0.1:{back_port}"),
        "--backend-proxy-protocol",
        "v2",
        "--proxy-protocol-from",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let lb: Proc = sticky_args(&args);
    let (v2, v1) = (free_port(), free_port());
    let _front = haproxy(&front_sections(v2, v1, lb.addr), &[local(v2), local(v1)]);
    for port in [v2, v1] {
        let r = Client::to(local(port)).from(IpAddr::from(CLIENT)).open().expect("open").get("/").expect("a response");
        assert_eq!(
            r.text(),
            "I'm tcpback src=127.0.0.7\n",
            "the backend parsed the client from sticky's header: {r:?}"
        );
    }
    // an IPv6 client named by a header: served, and named as itself to the backend
    let header = sticky::proxy_protocol::encode::v2("[2001:db8::7]:4000".parse().expect("addr"), lb.addr);
    let request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let got = send_and_read(lb.addr, [127, 0, 0, 1], &[&header[..], request].concat());
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("I'm tcpback src=2001:db8::7\n"), "{text}");
}

#[test]
fn https_reads_the_proxy_protocol_before_the_handshake() {
    let b = whoami("tls-1");
    let dir = TempDir::new("pp-tls");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("a self-signed certificate");
    let cert_file = dir.file("a.crt", &cert.pem());
    let key_file = dir.file("a.key", &key.serialize_pem());
    let tls_port = free_port();
    let lb = sticky(
        &[&b],
        &["tls-1"],
        &[
            "--proxy-protocol-from",
            "127.0.0.1",
            "--listen-tls",
            &local(tls_port).to_string(),
            "--tls-cert",
            cert_file.to_str().expect("a UTF-8 path"),
            "--tls-key",
            key_file.to_str().expect("a UTF-8 path"),
        ],
    );
    let front = free_port();
    let _front = haproxy(
        &format!(
            "listen front_tls\n  mode tcp\n  bind 127.0.0.1:{front}\n  server s {} send-proxy-v2\n",
            local(tls_port)
        ),
        &[local(front)],
    );
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--interface", "127.0.0.7", "--cacert"])
        .arg(&cert_file)
        .args(["--resolve", &format!("a.test:{front}:127.0.0.1")])
        .arg(format!("https://a.test:{front}/headers"))
        .output()
        .expect("curl is required (cargo xtask setup installs it)");
    let body = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(out.status.success(), "curl must succeed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(body.starts_with("i'm tls-1"), "{body}");
    assert!(body.contains("\nx-forwarded-for: 127.0.0.7\n"), "the TLS client's address came through: {body}");
    assert!(body.contains("\nx-forwarded-proto: https\n"), "{body}");
    drop(lb);
}

#[test]
fn a_dual_stack_listener_serves_ipv4_and_ipv6_clients_with_their_own_addresses() {
    let b = whoami("ds-1");
    let (port, admin) = (free_port(), local(free_port()));
    let mut cmd = Command::new(common::STICKY);
    cmd.args(["run", "--workers", "1", "--listen", &format!("[::]:{port}"), "--admin", &admin.to_string()])
        .args(["--backend", &format!("ds-1=http://{}", b.addr), "--proxy-protocol-from", "::1"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .env("RUST_LOG", "warn");
    let _lb = ChildGuard::spawn(&mut cmd).named("sticky");
    let ready =
        wait::until(Duration::from_secs(10), || common::get(admin, "/healthz", &[]).is_ok_and(|r| r.status == 200));
    assert!(ready, "sticky must start on [::]:{port}");
    // an IPv4 client of the dual-stack socket is seen as ::ffff:127.0.0.7 and written as IPv4
    let body = get_from(local(port), CLIENT, "/headers", &[]);
    assert!(body.contains("\nx-forwarded-for: 127.0.0.7\n"), "{body}");
    assert!(body.contains("\nforwarded: for=127.0.0.7;"), "{body}");
    // ::1 is a PROXY protocol source: HAProxy on [::1] in front, its client ::1 written as IPv6
    let front = free_port();
    let _front = haproxy(
        &format!("listen front6\n  mode tcp\n  bind [::1]:{front}\n  server s [::1]:{port} send-proxy-v2\n"),
        &[SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, front))],
    );
    let six = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, front));
    let mut c = Client::to(six).open().expect("an IPv6 connection must open");
    let r = c.request("GET", "/headers", &[], b"").expect("a response");
    let body = r.text().to_ascii_lowercase();
    assert!(body.contains("\nx-forwarded-for: ::1\n"), "{body}");
    assert!(body.contains("\nforwarded: for=\"[::1]\";"), "RFC 7239 brackets and quotes IPv6: {body}");
    // and a v6 client named by a raw v2 header
    let header = sticky::proxy_protocol::encode::v2(
        "[2001:db8::7]:4000".parse().expect("addr"),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    );
    let request = b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut s = std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).expect("connect to [::1]");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    s.write_all(&[&header[..], request].concat()).expect("send");
    let mut got = String::new();
    s.read_to_string(&mut got).expect("the response must arrive whole");
    assert!(got.to_ascii_lowercase().contains("\nx-forwarded-for: 2001:db8::7\n"), "{got}");
}
