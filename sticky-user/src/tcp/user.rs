//! tcp mode in user space: one tokio listener per service, deciding like the kernel path (the
//! client's fresh affinity to a live backend, else the Maglev pick, from [`crate::policy`]), then
//! relaying bytes. It serves `--mode tcp` when eBPF is unavailable (or `--no-ebpf`), and Swarm's
//! tcp services unless labelled `sticky.tcp.path=kernel`. Per backend it counts connections
//! opened and open, and the bytes of each relay when it ends.
//!
//! Same behaviour, one process in the middle: every byte is copied twice through this process, and
//! the backend sees the balancer's address as the client (as with the kernel's full NAT), unless the
//! service sends a PROXY protocol header naming the client ([`crate::proxy_protocol`]). A trusted
//! balancer in front (`--proxy-protocol-from`) has its header read first: its client is the one
//! affinity keys on. A backend
//! that leaves the set keeps its open connections (their tasks hold the sockets) and gets no new
//! ones; a service that disappears stops accepting, its open connections go on.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

use super::TcpError;
use crate::{
    cidr::Cidrs,
    listen::Source,
    lock::{lock, read, write},
    model::{ServiceId, TcpService},
    policy::{
        affinity::{Choice, Table, choose},
        maglev::Maglev,
    },
};

/// How long a backend has to accept a connection before the client's is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Counters of the fallback, by outcome.
#[derive(Debug, Default)]
struct Counters {
    affinity_hit: AtomicU64,
    maglev_pick: AtomicU64,
    no_backend: AtomicU64,
    connect_failed: AtomicU64,
    active: AtomicU64,
}

/// A copy of the fallback's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections that followed a fresh affinity entry.
    pub affinity_hit: u64,
    /// Connections whose backend came from the Maglev table.
    pub maglev_pick: u64,
    /// Connections closed because the set was empty.
    pub no_backend: u64,
    /// Connections closed because the backend refused or timed out.
    pub connect_failed: u64,
    /// Connections being relayed now.
    pub active: u64,
    /// Clients in the affinity table.
    pub affinity_used: u64,
    /// The affinity table's capacity.
    pub affinity_max: u64,
}

impl Snapshot {
    /// (outcome label, count) of the counters.
    #[must_use]
    pub fn outcomes(&self) -> [(&'static str, u64); 4] {
        [
            ("affinity_hit", self.affinity_hit),
            ("maglev_pick", self.maglev_pick),
            ("no_backend", self.no_backend),
            ("connect_failed", self.connect_failed),
        ]
    }
}

/// One backend's counters in user space.
#[derive(Debug, Default)]
struct BackendCounters {
    opened: AtomicU64,
    active: AtomicU64,
    to_backend: AtomicU64,
    to_client: AtomicU64,
}

/// A copy of one backend's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// Connections relayed to it since start.
    pub opened: u64,
    /// Connections relayed to it now.
    pub active: u64,
    /// Bytes from clients to it (added as each relay ends).
    pub to_backend: u64,
    /// Bytes from it to clients (added as each relay ends).
    pub to_client: u64,
}

/// One service's decisions and counters, shared by its connection tasks.
#[derive(Debug)]
pub struct Balancer {
    /// Per-backend counters: the backends in the set and those with relays still open (bounded
    /// by the set plus departed backends' open connections).
    per_backend: Mutex<HashMap<SocketAddr, Arc<BackendCounters>>>,
    table: RwLock<Arc<Maglev>>,
    affinity: Mutex<Table<SocketAddr>>,
    timeout_ns: u64,
    clock: Instant,
    counters: Counters,
    /// What each backend connection starts with.
    proxy_protocol: crate::proxy_protocol::Version,
    /// The service's address (for `/api/explain`).
    vip: SocketAddr,
    /// The service's name (for the access log).
    name: String,
}

impl Balancer {
    /// A balancer over `spec`'s backends, remembering at most `max_affinity` clients.
    #[must_use]
    pub fn new(spec: &TcpService, max_affinity: u32) -> Self {
        Self {
            per_backend: Mutex::default(),
            table: RwLock::new(Arc::new(Maglev::build(&spec.backends))),
            affinity: Mutex::new(Table::new(max_affinity as usize)),
            timeout_ns: u64::try_from(spec.affinity_timeout.as_nanos()).unwrap_or(u64::MAX),
            clock: Instant::now(),
            counters: Counters::default(),
            proxy_protocol: spec.proxy_protocol,
            vip: spec.vip,
            name: spec.name.clone(),
        }
    }

