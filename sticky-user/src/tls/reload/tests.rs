use std::{path::Path, sync::Arc, time::Duration};

use tracing::Level;

use super::*;
use crate::tls::{
    challenge::Challenges,
    resolver::UnknownName,
    testutil::{Ca, Leaf, Logs},
};

fn resolver() -> Arc<Resolver> {
    Arc::new(Resolver::new(UnknownName::Reject, Arc::new(Challenges::default())))
}

/// The leaf served for `name` now.
fn served(resolver: &Resolver, name: &str) -> Option<rustls_pki_types::CertificateDer<'static>> {
    let table = resolver.table();
    table
        .pick(Some(name), &[rustls::SignatureScheme::ECDSA_NISTP256_SHA256], UnknownName::Reject)
        .map(|c| c.key.cert[0].clone())
}

fn write(leaf: &Leaf, pair: &Pair) {
    std::fs::write(&pair.cert, &leaf.chain_pem).expect("writing a certificate must work");
    std::fs::write(&pair.key, &leaf.key_pem).expect("writing a key must work");
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

#[test]
fn start_loads_pairs_then_directories_in_source_order() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let dir = tmp.path().join("certs");
    std::fs::create_dir(&dir).expect("mkdir");
    let ca = Ca::new("ca");
    let first = ca.leaf(&["first.example"]).write(tmp.path(), "first");
    ca.leaf(&["b.example"]).write(&dir, "b");
    ca.leaf(&["a.example"]).write(&dir, "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(first.clone()), Source::Dir(dir.clone())], resolver.clone())
        .expect("valid sources must start");
    let order: Vec<PathBuf> = resolver.table().certs().iter().map(|c| c.pair.cert.clone()).collect();
    assert_eq!(order, vec![first.cert, dir.join("a.crt"), dir.join("b.crt")]);
    assert_eq!(*reloader.subscribe().borrow(), 1, "the first load publishes once");
    assert_eq!(files(&dir), vec!["a.crt", "a.key", "b.crt", "b.key"]);
}

#[test]
fn start_refuses_a_bad_explicit_pair_or_a_missing_directory() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let pair = Pair { cert: tmp.path().join("x.crt"), key: tmp.path().join("x.key") };
    let err = Reloader::start(vec![Source::Pair(pair)], resolver()).expect_err("a missing pair must stop the start");
    assert!(err.to_string().contains("x.crt"), "{err}");
    let err = Reloader::start(vec![Source::Dir(tmp.path().join("nope"))], resolver())
        .expect_err("a missing directory must stop the start");
    assert!(matches!(err, ReloadError::Dir(_)), "{err:?}");
}

#[test]
fn a_changed_pair_is_loaded_once_it_has_settled() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    let old = ca.leaf(&["a.example"]);
    let pair = old.write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(pair.clone())], resolver.clone()).expect("start");
    let generation = reloader.subscribe();
    assert_eq!(reloader.check(), Report::default(), "nothing changed: nothing to do");

    let new = ca.leaf(&["a.example"]);
    write(&new, &pair);
    let first = reloader.check();
    assert!(!first.published, "a change seen once may be half-written: wait one poll");
    assert_eq!(served(&resolver, "a.example"), Some(old.der.clone()));
    let second = reloader.check();
    assert_eq!(second.loaded, vec![pair.cert.clone()]);
    assert!(second.published);
    assert_eq!(served(&resolver, "a.example"), Some(new.der));
    assert_eq!(*generation.borrow(), 2);
}

#[test]
fn a_key_then_a_certificate_written_apart_log_nothing() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    let pair = ca.leaf(&["a.example"]).write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(pair.clone())], resolver.clone()).expect("start");
    let (logs, _guard) = Logs::capture();
    let new = ca.leaf(&["a.example"]);
    std::fs::write(&pair.key, &new.key_pem).expect("writing must work");
    reloader.check();
    std::fs::write(&pair.cert, &new.chain_pem).expect("writing must work");
    reloader.check();
    let report = reloader.check();
    assert_eq!(report.loaded, vec![pair.cert.clone()]);
    assert_eq!(served(&resolver, "a.example"), Some(new.der));
    assert_eq!(logs.count(Level::WARN, ""), 0, "{:?}", logs.lines());
}

