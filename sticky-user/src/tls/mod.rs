//! HTTPS at the edge: the rustls server side, certificates from files, directories, Swarm secrets and
//! ACME, SNI, and hot reload. Everything here is independent of the HTTP engine: the listener wiring
//! takes a [`tokio_rustls::TlsAcceptor`] and a [`challenge::Challenges`] lookup from it.
//!
//! # Pieces (one job per file)
//! - [`source`]: where certificates come from: `--tls-cert`/`--tls-key` pairs, directories (naming
//!   rule), Swarm secrets (`/run/secrets`).
//! - [`cert`]: one certificate read, checked and described (names, validity).
//! - [`resolver`]: SNI: exact name, `*.` wildcard, then the default certificate or a refusal;
//!   TLS-ALPN-01 challenge certificates; expiry facts for metrics.
//! - [`reload`]: the table rebuilt on file change (polled) and on SIGHUP, the last good certificate
//!   kept when a new file is bad.
//! - [`challenge`]: the ACME answers served: HTTP-01 by token, TLS-ALPN-01 by name.
//! - [`server`]: protocol versions, cipher suites, resumption, ALPN; the handshake.
//! - [`acme`]: ordering and renewing with instant-acme, coordinated between instances.
//!
//! # Protocols and cipher suites, and why
//! TLS 1.3 and TLS 1.2 only: TLS 1.0/1.1 are deprecated (RFC 8996) and every client of the last
//! decade speaks 1.2. The suites are rustls' *ring* suites, all AEAD, all forward-secret:
//! - TLS 1.3: `TLS13_AES_128_GCM_SHA256`, `TLS13_AES_256_GCM_SHA384`, `TLS13_CHACHA20_POLY1305_SHA256`;
//! - TLS 1.2: `TLS_ECDHE_{ECDSA,RSA}_WITH_AES_128_GCM_SHA256`, `..._AES_256_GCM_SHA384`,
//!   `..._CHACHA20_POLY1305_SHA256`.
//!
//! No CBC (Lucky13 and padding oracles), no RSA key exchange (no forward secrecy, ROBOT), no SHA-1
//! MACs, no 3DES/RC4: Mozilla's "intermediate" profile. testssl.sh 3.0.8 against a listener built
//! from [`server::config`] with an RSA and an ECDSA certificate for one name (2026-12-03): TLS 1.2 and
//! 1.3 only, AEAD only, forward secrecy on every suite, resumption by ticket and by id, no
//! vulnerability flagged; the RSA key went to an RSA-only client, the ECDSA key to the others.
//!
//! AES-128-GCM is listed first because it is the cheapest per byte on CPUs with AES instructions
//! (the bench's CPU-per-request goal), but the client's order decides, so a phone without AES
//! hardware, which lists ChaCha20 first, gets ChaCha20. Key exchange: X25519, P-256, P-384 (the
//! *ring* provider has no post-quantum hybrid; aws-lc-rs would, and needs cmake/nasm, absent here).
//! Resumption: stateless tickets (TLS 1.3 and 1.2; key rotated every 6 hours, per process, so a
//! client resumes with the instance it last reached) and session ids for TLS 1.2 clients without
//! tickets. No 0-RTT: replayable requests are not worth a round trip.
//!
//! # What the listener wiring does with this (`app::http`, `proxy::server`)
//! ```text
//! challenges = Arc::new(Challenges::default())
//! resolver   = Arc::new(Resolver::new(unknown_name, challenges.clone()))
//! sources    = source::pairs(--tls-cert, --tls-key) + --tls-dir + [Source::secrets()] + [storage.certs_dir()]
//! reloader   = Reloader::start(sources, resolver.clone())?      // fails on a bad explicit pair
//! on SIGHUP:   reloader.handle().reload()                       // and spawn reloader.run(interval)
//! acceptor   = TlsAcceptor::from(server::config(&settings, resolver.clone())?)
//! per conn:    match server::accept(&acceptor, tcp, settings.handshake_timeout).await {
//!                  Accepted::Http(tls) => serve HTTP on it (ALPN tells HTTP/1.1 or h2),
//!                  Accepted::AcmeChallenge => {}                // already closed
//!              }
//! plain listener: challenges.http01(request_target) -> Some(body): 200 text/plain, before routing
//! ACME:        Manager::new(AcmeClient::new(..)?, storage, challenges, reloader.handle(), ..).run()
//!              manager.requests().send(requests from flags and labels)
//! metrics:     resolver.expiry() -> sticky_tls_certificate_not_after_seconds{cert, names}
//! ```

pub mod acme;
pub mod cert;
pub mod challenge;
pub mod reload;
pub mod resolver;
pub mod server;
pub mod source;

#[cfg(test)]
pub(crate) mod testutil;
