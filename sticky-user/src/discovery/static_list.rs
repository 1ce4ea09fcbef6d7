//! Static discovery: the services of `--backend` flags or a `--config` file, published once.
//!
//! Host names are resolved once at start (the first address wins). Backends without a name get one
//! derived from their URL with the cookie key ([`crate::cookie::Keys::derive_name`]): stable across
//! restarts and instances that share the key, and it does not give the address away.

use std::sync::Arc;

use crate::{
    config::ServiceConfig,
    cookie::Keys,
    discovery::{Discovery, DiscoveryError, Publisher},
    model::{AdminState, Backend, BackendId, Catalog, ServiceEntry},
};

/// The configured services.
#[derive(Debug)]
pub struct StaticList {
    services: Vec<ServiceConfig>,
    keys: Keys,
}

impl StaticList {
    /// Static services; `keys` names unnamed backends.
    #[must_use]
    pub fn new(services: Vec<ServiceConfig>, keys: Keys) -> Self {
        Self { services, keys }
    }

    /// Resolves and names every backend.
    ///
    /// # Errors
    /// A host name does not resolve.
    pub async fn catalog(&self) -> Result<Catalog, DiscoveryError> {
        let mut services = Vec::with_capacity(self.services.len());
        for s in &self.services {
            let mut backends = Vec::with_capacity(s.backends.len());
            for b in &s.backends {
                let resolve_err =
                    |source| DiscoveryError::Resolve { service: s.spec.name.clone(), url: b.url.clone(), source };
                let addr = match b.host.parse::<std::net::IpAddr>() {
                    Ok(ip) => std::net::SocketAddr::new(ip, b.port),
                    Err(_) => tokio::net::lookup_host((b.host.as_str(), b.port))
                        .await
                        .map_err(resolve_err)?
                        .next()
                        .ok_or_else(|| resolve_err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?,
                };
                let name = b.name.clone().unwrap_or_else(|| self.keys.derive_name(&b.url));
                backends.push(Backend {
                    id: BackendId(name.into()),
                    addr,
                    weight: b.weight,
                    admin: AdminState::Active,
                });
            }
            services.push(ServiceEntry { spec: s.spec.clone(), backends });
        }
        Ok(Catalog { services })
    }
}

impl Discovery for StaticList {
    async fn run(self, publish: Publisher) -> Result<(), DiscoveryError> {
        publish.send_replace(Arc::new(self.catalog().await?));
        std::future::pending().await
    }
}
