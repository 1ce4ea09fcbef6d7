//! HTTPS end to end (issue 19): a real `sticky run --listen-tls` process on 127.0.0.1 with certificates
//! of a test CA (rcgen), and real clients: curl (`--cacert`), `openssl s_client` (SNI, ALPN, protocol
//! versions, resumption), Python's `ssl`, and testssl.sh. Each test bounds its waits and removes its
//! processes and files (the guards' `Drop`).
//!
//! Without a client tool the test says so loudly (`SKIPPED ...`); under CI (`CI=true`) or
//! `STICKY_REQUIRE_ALL=1` a missing tool fails the test instead.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{STICKY, TempDir, free_port, whoami};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use testkit::{ChildGuard, wait};

const TEST: &str = "https_e2e";

/// Says why a test cannot run: a failure under CI, else a loud line.
fn skip(reason: &str) {
    let ci = std::env::var("CI").as_deref() == Ok("true") || std::env::var("STICKY_REQUIRE_ALL").as_deref() == Ok("1");
    assert!(!ci, "CI=true (or STICKY_REQUIRE_ALL=1) but this test would be skipped: {TEST}: {reason}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {TEST}: {reason}");
    if let Some(path) = std::env::var_os("STICKY_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{TEST}: {reason}");
    }
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
}

/// The first of `names` on PATH, or a loud skip (a failure under CI).
fn tool(names: &[&str]) -> Option<String> {
    let found = names.iter().find(|n| on_path(n)).map(|n| (*n).to_owned());
    if found.is_none() {
        skip(&format!("{} is not installed (cargo xtask setup installs it)", names.join(" or ")));
    }
    found
}

