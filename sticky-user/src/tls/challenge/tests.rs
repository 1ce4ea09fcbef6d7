use std::sync::Arc;

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer as _};

use super::*;

fn http(token: &str, key_authorization: &str) -> Answer {
    Answer { kind: Kind::Http01, id: token.to_owned(), key_authorization: key_authorization.to_owned() }
}

fn alpn(name: &str, key_authorization: &str) -> Answer {
    Answer { kind: Kind::TlsAlpn01, id: name.to_owned(), key_authorization: key_authorization.to_owned() }
}

#[test]
fn token_is_read_from_the_well_known_path_only() {
    assert_eq!(token("/.well-known/acme-challenge/abc-DEF_123"), Some("abc-DEF_123"));
    assert_eq!(token("/.well-known/acme-challenge/abc?x=1"), Some("abc"), "a query is not part of the token");
    assert_eq!(token("/.well-known/acme-challenge/"), None);
    assert_eq!(token("/.well-known/acme-challenge/../../etc/passwd"), None);
    assert_eq!(token("/.well-known/acme-challenge/a/b"), None);
    assert_eq!(token("/other/abc"), None);
    assert_eq!(token(&format!("{HTTP01_PATH}{}", "a".repeat(MAX_TOKEN_LEN + 1))), None);
    assert_eq!(token(&format!("{HTTP01_PATH}{}", "a".repeat(MAX_TOKEN_LEN))).map(str::len), Some(MAX_TOKEN_LEN));
}

#[test]
fn http01_answers_known_tokens_until_removed() {
    let challenges = Challenges::default();
    assert_eq!(challenges.http01("/.well-known/acme-challenge/tok"), None);
    challenges.insert(&http("tok", "tok.thumb")).expect("a valid token must be accepted");
    assert_eq!(challenges.http01("/.well-known/acme-challenge/tok").as_deref(), Some("tok.thumb"));
    assert_eq!(challenges.http01("/.well-known/acme-challenge/other"), None);
    assert_eq!(challenges.len(), 1);
    challenges.remove(Kind::Http01, "tok");
    assert_eq!(challenges.http01("/.well-known/acme-challenge/tok"), None);
    assert!(challenges.is_empty());
}

#[test]
fn malformed_ids_are_refused() {
    let challenges = Challenges::default();
    let err = challenges.insert(&http("../x", "k")).expect_err("a token with a slash must be refused");
    assert!(matches!(err, ChallengeError::Token { .. }), "{err:?}");
    let err = challenges.insert(&alpn("*.example.com", "k")).expect_err("a wildcard must be refused");
    assert!(matches!(err, ChallengeError::Name { .. }), "{err:?}");
    assert!(challenges.is_empty());
}

#[test]
fn valid_names_are_lowercase_dns_names() {
    for ok in ["example.com", "a-b.c1.example", "localhost", "xn--bcher-kva.example"] {
        assert!(valid_name(ok), "{ok} must be valid");
    }
    for bad in ["", "Example.com", "*.example.com", "a..b", ".a", "a.", "-a.b", "a-.b", "a_b.c", "a/b", &"a".repeat(64)]
    {
        assert!(!valid_name(bad), "{bad:?} must be invalid");
    }
}

#[test]
fn alpn_certificate_carries_the_name_and_the_critical_digest() {
    let cert = alpn_certificate("alpn.example", "token.thumb").expect("a certificate must be made");
    assert_eq!(cert.cert.len(), 1, "the challenge certificate is self-signed, alone");
    let (_, x509) = X509Certificate::from_der(&cert.cert[0]).expect("the certificate must parse");
    let san = x509.subject_alternative_name().expect("SAN must parse").expect("SAN must be present");
    assert_eq!(san.value.general_names, vec![GeneralName::DNSName("alpn.example")]);
    let acme = x509
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("the acmeIdentifier extension must be present");
    assert!(acme.critical, "RFC 8737: the acmeIdentifier extension must be critical");
    let digest = Sha256::digest(b"token.thumb");
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&digest);
    assert_eq!(acme.value, expected.as_slice(), "the extension must hold the SHA-256 of the key authorization");
    // (rustls' keys_match parses with webpki, which refuses the unknown critical extension: compare here)
    let key_spki = cert.key.public_key().expect("a ring key knows its public half");
    assert_eq!(key_spki.as_ref(), x509.public_key().raw, "the key must be the certificate's");
}

#[test]
fn tls_alpn01_serves_the_certificate_of_a_pending_name() {
    let challenges = Challenges::default();
    challenges.insert(&alpn("alpn.example", "k1")).expect("a valid name must be accepted");
    let cert = challenges.tls_alpn01("alpn.example").expect("the pending name must have a certificate");
    assert_eq!(cert.cert.len(), 1);
    assert!(challenges.tls_alpn01("other.example").is_none());
    challenges.remove(Kind::TlsAlpn01, "alpn.example");
    assert!(challenges.tls_alpn01("alpn.example").is_none());
}

#[test]
fn replace_serves_exactly_the_directory_and_keeps_unchanged_certificates() {
    let challenges = Challenges::default();
    challenges.insert(&http("old", "old.k")).expect("valid");
    assert!(challenges.replace(&[alpn("a.example", "k1"), alpn("b.example", "k2"), http("tok", "tok.k")]).is_empty());
    assert_eq!(challenges.http01("/.well-known/acme-challenge/old"), None, "what the directory lacks must go");
    assert_eq!(challenges.http01("/.well-known/acme-challenge/tok").as_deref(), Some("tok.k"));
    let a = challenges.tls_alpn01("a.example").expect("a must be served");
    let b = challenges.tls_alpn01("b.example").expect("b must be served");

    // b's key authorization changes, a's does not; a malformed entry is reported and left out
    let errors = challenges.replace(&[alpn("a.example", "k1"), alpn("b.example", "k3"), http("bad/token", "x")]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let a2 = challenges.tls_alpn01("a.example").expect("a must still be served");
    let b2 = challenges.tls_alpn01("b.example").expect("b must still be served");
    assert!(Arc::ptr_eq(&a, &a2), "an unchanged answer must keep its certificate");
    assert!(!Arc::ptr_eq(&b, &b2), "a changed answer must get a new certificate");
    assert_eq!(challenges.len(), 2, "the HTTP-01 answer is gone and the malformed one was never added");
}

#[test]
fn kinds_have_their_rfc_names() {
    assert_eq!(Kind::Http01.to_string(), "http-01");
    assert_eq!(Kind::TlsAlpn01.to_string(), "tls-alpn-01");
}
