//! Session policy across two sticky instances: cookie key rotation, then server-side lifetimes.
//!
//! Key rotation across two sticky instances that share nothing but their key files: the
//! staged procedure of the README (add the new key as an extra on every instance, then make it the
//! newest on each, then drop the old one), one instance restarted at a time while clients keep
//! going to both. No session moves, no request fails, and no instance counts a re-pin.

mod common;

use std::net::SocketAddr;

use common::{Proc, TempDir, get, metric, sticky, who, whoami};

const CLIENTS: usize = 24;
const OLD: &str = "the old secret, 32 bytes long...\n";
const NEW: &str = "the new secret, 32 bytes long...\n";
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
    let old = dir.file("old", OLD);
    let new = dir.file("new", NEW);

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

/// Rewrites a key file and tells the instance (SIGHUP), as an operator with files would.
fn rewrite(file: &std::path::Path, content: &str, lb: &Proc) {
    std::fs::write(file, content).expect("key file writable");
    let status = std::process::Command::new("kill").args(["-HUP", &lb.pid().to_string()]).status().expect("kill runs");
    assert!(status.success(), "SIGHUP sent");
}

#[test]
fn keys_reload_on_sighup_without_a_restart_and_move_no_session() {
    let (b1, b2, b3) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let backends = [&b1, &b2, &b3];
    let dir = TempDir::new("key-reload");
    assert_ne!(key_id(OLD), key_id(NEW), "the two test keys have distinct ids");
    // each instance has its own two files: the first is the newest key, the second an older one
    let files: Vec<(std::path::PathBuf, std::path::PathBuf)> = ["a", "b"]
        .iter()
        .map(|n| (dir.file(&format!("{n}-first"), OLD), dir.file(&format!("{n}-second"), "")))
        .collect();
    let lbs: Vec<Proc> = files.iter().map(|(first, second)| instance(&backends, &[first, second])).collect();
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let r = get(lbs[i % 2].addr, "/", &[]).expect("first request");
            Client { backend: who(&r), cookie: r.cookie("sticky").expect("a new session gets a cookie").to_owned() }
        })
        .collect();
    let refs: Vec<&Proc> = lbs.iter().collect();
    let mut requests = CLIENTS + round(&mut clients, &refs, "before");
    // load beside the steps: 4 threads, each a pinned client of its own, alternating the instances
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addrs: Vec<std::net::SocketAddr> = lbs.iter().map(|l| l.addr).collect();
    let loaders: Vec<_> = clients[..4]
        .iter()
        .map(|c| {
            let (stop, addrs, backend, mut cookie) = (stop.clone(), addrs.clone(), c.backend.clone(), c.cookie.clone());
            std::thread::spawn(move || {
                let (mut made, mut failed, mut moved) = (0u64, 0u64, 0u64);
                // bounded: at most 100k requests even if the stop flag never came
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && made < 100_000 {
                    let header = format!("sticky={cookie}");
                    match get(addrs[usize::try_from(made).unwrap_or(0) % addrs.len()], "/", &[("Cookie", &header)]) {
                        Ok(r) if r.status == 200 => {
                            if who(&r) != backend {
                                moved += 1;
                            }
                            if let Some(v) = r.cookie("sticky") {
                                v.clone_into(&mut cookie);
                            }
                        }
                        _ => failed += 1,
                    }
                    made += 1;
                }
                (made, failed, moved)
            })
        })
        .collect();
    // the three steps, each on a then b, with a round of requests after every reload
    let steps: [(&str, &str, &str); 3] =
        [("new verifies", OLD, NEW), ("new signs", NEW, OLD), ("old dropped", NEW, "")];
    for (phase, first, second) in steps {
        for (lb, (f1, f2)) in lbs.iter().zip(&files) {
            // the older key first, so the ring never lacks a key in use while the files are rewritten
            std::fs::write(f2, second).expect("key file writable");
            rewrite(f1, first, lb);
            // the reload is asynchronous: wait until this instance shows the ring of this step
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !ring_in_force(lb, phase) {
                assert!(std::time::Instant::now() < deadline, "{phase}: reload not seen within 10 s");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            requests += round(&mut clients, &refs, phase);
        }
        if phase == "new signs" {
            requests += round(&mut clients, &refs, "re-issued");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut load, mut failed, mut moved) = (0, 0, 0);
    for l in loaders {
        let (m, f, v) = l.join().expect("load thread");
        (load, failed, moved) = (load + m, failed + f, moved + v);
    }
    let counted: u64 = lbs.iter().map(repins).sum();
    eprintln!(
        "key reload: {CLIENTS} clients, {requests} requests in rounds + {load} from 4 load threads over 6 reloads (SIGHUP): {failed} failed, {moved} moved, {counted} re-pins"
    );
    assert!(load > 0, "the load threads made requests");
    assert_eq!((failed, moved), (0, 0), "no request failed and no session moved under load");
    assert_eq!(counted, 0, "no instance re-pinned a session during the rotation");
}

/// Whether `lb` has loaded the ring of `phase`: the new key verifies (explain says a cookie signed
/// with it is valid), the new key signs (a new session's cookie carries its key id), the old key is
/// refused (explain says its cookie is invalid).
fn ring_in_force(lb: &Proc, phase: &str) -> bool {
    let admin = lb.admin.expect("admin");
    let explain = |secret: &str| {
        let keys = sticky::cookie::Keys::from_secret(secret.trim_end().as_bytes()).expect("key");
        let tag = keys.tag(&sticky::model::ServiceId("default".into()), &sticky::model::BackendId("b1".into()));
        let value = keys.encode(tag, sticky::proxy::pin::now_secs());
        let r = get(admin, &format!("/api/explain?service=default&cookie={value}"), &[]).expect("explain answers");
        let json: serde_json::Value = serde_json::from_str(&r.into_text()).expect("JSON");
        json["cookie"].as_str().unwrap_or_default().to_owned()
    };
    match phase {
        "new verifies" => explain(NEW) == "valid",
        "new signs" => {
            let r = get(lb.addr, "/", &[]).expect("a new session");
            key_of(r.cookie("sticky").expect("cookie")) == key_id(NEW)
        }
        "old dropped" => explain(OLD) == "invalid",
        other => panic!("unknown phase {other}"),
    }
}

/// Byte 1 of a version-2 cookie value: the id of the key that signed it.
fn key_of(value: &str) -> u8 {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).expect("base64url");
    raw[1]
}