    /// Replaces the backend set (clients of a departed backend re-pick on their next connection).
    pub fn set_backends(&self, backends: &[SocketAddr]) {
        *write(&self.table) = Arc::new(Maglev::build(backends));
        lock(&self.per_backend).retain(|addr, c| backends.contains(addr) || c.active.load(Ordering::Relaxed) > 0);
    }

    /// `backend`'s counters now (zero for a backend that never had a connection).
    #[must_use]
    pub fn backend(&self, backend: SocketAddr) -> BackendSnapshot {
        lock(&self.per_backend).get(&backend).map_or_else(BackendSnapshot::default, |c| BackendSnapshot {
            opened: c.opened.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            to_backend: c.to_backend.load(Ordering::Relaxed),
            to_client: c.to_client.load(Ordering::Relaxed),
        })
    }

    /// The counters of `backend`, created at its first connection.
    fn counters_of(&self, backend: SocketAddr) -> Arc<BackendCounters> {
        lock(&self.per_backend).entry(backend).or_default().clone()
    }

    /// The backend of a new connection from `client`, as the kernel would choose it.
    #[must_use]
    pub fn choose(&self, client: IpAddr) -> Choice<SocketAddr> {
        let table = Arc::clone(&read(&self.table));
        let entry = if self.timeout_ns > 0 { self.affinity().get(client) } else { None };
        choose(entry, self.now_ns(), self.timeout_ns, |b| table.backends().contains(b), table.pick(client))
    }

    /// Where a new connection of `client` would go now, with the parts of the decision (reads only).
    #[must_use]
    pub fn placement(&self, client: IpAddr) -> super::Placement {
        let table = Arc::clone(&read(&self.table));
        let affinity = match self.choose(client) {
            Choice::Affinity(b) => Some(b),
            Choice::Pick(_) | Choice::None => None,
        };
        super::Placement {
            kernel: false,
            vip: self.vip,
            slot: crate::policy::maglev::client_slot(client),
            maglev: table.pick(client),
            affinity,
            affinity_read: true,
            affinity_timeout: std::time::Duration::from_nanos(self.timeout_ns),
            affinity_age: None,
        }
    }

    /// Records that `client`'s connection to `backend` was established.
    pub fn established(&self, client: IpAddr, backend: SocketAddr) {
        if self.timeout_ns > 0 {
            let now = self.now_ns();
            self.affinity().record(client, backend, now, self.timeout_ns);
        }
    }

    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let affinity = self.affinity();
        Snapshot {
            affinity_hit: c.affinity_hit.load(Ordering::Relaxed),
            maglev_pick: c.maglev_pick.load(Ordering::Relaxed),
            no_backend: c.no_backend.load(Ordering::Relaxed),
            connect_failed: c.connect_failed.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            affinity_used: affinity.len() as u64,
            affinity_max: affinity.max() as u64,
        }
    }

    fn affinity(&self) -> std::sync::MutexGuard<'_, Table<SocketAddr>> {
        lock(&self.affinity)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One client connection: its PROXY protocol header if its source must send one, then choose,
