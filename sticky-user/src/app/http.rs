//! The http proxy of `sticky run`: the listening socket, `--workers` threads each accepting on its
//! own handle of it, the health checks, and the graceful stop.
//!
//! Threads: each worker runs a current-thread tokio runtime; the calling (control) runtime runs
//! discovery, health checks and the admin API. Why not one multi-thread runtime: a connection's
//! requests, its upstream connections and the idle pool then all live on one thread (no work
//! stealing, no cross-thread wake-ups, a lock-free pool), and `--workers 1` gives the proxy exactly
//! one core for benchmarks. Why one shared socket and not `SO_REUSEPORT`: a second process cannot
//! silently bind the same port and take half the traffic, and the kernel hands each new connection
//! to whichever worker is free to accept it first.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Semaphore, watch};

use super::AppError;
use tokio_rustls::TlsAcceptor;

use crate::{
    config::{HttpConfig, TlsConfig},
    listen::{self, ListenError},
    proxy::{self, Proxy, Settings},
    signal::Hangups,
    splice::Splicer,
    state::Routing,
    stats::{self, ProxyStats},
    tls::{
        acme::{
            client::{self, AcmeClient},
            issue::Request,
            manager::{self, Manager},
            storage::Storage,
        },
        challenge::{Challenges, Kind},
        reload::{self, Reloader},
        resolver::Resolver,
        server,
        source::Source,
    },
};

/// The proxy, serving.
#[derive(Debug)]
pub struct HttpServer {
    /// Address of the client listener.
    pub listen: SocketAddr,
    /// Address of the TLS listener, if any.
    pub listen_tls: Option<SocketAddr>,
    /// The TLS listener's certificates (SNI table), if any.
    pub tls: Option<Arc<Resolver>>,
    /// What the ACME manager orders (with `--acme-directory`): the app feeds it from the catalog.
    pub acme: Option<AcmeFeed>,
    /// Routing table and live backend state.
    pub routing: Arc<Routing>,
    /// The proxy's own counters.
    pub stats: Arc<ProxyStats>,
    grace: Duration,
    stop: watch::Sender<bool>,
    /// Workers whose accept loops still run (each holds its handles of the listening sockets).
    accepting: Arc<AtomicUsize>,
}

/// One worker's place in [`HttpServer`]'s count of accept loops; dropped when they have ended.
struct Accepting(Arc<AtomicUsize>);

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The proxy's listening sockets: the plain one and the TLS one, if configured.
#[derive(Debug)]
pub struct Sockets {
    /// `--listen`.
    pub plain: std::net::TcpListener,
    /// `--listen-tls`.
    pub tls: Option<std::net::TcpListener>,
}

impl Sockets {
    /// The listeners `config` names, bound here or taken from the holder (`source`), waiting up to
    /// `wait` for a holder to answer.
    ///
    /// # Errors
    /// See [`ListenError`].
    pub async fn take(config: &HttpConfig, source: &listen::Source, wait: Duration) -> Result<Self, ListenError> {
        let mut addrs = vec![config.listen];
        addrs.extend(config.tls.as_ref().map(|t| t.listen));
        let mut listeners = source.take_async(&addrs, wait).await?.into_iter();
        match (listeners.next(), listeners.next()) {
            (Some(plain), tls) => Ok(Self { plain, tls }),
            (None, _) => Err(ListenError::Bind {
                addr: config.listen,
                source: std::io::Error::other("no listening socket came back"),
            }),
        }
    }
}