/// A test CA and leaves it signs (ECDSA P-256), written as PEM files.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, "sticky https test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Self { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` with common name `cn`: (chain PEM, key PEM).
    fn leaf(&self, cn: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("a leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("a signed leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// Certificates of one test: `a.crt`/`a.key` for `a.test` (the default), `b.crt`/`b.key` for
/// `b.test`, and the CA at `ca.pem`.
struct Certs {
    dir: TempDir,
    ca: Ca,
}

impl Certs {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let ca = Ca::new();
        dir.file("ca.pem", &ca.pem);
        let certs = Self { dir, ca };
        certs.write("a", "a.test first", &["a.test"]);
        certs.write("b", "b.test", &["b.test"]);
        certs
    }

    /// Writes `STEM.crt` and `STEM.key` (each through a temporary file and a rename, as a
    /// deployment replaces them).
    fn write(&self, stem: &str, cn: &str, names: &[&str]) {
        let (chain, key) = self.ca.leaf(cn, names);
        self.replace(&format!("{stem}.key"), &key);
        self.replace(&format!("{stem}.crt"), &chain);
    }

    fn replace(&self, name: &str, text: &str) {
        let tmp = self.dir.file(&format!(".{name}.tmp"), text);
        std::fs::rename(tmp, self.path(name)).expect("rename into place");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }
}

/// A `sticky run` with a plain and a TLS listener, its log in a file; killed on drop.
struct Lb {
    child: ChildGuard,
    plain: SocketAddr,
    tls: SocketAddr,
    log: PathBuf,
}

impl Lb {
    /// Starts sticky with the two certificates of `certs` (a the default), `backends` as
    /// `NAME=URL`, and `extra` flags; ready once the TLS port accepts.
    fn start(certs: &Certs, backends: &[(&str, SocketAddr)], extra: &[&str]) -> Self {
        Self::start_at(certs, backends, extra, None)
    }

    /// As [`Lb::start`], on given ports (plain, TLS) if any (then a single attempt).
    fn start_at(certs: &Certs, backends: &[(&str, SocketAddr)], extra: &[&str], ports: Option<(u16, u16)>) -> Self {
        let attempts = if ports.is_some() { 1 } else { 5 };
        for _ in 0..attempts {
            let (p, t) = ports.unwrap_or_else(|| (free_port(), free_port()));
            let plain = SocketAddr::from(([127, 0, 0, 1], p));
            let tls = SocketAddr::from(([127, 0, 0, 1], t));
            let log = certs.dir.path().join(format!("sticky-{}.log", tls.port()));
            let mut cmd = Command::new(STICKY);
            cmd.arg("run").args(["--listen", &plain.to_string(), "--listen-tls", &tls.to_string(), "--workers", "2"]);
            for stem in ["a", "b"] {
                let (c, k) = (certs.path(&format!("{stem}.crt")), certs.path(&format!("{stem}.key")));
                cmd.arg("--tls-cert").arg(c).arg("--tls-key").arg(k);
            }
            for (name, addr) in backends {
                cmd.args(["--backend", &format!("{name}=http://{addr}")]);
            }
            cmd.args(extra).env("RUST_LOG", "info").stdout(Stdio::null());
            testkit::process::log_to(&mut cmd, &log).expect("a log file");
            let mut child = ChildGuard::spawn(&mut cmd);
            let up = wait::until(Duration::from_secs(10), || {
                !child.is_running() || (TcpStream::connect(tls).is_ok() && TcpStream::connect(plain).is_ok())
            });
            if up && child.is_running() {
                return Self { child, plain, tls, log };
            }
        }
        panic!("sticky did not start with its TLS listener in {attempts} attempt(s)");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A backend that answers every request with its request head as the body (to see the forwarding
/// fields); stops when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        std::thread::spawn(move || echo_conn(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn echo_conn(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len());
            if s.write_all(reply.as_bytes()).and_then(|()| s.write_all(&head)).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs a client tool with a time limit; (exit success, stdout + stderr).
fn run(cmd: &mut Command, input: &[u8]) -> (bool, String) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the tool starts");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            let _ = child.stdout.take().expect("stdout").read_to_string(&mut out);
            let _ = child.stderr.take().expect("stderr").read_to_string(&mut out);
            return (status.success(), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `curl -i` over TLS to `https://NAME:PORT/PATH` (resolved to the listener), trusting the test CA.
fn curl(lb: &Lb, certs: &Certs, name: &str, path: &str, extra: &[&str]) -> (bool, String) {
    let port = lb.tls.port();
    run(
        Command::new("curl")
            // HTTP/1.1 over TLS (sticky's own engine); HTTP/2 over TLS is h2_e2e's
            .args(["-sS", "-i", "--http1.1", "--max-time", "10", "--cacert"])
            .arg(certs.ca())
            .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://{name}:{port}{path}")),
        b"",
    )
}

/// `openssl s_client` against the TLS listener with `args`; its output.
fn s_client(lb: &Lb, args: &[&str]) -> (bool, String) {
    run(Command::new("openssl").args(["s_client", "-connect", &lb.tls.to_string()]).args(args), b"Q\n")
}

/// `openssl s_client` sending one request and reading until sticky closes (so TLS 1.3 session
/// tickets, sent after the handshake, are read too).
fn s_client_request(lb: &Lb, args: &[&str]) -> (bool, String) {
    run(
        Command::new("openssl").args(["s_client", "-ign_eof", "-connect", &lb.tls.to_string()]).args(args),
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
}

fn header<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn subject(out: &str) -> String {
    out.lines().find(|l| l.starts_with("subject=")).unwrap_or_default().to_owned()
}

#[test]
fn curl_over_tls_pins_with_a_secure_cookie_and_the_backends_see_https() {
    if tool(&["curl"]).is_none() {
        return;
    }
    let certs = Certs::new("https-curl");
    let (w1, w2) = (whoami("w1"), whoami("w2"));
    let echo = Echo::start();
    let lb = Lb::start(&certs, &[("w1", w1.addr), ("w2", w2.addr)], &[]);

    let (ok, first) = curl(&lb, &certs, "a.test", "/", &[]);
    assert!(ok && first.starts_with("HTTP/1.1 200"), "{first}");
    let set_cookie = header(&first, "set-cookie");
    assert_eq!(set_cookie.len(), 1, "{first}");
    assert!(set_cookie[0].contains("; Secure"), "Secure by default on TLS: {first}");
    let pinned = body(&first).trim().to_owned();
    let cookie = set_cookie[0].split(';').next().expect("name=value").to_owned();
    for i in 0..20 {
        let (ok, r) = curl(&lb, &certs, "a.test", "/", &["-H", &format!("Cookie: {cookie}")]);
        assert!(ok, "{r}");
        assert_eq!(body(&r).trim(), pinned, "request {i} stays on the pinned backend");
    }
    // the same service over plain HTTP: no Secure (the default is "on TLS only")
    let plain = testkit::http::get(lb.plain, "/", &[]).expect("plain request");
    assert!(plain.header_values("set-cookie").iter().all(|c| !c.contains("Secure")), "{plain:?}");
    drop(lb);

    // the forwarding fields, read by a backend that echoes its request head
    let lb = Lb::start(&certs, &[("echo", echo.addr)], &[]);
    let (ok, r) = curl(&lb, &certs, "b.test", "/p", &[]);
    assert!(ok, "{r}");
    let seen = body(&r).to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(seen.contains("proto=https"), "Forwarded: proto=https: {seen}");
    let plain = testkit::http::get(lb.plain, "/p", &[]).expect("plain request");
    assert!(plain.text().to_ascii_lowercase().contains("x-forwarded-proto: http\r\n"), "{plain:?}");
}

#[test]
fn openssl_s_client_sni_alpn_versions_and_resumption() {
    if tool(&["openssl"]).is_none() {
        return;
    }
    let certs = Certs::new("https-openssl");
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &[]);
    let ca = certs.ca();
    let ca = ca.to_str().expect("utf-8 path");

    // SNI picks the certificate by name; an unknown name (and no SNI) gets the default one
    let (_, out) = s_client(&lb, &["-servername", "b.test", "-CAfile", ca, "-verify_return_error"]);
    assert!(subject(&out).contains("b.test"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let (_, out) = s_client(&lb, &["-servername", "a.test", "-CAfile", ca]);
    assert!(subject(&out).contains("a.test first"), "{out}");
    let (_, out) = s_client(&lb, &["-servername", "unknown.test"]);
    assert!(subject(&out).contains("a.test first"), "the default certificate: {out}");
    let (_, out) = s_client(&lb, &["-noservername"]);
    assert!(subject(&out).contains("a.test first"), "the default certificate without SNI: {out}");

    // ALPN: http/1.1 for a client without h2 (h2 is chosen first when offered: h2_e2e's curl --http2)
    let (_, out) = s_client(&lb, &["-servername", "a.test", "-alpn", "http/1.1"]);
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");

    // TLS 1.0 and 1.1 refused; 1.2 and 1.3 accepted
    for old in ["-tls1", "-tls1_1"] {
        let (ok, out) = s_client(&lb, &["-servername", "a.test", old]);
        assert!(!ok || out.contains("Cipher is (NONE)"), "{old} must fail: {out}");
        assert!(out.contains("no peer certificate available"), "{old}: no handshake: {out}");
    }
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (_, out) = s_client(&lb, &["-servername", "a.test", flag]);
        assert!(out.contains(name) && !out.contains("Cipher is (NONE)"), "{flag}: {out}");
    }

    // resumption: a session saved from one connection is resumed by the next (TLS 1.3 ticket, TLS
    // 1.2 ticket)
    for flag in ["-tls1_3", "-tls1_2"] {
        let sess = certs.path(&format!("sess{flag}"));
        let sess = sess.to_str().expect("utf-8 path");
        let (_, first) = s_client_request(&lb, &["-servername", "a.test", flag, "-sess_out", sess]);
        assert!(first.contains("New,") && first.contains("I'm w1"), "{first}");
        let (_, again) = s_client_request(&lb, &["-servername", "a.test", flag, "-sess_in", sess]);
        assert!(again.contains("Reused,"), "{flag}: the session must be resumed: {again}");
        assert!(again.contains("I'm w1"), "{again}");
    }
}

#[test]
fn an_unknown_name_is_refused_with_tls_unknown_sni_refuse() {
    if tool(&["openssl"]).is_none() {
        return;
    }
    let certs = Certs::new("https-refuse");
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &["--tls-unknown-sni", "refuse"]);
    let (ok, out) = s_client(&lb, &["-servername", "unknown.test"]);
    assert!(!ok || out.contains("Cipher is (NONE)"), "{out}");
    assert!(subject(&out).is_empty(), "no certificate disclosed: {out}");
    let (_, out) = s_client(&lb, &["-servername", "b.test"]);
    assert!(subject(&out).contains("b.test"), "known names still work: {out}");
}

#[test]
fn python_ssl_client_gets_an_answer() {
    let Some(python) = tool(&["python3"]) else { return };
    let certs = Certs::new("https-python");
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &[]);
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", {port}), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="b.test") as s:
        print(s.version(), s.selected_alpn_protocol(), s.getpeercert()["subject"])
        s.sendall(b"GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(data.decode())
"#,
        ca = certs.ca().display().to_string(),
        port = lb.tls.port()
    );
    let (ok, out) = run(Command::new(python).arg("-"), script.as_bytes());
    assert!(ok, "{out}");
    assert!(out.contains("http/1.1") && out.contains("b.test"), "{out}");
    assert!(out.contains("HTTP/1.1 200 OK") && out.contains("I'm w1"), "{out}");
}

#[test]
fn a_rotated_certificate_is_served_without_a_failed_request() {
    if tool(&["curl"]).is_none() || tool(&["openssl"]).is_none() {
        return;
    }
    let certs = Certs::new("https-rotate");
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &[]);
    let ca = certs.ca();
    let ca = ca.to_str().expect("utf-8 path").to_owned();
    // a bounded load: two threads of curl requests (new connections) until told to stop
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let port = lb.tls.port();
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, ca) = (stop.clone(), ok.clone(), failed.clone(), ca.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let (done, out) = run(
                        Command::new("curl").args([
                            "-sS",
                            "--max-time",
                            "5",
                            "--cacert",
                            &ca,
                            "--resolve",
                            &format!("b.test:{port}:127.0.0.1"),
                            &format!("https://b.test:{port}/"),
                        ]),
                        b"",
                    );
                    if done && out.contains("I'm w1") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("failed request: {out}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // a bad new file first: the old certificate stays, one log line says so
    certs.replace("b.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    let logged = wait::until(Duration::from_secs(10), || lb.log().contains("b.crt"));
    let (_, out) = s_client(&lb, &["-servername", "b.test"]);
    assert!(subject(&out).contains("b.test"), "the old certificate stays in force: {out}");
    assert!(logged, "a bad file is logged: {}", lb.log());

    // then a good one: served after the poll sees it settle
    certs.write("b", "b.test rotated", &["b.test"]);
    let rotated = wait::until(Duration::from_secs(15), || {
        subject(&s_client(&lb, &["-servername", "b.test"]).1).contains("b.test rotated")
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("a load thread");
    }
    assert!(rotated, "the new certificate must be served: {}", lb.log());
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request may fail during the rotation");
    assert!(ok.load(Ordering::Relaxed) >= 10, "the load ran: {} requests", ok.load(Ordering::Relaxed));

    // SIGHUP reloads at once (no settling wait)
    certs.write("b", "b.test after sighup", &["b.test"]);
    testkit::process::signal(lb.child.id(), libc_sighup()).expect("SIGHUP");
    let reloaded = wait::until(Duration::from_secs(3), || {
        subject(&s_client(&lb, &["-servername", "b.test"]).1).contains("after sighup")
    });
    assert!(reloaded, "SIGHUP must reload: {}", lb.log());
}

/// SIGHUP's number on Linux.
const fn libc_sighup() -> i32 {
    1
}

#[test]
fn plain_requests_are_redirected_with_308_and_tls_answers_carry_hsts() {
    if tool(&["curl"]).is_none() {
        return;
    }
    let certs = Certs::new("https-redirect");
    let w1 = whoami("w1");
    let log = certs.dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let extra = ["--redirect-https", "--hsts", "1d", "--access-log", "json", "--access-log-file", &log_arg];
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &extra);
    let r = testkit::http::get(lb.plain, "/x?y=1", &[("Host", "a.test")]).expect("plain request");
    assert_eq!(r.status, 308, "{r:?}");
    let location = r.header_values("location");
    assert_eq!(location, vec![format!("https://a.test:{}/x?y=1", lb.tls.port())], "{r:?}");
    assert!(r.header_values("strict-transport-security").is_empty(), "no HSTS over plain HTTP");
    // the redirect is in the access log as sticky's own answer
    let mut line = String::new();
    wait::until(Duration::from_secs(10), || {
        line = std::fs::read_to_string(&log).unwrap_or_default().lines().next().unwrap_or_default().to_owned();
        !line.is_empty()
    });
    for field in
        ["\"pick\":\"redirect\"", "\"status\":308", "\"path\":\"/x\"", "\"backend\":null", "\"proto\":\"http/1.1\""]
    {
        assert!(line.contains(field), "{field} in the redirect's line: {line}");
    }
    let (ok, r) = curl(&lb, &certs, "a.test", "/", &[]);
    assert!(ok && r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(header(&r, "strict-transport-security"), vec!["max-age=86400"], "{r}");
    // curl follows the redirect from plain HTTP to HTTPS
    let (ok, r) = run(
        Command::new("curl")
            .args(["-sS", "-L", "--max-time", "10", "--cacert"])
            .arg(certs.ca())
            .args(["--resolve", &format!("a.test:{}:127.0.0.1", lb.plain.port())])
            .args(["--resolve", &format!("a.test:{}:127.0.0.1", lb.tls.port())])
            .arg(format!("http://a.test:{}/", lb.plain.port())),
        b"",
    );
    assert!(ok && r.contains("I'm w1"), "{r}");
}

#[test]
fn configuration_errors_are_clear() {
    let certs = Certs::new("https-errors");
    let check = |args: &[&str], expect: &str| {
        let mut cmd = Command::new(STICKY);
        cmd.arg("run").args(["--listen", "127.0.0.1:0", "--backend", "http://127.0.0.1:9"]).args(args);
        let (ok, out) = run(&mut cmd, b"");
        assert!(!ok, "{args:?} must fail: {out}");
        assert!(out.contains(expect), "{args:?}: {expect:?} expected in: {out}");
    };
    let (a_crt, a_key, b_key) = (certs.path("a.crt"), certs.path("a.key"), certs.path("b.key"));
    let (a_crt, a_key, b_key) = (a_crt.to_str().unwrap(), a_key.to_str().unwrap(), b_key.to_str().unwrap());
    check(&["--listen-tls", "127.0.0.1:0"], "a TLS listener needs certificates");
    check(&["--tls-cert", a_crt, "--tls-key", a_key], "no TLS listener");
    check(&["--listen-tls", "127.0.0.1:0", "--tls-cert", a_crt], "--tls-key");
    check(&["--listen-tls", "127.0.0.1:0", "--tls-cert", a_crt, "--tls-key", b_key], "is not the private key of");
    check(&["--listen-tls", "127.0.0.1:0", "--tls-cert", "/nonexistent.crt", "--tls-key", a_key], "failed to read");
    check(&["--listen-tls", "127.0.0.1:0", "--tls-dir", "/tmp", "--tls-unknown-sni", "maybe"], "refuse");
}

/// testssl.sh against the listener: protocols, cipher categories, forward secrecy, and the
/// vulnerability checks, read from its JSON file. Bounded: `--fast` without the slow client
/// simulation, under a 5 minute limit.
#[test]
fn testssl_finds_no_old_protocol_weak_cipher_or_vulnerability() {
    let Some(testssl) = tool(&["testssl", "testssl.sh"]) else { return };
    let certs = Certs::new("https-testssl");
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &[]);
    let json = certs.path("testssl.json");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "300",
        &testssl,
        "--quiet",
        "--fast",
        "--protocols",
        "--std",
        "--fs",
        "--vulnerable",
        "--warnings",
        "off",
    ])
    .arg("--jsonfile")
    .arg(&json)
    .args(["--ip", "127.0.0.1", &format!("https://a.test:{}", lb.tls.port())])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let status = cmd.status().expect("testssl runs");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no JSON from testssl ({status}): {e}"));
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).expect("testssl's JSON");
    let find = |id: &str| findings.iter().find(|f| f["id"] == id).and_then(|f| f["finding"].as_str()).unwrap_or("");
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(find(old).starts_with("not offered"), "{old}: {}", find(old));
    }
    for new in ["TLS1_2", "TLS1_3"] {
        assert!(find(new).starts_with("offered"), "{new}: {}", find(new));
    }
    for weak in ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA"] {
        assert!(find(weak).starts_with("not offered"), "{weak}: {}", find(weak));
    }
    // AVERAGE: the CBC suites (testssl 3.0's "Obsolete CBC ciphers")
    assert!(find("cipherlist_AVERAGE").starts_with("not offered"), "CBC: {}", find("cipherlist_AVERAGE"));
    assert!(find("cipherlist_STRONG").starts_with("offered"), "AEAD: {}", find("cipherlist_STRONG"));
    for vuln in [
        "heartbleed",
        "CCS",
        "ticketbleed",
        "ROBOT",
        "secure_renego",
        "CRIME_TLS",
        "POODLE_SSL",
        "SWEET32",
        "FREAK",
        "DROWN",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
    ] {
        let f = findings.iter().find(|f| f["id"] == vuln);
        assert!(f.is_some_and(|f| matches!(f["severity"].as_str(), Some("OK" | "INFO"))), "{vuln}: {f:?}");
    }
    // every finding of a vulnerability check (and anything else) rated above LOW fails the test
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .map(|f| format!("{} {}: {}", f["id"], f["severity"], f["finding"]))
        .collect();
    assert!(bad.is_empty(), "testssl flagged: {bad:#?}");
    let _ = writeln!(
        std::io::stderr(),
        "testssl: {} findings, none above LOW; protocols TLS1_2={} TLS1_3={}",
        findings.len(),
        find("TLS1_2"),
        find("TLS1_3")
    );
}

