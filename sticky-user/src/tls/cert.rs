//! One certificate: a PEM chain and its private key read (bounded), checked (the key is the leaf's) and
//! described (subjectAltName DNS names for SNI, validity for renewal and expiry metrics).

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer as _};

use crate::tls::source::Pair;

/// The largest PEM file read: a chain of a few certificates is about 10 KiB, so anything bigger is
/// not a certificate, and a wrong path (a log file, a device) must not be read into memory whole.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// A certificate ready to serve, with the facts SNI, renewal and metrics need.
#[derive(Debug)]
pub struct Loaded {
    /// The chain and the signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// The leaf's subjectAltName DNS names, lowercase, without a trailing dot; wildcards stay `*.a.b`.
    /// The subject's common name is not read: clients have ignored it since 2017, so SNI does too.
    pub names: Vec<String>,
    /// The leaf's validity.
    pub validity: Validity,
    /// The files it was read from.
    pub pair: Pair,
}

/// When a certificate is valid, in seconds since the UNIX epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before this second.
    pub not_before: i64,
    /// Not valid after this second: the expiry the metrics report.
    pub not_after: i64,
}

/// Why a certificate pair cannot be used. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file cannot be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_PEM_BYTES`].
    #[error("{} is larger than {MAX_PEM_BYTES} bytes, which no PEM certificate or key is", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A file is not valid PEM.
    #[error("{} is not valid PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file has no `CERTIFICATE` block.
    #[error("{} holds no CERTIFICATE block", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file has no private key block.
    #[error("{} holds no PRIVATE KEY block (PKCS#8, EC or RSA; encrypted keys are not read)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is of a kind rustls cannot sign with.
    #[error("{}: unsupported private key", path.display())]
    KeyType {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The key does not belong to the leaf certificate.
    #[error("{} is not the private key of {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate does not parse as X.509.
    #[error("{}: the first certificate does not parse: {reason}", path.display())]
    Leaf {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
}

/// Reads and checks the pair.
///
/// # Errors
/// A file cannot be read or is too large, is not PEM, lacks its block, the key is unsupported or not
/// the leaf's, or the leaf does not parse.
pub fn load(pair: &Pair) -> Result<Loaded, CertError> {
    let cert = read(&pair.cert)?;
    let key = read(&pair.key)?;
    parse(&cert, &key, pair)
}

/// Checks and describes a chain and key given as PEM bytes; `pair` names them in errors.
///
/// # Errors
/// As [`load`], but for the bytes given.
pub fn parse(cert_pem: &[u8], key_pem: &[u8], pair: &Pair) -> Result<Loaded, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CertError::Pem { path: pair.cert.clone(), source })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: pair.cert.clone() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::NoKey { path: pair.key.clone() },
        source => CertError::Pem { path: pair.key.clone(), source },
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|source| CertError::KeyType { path: pair.key.clone(), source })?;
    let (names, validity) =
        describe(&chain[0]).map_err(|reason| CertError::Leaf { path: pair.cert.clone(), reason })?;
    let key = CertifiedKey::new(chain, signer);
    match key.keys_match() {
        // ring's keys know their public half; `Unknown` would only mean the check cannot be made
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(CertError::Mismatch { cert: pair.cert.clone(), key: pair.key.clone() }),
    }
    Ok(Loaded { key: Arc::new(key), names, validity, pair: pair.clone() })
}

/// The subjectAltName DNS names (normalized as [`Loaded::names`]) and the validity of a certificate.
///
/// # Errors
/// The certificate does not parse; the message says where.
pub fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, Validity), String> {
    let (_, x509) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let validity = Validity {
        not_before: x509.validity().not_before.timestamp(),
        not_after: x509.validity().not_after.timestamp(),
    };
    let mut names = Vec::new();
    if let Some(san) = x509.subject_alternative_name().map_err(|e| e.to_string())? {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                let dns = normalize(dns);
                if !names.contains(&dns) {
                    names.push(dns);
                }
            }
        }
    }
    Ok((names, validity))
}

/// A DNS name as SNI compares it: lowercase, without a trailing dot.
#[must_use]
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    let file = std::fs::File::open(path).map_err(|source| CertError::Read { path: path.to_path_buf(), source })?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CertError::Read { path: path.to_path_buf(), source })?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(CertError::TooLarge { path: path.to_path_buf() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
