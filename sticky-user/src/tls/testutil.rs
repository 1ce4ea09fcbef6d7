//! Test certificates and clients: a CA, leaves with chosen names and validity, pairs written to disk,
//! a rustls client trusting the CA, and an in-memory handshake against a server configuration.

use std::{path::Path, sync::Arc};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

use crate::tls::{
    cert::{self, Loaded},
    server::{self, Accepted},
    source::Pair,
};

/// Now, in seconds since the UNIX epoch.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A test certificate authority.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pub pem: String,
}

/// A leaf certificate with its key, as PEM.
pub(crate) struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generating a CA key must work");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty CA params must be valid");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signing the CA must work");
        Self { der: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    pub(crate) fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("the test CA must be a valid root");
        roots
    }

    /// A leaf for `names`, valid from a day ago for 90 days.
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        let now = now();
        self.leaf_valid(names, now - 86_400, now + 89 * 86_400)
    }

    /// A leaf for `names` valid between the two times (seconds since the epoch), ECDSA P-256.
    pub(crate) fn leaf_valid(&self, names: &[&str], not_before: i64, not_after: i64) -> Leaf {
        self.leaf_alg(names, not_before, not_after, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A leaf as [`Ca::leaf_valid`] with a key of `alg`.
    pub(crate) fn leaf_alg(
        &self,
        names: &[&str],
        not_before: i64,
        not_after: i64,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> Leaf {
        let key = KeyPair::generate_for(alg).expect("generating a leaf key must work");
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("test names must be valid");
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).expect("a valid time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("a valid time");
        let cert = params.signed_by(&key, &self.issuer).expect("signing a leaf must work");
        Leaf { chain_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Leaf {
    /// Writes `STEM.crt` and `STEM.key` into `dir`.
    pub(crate) fn write(&self, dir: &Path, stem: &str) -> Pair {
        let pair = Pair { cert: dir.join(format!("{stem}.crt")), key: dir.join(format!("{stem}.key")) };
        std::fs::write(&pair.cert, &self.chain_pem).expect("writing a test certificate must work");
        std::fs::write(&pair.key, &self.key_pem).expect("writing a test key must work");
        pair
    }

    /// Loaded without files (the pair only names it).
    pub(crate) fn loaded(&self, stem: &str) -> Arc<Loaded> {
        let pair = Pair { cert: format!("/test/{stem}.crt").into(), key: format!("/test/{stem}.key").into() };
        Arc::new(cert::parse(self.chain_pem.as_bytes(), self.key_pem.as_bytes(), &pair).expect("a test leaf must load"))
    }
}

/// A client trusting `roots`, offering `alpn`, limited to `versions`.
pub(crate) fn client(
    roots: RootCertStore,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("ring must support the test versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What the test server writes after a handshake.
pub(crate) const GREETING: &[u8] = b"hello";

/// Reads the server's greeting on a client stream.
pub(crate) async fn read_greeting(stream: &mut TlsStream<tokio::io::DuplexStream>) {
    let mut buf = [0u8; GREETING.len()];
    tokio::io::AsyncReadExt::read_exact(stream, &mut buf).await.expect("the server's greeting must arrive");
    assert_eq!(&buf, GREETING);
}

/// The server's view of a handshake that ended.
#[derive(Debug)]
pub(crate) enum ServerSide {
    Http,
    AcmeChallenge,
    Failed(String),
}

/// Runs a handshake over an in-memory pipe: the client connects to `sni` with `config`, the server
/// side runs [`server::accept`] on `acceptor`. Returns the client's stream (or its error) and what the
/// server saw.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    config: Arc<ClientConfig>,
    sni: &str,
) -> (Result<TlsStream<tokio::io::DuplexStream>, std::io::Error>, ServerSide) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(sni.to_owned()).expect("a valid test server name");
    let connector = TlsConnector::from(config);
    let server = async {
        match server::accept(acceptor, server_io, std::time::Duration::from_secs(10)).await {
            Ok(Accepted::Http(mut stream)) => {
                // a greeting after the handshake: reading it makes the client take the TLS 1.3
                // session tickets sent before it
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, GREETING).await;
                let _ = tokio::io::AsyncWriteExt::flush(&mut stream).await;
                (ServerSide::Http, Some(stream))
            }
            Ok(Accepted::AcmeChallenge) => (ServerSide::AcmeChallenge, None),
            Err(e) => (ServerSide::Failed(crate::telemetry::chain(&e)), None),
        }
    };
    let (client, (server, _keep)) = tokio::join!(connector.connect(name, client_io), server);
    (client, server)
}

/// A client that accepts any server certificate (to look at TLS-ALPN-01 challenge certificates,
/// which are self-signed by design), offering `alpn`.
pub(crate) fn client_accepting_any(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring must support the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    // the signatures are not checked: webpki refuses to parse a certificate with an unknown critical
    // extension (acmeIdentifier), and these tests are about which certificate is served
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

type Lines = Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>;

std::thread_local! {
    /// Where this thread's log events go while a test captures them.
    static CAPTURE: std::cell::RefCell<Option<Lines>> = const { std::cell::RefCell::new(None) };
}

/// Log lines captured from the current thread (level and message), for tests that count them.
///
/// One global subscriber feeds per-thread buffers: with a thread-local default subscriber per test,
/// tracing caches a call site as uninteresting when another test thread reaches it first without
/// one, and lines go missing.
#[derive(Clone, Default)]
pub(crate) struct Logs(Lines);

/// Stops a capture when dropped.
pub(crate) struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        CAPTURE.with(|c| {
            if let Some(lines) = c.borrow().as_ref() {
                let mut message = Message(String::new());
                event.record(&mut message);
                lines.lock().expect("the log buffer must not be poisoned").push((*event.metadata().level(), message.0));
            }
        });
    }
}

impl Logs {
    /// Captures the current thread's log events until the guard is dropped.
    pub(crate) fn capture() -> (Self, CaptureGuard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt as _;
            // a test binary has no other global subscriber; if one came first, capture would see nothing
            // and the counting assertions fail loudly
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture));
        });
        let logs = Self::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.0.clone()));
        (logs, CaptureGuard(()))
    }

    /// How many lines of `level` have a message starting with `prefix`.
    pub(crate) fn count(&self, level: tracing::Level, prefix: &str) -> usize {
        let lines = self.0.lock().expect("the log buffer must not be poisoned");
        lines.iter().filter(|(l, m)| *l == level && m.starts_with(prefix)).count()
    }

    /// Every line, for assertion messages.
    pub(crate) fn lines(&self) -> Vec<(tracing::Level, String)> {
        self.0.lock().expect("the log buffer must not be poisoned").clone()
    }
}