/// pebble (the ACME test server) and its DNS (every name is 127.0.0.1), validating HTTP-01 on
/// `http01` and TLS-ALPN-01 on `tls_alpn` of loopback; killed on drop.
struct Pebble {
    directory: String,
    /// The certificate of pebble's own HTTPS listener (sticky's --acme-ca-root).
    listener_root: PathBuf,
    _procs: Vec<ChildGuard>,
}

impl Pebble {
    fn start(dir: &std::path::Path, http01: u16, tls_alpn: u16) -> Self {
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("names")
            .self_signed(&key)
            .expect("self-signed");
        let listener_root = dir.join("pebble-listener.pem");
        std::fs::write(&listener_root, cert.pem()).expect("write");
        std::fs::write(dir.join("pebble-listener.key"), key.serialize_pem()).expect("write");
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let (dns_mgmt, dns) = (free_port(), free_port());
        let mut cmd = Command::new("pebble-challtestsrv");
        cmd.args(["-dns01", &loopback(dns).to_string(), "-management", &loopback(dns_mgmt).to_string()]).args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ]);
        testkit::process::log_to(&mut cmd, &dir.join("challtestsrv.log")).expect("log");
        let dns_proc = ChildGuard::spawn(&mut cmd);
        assert!(wait::until(Duration::from_secs(20), || TcpStream::connect(loopback(dns_mgmt)).is_ok()), "DNS up");
        let (acme, management) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": loopback(acme).to_string(),
            "managementListenAddress": loopback(management).to_string(),
            "certificate": listener_root,
            "privateKey": dir.join("pebble-listener.key"),
            "httpPort": http01,
            "tlsPort": tls_alpn,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &loopback(dns).to_string()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        testkit::process::log_to(&mut cmd, &dir.join("pebble.log")).expect("log");
        let pebble = ChildGuard::spawn(&mut cmd);
        assert!(wait::until(Duration::from_secs(20), || TcpStream::connect(loopback(acme)).is_ok()), "pebble up");
        Self { directory: format!("https://{}/dir", loopback(acme)), listener_root, _procs: vec![pebble, dns_proc] }
    }
}