impl HttpServer {
    /// Starts the workers on `sockets` (the listeners of `config`, see [`Sockets::take`]) and the
    /// health checks (on the calling runtime), with routes from `routing` and pinned/upgraded
    /// connections spliced by `splicer`.
    ///
    /// # Errors
    /// The TLS set-up fails, or a worker thread cannot start.
    pub fn start(
        config: &HttpConfig,
        routing: Arc<Routing>,
        splicer: Option<Arc<Splicer>>,
        sockets: Sockets,
    ) -> Result<Self, AppError> {
        let Sockets { plain: listener, tls: tls_listener } = sockets;
        let listen = listener.local_addr().map_err(|source| AppError::Bind { addr: config.listen, source })?;
        // --splice (or a service's splice option), or a kernel splice for upgrades: say once that TLS
        // connections are not spliced
        let splice = splicer.is_some() || routing.table().services.iter().any(|s| s.spec.splice.pinned);
        let tls = match (config.tls.as_ref(), tls_listener) {
            (Some(t), Some(listener)) => Some(start_tls(t, listener, config.timeouts.idle, splice, config.h2.tls)?),
            _ => None,
        };
        let listen_tls = tls.as_ref().map(|t| t.listen);
        let stats = Arc::new(ProxyStats::default());
        let settings = Settings { limits: config.limits, timeouts: config.timeouts };
        let proxy = Arc::new(Proxy {
            routing: routing.clone(),
            stats: stats.clone(),
            splicer,
            settings,
            challenges: tls.as_ref().map(|t| t.challenges.clone()).unwrap_or_default(),
            https_port: listen_tls.map(|a| a.port()),
            h2: config.h2,
            clients: config.clients.clone(),
        });
        let permits = Arc::new(Semaphore::new(config.limits.max_connections));
        let (stop, stop_rx) = watch::channel(false);
        let accepting = Arc::new(AtomicUsize::new(0));
        for worker in 0..config.workers {
            let handle = listener.try_clone().map_err(|source| AppError::Worker { worker, source })?;
            let tls_handle = match &tls {
                Some(t) => Some((
                    t.listener.try_clone().map_err(|source| AppError::Worker { worker, source })?,
                    t.acceptor.clone(),
                )),
                None => None,
            };
            let (proxy, permits, stop_rx) = (proxy.clone(), permits.clone(), stop_rx.clone());
            // counted before the thread runs, so that a stop right after start waits for it too
            accepting.fetch_add(1, Ordering::SeqCst);
            let done = Accepting(accepting.clone());
            std::thread::Builder::new()
                .name(format!("sticky-w{worker}"))
                .spawn(move || worker_main(worker, handle, tls_handle, proxy, permits, stop_rx, done))
                .map_err(|source| AppError::Worker { worker, source })?;
        }
        tokio::spawn(crate::health_check::run(routing.clone()));
        // the workers hold their own handles of the socket; this one is not needed any more
        drop(listener);
        let (resolver, acme) = tls.map(|t| (t.resolver, t.acme)).unzip();
        let acme = acme.flatten();
        Ok(Self {
            listen,
            listen_tls,
            tls: resolver,
            acme,
            routing,
            stats,
            grace: config.timeouts.shutdown,
            stop,
            accepting,
        })
    }

    /// The shutdown timeout: how long [`HttpServer::shutdown`] waits for requests in flight.
    #[must_use]
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Stops accepting, lets requests in flight finish, and returns once every client connection is
    /// closed or the shutdown timeout has passed (then the remaining ones are cut when the process
    /// exits). Upgraded (WebSocket) connections are not waited for.
    pub async fn shutdown(&self) {
        tracing::info!(grace = ?self.grace, "stopping: no new connections, finishing requests in flight");
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        // first every accept loop ends (a connection it took is counted by then), then the
        // connections: a connection accepted at the moment of the stop is never cut unanswered
        while self.accepting.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while self.stats.active_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.stats.active_connections();
        if left > 0 {
            tracing::warn!(connections = left, "shutdown grace period over; closing the remaining connections");
        } else {
            tracing::info!("all client connections closed; exiting");
        }
    }
}

/// The TLS listener, set up: its socket, the acceptor the workers share, the SNI table and the
/// ACME challenge answers.
struct TlsStarted {
    listener: std::net::TcpListener,
    listen: SocketAddr,
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    challenges: Arc<Challenges>,
    acme: Option<AcmeFeed>,
}

/// The ACME manager's input: the names of the flags, and those of the catalog's services that ask
/// for TLS (their `TlsSpec` domains, else their rule's hosts), one certificate per service.
#[derive(Debug, Clone)]
pub struct AcmeFeed {
    requests: Arc<watch::Sender<Vec<Request>>>,
    flags: Vec<String>,
    challenge: Kind,
}

impl AcmeFeed {
    /// Puts the requests of `services` (and the flags') in force; names that cannot be ordered
    /// (wildcards) are logged and left out.
    pub fn update(&self, services: &[crate::model::HttpService]) {
        let mut requests = Vec::new();
        let mut push = |names: &[String], what: &str| {
            if names.is_empty() {
                return;
            }
            match Request::new(names, self.challenge) {
                Ok(r) => requests.push(r),
                Err(e) => tracing::warn!(what, error = %e, "acme: names not ordered"),
            }
        };
        push(&self.flags, "--acme-domain");
        for s in services.iter().filter(|s| s.spec.tls.enabled) {
            let names = if s.spec.tls.domains.is_empty() { hosts(&s.spec.rule) } else { s.spec.tls.domains.clone() };
            if names.is_empty() {
                tracing::warn!(service = %s.spec.name, "acme: the service asks for TLS but names no domain (sticky.tls.domains or a Host rule)");
            }
            push(&names, &s.spec.name);
        }
        self.requests.send_if_modified(|old| {
            let changed = *old != requests;
            *old = std::mem::take(&mut requests);
            changed
        });
    }
}

