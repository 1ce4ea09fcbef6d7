//! Helpers of the end-to-end tests: real `sticky` processes on 127.0.0.1 on free ports, killed on drop
//! and polled until ready; requests through the test kit's HTTP client, a new connection per request
//! (so stickiness is tested across connections, and malformed requests can be sent byte for byte).

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use testkit::{ChildGuard, wait};
pub use testkit::{
    http::{Response, get},
    net::free_port,
};

/// The binary under test.
pub const STICKY: &str = env!("CARGO_BIN_EXE_sticky");

/// A `sticky` process, killed (and reaped) on drop, also when a test panics.
pub struct Proc {
    child: ChildGuard,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its admin listener, if any.
    pub admin: Option<SocketAddr>,
}

impl Proc {
    /// A process started by the caller, listening on `addr` (admin on `admin`).
    pub fn from_guard(child: ChildGuard, addr: SocketAddr, admin: Option<SocketAddr>) -> Self {
        Self { child, addr, admin }
    }

    /// SIGTERM, then SIGKILL if it still runs after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.child.stop(grace);
    }

    /// Kills the process and waits until it is gone (its sockets closed).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.is_running()
    }
}

/// Starts a process on a free port (retrying with another port if it dies, e.g. the port was taken in
/// between) and waits, at most 10 s, until `ready`.
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
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).env("RUST_LOG", "warn");
        let mut proc = Proc { child: ChildGuard::spawn(&mut cmd), addr, admin };
        let mut up = false;
        wait::until(Duration::from_secs(10), || {
            // A process that died will not become ready: stop polling it, try another port.
            up = proc.running() && ready(&proc);
            up || !proc.running()
        });
        if up {
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
    start(port, make, false, |p| get(p.addr, "/", &[]).is_ok_and(|r| r.text() == expected))
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

/// `POST path` with an empty body on a new connection.
///
/// # Errors
/// The exchange fails.
pub fn post(addr: SocketAddr, path: &str) -> Result<Response, testkit::http::HttpError> {
    testkit::http::request(addr, "POST", path, &[("Content-Type", "application/json")], b"")
}

/// A GET that must succeed with 200.
pub fn get_ok(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let r = get(addr, path, headers).expect("request through the proxy must get a response");
    assert_eq!(r.status, 200, "request must succeed: {r:?}");
    r
}

/// A sample of `/metrics` at `admin`, e.g. `sticky_repins_total{service="default",reason="expired"}`.
///
/// # Panics
/// The series is missing.
pub fn metric(admin: SocketAddr, series: &str) -> u64 {
    let text = get_ok(admin, "/metrics", &[]).into_text();
    testkit::prometheus::sample(&text, series).unwrap_or_else(|| panic!("metric {series} must exist in:\n{text}"))
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

/// Body `I'm NAME\n` of a 200 → NAME.
///
/// # Panics
/// The response is not whoami's.
pub fn who(r: &Response) -> String {
    r.whoami().expect("a whoami body must start with I'm NAME").to_owned()
}
