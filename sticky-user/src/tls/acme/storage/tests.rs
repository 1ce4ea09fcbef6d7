use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::tls::source;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("the path must exist").permissions().mode() & 0o777
}

fn answer(kind: Kind, id: &str, key_authorization: &str) -> Answer {
    Answer { kind, id: id.to_owned(), key_authorization: key_authorization.to_owned() }
}

#[test]
fn open_creates_the_layout_private_to_the_owner() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let storage = Storage::open(tmp.path().join("acme")).expect("the directory must be created");
    for d in ["", "certs", "challenges/http-01", "challenges/tls-alpn-01"] {
        let path = storage.dir().join(d);
        assert!(path.is_dir(), "{} must exist", path.display());
        assert_eq!(mode(&path), 0o700, "{} must be private", path.display());
    }
    Storage::open(storage.dir()).expect("opening an existing directory must work");
}

#[test]
fn certificates_are_written_whole_under_the_naming_rule() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let storage = Storage::open(tmp.path()).expect("open");
    let pair = storage.write_certificate("web.example", "CHAIN\n", "KEY\n").expect("writing must work");
    assert_eq!(pair, storage.pair("web.example"));
    assert_eq!(fs::read_to_string(&pair.cert).expect("readable"), "CHAIN\n");
    assert_eq!(fs::read_to_string(&pair.key).expect("readable"), "KEY\n");
    assert_eq!(mode(&pair.key), 0o600, "a private key must be private");
    let scan = source::scan(&storage.certs_dir()).expect("the certs directory must be listable");
    assert_eq!(scan.pairs, vec![pair], "the reloader must find what ACME writes");
    assert_eq!(scan.problems, Vec::<String>::new(), "no temporary file may be left behind");

    storage.write_certificate("web.example", "CHAIN2\n", "KEY2\n").expect("overwriting must work");
    assert_eq!(fs::read_to_string(storage.pair("web.example").cert).expect("readable"), "CHAIN2\n");
    let err = storage.write_certificate("../etc", "x", "y").expect_err("a path must not be a name");
    assert!(matches!(err, StorageError::Name { .. }), "{err:?}");
}

#[test]
fn challenge_answers_round_trip_and_unsafe_names_are_refused() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let storage = Storage::open(tmp.path()).expect("open");
    let http = answer(Kind::Http01, "tok_1-A", "tok_1-A.thumb");
    let alpn = answer(Kind::TlsAlpn01, "alpn.example", "other.thumb");
    storage.write_challenge(&http).expect("a valid token must be stored");
    storage.write_challenge(&alpn).expect("a valid name must be stored");
    // a stray file no instance wrote is skipped
    fs::write(storage.dir().join("challenges/http-01/bad name"), "x").expect("writing must work");
    assert_eq!(storage.read_challenges().expect("readable"), vec![http.clone(), alpn.clone()]);

    let err = storage.write_challenge(&answer(Kind::Http01, "../lock", "x")).expect_err("traversal must be refused");
    assert!(matches!(err, StorageError::Name { .. }), "{err:?}");

    storage.remove_challenge(Kind::Http01, "tok_1-A").expect("removing must work");
    storage.remove_challenge(Kind::Http01, "tok_1-A").expect("removing a missing answer must be fine");
    assert_eq!(storage.read_challenges().expect("readable"), vec![alpn]);
}

#[test]
fn one_handle_leads_until_it_lets_go() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let a = Storage::open(tmp.path()).expect("open");
    let b = Storage::open(tmp.path()).expect("open");
    let lease = a.try_lead("a pid 1").expect("locking must work").expect("the first instance must lead");
    assert!(b.try_lead("b pid 2").expect("trying must work").is_none(), "a second instance must not lead");
    assert_eq!(b.leader().as_deref(), Some("a pid 1"), "the follower must see who leads");
    drop(lease);
    let _lease = b.try_lead("b pid 2").expect("locking must work").expect("the lock must be free once dropped");
    assert_eq!(a.leader().as_deref(), Some("b pid 2"));
    assert!(a.try_lead("a pid 1").expect("trying must work").is_none());
}

#[test]
fn the_account_round_trips_privately() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let storage = Storage::open(tmp.path()).expect("open");
    assert_eq!(storage.read_account().expect("readable"), None);
    storage.write_account("{\"a\":1}").expect("writing must work");
    assert_eq!(storage.read_account().expect("readable").as_deref(), Some("{\"a\":1}"));
    assert_eq!(mode(&storage.dir().join("account.json")), 0o600, "the account key must be private");
}
