use std::path::{Path, PathBuf};

use super::*;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn flags_pair_in_order() {
    let got = pairs(&[p("a.crt"), p("b.crt")], &[p("a.key"), p("b.key")]).expect("two pairs must pair");
    assert_eq!(got, vec![Pair { cert: p("a.crt"), key: p("a.key") }, Pair { cert: p("b.crt"), key: p("b.key") }]);
}

#[test]
fn flags_with_a_missing_key_name_both_counts() {
    let err = pairs(&[p("a.crt"), p("b.crt")], &[p("a.key")]).expect_err("2 certs and 1 key must be refused");
    assert!(matches!(err, SourceError::Unpaired { certs: 2, keys: 1 }), "{err:?}");
    assert!(err.to_string().contains("2 --tls-cert but 1 --tls-key"), "{err}");
}

#[test]
fn flags_refuse_empty_paths_and_a_certificate_given_twice() {
    assert!(matches!(pairs(&[p("")], &[p("a.key")]), Err(SourceError::Empty { flag: "--tls-cert" })));
    assert!(matches!(pairs(&[p("a.crt")], &[p("")]), Err(SourceError::Empty { flag: "--tls-key" })));
    let err = pairs(&[p("a.crt"), p("a.crt")], &[p("a.key"), p("b.key")]).expect_err("a duplicate must be refused");
    assert!(matches!(&err, SourceError::Duplicate { path } if path == Path::new("a.crt")), "{err:?}");
}

#[test]
fn no_flags_is_no_pairs() {
    assert_eq!(pairs(&[], &[]).expect("no flags must be fine"), vec![]);
}

#[test]
fn naming_rule_pairs_crt_and_pem_with_key() {
    let dir = Path::new("/certs");
    let scan = pair_names(dir, &["web.crt", "web.key", "api.pem", "api.key", "tls.crt", "tls.key"]);
    assert_eq!(scan.problems, Vec::<String>::new());
    let certs: Vec<_> = scan.pairs.iter().map(|pair| (pair.cert.clone(), pair.key.clone())).collect();
    assert_eq!(
        certs,
        vec![
            (p("/certs/api.pem"), p("/certs/api.key")),
            (p("/certs/tls.crt"), p("/certs/tls.key")),
            (p("/certs/web.crt"), p("/certs/web.key")),
        ],
        "pairs must come sorted by name"
    );
}

#[test]
fn naming_rule_skips_hidden_and_other_files() {
    let scan = pair_names(
        Path::new("/run/secrets"),
        &["sticky_cookie_key", "..data", ".web.crt.tmp123", ".x.key", "notes.txt", "web.crt", "web.key", ".key"],
    );
    assert_eq!(scan.problems, Vec::<String>::new());
    assert_eq!(scan.pairs, vec![Pair { cert: p("/run/secrets/web.crt"), key: p("/run/secrets/web.key") }]);
}

#[test]
fn naming_rule_reports_what_it_cannot_pair() {
    let scan = pair_names(Path::new("/d"), &["lonely.key", "orphan.crt", "both.crt", "both.pem", "both.key"]);
    assert_eq!(scan.pairs, vec![]);
    assert_eq!(scan.problems.len(), 3, "{:?}", scan.problems);
    assert!(scan.problems.iter().any(|m| m.starts_with("/d/both.key: more than one") && m.contains("both.pem")));
    assert!(scan.problems.iter().any(|m| m.starts_with("/d/lonely.key: no lonely.crt or lonely.pem")));
    assert!(scan.problems.iter().any(|m| m.starts_with("/d/orphan.crt: no orphan.key")));
}

#[test]
fn extensions_are_lowercase_only() {
    let scan = pair_names(Path::new("/d"), &["web.CRT", "web.KEY"]);
    assert_eq!(scan, Scan::default(), "upper-case extensions are other files");
}

#[test]
fn scan_reads_a_directory_and_names_an_unreadable_one() {
    let dir = tempfile::tempdir().expect("a temporary directory must be creatable");
    for name in ["a.crt", "a.key", "b.key"] {
        std::fs::write(dir.path().join(name), b"x").expect("writing a test file must work");
    }
    let scan = scan(dir.path()).expect("an existing directory must be listable");
    assert_eq!(scan.pairs, vec![Pair { cert: dir.path().join("a.crt"), key: dir.path().join("a.key") }]);
    assert_eq!(scan.problems.len(), 1, "b.key has no certificate: {:?}", scan.problems);

    let missing = dir.path().join("missing");
    let err = super::scan(&missing).expect_err("a missing directory must be an error");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
}

#[test]
fn secrets_is_the_swarm_mount() {
    assert_eq!(Source::secrets(), Source::Dir(p("/run/secrets")));
}
