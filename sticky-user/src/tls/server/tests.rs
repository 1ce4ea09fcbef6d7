use std::sync::Arc;

use rustls::{HandshakeKind, ProtocolVersion, version};

use super::*;
use crate::tls::{
    challenge::{Answer, Challenges, Kind},
    resolver::{Resolver, Table, UnknownName},
    testutil::{Ca, ServerSide, client, client_accepting_any, handshake, read_greeting},
};

struct Edge {
    ca: Ca,
    resolver: Arc<Resolver>,
    challenges: Arc<Challenges>,
    acceptor: TlsAcceptor,
    a: rustls_pki_types::CertificateDer<'static>,
    b: rustls_pki_types::CertificateDer<'static>,
}

/// A TLS edge with `a.example` (the default) and `b.example`.
fn edge(settings: &Settings, unknown: UnknownName) -> Edge {
    let ca = Ca::new("ca");
    let challenges = Arc::new(Challenges::default());
    let resolver = Arc::new(Resolver::new(unknown, challenges.clone()));
    let a = ca.leaf(&["a.example"]);
    let b = ca.leaf(&["b.example"]);
    resolver.publish(Table::new(vec![a.loaded("a"), b.loaded("b")]));
    let acceptor = TlsAcceptor::from(config(settings, resolver.clone()).expect("the server config must build"));
    Edge { ca, resolver, challenges, acceptor, a: a.der, b: b.der }
}

const BOTH: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_gives_http_1_1() {
    let e = edge(&Settings::default(), UnknownName::Default);
    let config = client(e.ca.roots(), &[H2, HTTP_1_1], BOTH);
    let (client, server) = handshake(&e.acceptor, config.clone(), "b.example").await;
    let mut client = client.expect("a handshake for a known name must succeed");
    assert!(matches!(server, ServerSide::Http));
    let conn = client.get_ref().1;
    assert_eq!(conn.peer_certificates().map(<[_]>::to_vec), Some(vec![e.b.clone()]));
    assert_eq!(conn.alpn_protocol(), Some(HTTP_1_1), "h2 is not advertised yet: http/1.1 must be chosen");
    read_greeting(&mut client).await;

    let (client, _) = handshake(&e.acceptor, config, "a.example").await;
    let client = client.expect("a handshake for the other name must succeed");
    assert_eq!(client.get_ref().1.peer_certificates().map(<[_]>::to_vec), Some(vec![e.a.clone()]));
}

#[tokio::test]
async fn an_unknown_name_gets_the_default_certificate_or_a_handshake_failure() {
    let e = edge(&Settings::default(), UnknownName::Default);
    // the client accepts any certificate, to see which one is served for a name none carries
    let (client, server) = handshake(&e.acceptor, client_accepting_any(&[]), "other.example").await;
    let client = client.expect("the default certificate must be served");
    assert!(matches!(server, ServerSide::Http));
    assert_eq!(client.get_ref().1.peer_certificates().map(<[_]>::to_vec), Some(vec![e.a.clone()]));

    let e = edge(&Settings::default(), UnknownName::Reject);
    let (client, server) = handshake(&e.acceptor, client_accepting_any(&[]), "other.example").await;
    assert!(client.is_err(), "an unknown name must fail the handshake under reject");
    assert!(matches!(&server, ServerSide::Failed(m) if m.starts_with("TLS handshake failed")), "{server:?}");
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_get_an_aead_suite() {
    let e = edge(&Settings::default(), UnknownName::Default);
    for (versions, expected) in
        [(&[&version::TLS12][..], ProtocolVersion::TLSv1_2), (&[&version::TLS13][..], ProtocolVersion::TLSv1_3)]
    {
        let (client, _) = handshake(&e.acceptor, client(e.ca.roots(), &[], versions), "a.example").await;
        let client = client.expect("a handshake must succeed");
        let conn = client.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(expected));
        let suite = conn.negotiated_cipher_suite().expect("a suite must be negotiated");
        assert!(CIPHER_SUITES.contains(&suite), "{suite:?} must be one of sticky's suites");
    }
}

#[test]
fn the_suites_are_aead_and_forward_secret_only() {
    for suite in CIPHER_SUITES {
        let name = format!("{:?}", suite.suite());
        assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "{name} must be AEAD");
        assert!(name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"), "{name} must be forward-secret");
    }
    assert_eq!(provider().cipher_suites.len(), CIPHER_SUITES.len());
}

async fn resumed(e: &Edge, config: Arc<rustls::ClientConfig>) -> Vec<Option<HandshakeKind>> {
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (client, _) = handshake(&e.acceptor, config.clone(), "a.example").await;
        let mut client = client.expect("a handshake must succeed");
        // taking the greeting also takes the TLS 1.3 tickets sent before it
        read_greeting(&mut client).await;
        kinds.push(client.get_ref().1.handshake_kind());
    }
    kinds
}

