//! `sticky run` as one application: the configuration, one discovery (static or Swarm) publishing
//! one catalog, the parts that serve it (the http proxy, tcp mode, or both with `--docker`), one
//! admin listener for all of them, and one graceful stop. `sticky demo` and `sticky inspect` are
//! built from the same pieces.

pub mod demo;
pub mod http;
pub mod inspect;
mod keys;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::{sync::watch, task::JoinHandle};

pub use self::{
    demo::demo,
    http::{HttpServer, Sockets},
    inspect::inspect,
    keys::load_keys,
};
use crate::{
    admin::{
        self, Admin,
        metrics::{self, Sources},
        socket::{SocketError, SocketGuard},
    },
    cli::RunArgs,
    config::{self, Config, ConfigError},
    cookie::{CookieError, Keys},
    datapath::DatapathError,
    discovery::{
        Discovery, DiscoveryError,
        docker::{self, Api},
        static_list::StaticList,
        swarm::{SwarmDiscovery, SwarmOptions},
    },
    listen::{self, ListenError, Source},
    model::Catalog,
    splice,
    state::Routing,
    tcp::{TcpError, TcpMode},
};

/// Errors starting sticky.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The `--config` file cannot be read.
    #[error("failed to read config file {path}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The flags or the file are invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The access log's file cannot be opened (or its writer cannot start).
    #[error("cannot open the access log {path}")]
    AccessLog {
        /// The file (`-`: stdout).
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The demo's admin token file cannot be written.
    #[error("cannot write the demo's admin token file {path}")]
    DemoToken {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cookie key file cannot be read.
    #[error("failed to read cookie key file {path}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key is unusable.
    #[error("unusable cookie key in {path}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CookieError,
    },
    /// A listener cannot be bound.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listening sockets cannot be bound or taken from the holder.
    #[error("cannot get the listening sockets")]
    Listen(#[from] ListenError),
    /// The admin token file (`--admin-token-file`) cannot be used.
    #[error(transparent)]
    AdminToken(#[from] admin::access::TokenError),
    /// The admin socket (`--admin-socket`) cannot be served.
    #[error("cannot serve the admin API on its unix socket")]
    AdminSocket(#[from] SocketError),
    /// Discovery failed before its first catalog.
    #[error("discovery failed before publishing its first catalog")]
    Discovery(#[from] DiscoveryError),
    /// Discovery ended without publishing anything.
    #[error("discovery ended before publishing any service")]
    NoCatalog,
    /// A worker thread could not start.
    #[error("failed to start worker thread {worker}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS listener's certificates cannot be loaded (an explicit pair that does not load, a
    /// directory that cannot be listed).
    #[error("TLS: cannot load the certificates")]
    TlsCerts(#[from] crate::tls::reload::ReloadError),
    /// ACME cannot start (its state directory, its client).
    #[error("ACME: cannot start")]
    Acme(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS server side cannot be set up.
    #[error("TLS: cannot set up the server")]
    TlsServer(#[from] crate::tls::server::ServerError),
    /// tcp mode cannot serve.
    #[error("tcp mode cannot start")]
    Tcp(#[from] TcpError),
    /// `sticky inspect`: the data path cannot load or attach.
    #[error("the eBPF data path is unavailable")]
    Datapath(#[from] DatapathError),
    /// `sticky inspect`: a print interval that is not a positive number of seconds.
    #[error("--interval {interval}: must be a positive number of seconds")]
    Interval {
        /// The interval given.
        interval: f64,
    },
}

/// `sticky run`: configures from `args` (and the `--config` file), serves until `stop` completes,
/// then stops gracefully.
///
/// # Errors
/// The configuration is invalid, or a part cannot start.
pub async fn run(args: &RunArgs, stop: impl Future<Output = ()>) -> Result<(), AppError> {
    let file = match &args.config {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|source| AppError::ConfigFile { path: path.clone(), source })?)
        }
        None => None,
    };
    let config = config::build(args, file.as_deref())?;
    // only the proxy signs cookies
    let keys = config.http.as_ref().map(|http| load_keys(&http.key_files)).transpose()?;
    let running = start(config, keys).await?;
    stop.await;
    running.shutdown().await;
    Ok(())
}

/// What `sticky run` started.
#[derive(Debug)]
pub struct Running {
    /// The http proxy, if it runs.
    pub http: Option<HttpServer>,
    /// Address of the admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// The admin socket, if any; dropping it removes the socket file if it is still this instance's.
    pub admin_socket: Option<SocketGuard>,
    /// tcp mode's user-space listeners' stop, and its numbers (relays still open), if it runs there.
    pub tcp: Option<(Arc<watch::Sender<bool>>, crate::tcp::TcpMetrics)>,
}

impl Running {
    /// Stops gracefully: the proxy and tcp mode's user-space listeners stop accepting (a successor
    /// sharing the sockets through the holder takes the new connections), the proxy finishes the
    /// requests in flight, and open tcp relays get the rest of the shutdown timeout; the kernel path
    /// ends with the process.
    pub async fn shutdown(&self) {
        let started = tokio::time::Instant::now();
        if let Some((stop, _)) = &self.tcp {
            stop.send_replace(true);
        }
        if let Some(http) = &self.http {
            http.shutdown().await;
        }
        if let Some((_, metrics)) = &self.tcp {
            let grace = self.http.as_ref().map_or(config::defaults::SHUTDOWN_TIMEOUT, HttpServer::grace);
            while metrics.relayed() > 0 && started.elapsed() < grace {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let left = metrics.relayed();
            if left > 0 {
                tracing::warn!(
                    connections = left,
                    "tcp relays still open at the end of the shutdown timeout; closing them"
                );
            }
        }
    }
}

/// Starts every part of `config`: discovery first (waiting for its first catalog), then the proxy
/// (its cookies signed with `keys`, a random key if none) and tcp mode on it, then the admin
/// listener. Must be called on a tokio runtime, which then carries the control tasks.
///
/// # Errors
/// Discovery, bind, thread or tcp mode errors.
pub async fn start(config: Config, keys: Option<Keys>) -> Result<Running, AppError> {
    let keys = keys.unwrap_or_else(Keys::random);
    // a missing socket directory is a deployment mistake: say so before waiting for discovery
    if let Some(path) = &config.admin_socket {
        admin::socket::check_directory(path)?;
    }
    if let Some(log) = &config.access_log {
        crate::access_log::install(log).map_err(|source| AppError::AccessLog {
            path: log.file.as_ref().map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            source,
        })?;
    }
    let tcp_default = config.tcp.as_ref().map_or(config::defaults::AFFINITY_TIMEOUT, |t| t.affinity_timeout);
    let discovery_status = config.swarm.as_ref().map(|_| Arc::new(crate::discovery::status::Status::default()));
    let (catalogs, discovery) = if let Some(swarm) = &config.swarm {
        let api = Api::new(&swarm.host).map_err(DiscoveryError::from)?;
        let options = SwarmOptions {
            interval: swarm.interval,
            own_container: docker::own_container_id(),
            affinity_timeout: tcp_default,
            status: discovery_status.clone().unwrap_or_default(),
        };
        start_discovery(SwarmDiscovery::new(api, options)).await?
    } else {
        let http = config.http.as_ref().map(|h| StaticList::http(h.services.clone(), &keys));
        let tcp = config.tcp.as_ref().and_then(|t| Some(StaticList::tcp(t.service.clone()?, t.affinity_timeout)));
        start_discovery(http.or(tcp).unwrap_or_default()).await?
    };
    let first = catalogs.borrow().clone();
    let mut sources = Sources::default();
    let mut view = admin::report::Sources {
        source: config.source,
        discovery: discovery_status,
        ..admin::report::Sources::default()
    };
    let source = Source::new(config.listen_from.as_deref());

    let http = match &config.http {
        Some(http) => {
            let routing = Arc::new(Routing::new(keys));
            routing.publish(&first);
            if !http.key_files.is_empty() {
                tokio::spawn(keys::follow(http.key_files.clone(), routing.clone()));
            }
            let pinned: Vec<&str> =
                first.http.iter().filter(|s| s.spec.splice.pinned).map(|s| s.spec.name.as_str()).collect();
            let splicer = splice::load(config.no_ebpf, http.limits.max_spliced, &pinned);
            if let Some(splicer) = splicer.clone() {
                sources.splice = Some(Box::new(move || splicer.snapshot()));
            }
            let sockets = Sockets::take(http, &source, listen::HOLDER_WAIT).await?;
            let server = HttpServer::start(http, routing, splicer, sockets)?;
            if let Some(feed) = server.acme.clone() {
                feed.update(&first.http);
                let mut catalogs = catalogs.clone();
                tokio::spawn(async move {
                    while catalogs.changed().await.is_ok() {
                        let catalog = catalogs.borrow_and_update().clone();
                        feed.update(&catalog.http);
                    }
                });
            }
            sources.http = Some((server.routing.clone(), server.stats.clone()));
            view.proxy = Some(server.stats.clone());
            sources.tls.clone_from(&server.tls);
            Some(server)
        }
        None => None,
    };
    let mut tcp_stop = None;
    let tcp = match &config.tcp {
        Some(tcp) => {
            let mode = TcpMode::start(tcp, &first.tcp, source.clone()).await?;
            let metrics = mode.metrics();
            view.tcp = Some(metrics.clone());
            tcp_stop = mode.stopper().map(|stop| (stop, metrics.clone()));
            sources.tcp = Some(Box::new(move || metrics.snapshot()));
            Some(mode)
        }
        None => None,
    };
    tokio::spawn(follow(catalogs, discovery, http.as_ref().map(|h| h.routing.clone()), tcp));
    if let Source::Holder { path, taken } = &source {
        tokio::spawn(crate::hold::standin::run(path.clone(), taken.clone()));
    }

    let (admin, admin_socket) =
        start_admin(&config, metrics::registry(sources), http.as_ref().map(|h| h.routing.clone()), view).await?;
    let workers = config.http.as_ref().map(|h| h.workers);
    tracing::info!(
        listen = %crate::telemetry::Maybe(http.as_ref().map(|h| h.listen)),
        listen_tls = %crate::telemetry::Maybe(http.as_ref().and_then(|h| h.listen_tls)), workers = %crate::telemetry::Maybe(workers),
        admin = %crate::telemetry::Maybe(admin),
        admin_socket = %crate::telemetry::Maybe(config.admin_socket.as_ref().map(|p| p.display())),
        "sticky is serving"
    );
    Ok(Running { http, admin, admin_socket, tcp: tcp_stop })
}

/// The admin API, one state for both ways in (the TCP listener and the unix socket), if either is
/// configured: the listener's address and the socket's guard.
async fn start_admin(
    config: &Config,
    registry: prometheus_client::registry::Registry,
    routing: Option<Arc<Routing>>,
    view: admin::report::Sources,
) -> Result<(Option<SocketAddr>, Option<SocketGuard>), AppError> {
    if config.admin.is_none() && config.admin_socket.is_none() {
        return Ok((None, None));
    }
    let access = admin::access::Access::load(config.admin_token_file.as_deref(), config.admin_read_only)?
        .with_hosts(config.admin_hosts.clone());
    if let Some(addr) = config.admin.filter(|a| !a.ip().is_loopback()) {
        tracing::warn!(%addr, "the admin API listens beyond loopback: reads (metrics, backends) are open to whoever reaches it");
    }
    let api = Arc::new(Admin { registry, routing, access, view });
    let admin = match config.admin {
        Some(addr) => Some(admin::spawn(addr, api.clone()).await.map_err(|source| AppError::Bind { addr, source })?),
        None => None,
    };
    let socket = match &config.admin_socket {
        Some(path) => Some(admin::socket::spawn(path, api)?),
        None => None,
    };
    Ok((admin, socket))
}

/// Runs `discovery` on a task and waits for its first catalog.
async fn start_discovery(
    discovery: impl Discovery,
) -> Result<(watch::Receiver<Arc<Catalog>>, JoinHandle<Result<(), DiscoveryError>>), AppError> {
    let (tx, mut rx) = watch::channel(Arc::new(Catalog::default()));
    let mut task = tokio::spawn(discovery.run(tx));
    tokio::select! {
        changed = rx.changed() => {
            if changed.is_err() {
                return Err(AppError::NoCatalog);
            }
        }
        ended = &mut task => {
            return Err(match ended {
                Ok(Err(e)) => AppError::Discovery(e),
                _ => AppError::NoCatalog,
            });
        }
    }
    rx.borrow_and_update();
    Ok((rx, task))
}

/// Hands every catalog discovery publishes to the parts that run, until discovery ends.
async fn follow(
    mut catalogs: watch::Receiver<Arc<Catalog>>,
    discovery: JoinHandle<Result<(), DiscoveryError>>,
    routing: Option<Arc<Routing>>,
    mut tcp: Option<TcpMode>,
) {
    let control = tcp.as_ref().map(TcpMode::control);
    // the admin API's tcp drains: tcp mode serves its last services again without them
    let drained = async |control: Option<&crate::tcp::Control>| match control {
        Some(c) => c.changed().await,
        None => std::future::pending().await,
    };
    loop {
        tokio::select! {
            changed = catalogs.changed() => {
                if changed.is_err() {
                    break;
                }
                let catalog = catalogs.borrow_and_update().clone();
                if let Some(routing) = &routing {
                    routing.publish(&catalog);
                }
                if let Some(tcp) = &mut tcp {
                    tcp.update(&catalog.tcp).await;
                }
            }
            () = drained(control.as_deref()) => {
                if let Some(tcp) = &mut tcp {
                    tcp.reapply().await;
                }
            }
        }
    }
    if let Ok(Err(e)) = discovery.await {
        tracing::error!(error = %crate::telemetry::chain(&e), "discovery stopped; the last catalog stays in force");
    } else {
        tracing::warn!("discovery stopped; the last catalog stays in force");
    }
}

#[cfg(test)]
mod tests;
