//! ACME end to end against Debian's pebble (the ACME test server) and pebble-challtestsrv (its DNS,
//! answering 127.0.0.1 for every name): two sticky ACME managers share one directory; the leader
//! orders a certificate proven by HTTP-01 and one proven by TLS-ALPN-01, both answered by the
//! *follower's* loopback listeners (so the answers travel through the shared directory); then a real
//! TLS handshake, trusting pebble's root, gets each certificate from the follower's resolver. All
//! traffic stays on 127.0.0.1.
//!
//! Without pebble installed (`cargo xtask setup` installs it) the test says so loudly, and fails under
//! `STICKY_REQUIRE_ALL=1` (CI), as the kernel tests do.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use sticky::tls::{
    acme::{
        client::{self, AcmeClient},
        issue::Request,
        manager::{self, Manager, Role},
        storage::Storage,
    },
    challenge::{Challenges, Kind},
    reload::Reloader,
    resolver::{Resolver, UnknownName},
    server::{self, Accepted, HTTP_1_1},
    source::Source,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::watch,
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TEST: &str = "acme_pebble";
const HTTP01_NAME: &str = "web.sticky.test";
const ALPN_NAME: &str = "alpn.sticky.test";

/// The longest the whole ACME flow may take (pebble validates at once with `PEBBLE_VA_NOSLEEP`).
const FLOW_DEADLINE: Duration = Duration::from_secs(120);

/// Says why the test cannot run: a panic under `STICKY_REQUIRE_ALL=1` (CI), else a loud line, also
/// appended to `STICKY_SKIP_LOG` for `cargo xtask test`'s summary (as `sticky-tests`' skip does).
fn skip(reason: &str) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let line = format!("{TEST}: {reason} (kernel {})", kernel.trim());
    assert!(
        std::env::var("STICKY_REQUIRE_ALL").as_deref() != Ok("1"),
        "STICKY_REQUIRE_ALL=1 but this test would be skipped: {line}"
    );
    // straight to the process's stderr: libtest captures eprintln! of a passing test, and a skip must show
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    if let Some(path) = std::env::var_os("STICKY_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
}

/// A child process killed and reaped on drop (also when the test panics); its output goes to a file
/// shown when it misbehaves.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(command: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("the log file must be creatable");
        let err = out.try_clone().expect("the log file must be cloneable");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} must start: {e}"));
        Self { child, log }
    }

    /// Waits until `addr` accepts TCP connections, for at most 20 s, while the process runs.
    fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}) before listening on {addr}:\n{}", self.log.display(), self.output());
            }
            if StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listens on {addr} after 20 s:\n{}", self.output());
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port 0 must bind")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// pebble and its DNS, on loopback, validating against `http01` and `tls_alpn`.
struct Pebble {
    /// The ACME directory URL.
    directory: String,
    /// The certificate of pebble's own HTTPS listeners (the ACME client's extra root).
    listener_root: PathBuf,
    /// The root that signs what pebble issues (regenerated at each start).
    issuing_root: CertificateDer<'static>,
    _dns: Proc,
    /// The ACME server itself (its output explains a flow that did not finish).
    server: Proc,
}

impl Pebble {
    async fn start(dir: &Path, http01: u16, tls_alpn: u16) -> Self {
        // pebble's own HTTPS certificate: Debian ships pebble without its test certificates
        let key = rcgen::KeyPair::generate().expect("a key must be generated");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("valid names");
        let cert = params.self_signed(&key).expect("self-signing must work");
        let listener_root = dir.join("pebble-listener.pem");
        std::fs::write(&listener_root, cert.pem()).expect("writing must work");
        std::fs::write(dir.join("pebble-listener.key"), key.serialize_pem()).expect("writing must work");

        let (dns, dns_port) = (free_port(), free_port());
        let mut dns_proc = Proc::start(
            Command::new("pebble-challtestsrv").args([
                "-dns01",
                &loopback(dns_port).to_string(),
                "-management",
                &loopback(dns).to_string(),
                "-defaultIPv4",
                "127.0.0.1",
                // no AAAA answers: nothing listens on ::1
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ]),
            dir.join("challtestsrv.log"),
        );
        dns_proc.wait_listening(loopback(dns));

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
        std::fs::write(&config_path, config.to_string()).expect("writing must work");
        let mut pebble = Proc::start(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &loopback(dns_port).to_string()])
                // validate at once, never reject a good nonce, never reuse an authorization (so both
                // challenge types are really exercised): a deterministic pebble
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            dir.join("pebble.log"),
        );
        pebble.wait_listening(loopback(acme));
        pebble.wait_listening(loopback(management));
        let issuing_root = https_get_pem(loopback(management), "/roots/0", &listener_root).await;
        Self {
            directory: format!("https://{}/dir", loopback(acme)),
            listener_root,
            issuing_root,
            _dns: dns_proc,
            server: pebble,
        }
    }
}

