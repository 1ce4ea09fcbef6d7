//! The rustls server side: TLS 1.3 and 1.2 with AEAD suites only, session resumption by tickets and
//! by session id, ALPN, and the handshake that hands an HTTP connection on (or closes an ACME
//! TLS-ALPN-01 validation connection). See the `tls` module docs for the choice of suites.

use std::{sync::Arc, time::Duration};

use rustls::{
    ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
    crypto::{CryptoProvider, ring},
    server::{ResolvesServerCert, ServerSessionMemoryCache},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::tls::challenge::ACME_TLS_ALPN;

/// ALPN name of HTTP/1.1.
pub const HTTP_1_1: &[u8] = b"http/1.1";

/// ALPN name of HTTP/2 (offered first by `sticky run` unless `--h2=false`; its connections go to
/// `proxy::h2`).
pub const H2: &[u8] = b"h2";

/// The protocol versions: TLS 1.3 first, TLS 1.2 for older clients; nothing older.
pub static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The cipher suites offered, in sticky's order of preference (the client's order decides, see
/// [`config`]): AEAD only, forward-secret (ECDHE) only for TLS 1.2, AES-128-GCM first.
pub static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// How the TLS listener behaves (certificates aside: they come from the resolver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// ALPN protocols in order of preference (the server's order decides). `[http/1.1]` by default;
    /// `sticky run` puts `h2` first (issue 15, `--h2`).
    pub alpn: Vec<Vec<u8>>,
    /// Also accept `acme-tls/1` connections (ACME TLS-ALPN-01 validation); [`accept`] closes them
    /// after the handshake.
    pub acme_tls_alpn: bool,
    /// Sessions kept for resumption by session id (TLS 1.2 clients without tickets): entries of a
    /// few hundred bytes, the oldest evicted first.
    pub session_cache: usize,
    /// The longest a handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            alpn: vec![HTTP_1_1.to_vec()],
            acme_tls_alpn: false,
            session_cache: 4096,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the TLS server side cannot be set up, or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The crypto provider does not support the protocol versions.
    #[error("the ring provider does not support TLS 1.2 and 1.3 with sticky's cipher suites")]
    Versions {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The session ticket key could not be made (no randomness).
    #[error("failed to create the session ticket key")]
    Ticketer {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The handshake failed (protocol error, no certificate for the name, peer closed).
    #[error("TLS handshake failed")]
    Handshake {
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The handshake took longer than [`Settings::handshake_timeout`].
    #[error("TLS handshake took longer than {after:?}")]
    Timeout {
        /// The limit.
        after: Duration,
    },
}

/// The ring provider restricted to [`CIPHER_SUITES`] (key exchange: X25519, P-256, P-384).
#[must_use]
pub fn provider() -> CryptoProvider {
    CryptoProvider { cipher_suites: CIPHER_SUITES.to_vec(), ..ring::default_provider() }
}

/// The rustls server configuration: [`VERSIONS`], [`CIPHER_SUITES`] in the client's order of
/// preference (a client without AES hardware lists ChaCha20 first and gets it), certificates from
/// `resolver`, resumption by stateless tickets (TLS 1.3 and 1.2; the key rotates every 6 hours) and by
/// session id ([`Settings::session_cache`] entries), and ALPN from `settings`.
///
/// The configuration holds no certificate: the resolver's table changes under it, so reloading
/// certificates keeps the ticket key and the session cache (resumption survives a reload).
///
/// # Errors
/// The provider lacks the versions, or the ticket key cannot be made.
pub fn config(settings: &Settings, resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, ServerError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|source| ServerError::Versions { source })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ignore_client_order = false;
    config.session_storage = ServerSessionMemoryCache::new(settings.session_cache);
    config.ticketer = ring::Ticketer::new().map_err(|source| ServerError::Ticketer { source })?;
    config.alpn_protocols.clone_from(&settings.alpn);
    if settings.acme_tls_alpn {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// A connection after its handshake.
#[derive(Debug)]
pub enum Accepted<IO> {
    /// An application connection: read and write HTTP on it.
    Http(Box<TlsStream<IO>>),
    /// An ACME TLS-ALPN-01 validation: the handshake was the whole answer and the connection is closed.
    AcmeChallenge,
}

/// Runs the server handshake on `io` within `timeout`.
///
/// The negotiated ALPN protocol of an [`Accepted::Http`] stream is
/// `stream.get_ref().1.alpn_protocol()` (`None` when the client offered none: HTTP/1.1).
///
/// # Errors
/// The handshake failed or timed out; the caller logs at debug and drops the connection.
///
/// # Cancel safety
/// Dropping the future drops the connection.
pub async fn accept<IO>(acceptor: &TlsAcceptor, io: IO, timeout: Duration) -> Result<Accepted<IO>, ServerError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let stream = tokio::time::timeout(timeout, acceptor.accept(io))
        .await
        .map_err(|_| ServerError::Timeout { after: timeout })?
        .map_err(|source| ServerError::Handshake { source })?;
    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        // RFC 8737 section 3: nothing but the handshake happens on a validation connection
        return Ok(Accepted::AcmeChallenge);
    }
    Ok(Accepted::Http(Box::new(stream)))
}

#[cfg(test)]
mod tests;
