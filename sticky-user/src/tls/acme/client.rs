//! The ACME client (RFC 8555, with instant-acme): the account kept in the ACME directory, orders
//! proven by HTTP-01 or TLS-ALPN-01, a CSR for a fresh P-256 key, the chain downloaded.

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request as HttpRequest;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use tokio::sync::OnceCell;

use crate::tls::{
    acme::{
        issue::{AnswerError, Answers, Issued, Issuer, Request, blocking},
        storage::{Storage, StorageError},
    },
    challenge::{Answer, Kind},
};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The longest one HTTP request to the CA may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response read from the CA (a certificate chain is a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The longest an order may wait for validation, then for issuance.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// Where and as whom to order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The CA's directory URL.
    pub directory_url: String,
    /// Contact URLs for the account (`mailto:ops@example.com`); may be empty.
    pub contact: Vec<String>,
    /// A PEM root to trust for the CA's own HTTPS besides Mozilla's roots (a private CA, pebble).
    pub ca_root: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { directory_url: LETS_ENCRYPT.to_owned(), contact: Vec::new(), ca_root: None }
    }
}

/// Why an ACME order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The extra root cannot be read or used.
    #[error("ACME CA root {}", path.display())]
    CaRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTPS client cannot be set up.
    #[error("ACME client: TLS set-up")]
    ClientTls {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The account cannot be created or restored.
    #[error("ACME account at {directory}")]
    Account {
        /// The CA's directory URL.
        directory: String,
        /// instant-acme's reason.
        #[source]
        source: instant_acme::Error,
    },
    /// The stored account does not parse.
    #[error("ACME account file in {}", dir.display())]
    AccountFile {
        /// The ACME directory.
        dir: PathBuf,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// A step of the order failed at the CA.
    #[error("ACME order for {names}: {step}")]
    Order {
        /// The names, comma-separated.
        names: String,
        /// The step (`new order`, `challenge`, `validation`, `finalize`, `download`).
        step: &'static str,
        /// instant-acme's reason (the CA's problem document, if it sent one).
        #[source]
        source: instant_acme::Error,
    },
    /// The CA offers no challenge of the configured type.
    #[error("ACME order for {name}: the CA offers no {kind} challenge")]
    NoChallenge {
        /// The name.
        name: String,
        /// The challenge type.
        kind: Kind,
    },
    /// An authorization is neither pending nor valid (the CA refused the name).
    #[error("ACME order for {name}: the authorization is {status:?}")]
    Authorization {
        /// The name.
        name: String,
        /// Its status.
        status: AuthorizationStatus,
    },
    /// Validation failed: the order became invalid.
    #[error("ACME order for {names}: the CA could not validate the challenges (order {status:?})")]
    Invalid {
        /// The names, comma-separated.
        names: String,
        /// The order's status.
        status: OrderStatus,
    },
    /// The CSR cannot be made.
    #[error("ACME order for {names}: failed to make the key and CSR")]
    Csr {
        /// The names, comma-separated.
        names: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// An answer cannot be published.
    #[error("ACME order: failed to publish a challenge answer")]
    Answer(#[from] AnswerError),
    /// The ACME directory cannot be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The instant-acme [`Issuer`]. The account is restored or created on the first order (only the
/// leading instance orders, so only it creates the account).
pub struct AcmeClient {
    settings: Settings,
    storage: Storage,
    http: Http,
    account: OnceCell<Account>,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the HTTP client and the account (which holds the account key) have no Debug: both left out
        f.debug_struct("AcmeClient")
            .field("settings", &self.settings)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// The account as stored: the credentials and the directory they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl AcmeClient {
    /// A client for `settings`, keeping its account in `storage`.
    ///
    /// # Errors
    /// The extra root cannot be read.
    pub fn new(settings: Settings, storage: Storage) -> Result<Self, AcmeError> {
        let http = Http::new(settings.ca_root.as_deref())?;
        Ok(Self { settings, storage, http, account: OnceCell::new() })
    }

    async fn account(&self) -> Result<&Account, AcmeError> {
        self.account.get_or_try_init(|| self.restore_or_create()).await
    }

    async fn restore_or_create(&self) -> Result<Account, AcmeError> {
        let directory = self.settings.directory_url.clone();
        let account_error = |source| AcmeError::Account { directory: directory.clone(), source };
        let storage = self.storage.clone();
        if let Some(json) = blocking(move || storage.read_account()).await? {
            let stored: StoredAccount = serde_json::from_str(&json)
                .map_err(|source| AcmeError::AccountFile { dir: self.storage.dir().to_path_buf(), source })?;
            if stored.directory == directory {
                return Account::builder_with_http(Box::new(self.http.clone()))
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(account_error);
            }
            tracing::info!(old = %stored.directory, new = %directory, "acme: another CA is configured, creating an account there");
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
            .create(
                &NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false },
                directory.clone(),
                None,
            )
            .await
            .map_err(account_error)?;
        let json = serde_json::to_string(&StoredAccount { directory: directory.clone(), credentials })
            .map_err(|source| AcmeError::AccountFile { dir: self.storage.dir().to_path_buf(), source })?;
        let storage = self.storage.clone();
        blocking(move || storage.write_account(&json)).await?;
        tracing::info!(directory = %directory, account = %account.id(), "acme: account created");
        Ok(account)
    }

    async fn order(
        &self,
        request: &Request,
        answers: &Answers,
        published: &mut Vec<String>,
    ) -> Result<Issued, AcmeError> {
        let names = request.names().join(", ");
        let step = |step: &'static str| {
            let names = names.clone();
            move |source| AcmeError::Order { names, step, source }
        };
        let kind = request.challenge();
        let acme_kind = match kind {
            Kind::Http01 => ChallengeType::Http01,
            Kind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let account = self.account().await?;
        let ids: Vec<Identifier> = request.names().iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(step("new order"))?;

        // 1. publish every pending authorization's answer, then give the other instances time to see them
        let mut pending = 0;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(step("authorization"))?;
            let name = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => return Err(AcmeError::Authorization { name, status }),
            }
            let challenge = authorization
                .challenge(acme_kind.clone())
                .ok_or_else(|| AcmeError::NoChallenge { name: name.clone(), kind })?;
            let id = match kind {
                Kind::Http01 => challenge.token.clone(),
                Kind::TlsAlpn01 => name,
            };
            let key_authorization = challenge.key_authorization().as_str().to_owned();
            answers.publish(Answer { kind, id: id.clone(), key_authorization }).await?;
            published.push(id);
            pending += 1;
        }
        if pending > 0 {
            answers.settle().await;
            // 2. tell the CA to validate (the authorizations are cached: no request to list them again)
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization.map_err(step("authorization"))?;
                if authorization.status != AuthorizationStatus::Pending {
                    continue;
                }
                let name = authorization.identifier().to_string();
                let mut challenge =
                    authorization.challenge(acme_kind.clone()).ok_or(AcmeError::NoChallenge { name, kind })?;
                challenge.set_ready().await.map_err(step("challenge"))?;
            }
        }
        let retry = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retry).await.map_err(step("validation"))?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Invalid { names, status });
        }

        // 3. a fresh key for every certificate: a renewal never reuses the old one
        let csr_error = |source| AcmeError::Csr { names: names.clone(), source };
        let key = rcgen::KeyPair::generate().map_err(csr_error)?;
        let mut params = rcgen::CertificateParams::new(request.names().to_vec()).map_err(csr_error)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(csr_error)?;
        order.finalize_csr(csr.der()).await.map_err(step("finalize"))?;
        let chain_pem = order.poll_certificate(&retry).await.map_err(step("download"))?;
        Ok(Issued { chain_pem, key_pem: key.serialize_pem() })
    }
}