/// `GET path` over HTTPS (HTTP/1.0, so the body is plain), trusting `root`; the body parsed as one PEM
/// certificate.
async fn https_get_pem(addr: SocketAddr, path: &str, root: &Path) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(root).expect("the root must parse")).expect("the root must be usable");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("pebble's management listener must accept");
    let name = ServerName::try_from("127.0.0.1").expect("an IP is a server name");
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("pebble's TLS must verify");
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .expect("the request must be sent");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
        .await
        .expect("pebble must answer within 10 s")
        .expect("the response must be readable");
    let text = String::from_utf8(response).expect("the response must be text");
    assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).expect("the response must have a body");
    CertificateDer::from_pem_slice(body.as_bytes()).expect("the body must be a PEM certificate")
}

/// One sticky instance's ACME side: its own answers, resolver and reloader over the shared directory.
struct Instance {
    challenges: Arc<Challenges>,
    resolver: Arc<Resolver>,
    role: watch::Receiver<Role>,
    requests: Arc<watch::Sender<Vec<Request>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn instance(dir: &Path, holder: &str, pebble: &Pebble) -> Instance {
    let storage = Storage::open(dir).expect("the ACME directory must open");
    let challenges = Arc::new(Challenges::default());
    let resolver = Arc::new(Resolver::new(UnknownName::Reject, challenges.clone()));
    let reloader = Reloader::start(vec![Source::Dir(storage.certs_dir())], resolver.clone())
        .expect("the certificate directory must load");
    let settings = client::Settings {
        directory_url: pebble.directory.clone(),
        contact: vec!["mailto:ops@sticky.test".to_owned()],
        ca_root: Some(pebble.listener_root.clone()),
    };
    let issuer = AcmeClient::new(settings, storage.clone()).expect("the ACME client must build");
    let settings = manager::Settings {
        holder: holder.to_owned(),
        sync_every: Duration::from_millis(100),
        propagation: Duration::from_millis(500),
        lead_retry: Duration::from_millis(500),
        ..manager::Settings::default()
    };
    let manager =
        Manager::new(issuer, storage, challenges.clone(), reloader.handle(), settings, manager::system_clock());
    Instance {
        challenges,
        resolver,
        role: manager.role(),
        requests: manager.requests(),
        tasks: vec![tokio::spawn(manager.run()), tokio::spawn(reloader.run(Duration::from_millis(200)))],
    }
}

async fn wait_role(instance: &mut Instance, want: impl Fn(&Role) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), instance.role.wait_for(want))
        .await
        .expect("the role must settle within 20 s")
        .expect("the manager must run");
}

/// The plain listener's part: `GET /.well-known/acme-challenge/TOKEN` answered from `challenges`.
fn serve_http01(listener: TcpListener, challenges: Arc<Challenges>, hits: Arc<AtomicUsize>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { continue };
            let challenges = challenges.clone();
            let hits = hits.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                let read = async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                };
                if tokio::time::timeout(Duration::from_secs(5), read).await.is_err() {
                    return;
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or("");
                let response = match challenges.http01(target) {
                    Some(body) => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                };
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    })
}

