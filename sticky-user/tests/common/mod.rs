//! Helpers of the end-to-end tests: real `sticky` processes on 127.0.0.1, killed on drop, and a tiny
//! blocking HTTP/1.1 client that opens a new connection per request (so stickiness is tested across
//! connections, and malformed requests can be sent byte for byte).

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The binary under test.
pub const STICKY: &str = env!("CARGO_BIN_EXE_sticky");

/// A child process, killed (and reaped) on drop, also when a test panics.
pub struct Proc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its admin listener, if any.
    pub admin: Option<SocketAddr>,
}

impl Proc {
    /// Kills the process and waits until it is gone (its sockets closed).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding port 0 on loopback must work")
}

/// Polls `ready` every 20 ms for at most 10 s, while `proc` runs. Returns whether it became ready.
fn wait_ready(proc: &mut Proc, ready: impl Fn(&Proc) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !proc.running() {
            return false;
        }
        if ready(proc) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts a process on a free port (retrying with another port if it dies, e.g. the port was taken in
/// between) and waits until `ready`.
fn start(
    port: Option<u16>,
    make: impl Fn(SocketAddr, Option<SocketAddr>) -> Command,
    with_admin: bool,
    ready: impl Fn(&Proc) -> bool,
) -> Proc {
    for _ in 0..5 {
        let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or_else(free_port)));
        let admin = with_admin.then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let mut cmd = make(addr, admin);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).env("RUST_LOG", "warn");
        let child = cmd.spawn().expect("the sticky binary must start");
        let mut proc = Proc { child, addr, admin };
        if wait_ready(&mut proc, &ready) {
            return proc;
        }
    }
    panic!("process did not become ready within 5 attempts");
}

/// `sticky whoami --name NAME` on a free port, ready when it answers `I'm NAME`.
pub fn whoami(name: &str) -> Proc {
    whoami_at(name, None)
}

/// `sticky whoami` on a given port (to restart a backend where it was), or a free one.
pub fn whoami_at(name: &str, port: Option<u16>) -> Proc {
    let expected = format!("I'm {name}\n");
    let make = |addr: SocketAddr, _| {
        let mut c = Command::new(STICKY);
        c.args(["whoami", "--listen", &addr.to_string(), "--name", name]);
        c
    };
    start(port, make, false, |p| get(p.addr, "/", &[]).is_ok_and(|r| r.body == expected))
}

/// `sticky run` with these backends (`NAME=URL`) and extra arguments, ready when its admin says ok.
pub fn sticky(backends: &[&Proc], names: &[&str], extra: &[&str]) -> Proc {
    let list: Vec<String> = backends.iter().zip(names).map(|(b, n)| format!("{n}=http://{}", b.addr)).collect();
    let mut args: Vec<String> = list.iter().flat_map(|b| ["--backend".to_owned(), b.clone()]).collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    sticky_args(&args)
}

/// `sticky run ARGS --listen … --admin …`, ready when its admin says ok.
pub fn sticky_args(args: &[String]) -> Proc {
    sticky_env(args, &[])
}

/// `sticky run ARGS --listen … --admin …` with extra environment variables, ready when its admin says ok.
pub fn sticky_env(args: &[String], env: &[(&str, &str)]) -> Proc {
    let make = |addr: SocketAddr, admin: Option<SocketAddr>| {
        let mut c = Command::new(STICKY);
        c.envs(env.iter().copied());
        c.arg("run").args(args).args(["--listen", &addr.to_string(), "--workers", "2"]);
        if let Some(a) = admin {
            c.args(["--admin", &a.to_string()]);
        }
        c
    };
    start(None, make, true, |p| p.admin.is_some_and(|a| get(a, "/healthz", &[]).is_ok_and(|r| r.status == 200)))
}

/// A response, as received.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The value of the sticky cookie set by this response, if any.
    pub fn sticky_cookie(&self, name: &str) -> Option<String> {
        self.all("set-cookie").into_iter().find_map(|v| {
            v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        })
    }
}

/// Sends raw bytes on a new connection and reads the response until the server closes (bounded: 5 s).
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if complete(&buf) {
                    break;
                }
            }
            Err(e) if buf.is_empty() => return Err(e),
            // a reset after the response was sent (the server closed with unread input)
            Err(_) => break,
        }
    }
    parse(&buf)
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {:?}", String::from_utf8_lossy(&buf))))
}

fn complete(buf: &[u8]) -> bool {
    let Some(end) = find(buf, b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()))
        .is_some_and(|n| buf.len() >= end + 4 + n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse(buf: &[u8]) -> Option<Resp> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Resp { status, headers, body: String::from_utf8_lossy(&buf[end + 4..]).into_owned() })
}

/// `GET path` with extra headers on a new connection (`Connection: close`).
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Resp> {
    let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let _ = write!(req, "Host: {addr}\r\n");
    }
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

/// `POST path` with an empty body on a new connection.
pub fn post(addr: SocketAddr, path: &str) -> std::io::Result<Resp> {
    raw(
        addr,
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
}

/// A GET that must succeed with 200.
pub fn get_ok(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let r = get(addr, path, headers).expect("request through the proxy must get a response");
    assert_eq!(r.status, 200, "request must succeed: {r:?}");
    r
}

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sticky-test-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&p).expect("temp dir must be creatable");
        Self(p)
    }

    /// A file in it.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("temp file must be writable");
        p
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Body `I'm NAME\n` → NAME.
///
/// # Panics
/// The body is not a whoami body.
pub fn who(r: &Resp) -> String {
    r.body
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("I'm "))
        .expect("a whoami body must start with I'm NAME")
        .to_owned()
}
