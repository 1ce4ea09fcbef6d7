//! Wiring of `sticky run` and `sticky demo`: keys, discovery, routing state, worker threads, health
//! checks and the admin listener.
//!
//! Threads: `--workers N` threads each run a current-thread tokio runtime and accept on their own
//! handle of one listening socket; the calling (control) runtime runs discovery, health checks and the
//! admin API. Why not one multi-thread runtime: a connection's requests, its upstream connections and
//! the idle pool then all live on one thread (no work stealing, no cross-thread wake-ups, a lock-free
//! pool), and `--workers 1` gives the proxy exactly one core for benchmarks. Why one shared socket and
//! not SO_REUSEPORT: a second process cannot silently bind the same port and take half the traffic, and
//! the kernel hands each new connection to whichever worker is free to accept it first.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::sync::{Semaphore, watch};

use crate::{
    config::Config,
    cookie::{CookieError, Keys},
    discovery::{Discovery, DiscoveryError, static_list::StaticList},
    model::Catalog,
    proxy::{self, Settings},
    state::Shared,
};

/// Errors starting the balancer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
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
    #[error("cookie key file {path}")]
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
    /// The built-in configuration of the demo is invalid (a bug).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Discovery failed before its first catalog.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The Docker API cannot be used (`--docker`).
    #[error("docker")]
    Docker(#[source] Box<crate::docker::DockerError>),
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
}

/// Reads the cookie secret (trailing whitespace and newline ignored), or makes a random one with a warning.
///
/// # Errors
/// The file cannot be read or holds fewer than 16 bytes.
pub fn load_keys(file: Option<&Path>) -> Result<Keys, AppError> {
    let Some(path) = file else {
        tracing::warn!(
            "no --cookie-key-file: cookies are signed with a random key, so they do not survive a restart and other sticky instances reject them"
        );
        return Ok(Keys::random());
    };
    let bytes = std::fs::read(path).map_err(|source| AppError::KeyFile { path: path.to_owned(), source })?;
    Keys::from_secret(bytes.trim_ascii_end()).map_err(|source| AppError::Key { path: path.to_owned(), source })
}

/// A running balancer.
#[derive(Debug)]
pub struct Balancer {
    /// Address of the client listener.
    pub listen: SocketAddr,
    /// Address of the admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// Shared state (routing table, counters).
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Balancer {
    /// Stops accepting, lets requests in flight finish, and returns once every client connection is
    /// closed or `grace` has passed (then the remaining ones are cut when the process exits).
    /// Upgraded (WebSocket) connections are not waited for.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.stats.active_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left = self.shared.stats.active_connections();
        if left > 0 {
            tracing::warn!(connections = left, "shutdown grace period over; closing the remaining connections");
        } else {
            tracing::info!("all client connections closed; exiting");
        }
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, AppError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| AppError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// Runs `discovery` on a task, waits for its first catalog, publishes it, and keeps publishing.
async fn start_discovery(discovery: impl Discovery, shared: Arc<Shared>) -> Result<(), AppError> {
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
    shared.publish(&rx.borrow_and_update());
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let catalog = rx.borrow_and_update().clone();
            shared.publish(&catalog);
        }
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "discovery stopped; the last catalog stays in force"),
            _ => tracing::warn!("discovery stopped; the last catalog stays in force"),
        }
    });
    Ok(())
}

/// Starts the balancer of `config`: binds, discovers, spawns the workers, health checks and admin.
/// Must be called on a tokio runtime, which then carries the control tasks.
///
/// # Errors
/// Key, bind, discovery or thread errors.
pub async fn start(config: Config, keys: Keys) -> Result<Balancer, AppError> {
    let discovery = StaticList::new(config.services.clone(), keys.clone());
    start_with(config, keys, discovery).await
}

/// `sticky run --docker`: the balancer of `config` (which has no services) over the Swarm services
/// that opt in by labels; tcp-mode ones are served by [`crate::l4::swarm`] with `tcp`'s settings.
/// Waits until the Docker API has answered once.
///
/// # Errors
/// The Docker host is not a unix socket; key, bind or thread errors.
pub async fn start_swarm(
    config: Config,
    keys: Keys,
    docker: &crate::config::DockerSettings,
    tcp: crate::l4::TcpFlags,
) -> Result<Balancer, AppError> {
    use crate::discovery::swarm::{SwarmDiscovery, SwarmOptions};
    let api = crate::docker::Api::new(&docker.host).map_err(|e| AppError::Docker(Box::new(e)))?;
    let (tcp_tx, tcp_rx) = watch::channel(Arc::new(Vec::new()));
    let options = SwarmOptions { interval: docker.interval, own_container: crate::docker::own_container_id() };
    tokio::spawn(crate::l4::swarm::run(tcp_rx, tcp));
    start_with(config, keys, SwarmDiscovery::new(api, options, tcp_tx)).await
}

