//! Cookie key rotation across two sticky instances that share nothing but their key files: the
//! staged procedure of the README (add the new key as an extra on every instance, then make it the
//! newest on each, then drop the old one), one instance restarted at a time while clients keep
//! going to both. No session moves, no request fails, and no instance counts a re-pin.

mod common;

use common::{Proc, TempDir, get, metric, sticky, who, whoami};

const CLIENTS: usize = 24;
const NAMES: [&str; 3] = ["b1", "b2", "b3"];

/// A client: the backend it was pinned to and its current cookie value.
struct Client {
    backend: String,
    cookie: String,
}

/// `sticky run` with these key files (newest first) in front of the backends.
fn instance(backends: &[&Proc], keys: &[&std::path::Path]) -> Proc {
    let args: Vec<String> =
        keys.iter().flat_map(|k| ["--cookie-key-file".to_owned(), k.to_string_lossy().into_owned()]).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sticky(backends, &NAMES, &args)
}

/// Every client sends one request to each instance; each must reach its own backend. Re-issued
/// cookies are kept, as a browser would. Returns how many requests were made.
fn round(clients: &mut [Client], instances: &[&Proc], phase: &str) -> usize {
    let mut made = 0;
    for lb in instances {
        for (i, c) in clients.iter_mut().enumerate() {
            let header = format!("sticky={}", c.cookie);
            let r = get(lb.addr, "/", &[("Cookie", &header)])
                .unwrap_or_else(|e| panic!("{phase}: client {i} on {}: request failed: {e}", lb.addr));
            assert_eq!(r.status, 200, "{phase}: client {i}: {r:?}");
            assert_eq!(who(&r), c.backend, "{phase}: client {i} moved off its backend");
            if let Some(v) = r.cookie("sticky") {
                v.clone_into(&mut c.cookie);
            }
            made += 1;
        }
    }
    made
}

fn repins(lb: &Proc) -> u64 {
    let admin = lb.admin.expect("admin");
    ["invalid_cookie", "expired", "backend_gone", "unhealthy", "connect_failed"]
        .iter()
        .map(|r| metric(admin, &format!(r#"sticky_repins_total{{service="default",reason="{r}"}}"#)))
        .sum()
}

#[test]
fn a_staged_key_rotation_moves_no_session() {
    let (b1, b2, b3) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let backends = [&b1, &b2, &b3];
    let dir = TempDir::new("key-rotation");
    let old = dir.file("old", "the old secret, 32 bytes long...\n");
    let new = dir.file("new", "the new secret, 32 bytes long...\n");

    // before: both instances sign with the old key; clients pinned through either
    let mut a = instance(&backends, &[&old]);
    let mut b = instance(&backends, &[&old]);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let lb = if i % 2 == 0 { &a } else { &b };
            let r = get(lb.addr, "/", &[]).expect("first request");
            Client { backend: who(&r), cookie: r.cookie("sticky").expect("a new session gets a cookie").to_owned() }
        })
        .collect();
    let spread: std::collections::BTreeSet<&str> = clients.iter().map(|c| c.backend.as_str()).collect();
    assert!(spread.len() > 1, "sessions spread over the backends: {spread:?}");
    let mut requests = CLIENTS + round(&mut clients, &[&a, &b], "before");
    let mut counted = 0;

    // each step restarts one instance with its new ring while the other keeps serving
    let steps: [(&str, &[&std::path::Path]); 6] = [
        ("a: old signs, new verifies", &[&old, &new]),
        ("b: old signs, new verifies", &[&old, &new]),
        ("a: new signs, old verifies", &[&new, &old]),
        ("b: new signs, old verifies", &[&new, &old]),
        ("a: new only", &[&new]),
        ("b: new only", &[&new]),
    ];
    for (n, (phase, ring)) in steps.iter().enumerate() {
        let target = if n % 2 == 0 { &mut a } else { &mut b };
        counted += repins(target);
        *target = instance(&backends, ring);
        requests += round(&mut clients, &[&a, &b], phase);
        if n == 3 {
            // both sign with the new key now: one more round re-issues every cookie with it, before
            // the old key is dropped (a browser does this on its next request)
            requests += round(&mut clients, &[&a, &b], "re-issued");
        }
    }
    counted += repins(&a) + repins(&b);
    eprintln!(
        "key rotation: {CLIENTS} clients, {requests} requests over 6 restarts, 0 failed, 0 moved, {counted} re-pins"
    );
    assert_eq!(counted, 0, "no instance re-pinned a session during the rotation");
}
