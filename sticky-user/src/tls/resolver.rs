//! SNI: which certificate a handshake gets. An exact name first, then a `*.` wildcard (one label, as
//! RFC 6125 says), then the default certificate or a refusal (configurable); a connection offering
//! `acme-tls/1` gets only a pending TLS-ALPN-01 challenge certificate. The table is swapped whole by
//! the reloader, so a handshake is one atomic load and never waits.
//!
//! When several certificates carry a name, the one that expires last wins (so a renewed certificate
//! takes over from the old one as soon as both are loaded), among those whose key can sign with a
//! scheme the client offers (so an ECDSA and an RSA certificate for one name serve both kinds of
//! client). The default certificate is the first one of the sources, in their order: the first
//! `--tls-cert`, else the first pair of the first directory.

use std::{borrow::Cow, collections::HashMap, path::PathBuf, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{
    SignatureScheme,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use crate::tls::{
    cert::Loaded,
    challenge::{ACME_TLS_ALPN, Challenges},
};

/// What a handshake for a name no certificate carries (or without SNI) gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownName {
    /// The default certificate (the client will most likely reject it, but sees whose server it is).
    #[default]
    Default,
    /// A handshake failure: nothing about the configured names is disclosed.
    Reject,
}

/// The certificates in force, indexed by name.
#[derive(Debug, Default)]
pub struct Table {
    /// In source order; the first is the default.
    certs: Vec<Arc<Loaded>>,
    /// Exact name -> candidates, best first.
    exact: HashMap<String, Vec<usize>>,
    /// Parent of a wildcard (`a.b` for `*.a.b`) -> candidates, best first.
    wildcard: HashMap<String, Vec<usize>>,
}

/// The expiry facts of one certificate, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The certificate file.
    pub cert: PathBuf,
    /// Its names.
    pub names: Vec<String>,
    /// Its not-after time, seconds since the UNIX epoch.
    pub not_after: i64,
}

impl Table {
    /// Indexes `certs` (in source order: the first is the default).
    #[must_use]
    pub fn new(certs: Vec<Arc<Loaded>>) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, cert) in certs.iter().enumerate() {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_default().push(i),
                    None => exact.entry(name.clone()).or_default().push(i),
                }
            }
        }
        // best first: the latest expiry, then source order (a stable sort keeps it for ties)
        for list in exact.values_mut().chain(wildcard.values_mut()) {
            list.sort_by_key(|&i| std::cmp::Reverse(certs[i].validity.not_after));
        }
        Self { certs, exact, wildcard }
    }

    /// The certificates, in source order.
    #[must_use]
    pub fn certs(&self) -> &[Arc<Loaded>] {
        &self.certs
    }

    /// Whether a certificate carries `name` exactly or by wildcard.
    #[must_use]
    pub fn covers(&self, name: &str) -> bool {
        self.by_name(&crate::tls::cert::normalize(name)).is_some()
    }

    /// The certificate for a `ClientHello`'s SNI and signature schemes (see the module docs).
    #[must_use]
    pub fn pick(&self, sni: Option<&str>, schemes: &[SignatureScheme], unknown: UnknownName) -> Option<&Arc<Loaded>> {
        let named = sni.and_then(|name| {
            // rustls hands SNI on lowercase already; only an unusual caller pays for a copy
            let name = if name.ends_with('.') || name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(crate::tls::cert::normalize(name))
            } else {
                Cow::Borrowed(name)
            };
            self.by_name(&name)
        });
        match named {
            Some(candidates) => self.choose(candidates, schemes),
            None => match unknown {
                UnknownName::Default => self.certs.first(),
                UnknownName::Reject => None,
            },
        }
    }

    fn by_name(&self, name: &str) -> Option<&[usize]> {
        if let Some(list) = self.exact.get(name) {
            return Some(list);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).map(Vec::as_slice)
    }

    /// The first candidate whose key can sign with one of `schemes`, else the first (the handshake then
    /// fails either way, with the best certificate). `None` only for an empty list, which `new` never
    /// makes.
    fn choose(&self, candidates: &[usize], schemes: &[SignatureScheme]) -> Option<&Arc<Loaded>> {
        let mut certs = candidates.iter().filter_map(|&i| self.certs.get(i));
        let first = certs.next()?;
        if candidates.len() == 1 || first.key.key.choose_scheme(schemes).is_some() {
            return Some(first);
        }
        Some(certs.find(|c| c.key.key.choose_scheme(schemes).is_some()).unwrap_or(first))
    }

    /// Expiry facts of every certificate, in source order.
    #[must_use]
    pub fn expiry(&self) -> Vec<Expiry> {
        self.certs
            .iter()
            .map(|c| Expiry { cert: c.pair.cert.clone(), names: c.names.clone(), not_after: c.validity.not_after })
            .collect()
    }
}

/// The rustls certificate resolver: the current [`Table`], the unknown-name policy and the pending
/// TLS-ALPN-01 challenges.
#[derive(Debug)]
pub struct Resolver {
    table: ArcSwap<Table>,
    unknown: UnknownName,
    challenges: Arc<Challenges>,
}

impl Resolver {
    /// An empty resolver (every handshake fails until a table is published).
    #[must_use]
    pub fn new(unknown: UnknownName, challenges: Arc<Challenges>) -> Self {
        Self { table: ArcSwap::from_pointee(Table::default()), unknown, challenges }
    }

    /// Puts `table` in force for the next handshakes; handshakes under way keep the one they loaded.
    pub fn publish(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    /// The table in force.
    #[must_use]
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Expiry facts of the certificates in force, for metrics (`not_after` per certificate).
    #[must_use]
    pub fn expiry(&self) -> Vec<Expiry> {
        self.table.load().expiry()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737: a validation connection gets the challenge certificate or nothing, never a
            // real certificate
            return hello.server_name().and_then(|name| self.challenges.tls_alpn01(&crate::tls::cert::normalize(name)));
        }
        let table = self.table.load();
        table.pick(hello.server_name(), hello.signature_schemes(), self.unknown).map(|c| c.key.clone())
    }
}

#[cfg(test)]
mod tests;
