//! Static discovery: the http services of `--backend` flags or a `--config` file, and the tcp service
//! of `--mode tcp` with its `--backends-file`, re-read on SIGHUP.
//!
//! Host names are resolved once at start (the first address wins). Backends without a name get one
//! derived from their URL with the cookie key ([`crate::cookie::Keys::derive_name`]): stable across
//! restarts and instances that share the key, and it does not give the address away. A backends
//! file that cannot be read or parsed on SIGHUP is reported and the last catalog stays in force.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use crate::{
    config::{SERVICE, ServiceConfig, TcpServiceConfig},
    cookie::Keys,
    discovery::{Discovery, DiscoveryError, Publisher},
    model::{AdminState, Backend, BackendId, Catalog, HttpService, ServiceId, TcpService},
    signal::Hangups,
    values,
};

/// The configured services.
#[derive(Debug, Default)]
pub struct StaticList {
    http: Vec<HttpSource>,
    tcp: Option<(TcpServiceConfig, Duration)>,
}

#[derive(Debug)]
struct HttpSource {
    service: ServiceConfig,
    keys: Keys,
}

impl StaticList {
    /// Static http services; `keys` names unnamed backends.
    #[must_use]
    pub fn http(services: Vec<ServiceConfig>, keys: &Keys) -> Self {
        let http = services.into_iter().map(|service| HttpSource { service, keys: keys.clone() }).collect();
        Self { http, tcp: None }
    }

    /// The static tcp service, with the affinity lifetime of its clients.
    #[must_use]
    pub fn tcp(service: TcpServiceConfig, affinity_timeout: Duration) -> Self {
        Self { http: Vec::new(), tcp: Some((service, affinity_timeout)) }
    }

    /// Resolves and names every backend, and reads the backends file.
    ///
    /// # Errors
    /// A host name does not resolve, or the backends file cannot be read or parsed.
    pub async fn catalog(&self) -> Result<Catalog, DiscoveryError> {
        let mut http = Vec::with_capacity(self.http.len());
        for HttpSource { service: s, keys } in &self.http {
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
                let name = b.name.clone().unwrap_or_else(|| keys.derive_name(&b.url));
                backends.push(Backend {
                    id: BackendId(name.into()),
                    addr,
                    weight: b.weight,
                    admin: AdminState::Active,
                });
            }
            http.push(HttpService { spec: s.spec.clone(), backends });
        }
        let tcp = match &self.tcp {
            Some((s, affinity_timeout)) => vec![tcp_service(s, *affinity_timeout)?],
            None => Vec::new(),
        };
        Ok(Catalog { http, tcp })
    }
}

impl Discovery for StaticList {
    async fn run(self, publish: Publisher) -> Result<(), DiscoveryError> {
        let first = self.catalog().await?;
        if first.tcp.iter().any(|s| s.backends.is_empty()) {
            return Err(DiscoveryError::NoTcpBackends);
        }
        publish.send_replace(Arc::new(first));
        // only a backends file changes after start, on SIGHUP
        if self.tcp.as_ref().is_none_or(|(s, _)| s.backends_file.is_none()) {
            return std::future::pending().await;
        }
        let mut hangups = Hangups::new();
        loop {
            hangups.recv().await;
            match self.catalog().await {
                Ok(catalog) => {
                    tracing::info!(backends = ?catalog.tcp.iter().map(|s| &s.backends).collect::<Vec<_>>(), "backends file re-read");
                    publish.send_replace(Arc::new(catalog));
                }
                Err(e) => tracing::warn!(
                    error = %crate::telemetry::chain(&e),
                    "reload failed; keeping the current backends"
                ),
            }
        }
    }
}

/// The tcp service as configured now: `--backend` plus the backends file's current contents.
fn tcp_service(s: &TcpServiceConfig, affinity_timeout: Duration) -> Result<TcpService, DiscoveryError> {
    let mut backends = s.backends.clone();
    if let Some(path) = &s.backends_file {
        backends.extend(read_backends_file(path)?);
    }
    backends.sort_unstable();
    backends.dedup();
    Ok(TcpService {
        id: ServiceId(SERVICE.into()),
        name: SERVICE.into(),
        vip: s.vip,
        members: crate::model::TcpMember::by_address(&backends),
        backends,
        affinity_timeout,
        proxy_protocol: s.proxy_protocol,
        path: crate::model::TcpPath::User,
    })
}

/// Reads a backends file: one IP:PORT (or [IPv6]:PORT) per line, blank lines and `#` comments ignored.
fn read_backends_file(path: &Path) -> Result<Vec<SocketAddr>, DiscoveryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DiscoveryError::BackendsFile { path: path.to_owned(), source })?;
    parse_backends(&text).map_err(|(line, source)| DiscoveryError::BackendLine { path: path.to_owned(), line, source })
}

/// Parses backends text; `Err((line number, why))` names the first bad line.
fn parse_backends(text: &str) -> Result<Vec<SocketAddr>, (usize, values::ValueError)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(values::tcp_backend(line).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_file_lines() {
        let got = parse_backends("# three\n198.51.100.10:8000\n\n 198.51.100.11:8000 # b1\n")
            .expect("comments and blank lines must be skipped");
        let want: Vec<SocketAddr> =
            ["198.51.100.10:8000", "198.51.100.11:8000"].iter().map(|a| a.parse().expect("address")).collect();
        assert_eq!(got, want);
        let (line, e) = parse_backends("198.51.100.10\n").expect_err("a line without a port must be refused");
        assert_eq!(line, 1);
        assert!(e.to_string().contains("198.51.100.10"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_tcp_service_joins_flags_and_file_sorted_once() {
        let path = std::env::temp_dir().join(format!("sticky-static-list-{}.backends", std::process::id()));
        std::fs::write(&path, "198.51.100.12:80\n198.51.100.10:80\n").expect("temp dir must be writable");
        let config = TcpServiceConfig {
            proxy_protocol: crate::proxy_protocol::Version::Off,
            vip: "203.0.113.10:80".parse().expect("address"),
            backends: vec!["198.51.100.10:80".parse().expect("address")],
            backends_file: Some(path.clone()),
        };
        let catalog = StaticList::tcp(config, Duration::from_secs(60)).catalog().await;
        let _ = std::fs::remove_file(&path);
        let catalog = catalog.expect("the file must be read");
        let [service] = catalog.tcp.as_slice() else { panic!("one tcp service must be listed: {catalog:?}") };
        let got: Vec<String> = service.backends.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["198.51.100.10:80", "198.51.100.12:80"]);
        assert_eq!((service.name.as_str(), service.affinity_timeout), (SERVICE, Duration::from_secs(60)));
        assert!(catalog.http.is_empty());
    }
}