impl Issuer for AcmeClient {
    type Error = AcmeError;

    async fn issue(&self, request: &Request, answers: &Answers) -> Result<Issued, AcmeError> {
        let mut published = Vec::new();
        let result = self.order(request, answers, &mut published).await;
        for id in published {
            answers.withdraw(request.challenge(), id).await;
        }
        result
    }
}

/// instant-acme's HTTP client: hyper over rustls (ring) trusting Mozilla's roots and the optional
/// extra root, with a timeout on every request (instant-acme has none of its own).
#[derive(Clone)]
struct Http {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl Http {
    fn new(ca_root: Option<&std::path::Path>) -> Result<Self, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_root {
            let root_error = |source: Box<dyn std::error::Error + Send + Sync>| AcmeError::CaRoot {
                path: path.to_path_buf(),
                source,
            };
            let der = CertificateDer::from_pem_file(path).map_err(|e| root_error(Box::new(e)))?;
            roots.add(der).map_err(|e| root_error(Box::new(e)))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|source| AcmeError::ClientTls { source })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector) })
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: HttpRequest<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(req);
        Box::pin(async move {
            // the head and the whole body within the timeout, the body bounded: a stalled or
            // misbehaving CA costs an order (retried later), never a stuck task or unbounded memory
            let whole = async {
                let (parts, body) = response.await.map_err(|e| instant_acme::Error::Other(Box::new(e)))?.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(instant_acme::Error::Other)?
                    .to_bytes();
                Ok(BytesResponse::from(http::Response::from_parts(parts, Full::new(body))))
            };
            tokio::time::timeout(REQUEST_TIMEOUT, whole)
                .await
                .unwrap_or(Err(instant_acme::Error::Str("the ACME CA did not answer within 30 s")))
        })
    }
}
