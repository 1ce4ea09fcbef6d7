//! ACME challenge answers this instance serves: HTTP-01 key authorizations by token (the plain
//! listener's lookup) and TLS-ALPN-01 certificates by name (the SNI resolver's). The table is swapped
//! whole, so a lookup is one atomic load and never waits for a writer.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 validation requests (RFC 8555, section 8.3).
pub const HTTP01_PATH: &str = "/.well-known/acme-challenge/";

/// The longest token accepted; RFC 8555 asks for at least 128 bits (22 characters), CAs send 43.
pub const MAX_TOKEN_LEN: usize = 256;

/// How a CA checks control of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
pub enum Kind {
    /// `GET http://NAME/.well-known/acme-challenge/TOKEN` on port 80 answers the key authorization.
    #[serde(rename = "http-01")]
    Http01,
    /// A TLS connection to NAME:443 offering only `acme-tls/1` gets a certificate carrying the digest
    /// of the key authorization.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Kind {
    /// The name RFC 8555 and RFC 8737 use (`http-01`, `tls-alpn-01`), also the storage directory's.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One answer: for HTTP-01 `id` is the token, for TLS-ALPN-01 the name being validated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Answer {
    /// The challenge type.
    pub kind: Kind,
    /// The token (HTTP-01) or the DNS name (TLS-ALPN-01).
    pub id: String,
    /// `token.thumbprint` (RFC 8555, section 8.1).
    pub key_authorization: String,
}

/// Why an answer cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    /// The token has characters outside base64url, or is empty or too long.
    #[error("ACME token {token:?} is not base64url of 1 to {MAX_TOKEN_LEN} characters")]
    Token {
        /// The token.
        token: String,
    },
    /// The name is not a plain lowercase DNS name.
    #[error("{name:?} is not a lowercase DNS name (letters, digits, '-' and '.', no wildcard)")]
    Name {
        /// The name.
        name: String,
    },
    /// The TLS-ALPN-01 certificate cannot be made.
    #[error("failed to make the TLS-ALPN-01 certificate for {name}")]
    Certificate {
        /// The name.
        name: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// The TLS-ALPN-01 key cannot be used by rustls.
    #[error("failed to load the TLS-ALPN-01 key for {name}")]
    Key {
        /// The name.
        name: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The answers this instance serves now.
#[derive(Debug, Default)]
pub struct Challenges {
    table: ArcSwap<Table>,
    // writers are rare (an order's few challenges, a directory sync); one at a time keeps them simple
    writer: Mutex<()>,
}

#[derive(Clone, Debug, Default)]
struct Table {
    http01: HashMap<String, Arc<str>>,
    tls_alpn01: HashMap<String, Alpn>,
}

#[derive(Clone, Debug)]
struct Alpn {
    key_authorization: String,
    cert: Arc<CertifiedKey>,
}

impl Challenges {
    /// The body to answer an HTTP-01 request for `path` (the request target: path, maybe a query)
    /// with `200 text/plain`, or `None` when `path` is not a known challenge (answer 404).
    #[must_use]
    pub fn http01(&self, path: &str) -> Option<Arc<str>> {
        let token = token(path)?;
        self.table.load().http01.get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `name` (lowercase), if a challenge for it is pending.
    #[must_use]
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.table.load().tls_alpn01.get(name).map(|a| a.cert.clone())
    }

    /// How many answers are served (both kinds).
    #[must_use]
    pub fn len(&self) -> usize {
        let table = self.table.load();
        table.http01.len() + table.tls_alpn01.len()
    }

    /// Whether no answer is served.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves `answer` from now on (replacing one with the same kind and id).
    ///
    /// # Errors
    /// The token or name is malformed, or the TLS-ALPN-01 certificate cannot be made.
    pub fn insert(&self, answer: &Answer) -> Result<(), ChallengeError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut table = Table::clone(&self.table.load());
        add(&mut table, answer, None)?;
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Stops serving the answer of `kind` for `id`.
    pub fn remove(&self, kind: Kind, id: &str) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut table = Table::clone(&self.table.load());
        let removed = match kind {
            Kind::Http01 => table.http01.remove(id).is_some(),
            Kind::TlsAlpn01 => table.tls_alpn01.remove(id).is_some(),
        };
        if removed {
            self.table.store(Arc::new(table));
        }
    }

    /// Serves exactly `answers` (what the shared ACME directory holds), keeping the certificates of
    /// unchanged TLS-ALPN-01 answers. Malformed answers are left out and returned, the rest served.
    pub fn replace(&self, answers: &[Answer]) -> Vec<ChallengeError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.table.load_full();
        let mut table = Table::default();
        let mut errors = Vec::new();
        for answer in answers {
            if let Err(e) = add(&mut table, answer, Some(&old)) {
                errors.push(e);
            }
        }
        let same = table.http01 == old.http01
            && table.tls_alpn01.len() == old.tls_alpn01.len()
            && table
                .tls_alpn01
                .iter()
                .all(|(name, a)| old.tls_alpn01.get(name).is_some_and(|o| o.key_authorization == a.key_authorization));
        if !same {
            self.table.store(Arc::new(table));
        }
        errors
    }
}

