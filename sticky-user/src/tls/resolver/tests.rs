use rustls::SignatureScheme;

use super::*;
use crate::tls::testutil::{Ca, now};

const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
const ED25519: &[SignatureScheme] = &[SignatureScheme::ED25519];

fn picked<'a>(table: &'a Table, sni: Option<&str>, unknown: UnknownName) -> Option<&'a str> {
    table.pick(sni, ECDSA, unknown).map(|c| c.pair.cert.to_str().expect("test paths are UTF-8"))
}

fn table(ca: &Ca, certs: &[(&str, &[&str])]) -> Table {
    Table::new(certs.iter().map(|(stem, names)| ca.leaf(names).loaded(stem)).collect())
}

#[test]
fn exact_names_pick_their_certificate_whatever_the_case_or_root_dot() {
    let ca = Ca::new("ca");
    let t = table(&ca, &[("first", &["first.example"]), ("web", &["web.example", "www.example"])]);
    assert_eq!(picked(&t, Some("web.example"), UnknownName::Reject), Some("/test/web.crt"));
    assert_eq!(picked(&t, Some("www.example"), UnknownName::Reject), Some("/test/web.crt"));
    assert_eq!(picked(&t, Some("WWW.Example."), UnknownName::Reject), Some("/test/web.crt"));
    assert!(t.covers("Web.Example"));
}

#[test]
fn a_wildcard_covers_exactly_one_label_and_loses_to_an_exact_name() {
    let ca = Ca::new("ca");
    let t = table(&ca, &[("wild", &["*.example.com"]), ("api", &["api.example.com"])]);
    assert_eq!(picked(&t, Some("shop.example.com"), UnknownName::Reject), Some("/test/wild.crt"));
    assert_eq!(picked(&t, Some("api.example.com"), UnknownName::Reject), Some("/test/api.crt"));
    assert_eq!(picked(&t, Some("example.com"), UnknownName::Reject), None, "*.example.com does not cover example.com");
    assert_eq!(picked(&t, Some("a.b.example.com"), UnknownName::Reject), None, "a wildcard covers one label only");
    assert!(!t.covers("a.b.example.com"));
}

#[test]
fn unknown_names_and_no_sni_get_the_first_certificate_or_nothing() {
    let ca = Ca::new("ca");
    let t = table(&ca, &[("first", &["first.example"]), ("second", &["second.example"])]);
    assert_eq!(picked(&t, Some("other.example"), UnknownName::Default), Some("/test/first.crt"));
    assert_eq!(picked(&t, None, UnknownName::Default), Some("/test/first.crt"));
    assert_eq!(picked(&t, Some("other.example"), UnknownName::Reject), None);
    assert_eq!(picked(&t, None, UnknownName::Reject), None);
    assert_eq!(picked(&Table::default(), Some("x.example"), UnknownName::Default), None, "no certificate, no default");
}

#[test]
fn the_certificate_expiring_last_wins_then_source_order() {
    let ca = Ca::new("ca");
    let now = now();
    let old = ca.leaf_valid(&["a.example"], now - 100, now + 1000).loaded("old");
    let new = ca.leaf_valid(&["a.example"], now - 10, now + 5000).loaded("new");
    let twin = ca.leaf_valid(&["a.example"], now - 10, now + 5000).loaded("twin");
    let t = Table::new(vec![old.clone(), new.clone(), twin.clone()]);
    assert_eq!(picked(&t, Some("a.example"), UnknownName::Reject), Some("/test/new.crt"));
    let t = Table::new(vec![twin, old, new]);
    assert_eq!(
        picked(&t, Some("a.example"), UnknownName::Reject),
        Some("/test/twin.crt"),
        "a tie goes to source order"
    );
}

#[test]
fn the_client_schemes_choose_between_key_types_of_one_name() {
    let ca = Ca::new("ca");
    let now = now();
    let ecdsa = ca.leaf_valid(&["a.example"], now - 10, now + 9000).loaded("ecdsa");
    let ed = ca.leaf_alg(&["a.example"], now - 10, now + 1000, &rcgen::PKCS_ED25519).loaded("ed25519");
    let t = Table::new(vec![ecdsa, ed]);
    let pick = |schemes| t.pick(Some("a.example"), schemes, UnknownName::Reject).map(|c| c.pair.cert.clone());
    assert_eq!(pick(ECDSA), Some("/test/ecdsa.crt".into()));
    assert_eq!(pick(ED25519), Some("/test/ed25519.crt".into()), "an Ed25519-only client must get the Ed25519 key");
    assert_eq!(pick(&[SignatureScheme::RSA_PSS_SHA256]), Some("/test/ecdsa.crt".into()), "none fits: the best one");
}

#[test]
fn expiry_lists_every_certificate_in_source_order() {
    let ca = Ca::new("ca");
    let now = now();
    let a = ca.leaf_valid(&["a.example"], now - 10, now + 100).loaded("a");
    let b = ca.leaf_valid(&["b.example", "*.b.example"], now - 10, now + 200).loaded("b");
    let resolver = Resolver::new(UnknownName::Default, Arc::default());
    assert_eq!(resolver.expiry(), vec![], "an empty resolver has no certificate");
    resolver.publish(Table::new(vec![a, b]));
    assert_eq!(
        resolver.expiry(),
        vec![
            Expiry { cert: "/test/a.crt".into(), names: vec!["a.example".into()], not_after: now + 100 },
            Expiry {
                cert: "/test/b.crt".into(),
                names: vec!["b.example".into(), "*.b.example".into()],
                not_after: now + 200
            },
        ]
    );
}