#[test]
fn a_bad_new_file_keeps_the_old_certificate_and_logs_one_line() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    let old = ca.leaf(&["a.example"]);
    let pair = old.write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(pair.clone())], resolver.clone()).expect("start");
    let (logs, _guard) = Logs::capture();

    std::fs::write(&pair.cert, "garbage\n").expect("writing must work");
    for _ in 0..5 {
        reloader.check();
    }
    assert_eq!(served(&resolver, "a.example"), Some(old.der.clone()), "the old certificate must stay in force");
    assert_eq!(logs.count(Level::WARN, "tls: certificate not reloaded"), 1, "{:?}", logs.lines());

    let fixed = ca.leaf(&["a.example"]);
    write(&fixed, &pair);
    reloader.check();
    reloader.check();
    assert_eq!(served(&resolver, "a.example"), Some(fixed.der));
    assert_eq!(logs.count(Level::WARN, ""), 1, "fixing the file must not log a warning: {:?}", logs.lines());
    assert_eq!(logs.count(Level::INFO, "tls: certificate loaded"), 1);
}

#[test]
fn a_vanished_file_keeps_the_old_certificate_and_logs_one_line() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    let old = ca.leaf(&["a.example"]);
    let pair = old.write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(pair.clone())], resolver.clone()).expect("start");
    let (logs, _guard) = Logs::capture();
    std::fs::remove_file(&pair.key).expect("removing must work");
    for _ in 0..4 {
        reloader.check();
    }
    assert_eq!(served(&resolver, "a.example"), Some(old.der));
    assert_eq!(logs.count(Level::WARN, "tls: certificate not reloaded"), 1, "{:?}", logs.lines());
    // asking again is an explicit act: it says again what is wrong
    reloader.reload_now();
    assert_eq!(logs.count(Level::WARN, "tls: certificate not reloaded"), 2, "{:?}", logs.lines());
}

#[test]
fn directory_pairs_come_and_go_with_their_files() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    ca.leaf(&["a.example"]).write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Dir(tmp.path().to_path_buf())], resolver.clone()).expect("start");
    assert!(served(&resolver, "c.example").is_none());

    let c = ca.leaf(&["c.example"]);
    let pair = c.write(tmp.path(), "c");
    reloader.check();
    reloader.check();
    assert_eq!(served(&resolver, "c.example"), Some(c.der));

    std::fs::remove_file(&pair.cert).expect("removing must work");
    std::fs::remove_file(&pair.key).expect("removing must work");
    let report = reloader.check();
    assert_eq!(report.removed, vec![pair.cert]);
    assert!(served(&resolver, "c.example").is_none(), "a pair removed from its directory must be unloaded");
    assert!(served(&resolver, "a.example").is_some());
}

#[test]
fn a_reload_on_request_reads_at_once() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    let pair = ca.leaf(&["a.example"]).write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(pair.clone())], resolver.clone()).expect("start");
    let new = ca.leaf(&["a.example"]);
    write(&new, &pair);
    let report = reloader.reload_now();
    assert_eq!(report.loaded, vec![pair.cert]);
    assert_eq!(served(&resolver, "a.example"), Some(new.der));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_loop_polls_and_answers_the_handle() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("ca");
    let pair = ca.leaf(&["a.example"]).write(tmp.path(), "a");
    let resolver = resolver();
    let reloader = Reloader::start(vec![Source::Pair(pair.clone())], resolver.clone()).expect("start");
    let handle = reloader.handle();
    let mut generation = reloader.subscribe();
    let task = tokio::spawn(reloader.run(Duration::from_secs(2)));

    // polled: a change is served after two polls (4 s of paused time), waited for explicitly
    let polled = ca.leaf(&["a.example"]);
    write(&polled, &pair);
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), generation.changed())
        .await
        .expect("a polled change must be published within a minute")
        .expect("the reloader must be running");
    assert_eq!(served(&resolver, "a.example"), Some(polled.der));
    assert!(started.elapsed() >= Duration::from_secs(2), "a change must settle for a poll first");

    // on request (SIGHUP): served without waiting for a poll
    let requested = ca.leaf(&["a.example"]);
    write(&requested, &pair);
    let started = tokio::time::Instant::now();
    handle.reload();
    tokio::time::timeout(Duration::from_secs(60), generation.changed())
        .await
        .expect("a requested reload must be published")
        .expect("the reloader must be running");
    assert_eq!(served(&resolver, "a.example"), Some(requested.der));
    assert!(started.elapsed() < Duration::from_secs(2), "a request must not wait for the next poll");
    task.abort();
}
