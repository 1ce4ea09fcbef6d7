//! http mode harness: a network namespace of its own with two echo backends that name themselves
//! (`b1`, `b2`, service `echo`), two `sticky whoami` for WebSockets (`ws1`, `ws2`, service `ws` on
//! `/ws`), and `sticky run --config` in front, all on the namespace's loopback (fixed ports: the
//! namespace is the test's alone). Clients run inside it through
//! [`L7Lab::run`]; a keep-alive HTTP/1.1 client and an echo server that checks request framing live
//! here too.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::Duration,
};

use crate::{ChildGuard, NetNs, process::wait_until, sticky_bin};

/// Where `sticky run` listens inside the lab.
pub const LB: &str = "127.0.0.1:8080";
/// Its admin listener.
pub const ADMIN: &str = "127.0.0.1:9100";
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
        let file = std::fs::File::create(&log).expect("temp dir must be writable");
        let lb = ChildGuard::spawn(cmd.args(&args).env("RUST_LOG", "info").env("NO_COLOR", "1").stderr(file));
        let lab = Self { ns, lb, _whoami: whoami, log, config };
        let up = wait_until(Duration::from_secs(10), || {
            lab.run(|| {
                [LB, ADMIN, WHOAMI[0].1, WHOAMI[1].1]
                    .iter()
                    .all(|a| crate::process::can_connect(a.parse().expect("address")))
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
            let mut c = Client::connect(ADMIN);
            c.request("GET", "/metrics", &[], b"").body_text()
        });
        sticky::admin::metrics::sample(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }

    /// Sends `signal` to `sticky run`.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        #[expect(unsafe_code, reason = "libc::kill: std cannot send SIGSTOP/SIGCONT")]
        let rc = unsafe { libc::kill(i32::try_from(self.lb.id()).expect("pid"), signal) };
        assert_eq!(rc, 0, "kill({signal}) must reach sticky");
    }

    /// Waits until every splice map is empty and no pair is live (the metrics say so).
    ///
    /// # Panics
    /// Not within 5 s.
    pub fn assert_splice_empty(&self) {
        let empty = wait_until(Duration::from_secs(5), || {
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
        // SAFETY: as in `signal`.
        #[expect(unsafe_code, reason = "libc::kill")]
        unsafe {
            libc::kill(i32::try_from(self.lb.id()).unwrap_or(0), libc::SIGCONT);
        }
        if std::thread::panicking() {
            eprintln!("--- sticky run log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.config);
    }
}

/// An HTTP response as the client read it.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    #[must_use]
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of the `sticky` cookie this response sets, if any.
    #[must_use]
    pub fn sticky_cookie(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix("sticky=").map(|rest| rest.split(';').next().unwrap_or("").to_owned()))
    }
}

/// A keep-alive HTTP/1.1 client on one connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    /// The socket (for shutdown, linger, timeouts).
    pub stream: TcpStream,
}

impl Client {
    /// Connects to `addr` (from the calling thread's namespace), with 5 s read timeouts.
    ///
    /// # Panics
    /// The connect fails.
    #[must_use]
    pub fn connect(addr: &str) -> Self {
        let addr: SocketAddr = addr.parse().expect("address");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect must work");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self { reader: BufReader::new(stream.try_clone().expect("clone")), stream }
    }

    /// Sends a request with a `Content-Length` body and reads the response.
    ///
    /// # Panics
    /// The connection fails or the response does not parse.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send(method, path, headers, body, false);
        self.read_response().unwrap_or_else(|e| panic!("{method} {path}: response must arrive: {e}"))
    }

    /// Writes a request; `chunked` sends the body in two chunks.
    ///
    /// # Panics
    /// The write fails.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], chunked: bool) {
        let mut out = format!("{method} {path} HTTP/1.1\r\nhost: lab\r\n");
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        let mut bytes = if chunked {
            out.push_str("transfer-encoding: chunked\r\n\r\n");
            let (a, b) = body.split_at(body.len() / 2);
            let mut v = out.into_bytes();
            for part in [a, b] {
                if !part.is_empty() {
                    v.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    v.extend_from_slice(part);
                    v.extend_from_slice(b"\r\n");
                }
            }
            v.extend_from_slice(b"0\r\n\r\n");
            v
        } else {
            out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let mut v = out.into_bytes();
            v.extend_from_slice(body);
            v
        };
        self.stream.write_all(&bytes).expect("request write must work");
        bytes.clear();
    }

    /// Reads one response (Content-Length or chunked body).
    ///
    /// # Errors
    /// The connection fails, times out or closes before a whole response.
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let headers = read_headers(&mut self.reader)?;
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            read_chunked(&mut self.reader)?
        } else {
            let n: usize = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; n];
            self.reader.read_exact(&mut body)?;
            body
        };
        Ok(Response { status, headers, body })
    }

    /// Reads until EOF; returns what arrived (an error if the read fails, e.g. a reset).
    ///
    /// # Errors
    /// The read fails.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        Ok(rest)
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::other(format!("not HTTP: {what:?}"))
}

fn read_headers(r: &mut impl std::io::BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(headers);
        }
        let (k, v) = line.split_once(':').ok_or_else(|| bad(line))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
}

fn read_chunked(r: &mut impl std::io::BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| bad(&line))?;
        if size == 0 {
            // trailers, then the blank line
            read_headers(r)?;
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
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
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return; // the client closed: close too
                }
                let Ok(headers) = read_headers(&mut reader) else { return };
                let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                    match read_chunked(&mut reader) {
                        Ok(b) => b,
                        Err(_) => return,
                    }
                } else {
                    let n: usize = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mut b = vec![0u8; n];
                    if reader.read_exact(&mut b).is_err() {
                        return;
                    }
                    b
                };
                let saw = if get("x-forwarded-for").is_some() { "yes" } else { "no" };
                let mut out = format!("I'm {name}\n").into_bytes();
                out.extend_from_slice(&body);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: {name}\r\nx-saw-forwarded: {saw}\r\n\r\n",
                    out.len()
                );
                if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&out)).is_err() {
                    return;
                }
                if get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    return; // FIN to the client
                }
            }
        });
    }
}
