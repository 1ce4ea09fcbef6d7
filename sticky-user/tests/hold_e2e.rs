//! e2e: `sticky hold` and `sticky run --listen-from` on loopback. Two sticky processes hand the
//! listening socket over under load (the old one stopped with SIGTERM while the new one accepts on
//! the same socket): no request fails, no client moves (one cookie key). A new holder takes the
//! sockets over from the running one under load. Wrong set-ups fail with a line that says what to do.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{Proc, STICKY, TempDir, free_port, get, whoami};
use testkit::{ChildGuard, wait};

/// `sticky hold --listen ADDR --socket PATH`, its log in `dir`, ready once PATH answers.
fn holder(dir: &TempDir, addr: SocketAddr, socket: &Path, tag: &str) -> ChildGuard {
    let log = std::fs::File::create(dir.path().join(format!("{tag}.log"))).expect("create the holder's log");
    let before = std::fs::symlink_metadata(socket).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let mut cmd = Command::new(STICKY);
    cmd.args(["hold", "--listen", &addr.to_string(), "--socket"]).arg(socket).stdout(Stdio::null()).stderr(log);
    let child = ChildGuard::spawn(&mut cmd).named(tag);
    let ready = wait::until(Duration::from_secs(10), || {
        let now = std::fs::symlink_metadata(socket).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        now.is_some() && now != before
    });
    assert!(ready, "{tag} must put its socket at {}:\n{}", socket.display(), log_of(dir, tag));
    child
}

/// `sticky run --listen ADDR --listen-from SOCKET` over `backends`, ready when its admin answers.
fn sticky_from(dir: &TempDir, addr: SocketAddr, socket: &Path, key: &Path, backends: &[&Proc], tag: &str) -> Proc {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::File::create(dir.path().join(format!("{tag}.log"))).expect("create sticky's log");
    let mut cmd = Command::new(STICKY);
    cmd.args(["run", "--listen", &addr.to_string(), "--admin", &admin.to_string(), "--workers", "2"])
        .arg("--listen-from")
        .arg(socket)
        .arg("--cookie-key-file")
        .arg(key)
        .args(["--shutdown-timeout", "5s"])
        .stdout(Stdio::null())
        .stderr(log);
    for (i, b) in backends.iter().enumerate() {
        cmd.args(["--backend", &format!("b{i}=http://{}", b.addr)]);
    }
    let mut child = ChildGuard::spawn(&mut cmd).named(tag);
    let up = wait::until(Duration::from_secs(15), || {
        !child.is_running() || get(admin, "/healthz", &[]).is_ok_and(|r| r.status == 200)
    });
    assert!(up && child.is_running(), "{tag} must start:\n{}", log_of(dir, tag));
    Proc::from_guard(child, addr, Some(admin))
}

fn log_of(dir: &TempDir, tag: &str) -> String {
    std::fs::read_to_string(dir.path().join(format!("{tag}.log"))).unwrap_or_default()
}

/// What the clients of a [`Load`] saw.
#[derive(Debug, Default)]
struct Report {
    requests: u64,
    failures: Vec<String>,
    /// (client, from, to)
    moves: Vec<(usize, String, String)>,
}

/// `clients` threads, each pinned by its cookie, one request per new connection back to back,
/// until stopped (at most 60 s).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Report>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = (0..clients)
            .map(|client| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut report = Report::default();
                    let (mut jar, mut task): (Option<String>, Option<String>) = (None, None);
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                        report.requests += 1;
                        let cookie = jar.as_ref().map(|v| format!("sticky={v}"));
                        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
                        match get(addr, "/", &headers) {
                            Ok(r) if r.status == 200 && r.whoami().is_some() => {
                                let name = r.whoami().unwrap_or_default().to_owned();
                                if let Some(from) = task.as_ref().filter(|t| **t != name) {
                                    report.moves.push((client, from.clone(), name.clone()));
                                }
                                if let Some(c) = r.cookie("sticky") {
                                    jar = Some(c.to_owned());
                                }
                                task = Some(name);
                            }
                            Ok(r) => report.failures.push(format!("client {client}: {} {:?}", r.status, r.text())),
                            Err(e) => report.failures.push(format!("client {client}: {e:?}")),
                        }
                    }
                    report
                })
            })
            .collect();
        Self { stop, threads }
    }

    fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Report::default();
        for t in std::mem::take(&mut self.threads) {
            let r = t.join().expect("a client thread must not panic");
            all.requests += r.requests;
            all.failures.extend(r.failures);
            all.moves.extend(r.moves);
        }
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `sticky_connections_total` of an instance: the connections it accepted.
fn accepted(p: &Proc) -> u64 {
    common::metric(p.admin.expect("an admin listener"), "sticky_connections_total")
}