fn add(table: &mut Table, answer: &Answer, reuse: Option<&Table>) -> Result<(), ChallengeError> {
    match answer.kind {
        Kind::Http01 => {
            if !valid_token(&answer.id) {
                return Err(ChallengeError::Token { token: answer.id.clone() });
            }
            table.http01.insert(answer.id.clone(), Arc::from(answer.key_authorization.as_str()));
        }
        Kind::TlsAlpn01 => {
            let kept = reuse
                .and_then(|t| t.tls_alpn01.get(&answer.id))
                .filter(|a| a.key_authorization == answer.key_authorization)
                .cloned();
            let alpn = match kept {
                Some(alpn) => alpn,
                None => Alpn {
                    key_authorization: answer.key_authorization.clone(),
                    cert: Arc::new(alpn_certificate(&answer.id, &answer.key_authorization)?),
                },
            };
            table.tls_alpn01.insert(answer.id.clone(), alpn);
        }
    }
    Ok(())
}

/// The token of an HTTP-01 request target (`/.well-known/acme-challenge/TOKEN`, a query ignored), if
/// it is one and the token is well-formed.
#[must_use]
pub fn token(target: &str) -> Option<&str> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.strip_prefix(HTTP01_PATH).filter(|t| valid_token(t))
}

/// Whether `token` is base64url (RFC 8555 tokens are) of 1 to [`MAX_TOKEN_LEN`] characters; this also
/// makes it safe as a file name.
#[must_use]
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is a lowercase DNS name without wildcard (HTTP-01 and TLS-ALPN-01 cannot prove
/// wildcards): labels of letters, digits and `-`, 1 to 63 each, 253 in all. Also safe as a file name.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The self-signed certificate RFC 8737 asks for: `name` as its only subjectAltName and the critical
/// acmeIdentifier extension holding SHA-256 of the key authorization. A fresh P-256 key each time.
///
/// # Errors
/// `name` is malformed, or rcgen or rustls refuse the certificate or key.
pub fn alpn_certificate(name: &str, key_authorization: &str) -> Result<CertifiedKey, ChallengeError> {
    if !valid_name(name) {
        return Err(ChallengeError::Name { name: name.to_owned() });
    }
    let cert_error = |source| ChallengeError::Certificate { name: name.to_owned(), source };
    let key = rcgen::KeyPair::generate().map_err(cert_error)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(cert_error)?;
    params.custom_extensions =
        vec![rcgen::CustomExtension::new_acme_identifier(&Sha256::digest(key_authorization.as_bytes()))];
    let cert = params.self_signed(&key).map_err(cert_error)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|source| ChallengeError::Key { name: name.to_owned(), source })?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

#[cfg(test)]
mod tests;