/// connect, relay until either side closes.
async fn relay(balancer: Arc<Balancer>, mut client: TcpStream, peer: SocketAddr, from: Arc<Cidrs>) {
    // tcp mode cannot peek at untrusted clients (a server-speaks-first protocol would wait): only
    // trusted sources' headers are read
    let Ok(origin) = Box::pin(crate::proxy_protocol::accept::accept(&client, peer, &from, false)).await else {
        return;
    };
    let peer = origin.client;
    // An IPv6 client keys affinity and Maglev by its whole address, as the kernel's IPv6 path does
    // (`maglev_slot6`); a v4-mapped one is the IPv4 client it stands for.
    let client_ip = crate::cidr::unmap(peer.ip());
    let counters = &balancer.counters;
    let (backend, pick) = match balancer.choose(client_ip) {
        Choice::Affinity(b) => {
            counters.affinity_hit.fetch_add(1, Ordering::Relaxed);
            (b, crate::access_log::Pick::Affinity)
        }
        Choice::Pick(b) => {
            counters.maglev_pick.fetch_add(1, Ordering::Relaxed);
            (b, crate::access_log::Pick::Maglev)
        }
        Choice::None => {
            counters.no_backend.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            counters.connect_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %backend, error = %e, "backend refused");
            return;
        }
        Err(_) => {
            counters.connect_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %backend, "backend connect timed out");
            return;
        }
    };
    if let Some(header) = balancer.proxy_protocol.header(&origin)
        && let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut upstream, &header).await
    {
        tracing::debug!(%peer, %backend, error = %e, "PROXY protocol header not sent");
        return;
    }
    balancer.established(client_ip, backend);
    let _ = upstream.set_nodelay(true);
    let mine = balancer.counters_of(backend);
    counters.active.fetch_add(1, Ordering::Relaxed);
    mine.opened.fetch_add(1, Ordering::Relaxed);
    mine.active.fetch_add(1, Ordering::Relaxed);
    let (opened, started) = (std::time::SystemTime::now(), Instant::now());
    let bytes = match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_backend, to_client)) => {
            mine.to_backend.fetch_add(to_backend, Ordering::Relaxed);
            mine.to_client.fetch_add(to_client, Ordering::Relaxed);
            (to_backend, to_client)
        }
        Err(e) => {
            tracing::debug!(%peer, %backend, error = %e, "relay ended with an error");
            (0, 0)
        }
    };
    mine.active.fetch_sub(1, Ordering::Relaxed);
    counters.active.fetch_sub(1, Ordering::Relaxed);
    let line = crate::access_log::TcpLine { service: &balancer.name, client: peer.ip(), backend, pick, opened };
    crate::access_log::tcp(&line, started.elapsed(), bytes);
}

/// Accepts `listener`'s connections, each relayed on a task of its own, until aborted, `stop`
/// turns true (the listener is closed; relays go on), or the listener breaks for good; connections
/// from `from` must start with a PROXY protocol header.
async fn accept(
    listener: TcpListener,
    balancer: Arc<Balancer>,
    service: String,
    mut stop: watch::Receiver<bool>,
    from: Arc<Cidrs>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            accepted = crate::net::accept(&listener) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(relay(balancer.clone(), stream, peer, from.clone()));
            }
            Err(e) => {
                tracing::error!(%service, error = %e, "tcp listener failed; no new connections for this service");
                return;
            }
        }
    }
}

/// One served tcp service.
#[derive(Debug)]
struct Served {
    name: String,
    vip: SocketAddr,
    timeout: Duration,
    backends: Vec<SocketAddr>,
    balancer: Arc<Balancer>,
    accept: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        // stop accepting; connections being relayed run on their own tasks and go on
        self.accept.abort();
    }
}

/// Each served service's name and balancer, as `/metrics` reads them.
pub type Published = Arc<Mutex<Vec<(String, Arc<Balancer>)>>>;

/// The listeners of every tcp service served in user space, replaced as services come and go.
#[derive(Debug)]
pub struct Listeners {
    served: HashMap<ServiceId, Served>,
    /// (service, address) whose bind failure was logged, so that a retry on every update stays quiet.
    bind_failed: HashMap<ServiceId, SocketAddr>,
    max_affinity: u32,
    /// What `/metrics` reads: each service's name and balancer.
    published: Published,
    /// Where the listening sockets come from (bound here, or the holder's).
    source: Source,
    /// True once sticky stops: every listener closes, no new one is opened.
    stop: Arc<watch::Sender<bool>>,
    /// Sources whose connections start with a PROXY protocol header.
    proxy_protocol_from: Arc<Cidrs>,
}

impl Listeners {
    /// No listener yet; each service's affinity table holds at most `max_affinity` clients; the
    /// listening sockets come from `source`; connections from `proxy_protocol_from` must start with a
    /// PROXY protocol header.
    #[must_use]
    pub fn new(max_affinity: u32, source: Source, proxy_protocol_from: Cidrs) -> Self {
        Self {
            served: HashMap::new(),
            bind_failed: HashMap::new(),
            max_affinity,
            published: Arc::default(),
            source,
            stop: Arc::new(watch::channel(false).0),
            proxy_protocol_from: Arc::new(proxy_protocol_from),
        }
    }

