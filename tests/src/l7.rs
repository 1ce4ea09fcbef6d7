//! http mode harness: a network namespace of its own with two echo backends that name themselves
//! (`b1`, `b2`, service `echo`), two `sticky whoami` for WebSocket (`ws1`, `ws2`, service `ws` on
//! `/ws`), and `sticky run --config` in front, all on the namespace's loopback (fixed ports: the
//! namespace is the test's alone). Clients run inside it through [`L7Lab::run`]; an echo server that
//! checks request framing lives here too.

use std::{
    io::{BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener},
    path::PathBuf,
    time::Duration,
};

use testkit::{
    ChildGuard, NetNs,
    http::{Client, wire},
    net::can_connect,
    wait,
};

use crate::sticky_bin;

/// Where `sticky run` listens inside the lab.
pub const LB: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Its admin listener.
pub const ADMIN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));
/// The echo backends, by name.
pub const ECHO: [(&str, &str); 2] = [("b1", "127.0.0.1:8001"), ("b2", "127.0.0.1:8002")];
/// The `sticky whoami` backends (WebSocket echo `I'm NAME: MESSAGE`), by name.
pub const WHOAMI: [(&str, &str); 2] = [("ws1", "127.0.0.1:8003"), ("ws2", "127.0.0.1:8004")];

/// The services' splice options, as written in the config file.
#[derive(Clone, Copy, Debug)]
pub struct Splice {
    /// `splice` of service `echo` (pinned keep-alive connections).
    pub pinned: bool,
    /// `splice_upgrades` of service `ws`.
    pub upgrades: bool,
}

/// How `sticky run` gets (or does not get) its eBPF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ebpf {
    /// As root: the kernel splice loads.
    Kernel,
    /// As root with `--no-ebpf`.
    Disabled,
    /// As `nobody` without capabilities: loading fails.
    Unprivileged,
}

/// The lab: namespace, backends, balancer.
pub struct L7Lab {
    /// The namespace (dropped last: it kills what is left inside).
    pub ns: NetNs,
    /// The balancer.
    pub lb: ChildGuard,
    _whoami: Vec<ChildGuard>,
    log: PathBuf,
    config: PathBuf,
}

impl L7Lab {
    /// Starts the backends and `sticky run` with `splice` in its config file.
    ///
    /// # Panics
    /// Something does not come up within 10 s.
    #[must_use]
    pub fn start(ebpf: Ebpf, splice: Splice) -> Self {
        let ns = NetNs::new("l7");
        for (name, addr) in ECHO {
            let listener = ns.run(|| TcpListener::bind(addr).expect("echo backend must bind"));
            // serves until the test process ends (the namespace goes away with the test)
            std::thread::spawn(move || echo_server(&listener, name));
        }
        let bin = sticky_bin();
        let bin = bin.to_str().expect("utf-8 path");
        let whoami = WHOAMI
            .iter()
            .map(|(name, addr)| ChildGuard::spawn(ns.command(bin).args(["whoami", "--listen", addr, "--name", name])))
            .collect();
        let config = std::env::temp_dir().join(format!("{}.toml", ns.name()));
        let backends = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, a)| format!("{{ name = \"{n}\", url = \"http://{a}\" }}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            "listen = \"{LB}\"\nadmin = \"{ADMIN}\"\nworkers = 1\n\n\
             [[services]]\nname = \"echo\"\npath_prefix = \"/\"\nsplice = {}\nbackends = [{}]\n\n\
             [[services]]\nname = \"ws\"\npath_prefix = \"/ws\"\nsplice_upgrades = {}\nbackends = [{}]\n",
            splice.pinned,
            backends(&ECHO),
            splice.upgrades,
            backends(&WHOAMI),
        );
        std::fs::write(&config, text).expect("temp dir must be writable");
        let mut args = vec!["run".to_owned(), "--config".to_owned(), config.to_string_lossy().into_owned()];
        if ebpf == Ebpf::Disabled {
            args.push("--no-ebpf".into());
        }
        let mut cmd = if ebpf == Ebpf::Unprivileged {
            let mut c = ns.command("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin]);
            c
        } else {
            ns.command(bin)
        };
        let log = std::env::temp_dir().join(format!("{}.log", ns.name()));
        testkit::process::log_to(&mut cmd, &log).expect("the temp dir must be writable");
        let lb = ChildGuard::spawn(cmd.args(&args).env("RUST_LOG", "info").env("NO_COLOR", "1"));
        let lab = Self { ns, lb, _whoami: whoami, log, config };
        let up = wait::until(Duration::from_secs(10), || {
            lab.run(|| {
                let whoami = WHOAMI.map(|(_, a)| a.parse::<SocketAddr>().expect("WHOAMI must hold socket addresses"));
                [LB, ADMIN].into_iter().chain(whoami).all(can_connect)
            })
        });
        assert!(up, "{ebpf:?}: sticky run and its backends must come up; log:\n{}", lab.log());
        lab
    }