#[tokio::test]
async fn sessions_resume_by_ticket_and_by_session_id() {
    let e = edge(&Settings::default(), UnknownName::Default);
    let full_then_resumed = vec![Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)];

    let tls13 = client(e.ca.roots(), &[], &[&version::TLS13]);
    assert_eq!(resumed(&e, tls13).await, full_then_resumed, "TLS 1.3 must resume by ticket");

    let tls12 = client(e.ca.roots(), &[], &[&version::TLS12]);
    assert_eq!(resumed(&e, tls12).await, full_then_resumed, "TLS 1.2 must resume by ticket");

    let mut ids_only = Arc::unwrap_or_clone(client(e.ca.roots(), &[], &[&version::TLS12]));
    ids_only.resumption = rustls::client::Resumption::in_memory_sessions(8)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    assert_eq!(resumed(&e, Arc::new(ids_only)).await, full_then_resumed, "TLS 1.2 must resume by session id");
}

#[tokio::test]
async fn resumption_survives_a_certificate_reload() {
    let e = edge(&Settings::default(), UnknownName::Default);
    let config = client(e.ca.roots(), &[], &[&version::TLS13]);
    let (client1, _) = handshake(&e.acceptor, config.clone(), "a.example").await;
    read_greeting(&mut client1.expect("the first handshake must succeed")).await;

    let renewed = e.ca.leaf(&["a.example"]);
    e.resolver.publish(Table::new(vec![renewed.loaded("a")]));
    let (client2, _) = handshake(&e.acceptor, config.clone(), "a.example").await;
    let mut client2 = client2.expect("the handshake after the reload must succeed");
    read_greeting(&mut client2).await;
    assert_eq!(client2.get_ref().1.handshake_kind(), Some(HandshakeKind::Resumed));

    // a session resumes with what it started with; a new client sees the renewed certificate
    let fresh = client(e.ca.roots(), &[], &[&version::TLS13]);
    let (client3, _) = handshake(&e.acceptor, fresh, "a.example").await;
    let client3 = client3.expect("a new handshake must succeed");
    assert_eq!(client3.get_ref().1.peer_certificates().map(<[_]>::to_vec), Some(vec![renewed.der]));
}

#[tokio::test]
async fn acme_tls_alpn_gets_the_challenge_certificate_and_nothing_else() {
    let settings = Settings { acme_tls_alpn: true, ..Settings::default() };
    let e = edge(&settings, UnknownName::Default);
    let acme = client_accepting_any(&[ACME_TLS_ALPN]);

    // no pending challenge: no certificate at all, not the real one
    let (refused, server) = handshake(&e.acceptor, acme.clone(), "a.example").await;
    assert!(refused.is_err(), "acme-tls/1 without a pending challenge must fail");
    assert!(matches!(&server, ServerSide::Failed(m) if m.starts_with("TLS handshake failed")), "{server:?}");

    e.challenges
        .insert(&Answer { kind: Kind::TlsAlpn01, id: "a.example".into(), key_authorization: "tok.thumb".into() })
        .expect("a pending challenge must be accepted");
    let expected = e.challenges.tls_alpn01("a.example").expect("the challenge certificate must exist");
    let (validation, server) = handshake(&e.acceptor, acme, "a.example").await;
    let validation = validation.expect("acme-tls/1 with a pending challenge must complete");
    assert!(matches!(server, ServerSide::AcmeChallenge), "the server must close a validation connection");
    let conn = validation.get_ref().1;
    assert_eq!(conn.alpn_protocol(), Some(ACME_TLS_ALPN));
    assert_eq!(conn.peer_certificates().map(<[_]>::to_vec), Some(expected.cert.clone()));

    // an ordinary client of the same listener is unaffected by the extra protocol
    let (ordinary, _) = handshake(&e.acceptor, client(e.ca.roots(), &[H2, HTTP_1_1], BOTH), "a.example").await;
    let ordinary = ordinary.expect("an ordinary handshake must succeed");
    assert_eq!(ordinary.get_ref().1.alpn_protocol(), Some(HTTP_1_1));
    assert_eq!(ordinary.get_ref().1.peer_certificates().map(<[_]>::to_vec), Some(vec![e.a.clone()]));
}

#[tokio::test]
async fn acme_tls_alpn_is_refused_when_not_enabled() {
    let e = edge(&Settings::default(), UnknownName::Default);
    e.challenges
        .insert(&Answer { kind: Kind::TlsAlpn01, id: "a.example".into(), key_authorization: "tok.thumb".into() })
        .expect("a pending challenge must be accepted");
    let (client, _) = handshake(&e.acceptor, client_accepting_any(&[ACME_TLS_ALPN]), "a.example").await;
    assert!(client.is_err(), "without acme_tls_alpn the protocol is not negotiated");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_silent_client_times_out() {
    let e = edge(&Settings::default(), UnknownName::Default);
    let (_client, server) = tokio::io::duplex(1024);
    let started = tokio::time::Instant::now();
    let result = accept(&e.acceptor, server, Duration::from_secs(10)).await;
    assert!(matches!(result, Err(ServerError::Timeout { after }) if after == Duration::from_secs(10)), "{result:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}
