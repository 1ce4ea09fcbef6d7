//! What an ACME order needs and gives: the request (names, challenge type), the issuer seam (the
//! instant-acme client, or a fake in tests), and the answers an order publishes for every instance.

use std::{future::Future, sync::Arc, time::Duration};

use crate::tls::{
    acme::storage::{Storage, StorageError},
    cert,
    challenge::{self, Answer, ChallengeError, Challenges, Kind},
};

/// One certificate to keep: its names (the first one names the files) and how to prove them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    names: Vec<String>,
    challenge: Kind,
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No name.
    #[error("an ACME certificate needs at least one name")]
    NoName,
    /// A name is a wildcard (only DNS-01 proves those, and sticky does not do DNS).
    #[error("{name}: wildcard names need the DNS-01 challenge, which sticky does not answer")]
    Wildcard {
        /// The name.
        name: String,
    },
    /// A name is not a DNS name.
    #[error("{name:?} is not a DNS name")]
    Name {
        /// The name.
        name: String,
    },
}

impl Request {
    /// A request for `names` (normalized: lowercase, no trailing dot, duplicates dropped; the first
    /// stays first) proven by `challenge`.
    ///
    /// # Errors
    /// No name, a wildcard, or a name that is not a DNS name.
    pub fn new<S: AsRef<str>>(names: &[S], challenge: Kind) -> Result<Self, RequestError> {
        let mut out: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let name = cert::normalize(name.as_ref().trim());
            if name.starts_with("*.") {
                return Err(RequestError::Wildcard { name });
            }
            if !challenge::valid_name(&name) {
                return Err(RequestError::Name { name });
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        if out.is_empty() {
            return Err(RequestError::NoName);
        }
        Ok(Self { names: out, challenge })
    }

    /// The names, the first one first.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The first name: the certificate's files are named after it.
    #[must_use]
    pub fn main(&self) -> &str {
        // never empty: `new` refuses a request without a name
        &self.names[0]
    }

    /// How the names are proven.
    #[must_use]
    pub fn challenge(&self) -> Kind {
        self.challenge
    }

    /// Whether a certificate carrying `names` (in any order) is one for this request.
    #[must_use]
    pub fn matches(&self, names: &[String]) -> bool {
        names.len() == self.names.len() && self.names.iter().all(|n| names.contains(n))
    }
}

/// A certificate as the CA issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The chain, PEM, leaf first.
    pub chain_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// Something that gets certificates issued: the ACME client, or a fake in tests.
pub trait Issuer: Send + Sync + 'static {
    /// Its error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Orders a certificate for `request`, publishing challenge answers through `answers` (and
    /// withdrawing them when the order ends, whatever the outcome).
    fn issue(&self, request: &Request, answers: &Answers) -> impl Future<Output = Result<Issued, Self::Error>> + Send;
}

/// Why an answer cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// It cannot be stored for the other instances.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// It cannot be served here.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
}

/// Where an order publishes its challenge answers: the shared directory (every instance serves what
/// is there) and this instance's own table (served at once).
#[derive(Clone, Debug)]
pub struct Answers {
    storage: Storage,
    challenges: Arc<Challenges>,
    propagation: Duration,
}

impl Answers {
    /// Answers published into `storage` and `challenges`; [`Answers::settle`] waits `propagation`,
    /// long enough for the other instances' challenge sync to read the directory.
    #[must_use]
    pub fn new(storage: Storage, challenges: Arc<Challenges>, propagation: Duration) -> Self {
        Self { storage, challenges, propagation }
    }

    /// Publishes one answer.
    ///
    /// # Errors
    /// It cannot be stored or served.
    pub async fn publish(&self, answer: Answer) -> Result<(), AnswerError> {
        let storage = self.storage.clone();
        let stored = answer.clone();
        blocking(move || storage.write_challenge(&stored)).await?;
        let challenges = self.challenges.clone();
        let (kind, id) = (answer.kind, answer.id.clone());
        // the TLS-ALPN-01 certificate is made here: a CPU-bound moment, off the async threads
        if let Err(e) = blocking(move || challenges.insert(&answer)).await {
            // not served here, so not left for the others either
            self.withdraw(kind, id).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Waits until the answers published so far are served by every instance (see [`Answers::new`]).
    pub async fn settle(&self) {
        tokio::time::sleep(self.propagation).await;
    }

    /// Withdraws an answer (errors are logged: a stale answer only costs a file).
    pub async fn withdraw(&self, kind: Kind, id: String) {
        self.challenges.remove(kind, &id);
        let storage = self.storage.clone();
        let id2 = id.clone();
        if let Err(e) = blocking(move || storage.remove_challenge(kind, &id2)).await {
            tracing::warn!(kind = %kind, id = %id, error = %e, "acme: failed to remove a challenge answer");
        }
    }
}

/// Runs blocking file work (a shared volume may stall) off the async threads. A panic in it is
/// re-raised.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // only a runtime shutting down cancels a blocking task, and it drops this future next
        Err(_) => std::future::pending().await,
    }
}