#[test]
fn sticky_hands_the_socket_over_under_load_and_a_new_holder_takes_over() {
    let dir = TempDir::new("hold");
    let socket: PathBuf = dir.path().join("hold.sock");
    let key = dir.file("key", "0123456789abcdef0123456789abcdef\n");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (b1, b2, b3) = (whoami("one"), whoami("two"), whoami("three"));
    let backends = [&b1, &b2, &b3];
    let mut hold1 = holder(&dir, addr, &socket, "hold1");
    let mut a = sticky_from(&dir, addr, &socket, &key, &backends, "sticky-a");

    let load = Load::start(addr, 8);
    std::thread::sleep(Duration::from_millis(500));
    // handover 1: B starts on the same socket, A stops (SIGTERM: stops accepting, finishes, exits)
    let handover = Instant::now();
    let b = sticky_from(&dir, addr, &socket, &key, &backends, "sticky-b");
    let a_accepted = accepted(&a);
    a.stop(Duration::from_secs(10));
    let first = handover.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    // the holder's own update: a second holder takes the sockets over, the first one exits
    let mut hold2 = holder(&dir, addr, &socket, "hold2");
    hold1.stop(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    // handover 2, from the new holder: C takes the socket from hold2, B stops
    let c = sticky_from(&dir, addr, &socket, &key, &backends, "sticky-c");
    let mut b = b;
    let b_accepted = accepted(&b);
    b.stop(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let c_accepted = accepted(&c);
    let report = load.finish();
    eprintln!(
        "hold handover: {} requests, {} failed, {} moved; accepted by A {a_accepted}, B {b_accepted}, C {c_accepted}; A stopped {first:?} after B started",
        report.requests,
        report.failures.len(),
        report.moves.len()
    );
    assert!(report.failures.is_empty(), "no request may fail across the handovers: {:?}", report.failures);
    assert!(report.moves.is_empty(), "every client keeps its backend (one cookie key): {:?}", report.moves);
    assert!(a_accepted > 0 && b_accepted > 0 && c_accepted > 0, "each instance served in turn");
    assert!(report.requests > 100, "the load ran: {} requests", report.requests);
    let logged = wait::until(Duration::from_secs(10), || {
        let log = log_of(&dir, "hold2");
        log.contains("taking over its listening sockets") && log.contains("holding the listening socket taken over")
    });
    assert!(logged, "hold2 took the sockets over:\n{}", log_of(&dir, "hold2"));
    hold2.stop(Duration::from_secs(5));
    assert!(!socket.exists(), "the last holder removes its socket file on exit");
}

#[test]
fn an_address_the_holder_does_not_hold_stops_sticky_with_what_to_add() {
    let dir = TempDir::new("hold-missing");
    let socket = dir.path().join("hold.sock");
    let held = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _hold = holder(&dir, held, &socket, "hold");
    let wanted = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let out = Command::new(STICKY)
        .args(["run", "--listen", &wanted.to_string(), "--backend", "http://127.0.0.1:9"])
        .arg("--listen-from")
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .expect("run sticky");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sticky must stop: {stderr}");
    assert!(stderr.contains(&format!("not held: {wanted}")), "names the missing address: {stderr}");
    assert!(stderr.contains(&format!("--listen {wanted}")), "says what to add to the holder: {stderr}");
    assert!(!testkit::net::can_connect(wanted), "nothing listens on {wanted}");
}

#[test]
fn a_second_holder_on_a_port_in_use_says_so() {
    let dir = TempDir::new("hold-busy");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _first = holder(&dir, addr, &dir.path().join("a.sock"), "hold-a");
    let out = Command::new(STICKY)
        .args(["hold", "--listen", &addr.to_string(), "--socket"])
        .arg(dir.path().join("b.sock"))
        .stdin(Stdio::null())
        .output()
        .expect("run sticky hold");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    let out = Command::new(STICKY)
        .args(["hold", "--listen", &addr.to_string(), "--socket", "/nonexistent-dir/hold.sock"])
        .stdin(Stdio::null())
        .output()
        .expect("run sticky hold");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn a_crashed_holder_is_replaced_from_stickys_copies_under_load() {
    let dir = TempDir::new("hold-crash");
    let socket: PathBuf = dir.path().join("hold.sock");
    let key = dir.file("key", "0123456789abcdef0123456789abcdef\n");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (b1, b2) = (whoami("one"), whoami("two"));
    let backends = [&b1, &b2];
    let mut hold1 = holder(&dir, addr, &socket, "hold1");
    let mut a = sticky_from(&dir, addr, &socket, &key, &backends, "sticky-a");
    let load = Load::start(addr, 4);
    // the holder dies without a word: its socket file stays, nobody answers there
    hold1.kill();
    let stood_in =
        wait::until(Duration::from_secs(10), || log_of(&dir, "sticky-a").contains("hands out its listening sockets"));
    assert!(stood_in, "sticky stands in for the holder:\n{}", log_of(&dir, "sticky-a"));
    // a new holder gets the sockets from sticky (it could not bind them: sticky's copies hold the port)
    let mut hold2 = holder(&dir, addr, &socket, "hold2");
    // its log line may follow its readiness by a moment on a busy machine: waited for, bounded
    let took = wait::until(Duration::from_secs(10), || {
        log_of(&dir, "hold2").contains("holding the listening socket taken over")
    });
    assert!(took, "the new holder took the sockets over from sticky:\n{}", log_of(&dir, "hold2"));
    let back = wait::until(Duration::from_secs(10), || log_of(&dir, "sticky-a").contains("took its path back"));
    assert!(back, "sticky steps back:\n{}", log_of(&dir, "sticky-a"));
    // and the next sticky takes the socket from the new holder: a handover as usual
    let b = sticky_from(&dir, addr, &socket, &key, &backends, "sticky-b");
    a.stop(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let b_accepted = accepted(&b);
    let report = load.finish();
    eprintln!(
        "crashed holder: {} requests, {} failed, {} moved; B accepted {b_accepted}",
        report.requests,
        report.failures.len(),
        report.moves.len()
    );
    assert!(report.failures.is_empty(), "no request may fail: {:?}", report.failures);
    assert!(report.moves.is_empty(), "{:?}", report.moves);
    assert!(b_accepted > 0, "the sticky started after the new holder serves");
    hold2.stop(Duration::from_secs(5));
}