/// `sticky run --acme-*` against pebble: a certificate for a name given by `--acme-domain`, proven by
/// HTTP-01 on the plain listener (through `--redirect-https`, which must not catch the challenge),
/// then one proven by TLS-ALPN-01 on the TLS listener; each is served by SNI once issued.
#[test]
fn acme_certificates_from_pebble_are_served_http01_and_tls_alpn01() {
    if tool(&["pebble"]).is_none() || tool(&["pebble-challtestsrv"]).is_none() || tool(&["openssl"]).is_none() {
        return;
    }
    for (challenge, name) in [("http-01", "web.sticky.test"), ("tls-alpn-01", "alpn.sticky.test")] {
        let certs = Certs::new("https-acme");
        let w1 = whoami("w1");
        let (plain, tls) = (free_port(), free_port());
        let pebble = Pebble::start(certs.dir.path(), plain, tls);
        let state = certs.path("acme");
        let root = pebble.listener_root.to_str().expect("utf-8").to_owned();
        let lb = Lb::start_at(
            &certs,
            &[("w1", w1.addr)],
            &[
                "--acme-directory",
                &pebble.directory,
                "--acme-state",
                state.to_str().expect("utf-8"),
                "--acme-domain",
                name,
                "--acme-challenge",
                challenge,
                "--acme-ca-root",
                &root,
                "--redirect-https",
            ],
            Some((plain, tls)),
        );
        let issued = wait::until(Duration::from_secs(60), || {
            let (_, out) = s_client(&lb, &["-servername", name]);
            out.lines().any(|l| l.starts_with("issuer=") && l.contains("Pebble"))
        });
        assert!(issued, "{challenge}: pebble's certificate for {name} must be served:\n{}", lb.log());
        let log = lb.log();
        assert!(log.contains("acme"), "{log}");
        if challenge == "http-01" {
            assert!(
                log.contains("answered an ACME HTTP-01 challenge"),
                "the redirect let the challenge through: {log}"
            );
        }
    }
}