/// The key id of a secret, as `cookie.rs` derives it: `HMAC-SHA256(secret, "sticky/v2/key-id")[0]`.
fn key_id(secret: &str) -> u8 {
    use hmac::Mac as _;
    let mut m = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(secret.trim_end().as_bytes())
        .expect("any key length");
    m.update(b"sticky/v2/key-id");
    m.finalize().into_bytes()[0]
}

/// `sticky_repins_total` of one reason on the instance.
fn repins_for(lb: &Proc, reason: &str) -> u64 {
    metric(lb.admin.expect("admin"), &format!(r#"sticky_repins_total{{service="default",reason="{reason}"}}"#))
}

#[test]
fn server_side_lifetimes_give_the_same_answer_on_every_instance() {
    let (b1, b2, b3) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let backends = [&b1, &b2, &b3];
    let dir = TempDir::new("lifetimes");
    let key = dir.file("key", OLD);
    let key = key.to_string_lossy().into_owned();
    let flags = ["--cookie-key-file", &key, "--cookie-idle-timeout", "3s", "--cookie-absolute-timeout", "6s"];
    let a = sticky(&backends, &NAMES, &flags);
    let b = sticky(&backends, &NAMES, &flags);
    let first = get(a.addr, "/", &[]).expect("first request");
    let backend = who(&first);
    let mut cookie = first.cookie("sticky").expect("cookie").to_owned();
    // active: a request every 400 ms, alternating instances, keeps the session past the idle timeout
    // (re-issued once half of it has passed: a busy machine has seconds of margin), until the
    // absolute timeout ends it
    let started = std::time::Instant::now();
    let mut reissued = 0;
    let mut n = 0usize;
    let moved_at = loop {
        std::thread::sleep(std::time::Duration::from_millis(400));
        let lb = if n.is_multiple_of(2) { &b } else { &a };
        n += 1;
        let r = get(lb.addr, "/", &[("Cookie", &format!("sticky={cookie}"))]).expect("request");
        assert_eq!(r.status, 200);
        if let Some(v) = r.cookie("sticky") {
            reissued += 1;
            v.clone_into(&mut cookie);
        }
        if who(&r) != backend || repins_for(lb, "absolute_timeout") > 0 {
            break started.elapsed();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the absolute timeout never ended the session");
    };
    let absolute = repins_for(&a, "absolute_timeout") + repins_for(&b, "absolute_timeout");
    assert_eq!(absolute, 1, "one re-balance, by the absolute timeout");
    assert!(moved_at >= std::time::Duration::from_secs(6), "not before 6 s: {moved_at:?}");
    assert!(reissued >= 2, "an active session is re-issued to stay within the idle timeout ({reissued})");
    assert_eq!(repins_for(&a, "idle_timeout") + repins_for(&b, "idle_timeout"), 0, "never idle while active");
    // idle: the new session left alone for 4.5 s (more than 3 s in whole seconds) is re-balanced by
    // whichever instance sees it next
    std::thread::sleep(std::time::Duration::from_millis(4500));
    let r = get(b.addr, "/", &[("Cookie", &format!("sticky={cookie}"))]).expect("request");
    assert_eq!(r.status, 200);
    assert!(r.cookie("sticky").is_some(), "an idle session gets a new cookie");
    assert_eq!(repins_for(&b, "idle_timeout"), 1, "re-balanced as idle");
    eprintln!(
        "lifetimes: re-balanced by the absolute timeout after {moved_at:?}, {reissued} re-issues on the way, then by the idle timeout"
    );
}

// ---- affinity without a cookie, and load-bounded pinning (issue 18) ----

/// The key both instances of the affinity tests share, and nothing else.
const SHARED: &str = "a shared secret, 32 bytes long..\n";

/// `sticky run --config` with one service `web` over `backends` (named as [`NAMES`]), `options` added
/// to its `[services.cookie]` section and `load` as its `[services.load]` section.
fn configured(dir: &TempDir, tag: &str, backends: &[SocketAddr], options: &str, load: &str, extra: &[&str]) -> Proc {
    let list: Vec<String> = backends.iter().zip(NAMES).map(|(a, n)| format!("\"{n}=http://{a}\"")).collect();
    let text = format!(
        "[[services]]\nname = \"web\"\nbackends = [{}]\n[services.cookie]\n{options}\n[services.load]\n{load}\n",
        list.join(", ")
    );
    let config = dir.file(&format!("{tag}.toml"), &text);
    let key = dir.file("key", SHARED);
    let mut args = vec![
        "--config".to_owned(),
        config.to_string_lossy().into_owned(),
        "--cookie-key-file".to_owned(),
        key.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    common::sticky_args(&args)
}

/// The admin's `/api/explain` of service `web` with `query` added, as JSON.
fn explain(lb: &Proc, query: &str) -> serde_json::Value {
    let admin = lb.admin.expect("admin");
    let r = get(admin, &format!("/api/explain?service=web&{query}"), &[]).expect("the admin answers");
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_str(&r.into_text()).expect("explain answers JSON")
}

fn web_repins(lb: &Proc, reason: &str) -> u64 {
    metric(lb.admin.expect("admin"), &format!(r#"sticky_repins_total{{service="web",reason="{reason}"}}"#))
}

#[test]
fn header_affinity_places_each_session_id_on_the_same_task_from_either_instance() {
    let (b1, b2, b3) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let addrs = [b1.addr, b2.addr, b3.addr];
    let dir = TempDir::new("header-affinity");
    let options = "affinity = \"header\"\naffinity_header = \"X-Session-Id\"";
    let a = configured(&dir, "a", &addrs, options, "", &[]);
    let b = configured(&dir, "b", &addrs, options, "", &[]);
    let mut spread = std::collections::BTreeMap::new();
    let mut home = Vec::new();
    for id in 0..30 {
        let value = format!("user-{id}");
        let mut seen = Vec::new();
        for lb in [&a, &b, &a, &b] {
            let r = get(lb.addr, "/", &[("X-Session-Id", &value)]).expect("request through sticky");
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.cookie("sticky"), None, "header affinity sets no cookie");
            seen.push(who(&r));
        }
        assert!(seen.iter().all(|w| *w == seen[0]), "{value}: both instances agree: {seen:?}");
        // and the admin's explain names that task, by the same key
        for lb in [&a, &b] {
            let e = explain(lb, &format!("key={value}"));
            assert_eq!((e["placed_by"].as_str(), e["backend"].as_str()), (Some("header"), Some(&*seen[0])), "{e}");
        }
        *spread.entry(seen[0].clone()).or_insert(0) += 1;
        home.push(seen[0].clone());
    }
    assert!(spread.len() == 3, "30 session ids spread over the 3 tasks: {spread:?}");
    // without the header: the cookie path
    let r = get(a.addr, "/", &[]).expect("request through sticky");
    let cookie = format!("sticky={}", r.cookie("sticky").expect("no header: a cookie session"));
    assert_eq!(who(&get(b.addr, "/", &[("Cookie", &cookie)]).expect("pinned request")), who(&r));
    let moved = |lb: &Proc| web_repins(lb, "unhealthy") + web_repins(lb, "connect_failed");
    assert_eq!(moved(&a) + moved(&b), 0);

    // b2 dies: its session ids move, to the same task on both instances; the others stay
    let mut b2 = b2;
    b2.kill();
    for (id, was) in home.iter().enumerate() {
        let value = format!("user-{id}");
        let seen: Vec<String> = [&a, &b, &a, &b]
            .iter()
            .map(|lb| who(&get(lb.addr, "/", &[("X-Session-Id", &value)]).expect("no request fails")))
            .collect();
        assert!(seen.iter().all(|w| *w == seen[0] && w != "b2"), "{value}: both instances move it alike: {seen:?}");
        if was != "b2" {
            assert_eq!(&seen[0], was, "{value} was not on b2 and stays");
        }
    }
    assert!(moved(&a) > 0 && moved(&b) > 0, "each instance counts the moves off b2 as re-pins");
    drop((b1, b3));
}

/// The same header affinity over HTTP/2 (h2c, curl): the HTTP/2 path places by the key like HTTP/1.
#[test]
fn header_affinity_over_h2c_agrees_with_http1() {
    let curl = std::process::Command::new("curl").arg("--version").output();
    if !curl.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("HTTP2")) {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        assert!(
            !ci,
            "CI=true but curl with HTTP/2 is missing: header_affinity_over_h2c_agrees_with_http1 would be skipped"
        );
        eprintln!("SKIPPED header_affinity_over_h2c_agrees_with_http1: no curl with HTTP/2");
        return;
    }
    let (b1, b2, b3) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let dir = TempDir::new("header-h2c");
    let key = dir.file("key", SHARED);
    let key = key.to_string_lossy();
    let lb = sticky(
        &[&b1, &b2, &b3],
        &NAMES,
        &["--h2c", "--cookie-affinity-header", "X-Session-Id", "--cookie-key-file", &key],
    );
    for id in 0..12 {
        let value = format!("user-{id}");
        let h1 = who(&get(lb.addr, "/", &[("X-Session-Id", &value)]).expect("HTTP/1 request"));
        let out = std::process::Command::new("curl")
            .args(["-s", "-i", "--max-time", "5", "--http2-prior-knowledge", "-H"])
            .arg(format!("X-Session-Id: {value}"))
            .arg(format!("http://{}/", lb.addr))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/2 200"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("set-cookie: sticky="), "no cookie over HTTP/2 either: {text}");
        let h2 = text
            .lines()
            .find_map(|l| l.strip_prefix("I'm "))
            .map(|w| w.split_whitespace().next().unwrap_or("").to_owned());
        assert_eq!(h2.as_deref(), Some(h1.as_str()), "{value}: HTTP/2 and HTTP/1 reach the same task");
    }
}

#[test]
fn client_ip_affinity_agrees_across_instances_that_see_the_same_client() {
    let (b1, b2, b3) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let addrs = [b1.addr, b2.addr, b3.addr];
    let dir = TempDir::new("ip-affinity");
    // the instances sit behind a trusted proxy (the test), which names the client in X-Forwarded-For
    let trusted = ["--trusted-proxies", "127.0.0.0/8"];
    let a = configured(&dir, "a", &addrs, "affinity = \"client-ip\"", "", &trusted);
    let b = configured(&dir, "b", &addrs, "affinity = \"client-ip\"", "", &trusted);
    let mut spread = std::collections::BTreeSet::new();
    for client in 1..=30 {
        let ip = format!("198.51.100.{client}");
        let seen: Vec<String> = [&a, &b, &b, &a]
            .iter()
            .map(|lb| {
                let r = get(lb.addr, "/", &[("X-Forwarded-For", &format!("203.0.113.9, {ip}"))]).expect("request");
                assert_eq!(r.cookie("sticky"), None, "client-ip affinity sets no cookie");
                who(&r)
            })
            .collect();
        assert!(seen.iter().all(|w| *w == seen[0]), "{ip}: both instances agree: {seen:?}");
        let e = explain(&a, &format!("client={ip}"));
        assert_eq!((e["placed_by"].as_str(), e["backend"].as_str()), (Some("client_ip"), Some(&*seen[0])), "{e}");
        spread.insert(seen[0].clone());
    }
    assert_eq!(spread.len(), 3, "30 clients spread over the 3 tasks");
    // a client that is not behind the proxy: its own address (loopback) places it, the same on both
    let direct: Vec<String> = [&a, &b].iter().map(|lb| who(&get(lb.addr, "/", &[]).expect("request"))).collect();
    assert_eq!(direct[0], direct[1]);
}

/// A backend that answers `I'm NAME` and sets `JSESSIONID=NAME-N` on `/login`; `/slow` answers after
/// 3 s. One thread per connection, `Connection: close`; serves until the test process ends.
fn app(name: &'static str) -> SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound");
    let sessions = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sessions = sessions.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                if path == "/slow" {
                    std::thread::sleep(std::time::Duration::from_secs(3));
                }
                let body = format!("I'm {name}\n");
                let mut extra = String::new();
                if path == "/login" {
                    let n = sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    extra = format!("Set-Cookie: JSESSIONID={name}-{n}; Path=/\r\n");
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

#[test]
fn learn_affinity_pins_the_apps_session_to_the_task_that_created_it_on_either_instance() {
    let addrs = [app("b1"), app("b2"), app("b3")];
    let dir = TempDir::new("learn-affinity");
    let options = "affinity = \"learn\"\naffinity_learn = \"JSESSIONID\"";
    let a = configured(&dir, "a", &addrs, options, "", &[]);
    let b = configured(&dir, "b", &addrs, options, "", &[]);
    // a page that starts no app session gets no sticky cookie either
    let r = get(a.addr, "/", &[]).expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(r.cookie("sticky"), None, "no app session, no pin");
    let mut spread = std::collections::BTreeSet::new();
    for i in 0..12 {
        let first = if i % 2 == 0 { &a } else { &b };
        let login = get(first.addr, "/login", &[]).expect("login");
        let owner = who(&login);
        let app = login.cookie("JSESSIONID").expect("the app starts a session").to_owned();
        let sticky = login.cookie("sticky").expect("sticky learns it: its cookie is set with the app's").to_owned();
        assert!(app.starts_with(&owner), "the app's session {app} lives on {owner}");
        let both = format!("JSESSIONID={app}; sticky={sticky}");
        for lb in [&a, &b, &a, &b] {
            let r = get(lb.addr, "/", &[("Cookie", &both)]).expect("request");
            assert_eq!(who(&r), owner, "session {app} stays with the task that created it");
        }
        spread.insert(owner);
    }
    assert!(spread.len() > 1, "app sessions spread: {spread:?}");
    // only the app's cookie (sticky's lost): both instances place it by its hash, the same task, and
    // bind it with sticky's cookie from then on
    let only = "JSESSIONID=a-session-from-before";
    let seen: Vec<String> =
        [&a, &b].iter().map(|lb| who(&get(lb.addr, "/", &[("Cookie", only)]).expect("r"))).collect();
    assert_eq!(seen[0], seen[1], "both instances hash the app's cookie the same way");
    let bound = get(b.addr, "/", &[("Cookie", only)]).expect("request");
    assert!(bound.cookie("sticky").is_some(), "the hashed session is bound with sticky's cookie");
}

#[test]
fn a_saturated_task_takes_no_new_sessions_and_sheds_its_pinned_ones_only_when_asked() {
    let addrs = [app("b1"), app("b2"), app("b3")];
    let dir = TempDir::new("overloaded");
    for shed in [false, true] {
        let lb =
            configured(&dir, &format!("shed-{shed}"), &addrs, "", &format!("max_inflight = 2\nshed = {shed}"), &[]);
        // a client pinned to b1 (new sessions go round robin: one of three lands there)
        let cookie = (0..6)
            .find_map(|_| {
                let r = get(lb.addr, "/", &[]).expect("request");
                (who(&r) == "b1").then(|| format!("sticky={}", r.cookie("sticky").expect("new session")))
            })
            .expect("round robin reaches b1 within 6 new sessions");
        // two slow requests of that client saturate b1 (max_inflight = 2)
        let addr = lb.addr;
        let slow: Vec<_> = (0..2)
            .map(|_| {
                let cookie = cookie.clone();
                std::thread::spawn(move || who(&get(addr, "/slow", &[("Cookie", &cookie)]).expect("slow request")))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(700));
        for n in 0..6 {
            let r = get(lb.addr, "/", &[]).expect("new session");
            assert_ne!(who(&r), "b1", "shed={shed}: new session {n} went to the saturated task");
        }
        let pinned = who(&get(lb.addr, "/", &[("Cookie", &cookie)]).expect("pinned request"));
        let repins = web_repins(&lb, "overloaded");
        if shed {
            assert_ne!(pinned, "b1", "shedding moves the pinned client off the saturated task");
            assert_eq!(repins, 1, "counted as overloaded");
        } else {
            assert_eq!(pinned, "b1", "without shedding the pinned client stays");
            assert_eq!(repins, 0);
        }
        for t in slow {
            assert_eq!(t.join().expect("slow thread"), "b1", "the slow requests were served by b1");
        }
    }
}

#[test]
fn a_busy_home_passes_new_requests_of_its_keys_along_the_ring_under_a_balance_factor() {
    let addrs = [app("b1"), app("b2"), app("b3")];
    let dir = TempDir::new("balance-factor");
    let options = "affinity = \"header\"\naffinity_header = \"X-Session-Id\"";
    let lb = configured(&dir, "lb", &addrs, options, "balance_factor = 150", &[]);
    // a session id whose home is b1
    let value = (0..200)
        .map(|i| format!("user-{i}"))
        .find(|v| who(&get(lb.addr, "/", &[("X-Session-Id", v)]).expect("request")) == "b1")
        .expect("some id of 200 lands on b1");
    // three slow requests of it, one after the other; the bound is ceil(150% x (in flight + 1) / 3):
    // the 1st finds b1 idle (bound 1): b1; the 2nd finds b1 at 1 (bound 1): passed on; the 3rd finds
    // b1 at 1 of 2 (bound 2): b1. A 4th then finds b1 at 2 of 3 (bound 2): passed on.
    let addr = lb.addr;
    let slow: Vec<_> = (0..3)
        .map(|n| {
            let value = value.clone();
            std::thread::spawn(move || {
                // one after the other: each sees the ones before it in flight
                std::thread::sleep(std::time::Duration::from_millis(150 * n));
                who(&get(addr, "/slow", &[("X-Session-Id", &value)]).expect("slow request"))
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(900));
    let busy = who(&get(lb.addr, "/", &[("X-Session-Id", &value)]).expect("request"));
    assert_ne!(busy, "b1", "the busy home passes the request on");
    assert!(web_repins(&lb, "overloaded") >= 1, "counted as overloaded");
    let served: Vec<String> = slow.into_iter().map(|t| t.join().expect("slow thread")).collect();
    assert_eq!(served.iter().filter(|w| *w == "b1").count(), 2, "b1 took the key up to its bound: {served:?}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(who(&get(lb.addr, "/", &[("X-Session-Id", &value)]).expect("request")), "b1", "idle again: home");
}
