//! Where certificates come from: `--tls-cert`/`--tls-key` pairs, directories scanned for pairs, and
//! Swarm secrets (a directory like any other). Flag validation and the naming rule are pure; [`scan`]
//! is the one directory read.
//!
//! The naming rule of a scanned directory: `NAME.key` is the private key of `NAME.crt` or `NAME.pem`
//! beside it (exactly one of the two). Names starting with `.` are skipped (editors' temporary files,
//! the `..data` links of mounted secrets, the temporary files of atomic writes), and so are files of
//! any other extension, so a directory may hold other things, such as `/run/secrets` with the cookie
//! key. A key without a certificate, a certificate without a key, or a key with both `NAME.crt` and
//! `NAME.pem` is a problem: reported (the caller logs it), never a guess. Extensions are lowercase.
//! This also reads Kubernetes' `tls.crt`/`tls.key` and sticky's own ACME directory (`certs/`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    path::{Path, PathBuf},
};

/// Where Docker mounts a service's Swarm secrets: a stack file names a secret's `target` `site.crt`
/// and another `site.key`, and this directory, scanned, gives the pair.
pub const SECRETS_DIR: &str = "/run/secrets";

/// Extensions of a certificate chain in a scanned directory, in no order of preference.
pub const CERT_EXTENSIONS: &[&str] = &["crt", "pem"];

/// Extension of a private key in a scanned directory.
pub const KEY_EXTENSION: &str = "key";

/// A certificate chain (PEM, leaf first) and its private key (PEM), as two files.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// The chain: the leaf first, then the intermediates (a root is allowed and ignored by clients).
    pub cert: PathBuf,
    /// The private key of the leaf: PKCS#8, SEC1 (EC) or PKCS#1 (RSA), unencrypted.
    pub key: PathBuf,
}

/// One place certificates are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An explicit pair (`--tls-cert`/`--tls-key`): it must load when sticky starts.
    Pair(Pair),
    /// A directory scanned with the naming rule each time it is read; pairs come and go with files.
    Dir(PathBuf),
}

impl Source {
    /// The Swarm secrets directory ([`SECRETS_DIR`]) as a source.
    #[must_use]
    pub fn secrets() -> Self {
        Self::Dir(PathBuf::from(SECRETS_DIR))
    }
}

/// Why certificate sources cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The pair flags do not pair up.
    #[error("{certs} --tls-cert but {keys} --tls-key: give one --tls-key for each --tls-cert, in the same order")]
    Unpaired {
        /// How many certificates were given.
        certs: usize,
        /// How many keys were given.
        keys: usize,
    },
    /// The same certificate file is given twice.
    #[error("--tls-cert {} is given twice", path.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
    },
    /// A flag has an empty value.
    #[error("{flag} has an empty path")]
    Empty {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
    },
    /// A directory cannot be listed.
    #[error("failed to list certificate directory {}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// Pairs the values of the repeatable `--tls-cert` and `--tls-key` flags (or the TOML file's lists) in
/// order: the first certificate with the first key, and so on. The first pair is the default
/// certificate (see [`crate::tls::resolver`]).
///
/// # Errors
/// The counts differ, a path is empty, or a certificate is given twice.
pub fn pairs(certs: &[PathBuf], keys: &[PathBuf]) -> Result<Vec<Pair>, SourceError> {
    if certs.len() != keys.len() {
        return Err(SourceError::Unpaired { certs: certs.len(), keys: keys.len() });
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(certs.len());
    for (cert, key) in certs.iter().zip(keys) {
        if cert.as_os_str().is_empty() {
            return Err(SourceError::Empty { flag: "--tls-cert" });
        }
        if key.as_os_str().is_empty() {
            return Err(SourceError::Empty { flag: "--tls-key" });
        }
        if !seen.insert(cert) {
            return Err(SourceError::Duplicate { path: cert.clone() });
        }
        out.push(Pair { cert: cert.clone(), key: key.clone() });
    }
    Ok(out)
}

/// What the naming rule finds in one directory listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Complete pairs, sorted by name.
    pub pairs: Vec<Pair>,
    /// Files the rule cannot pair, one sentence each, naming the file.
    pub problems: Vec<String>,
}

/// Applies the naming rule (module docs) to the file names of `dir`. Pure: `names` is the listing.
#[must_use]
pub fn pair_names<S: AsRef<str>>(dir: &Path, names: &[S]) -> Scan {
    let mut keys = BTreeSet::new();
    let mut certs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in names {
        let name = name.as_ref();
        if name.starts_with('.') {
            continue;
        }
        let Some((stem, ext)) = name.rsplit_once('.') else { continue };
        if stem.is_empty() {
            continue;
        }
        if ext == KEY_EXTENSION {
            keys.insert(stem);
        } else if CERT_EXTENSIONS.contains(&ext) {
            certs.entry(stem).or_default().push(name);
        }
    }
    let mut scan = Scan::default();
    let stems: BTreeSet<&str> = keys.iter().copied().chain(certs.keys().copied()).collect();
    for stem in stems {
        let key = format!("{stem}.{KEY_EXTENSION}");
        match (keys.contains(stem), certs.get(stem).map(Vec::as_slice)) {
            (true, Some([cert])) => scan.pairs.push(Pair { cert: dir.join(cert), key: dir.join(key) }),
            (true, Some(several)) => scan.problems.push(format!(
                "{}: more than one certificate could be its pair ({}): keep one",
                dir.join(key).display(),
                several.join(", ")
            )),
            (true, None) => scan
                .problems
                .push(format!("{}: no {stem}.crt or {stem}.pem beside it, so it is not used", dir.join(key).display())),
            (false, Some(lone)) => {
                for cert in lone {
                    scan.problems.push(format!("{}: no {key} beside it, so it is not used", dir.join(cert).display()));
                }
            }
            (false, None) => {}
        }
    }
    scan
}

/// Lists `dir` and applies the naming rule. Names that are not UTF-8 are reported as problems.
///
/// # Errors
/// The directory cannot be listed.
pub fn scan(dir: &Path) -> Result<Scan, SourceError> {
    let read_dir = |source| SourceError::ReadDir { dir: dir.to_path_buf(), source };
    let mut names = Vec::new();
    let mut odd = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => odd.push(format!("{}: the name is not UTF-8, so it is not used", dir.join(name).display())),
        }
    }
    let mut scan = pair_names(dir, &names);
    scan.problems.extend(odd);
    Ok(scan)
}

#[cfg(test)]
mod tests;