/// An upgraded (WebSocket) connection over TLS is relayed in user space: the 101 and an echoed frame
/// come back through TLS; with `--splice`, one log line says TLS connections stay in user space.
#[test]
fn a_websocket_over_tls_is_relayed_and_splice_says_tls_stays_in_user_space() {
    let Some(python) = tool(&["python3"]) else { return };
    let certs = Certs::new("https-ws");
    let w1 = whoami("w1");
    let lb = Lb::start(&certs, &[("w1", w1.addr)], &["--splice"]);
    let script = format!(
        r#"
import socket, ssl, os
ctx = ssl.create_default_context(cafile={ca:?})
with socket.create_connection(("127.0.0.1", {port}), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="a.test") as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        print(head.split(b"\r\n")[0].decode())
        mask = os.urandom(4)
        payload = b"hello"
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        frame = s.recv(2)
        n = frame[1] & 0x7f
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        print(data.decode())
"#,
        ca = certs.ca().display().to_string(),
        port = lb.tls.port()
    );
    let (ok, out) = run(Command::new(python).arg("-"), script.as_bytes());
    assert!(ok, "{out}");
    assert!(out.contains("HTTP/1.1 101"), "{out}");
    assert!(out.contains("I'm w1: hello"), "the echo came back through TLS: {out}");
    let log = lb.log();
    let lines = log.lines().filter(|l| l.contains("TLS listener are relayed in user space")).count();
    assert_eq!(lines, 1, "--splice with a TLS listener says so once: {log}");
}
