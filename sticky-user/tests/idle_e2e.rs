//! End-to-end: what an idle keep-alive client connection costs `sticky run` (issue 12: nothing held
//! while idle). Not a timing test: connections are opened, each makes one request and then sits
//! idle, and the process's resident memory is compared before and after.

mod common;

use common::{sticky, whoami};
use testkit::http::Client;

/// Idle connections held (well under a default `ulimit -n` of 1024 on both ends).
const IDLE: usize = 400;
/// Most resident memory an idle connection may add. hyper's path cost ~63 KiB (issue 12); the
/// engine's connection holds its socket and a task of about 1 KiB.
const MAX_PER_CONNECTION: usize = 16 * 1024;

/// Resident memory of process `pid`, bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status must be readable");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS must be listed");
    kib * 1024
}

#[test]
fn an_idle_keep_alive_connection_costs_a_few_kib() {
    let b1 = whoami("b1");
    let lb = sticky(&[&b1], &["b1"], &[]);
    // warm up: pools, buffers, the allocator's first pages
    let mut warm: Vec<Client> = (0..50).map(|_| Client::connect(lb.addr).expect("connect")).collect();
    for c in &mut warm {
        assert_eq!(c.get("/").expect("a response").status, 200);
    }
    drop(warm);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = rss(lb.pid());
    let mut idle: Vec<Client> = (0..IDLE).map(|_| Client::connect(lb.addr).expect("connect")).collect();
    for c in &mut idle {
        assert_eq!(c.get("/").expect("a response").status, 200);
    }
    let after = rss(lb.pid());
    let per = after.saturating_sub(before) / IDLE;
    eprintln!("{IDLE} idle keep-alive connections: +{} KiB RSS, {per} B each", (after - before.min(after)) / 1024);
    assert!(per <= MAX_PER_CONNECTION, "an idle connection costs {per} bytes of RSS");
    // they are still served
    for c in idle.iter_mut().take(10) {
        assert_eq!(c.get("/").expect("a response").status, 200);
    }
}