    /// What stops every listener (send `true`): sticky's graceful stop, so that a successor sharing
    /// the sockets (`--listen-from`) takes the new connections while the relays here finish.
    #[must_use]
    pub fn stopper(&self) -> Arc<watch::Sender<bool>> {
        self.stop.clone()
    }

    /// These listeners stop with `other`'s (one graceful stop for both sets).
    #[must_use]
    pub fn stopping_with(mut self, other: &Self) -> Self {
        self.stop = other.stop.clone();
        self
    }

    /// Where `/metrics` reads each served service's counters.
    #[must_use]
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// Serves exactly `services`: new ones get a listener, changed backend sets are swapped in
    /// place, a changed address or affinity timeout rebinds, departed ones stop accepting.
    ///
    /// # Errors
    /// With `strict`, the first address that cannot be bound; without, bind failures are logged
    /// (once while they last) and retried on the next update.
    pub async fn update(&mut self, services: &[TcpService], strict: bool) -> Result<(), TcpError> {
        if *self.stop.borrow() {
            return Ok(());
        }
        self.served.retain(|id, s| {
            let keep = services.iter().any(|t| &t.id == id);
            if !keep {
                tracing::info!(service = %s.name, vip = %s.vip, "tcp service gone; no new connections (open ones go on)");
            }
            keep
        });
        self.bind_failed.retain(|id, _| services.iter().any(|t| &t.id == id));
        for svc in services {
            if let Some(s) = self.served.get_mut(&svc.id)
                && s.vip == svc.vip
                && s.timeout == svc.affinity_timeout
                && s.balancer.proxy_protocol == svc.proxy_protocol
            {
                if s.backends != svc.backends {
                    s.balancer.set_backends(&svc.backends);
                    tracing::info!(service = %svc.name, backends = ?svc.backends, "tcp service backends changed");
                    s.backends.clone_from(&svc.backends);
                }
                continue;
            }
            self.served.remove(&svc.id);
            match self.serve(svc).await {
                Ok(s) => {
                    self.bind_failed.remove(&svc.id);
                    tracing::info!(
                        service = %svc.name, vip = %svc.vip, backends = ?svc.backends, affinity_timeout = ?svc.affinity_timeout,
                        "tcp service listening"
                    );
                    self.served.insert(svc.id.clone(), s);
                }
                Err(e) if strict => return Err(e),
                Err(e) => {
                    if self.bind_failed.insert(svc.id.clone(), svc.vip) != Some(svc.vip) {
                        tracing::error!(
                            service = %svc.name, vip = %svc.vip, error = %crate::telemetry::chain(&e),
                            "cannot listen for tcp service; retrying on the next change"
                        );
                    }
                }
            }
        }
        let mut published: Vec<(String, Arc<Balancer>)> =
            self.served.values().map(|s| (s.name.clone(), s.balancer.clone())).collect();
        published.sort_by(|a, b| a.0.cmp(&b.0));
        *lock(&self.published) = published;
        Ok(())
    }

    /// Binds the service's address (or takes it from the holder, which must hold it already: it
    /// is not waited for) and starts accepting.
    async fn serve(&self, svc: &TcpService) -> Result<Served, TcpError> {
        let addr = svc.vip;
        let std = self.source.take_async(&[addr], Duration::ZERO).await?.pop();
        let std = std.ok_or_else(|| TcpError::Bind { addr, source: std::io::Error::other("no socket came back") })?;
        let listener = TcpListener::from_std(std).map_err(|source| TcpError::Bind { addr, source })?;
        let balancer = Arc::new(Balancer::new(svc, self.max_affinity));
        let accept = tokio::spawn(accept(
            listener,
            balancer.clone(),
            svc.name.clone(),
            self.stop.subscribe(),
            self.proxy_protocol_from.clone(),
        ));
        Ok(Served {
            name: svc.name.clone(),
            vip: svc.vip,
            timeout: svc.affinity_timeout,
            backends: svc.backends.clone(),
            balancer,
            accept,
        })
    }
}