/// Starts the balancer of `config` with its services from `discovery` (waiting for its first catalog).
///
/// # Errors
/// Key, bind, discovery or thread errors.
pub async fn start_with(config: Config, keys: Keys, discovery: impl Discovery) -> Result<Balancer, AppError> {
    let shared = Arc::new(Shared::new(keys));
    start_discovery(discovery, shared.clone()).await?;
    let listener = bind(config.listen)?;
    let listen = listener.local_addr().map_err(|source| AppError::Bind { addr: config.listen, source })?;
    let settings = Settings { limits: config.limits, timeouts: config.timeouts };
    let permits = Arc::new(Semaphore::new(config.limits.max_connections));
    proxy::splice::start(&shared, config.no_ebpf, config.limits.max_spliced);
    let (stop, stop_rx) = watch::channel(false);
    for worker in 0..config.workers {
        let handle = listener.try_clone().map_err(|source| AppError::Worker { worker, source })?;
        let (shared, permits, stop_rx) = (shared.clone(), permits.clone(), stop_rx.clone());
        std::thread::Builder::new()
            .name(format!("sticky-w{worker}"))
            .spawn(move || worker_main(worker, handle, shared, settings, permits, stop_rx))
            .map_err(|source| AppError::Worker { worker, source })?;
    }
    tokio::spawn(proxy::check::run(shared.clone()));
    let admin = match config.admin {
        Some(addr) => {
            Some(crate::admin::spawn(addr, shared.clone()).await.map_err(|source| AppError::Bind { addr, source })?)
        }
        None => None,
    };
    tracing::info!(%listen, workers = config.workers, admin = ?admin, "sticky is serving");
    // the workers hold their own handles of the socket; this one is not needed any more
    drop(listener);
    Ok(Balancer { listen, admin, shared, stop })
}

fn worker_main(
    worker: usize,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    settings: Settings,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    crate::admin::metrics::set_worker_shard(worker);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(worker, error = %e, "failed to start a worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker, error = %e, "failed to register the listener");
                return;
            }
        };
        if let Err(e) = proxy::serve(listener, shared, settings, permits, stop.clone()).await {
            tracing::error!(worker, error = %e, "accept loop failed");
        }
        // stopped accepting (the listener handle is closed here); serve the open connections to their end
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await.is_ok();
        std::future::pending::<()>().await;
    });
}

/// What `sticky demo` started.
#[derive(Debug)]
pub struct Demo {
    /// The balancer.
    pub balancer: Balancer,
    /// Names and addresses of the demo backends.
    pub backends: Vec<(String, SocketAddr)>,
}

/// Names of the demo backends.
pub const DEMO_NAMES: [&str; 3] = ["demo-1", "demo-2", "demo-3"];

/// Starts three whoami backends on loopback and a balancer in front of them on `listen`.
///
/// # Errors
/// A listener cannot be bound.
pub async fn demo(listen: SocketAddr, workers: usize) -> Result<Demo, AppError> {
    let mut backends = Vec::new();
    for name in DEMO_NAMES {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let l = tokio::net::TcpListener::bind(any).await.map_err(|source| AppError::Bind { addr: any, source })?;
        let addr = l.local_addr().map_err(|source| AppError::Bind { addr: any, source })?;
        tokio::spawn(crate::whoami::serve(l, name.to_owned()));
        backends.push((name.to_owned(), addr));
    }
    let args = crate::config::RunArgs {
        listen: Some(listen),
        workers: Some(workers),
        backends: backends.iter().map(|(n, a)| format!("{n}=http://{a}")).collect(),
        ..Default::default()
    };
    let config = crate::config::build(&args, None)?;
    // the demo runs on one machine with nothing to share the key with: a random key, without the warning
    let balancer = start(config, Keys::random()).await?;
    Ok(Demo { balancer, backends })
}