/// The host names a rule matches on (not under a `!`).
fn hosts(rule: &crate::rule::Rule) -> Vec<String> {
    use crate::rule::Rule;
    match rule {
        Rule::Host(h) => h.clone(),
        Rule::And(list) | Rule::Or(list) => list.iter().flat_map(hosts).collect(),
        Rule::Always | Rule::Path(_) | Rule::PathPrefix(_) | Rule::Not(_) => Vec::new(),
    }
}

/// Loads the certificates (an explicit pair that does not load stops sticky), serves the TLS
/// `listener`, and starts the reload task: files polled every [`reload::DEFAULT_INTERVAL`], and at
/// once on SIGHUP. `handshake_timeout` is the idle timeout.
fn start_tls(
    config: &TlsConfig,
    listener: std::net::TcpListener,
    handshake_timeout: Duration,
    splice: bool,
    h2: bool,
) -> Result<TlsStarted, AppError> {
    let challenges = Arc::new(Challenges::default());
    let resolver = Arc::new(Resolver::new(config.unknown_sni, challenges.clone()));
    let mut sources = config.sources.clone();
    let storage = match &config.acme {
        Some(acme) => {
            let storage = Storage::open(&acme.state).map_err(|e| AppError::Acme(Box::new(e)))?;
            sources.push(Source::Dir(storage.certs_dir()));
            Some(storage)
        }
        None => None,
    };
    let reloader = Reloader::start(sources, resolver.clone())?;
    if resolver.table().certs().is_empty() {
        tracing::warn!(
            "tls: no certificate loaded yet (the directories hold no pair): handshakes fail until one appears"
        );
    }
    let settings = server::Settings {
        // HTTP/2 first where offered: the server's order decides
        alpn: if h2 { vec![server::H2.to_vec(), server::HTTP_1_1.to_vec()] } else { vec![server::HTTP_1_1.to_vec()] },
        handshake_timeout,
        acme_tls_alpn: config.acme.as_ref().is_some_and(|a| a.challenge == Kind::TlsAlpn01),
        ..server::Settings::default()
    };
    let acceptor = TlsAcceptor::from(server::config(&settings, resolver.clone())?);
    let listen = listener.local_addr().map_err(|source| AppError::Bind { addr: config.listen, source })?;
    let handle = reloader.handle();
    tokio::spawn(async move {
        let mut hangups = Hangups::new();
        loop {
            hangups.recv().await;
            tracing::info!("SIGHUP: reloading the TLS certificates");
            handle.reload();
        }
    });
    let acme = match (&config.acme, storage) {
        (Some(acme), Some(storage)) => {
            let client = client::Settings {
                directory_url: acme.directory.clone(),
                contact: acme.email.iter().map(|e| format!("mailto:{e}")).collect(),
                ca_root: acme.ca_root.clone(),
            };
            let issuer = AcmeClient::new(client, storage.clone()).map_err(|e| AppError::Acme(Box::new(e)))?;
            let manager = Manager::new(
                issuer,
                storage,
                challenges.clone(),
                reloader.handle(),
                manager::Settings::default(),
                manager::system_clock(),
            );
            let feed =
                AcmeFeed { requests: manager.requests(), flags: acme.domains.clone(), challenge: acme.challenge };
            tracing::info!(directory = %acme.directory, state = %acme.state.display(), challenge = acme.challenge.as_str(), "acme: ordering and renewing certificates");
            tokio::spawn(manager.run());
            Some(feed)
        }
        _ => None,
    };
    tokio::spawn(reloader.run(reload::DEFAULT_INTERVAL));
    if splice {
        tracing::info!(
            "tls: connections on the TLS listener are relayed in user space, upgraded ones included (no kernel TLS on this kernel: the splice takes plain connections only)"
        );
    }
    Ok(TlsStarted { listener, listen, acceptor, resolver, challenges, acme })
}

fn worker_main(
    worker: usize,
    listener: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, TlsAcceptor)>,
    proxy: Arc<Proxy>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    accepting: Accepting,
) {
    stats::set_worker_shard(worker);
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
        let tls_loop = async {
            let Some((listener, acceptor)) = tls else { return };
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(worker, error = %e, "failed to register the TLS listener");
                    return;
                }
            };
            if let Err(e) = proxy::serve(listener, proxy.clone(), permits.clone(), stop.clone(), Some(acceptor)).await {
                tracing::error!(worker, error = %e, "TLS accept loop failed");
            }
        };
        let plain_loop = async {
            if let Err(e) = proxy::serve(listener, proxy.clone(), permits.clone(), stop.clone(), None).await {
                tracing::error!(worker, error = %e, "accept loop failed");
            }
        };
        tokio::join!(plain_loop, tls_loop);
        // stopped accepting (the listener handles are closed here); serve the open connections to their end
        drop(accepting);
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await.is_ok();
        std::future::pending::<()>().await;
    });
}