/// The TLS listener's part: validation handshakes counted, others greeted with a body naming the instance.
fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, validations: Arc<AtomicUsize>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let validations = validations.clone();
            tokio::spawn(async move {
                match server::accept(&acceptor, tcp, Duration::from_secs(10)).await {
                    Ok(Accepted::AcmeChallenge) => {
                        validations.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Accepted::Http(mut tls)) => {
                        let _ = tls.write_all(b"I'm b over TLS\n").await;
                        let _ = tls.shutdown().await;
                    }
                    Err(_) => {}
                }
            });
        }
    })
}

/// A TLS client trusting only pebble's issuing root: the handshake with `name` and the server's body.
async fn fetch_over_tls(addr: SocketAddr, name: &str, root: &CertificateDer<'static>) -> (Option<Vec<u8>>, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("pebble's root must be usable");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("the TLS listener must accept");
    let server_name = ServerName::try_from(name.to_owned()).expect("a valid name");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .unwrap_or_else(|e| panic!("the handshake for {name} must verify against pebble's root: {e}"));
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut body))
        .await
        .expect("the server must answer within 10 s")
        .expect("the body must be readable");
    (alpn, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_http01_and_tls_alpn01_against_pebble_with_two_instances() {
    for binary in ["pebble", "pebble-challtestsrv"] {
        if !on_path(binary) {
            skip(&format!("{binary} is not installed (cargo xtask setup installs the Debian package pebble)"));
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let acme_dir = tmp.path().join("acme");

    // the follower's listeners, bound first so pebble is configured with ports that are surely ours
    let http01 = TcpListener::bind("127.0.0.1:0").await.expect("binding must work");
    let tls = TcpListener::bind("127.0.0.1:0").await.expect("binding must work");
    let tls_addr = tls.local_addr().expect("bound");
    let http01_port = http01.local_addr().expect("bound").port();
    let pebble = Pebble::start(tmp.path(), http01_port, tls_addr.port()).await;

    let mut a = instance(&acme_dir, "a", &pebble);
    wait_role(&mut a, |r| *r == Role::Leader).await;
    let mut b = instance(&acme_dir, "b", &pebble);
    wait_role(&mut b, |r| matches!(r, Role::Follower { leader: Some(l) } if l == "a")).await;

    let settings = server::Settings { acme_tls_alpn: true, ..server::Settings::default() };
    let acceptor =
        TlsAcceptor::from(server::config(&settings, b.resolver.clone()).expect("the server config must build"));
    let (http01_hits, validations) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listeners = [
        serve_http01(http01, b.challenges.clone(), http01_hits.clone()),
        serve_tls(tls, acceptor, validations.clone()),
    ];

    let requests = vec![
        Request::new(&[HTTP01_NAME], Kind::Http01).expect("a valid request"),
        Request::new(&[ALPN_NAME], Kind::TlsAlpn01).expect("a valid request"),
    ];
    a.requests.send_replace(requests.clone());
    b.requests.send_replace(requests);

    let deadline = Instant::now() + FLOW_DEADLINE;
    while !(b.resolver.table().covers(HTTP01_NAME) && b.resolver.table().covers(ALPN_NAME)) {
        assert!(
            Instant::now() < deadline,
            "both certificates must reach the follower within {FLOW_DEADLINE:?}; pebble said:\n{}",
            pebble.server.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(http01_hits.load(Ordering::SeqCst) >= 1, "pebble must have fetched the HTTP-01 answer from the follower");
    assert!(validations.load(Ordering::SeqCst) >= 1, "pebble must have validated TLS-ALPN-01 at the follower");
    assert!(*b.role.borrow() != Role::Leader, "the follower must not have ordered");
    for name in [HTTP01_NAME, ALPN_NAME] {
        let (alpn, body) = fetch_over_tls(tls_addr, name, &pebble.issuing_root).await;
        assert_eq!(alpn.as_deref(), Some(HTTP_1_1), "{name}: http/1.1 must be negotiated");
        assert_eq!(body, "I'm b over TLS\n", "{name}: the follower's listener must answer");
    }
    assert!(acme_dir.join("account.json").is_file(), "the leader must keep its account in the directory");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.challenges.is_empty() && b.challenges.is_empty()) {
        assert!(Instant::now() < deadline, "answers must be withdrawn everywhere after the orders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in listeners {
        task.abort();
    }
}