    /// Runs `f` on a thread inside the lab's namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.ns.run(f)
    }

    /// What `sticky run` logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One sample of `/metrics`, e.g. `sticky_splice_map_entries{map="SPLICE_SOCKS"}`.
    ///
    /// # Panics
    /// The admin listener does not answer or the series is missing.
    #[must_use]
    pub fn sample(&self, series: &str) -> u64 {
        let text = self.run(|| {
            let metrics = testkit::http::get(ADMIN, "/metrics", &[]).expect("the admin listener must answer");
            metrics.into_text()
        });
        testkit::prometheus::sample(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }

    /// Sends `signal` to `sticky run`.
    ///
    /// # Panics
    /// It has exited.
    pub fn signal(&self, signal: i32) {
        self.lb.signal(signal).unwrap_or_else(|e| panic!("signal {signal} must reach sticky: {e}"));
    }

    /// Waits until every splice map is empty and no pair is live (the metrics say so).
    ///
    /// # Panics
    /// Not within 5 s.
    pub fn assert_splice_empty(&self) {
        let empty = wait::until(Duration::from_secs(5), || {
            self.sample("sticky_spliced_connections_active{}") == 0
                && ["SPLICE_PEERS", "SPLICE_SOCKS", "SPLICE_BYTES"]
                    .iter()
                    .all(|m| self.sample(&format!("sticky_splice_map_entries{{map=\"{m}\"}}")) == 0)
        });
        assert!(empty, "every splice map entry must be gone once the connection closed");
    }
}

impl Drop for L7Lab {
    fn drop(&mut self) {
        // a stopped process dies of SIGKILL too, but let it run so that its log ends in order
        let _ = self.lb.signal(libc::SIGCONT);
        if std::thread::panicking() {
            eprintln!("--- sticky run log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.config);
    }
}

/// An HTTP/1.1 server that answers every request with `I'm NAME\n` followed by the request body,
/// header `x-backend: NAME`, and `x-saw-forwarded: yes|no` (whether `X-Forwarded-For` came with
/// the request). It reads bodies by `Content-Length` or chunked framing, so a request whose framing
/// got mangled on the way fails here, and keeps connections alive until the client closes.
fn echo_server(listener: &TcpListener, name: &'static str) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let Ok(clone) = stream.try_clone() else { return };
            let mut reader = BufReader::new(clone);
            let mut writer = stream;
            // Ok(None): the client closed, so close too; an error: the framing broke, drop the connection.
            while let Ok(Some(request)) = wire::read_request(&mut reader) {
                let saw = if request.header("x-forwarded-for").is_some() { "yes" } else { "no" };
                let mut out = format!("I'm {name}\n").into_bytes();
                out.extend_from_slice(&request.body);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: {name}\r\nx-saw-forwarded: {saw}\r\n\r\n",
                    out.len()
                );
                if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&out)).is_err() {
                    return;
                }
                if request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    return; // FIN to the client
                }
            }
        });
    }
}

/// A keep-alive client of `sticky run` (call it inside the lab's namespace): 5 s per read, `host: lab`.
///
/// # Panics
/// The connect fails.
#[must_use]
pub fn client() -> Client {
    Client::to(LB).host("lab").open().expect("a connect to sticky run must work")
}
