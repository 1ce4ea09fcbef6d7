use std::path::Path;

use super::*;
use crate::tls::testutil::{Ca, now};

fn pair_in(dir: &Path, stem: &str) -> Pair {
    Pair { cert: dir.join(format!("{stem}.crt")), key: dir.join(format!("{stem}.key")) }
}

#[test]
fn loads_a_pair_and_describes_names_and_validity() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("test ca");
    let (from, to) = (now() - 100, now() + 1_000_000);
    let leaf = ca.leaf_valid(&["Web.Example.COM", "*.api.example.com", "web.example.com"], from, to);
    let pair = leaf.write(dir.path(), "web");
    let loaded = load(&pair).expect("a valid pair must load");
    assert_eq!(loaded.names, vec!["web.example.com".to_owned(), "*.api.example.com".to_owned()]);
    assert_eq!(loaded.validity, Validity { not_before: from, not_after: to });
    assert_eq!(loaded.pair, pair);
    assert_eq!(loaded.key.cert, vec![leaf.der.clone()], "the served chain must be the file's");
}

#[test]
fn a_chain_keeps_its_intermediates_and_is_described_by_its_leaf() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["a.example"]);
    let pair = pair_in(dir.path(), "a");
    std::fs::write(&pair.cert, format!("{}{}", leaf.chain_pem, ca.pem)).expect("writing must work");
    std::fs::write(&pair.key, &leaf.key_pem).expect("writing must work");
    let loaded = load(&pair).expect("a chain must load");
    assert_eq!(loaded.key.cert.len(), 2, "leaf and intermediate must both be served");
    assert_eq!(loaded.names, vec!["a.example".to_owned()]);
}

#[test]
fn the_key_of_another_certificate_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    let ca = Ca::new("test ca");
    let a = ca.leaf(&["a.example"]);
    let b = ca.leaf(&["b.example"]);
    let pair = pair_in(dir.path(), "a");
    std::fs::write(&pair.cert, &a.chain_pem).expect("writing must work");
    std::fs::write(&pair.key, &b.key_pem).expect("writing must work");
    let err = load(&pair).expect_err("a foreign key must be refused");
    assert!(matches!(err, CertError::Mismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("a.key") && msg.contains("a.crt"), "{msg}");
}

#[test]
fn files_without_their_block_or_with_broken_pem_are_named() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    let leaf = Ca::new("test ca").leaf(&["a.example"]);
    let pair = pair_in(dir.path(), "a");

    std::fs::write(&pair.cert, "not a certificate\n").expect("writing must work");
    std::fs::write(&pair.key, &leaf.key_pem).expect("writing must work");
    let err = load(&pair).expect_err("a file without a certificate must be refused");
    assert!(matches!(&err, CertError::NoCertificate { path } if *path == pair.cert), "{err:?}");

    std::fs::write(&pair.cert, &leaf.chain_pem).expect("writing must work");
    std::fs::write(&pair.key, &leaf.chain_pem).expect("writing must work");
    let err = load(&pair).expect_err("a key file holding only a certificate must be refused");
    assert!(matches!(&err, CertError::NoKey { path } if *path == pair.key), "{err:?}");

    std::fs::write(&pair.cert, "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
        .expect("writing must work");
    std::fs::write(&pair.key, &leaf.key_pem).expect("writing must work");
    let err = load(&pair).expect_err("broken base64 must be refused");
    assert!(matches!(&err, CertError::Pem { path, .. } if *path == pair.cert), "{err:?}");
}

#[test]
fn a_combined_file_serves_as_key_file() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    let leaf = Ca::new("test ca").leaf(&["a.example"]);
    let pair = pair_in(dir.path(), "a");
    std::fs::write(&pair.cert, &leaf.chain_pem).expect("writing must work");
    std::fs::write(&pair.key, format!("{}{}", leaf.chain_pem, leaf.key_pem)).expect("writing must work");
    load(&pair).expect("a key file that also holds the certificate must load");
}

#[test]
fn missing_and_oversized_files_are_not_read() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    let pair = pair_in(dir.path(), "gone");
    let err = load(&pair).expect_err("a missing file must be an error");
    assert!(matches!(&err, CertError::Read { path, .. } if *path == pair.cert), "{err:?}");

    let big = pair_in(dir.path(), "big");
    let file = std::fs::File::create(&big.cert).expect("creating must work");
    file.set_len(MAX_PEM_BYTES + 1).expect("growing a sparse file must work");
    std::fs::write(&big.key, b"").expect("writing must work");
    let err = load(&big).expect_err("an oversized file must be refused");
    assert!(matches!(&err, CertError::TooLarge { path } if *path == big.cert), "{err:?}");
}

#[test]
fn normalize_lowercases_and_drops_the_root_dot() {
    assert_eq!(normalize("WWW.Example.com."), "www.example.com");
    assert_eq!(normalize("*.a.b"), "*.a.b");
}
