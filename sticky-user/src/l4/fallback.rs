//! tcp mode in user space: a tokio TCP proxy that decides like the kernel path (the client's fresh
//! affinity to a live backend, else the Maglev pick, from [`crate::policy`]), then relays bytes.
//!
//! Same behaviour, one process in the middle: every byte is copied twice through this process, and
//! the backend sees the balancer's address as the client (as with the kernel's full NAT). A backend
//! that leaves the set keeps its open connections (their tasks hold the sockets) and gets no new ones.

use std::{
    net::{IpAddr, SocketAddr, SocketAddrV4},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::net::{TcpListener, TcpStream};

use super::{L4Error, TcpArgs, admin, hangup, metrics};
use crate::{
    datapath::sync::ServiceSpec,
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

/// The state every connection task shares.
#[derive(Debug)]
pub struct Balancer {
    table: RwLock<Arc<Maglev>>,
    affinity: Mutex<Table<SocketAddrV4>>,
    timeout_ns: u64,
    clock: Instant,
    counters: Counters,
}

impl Balancer {
    /// A balancer over `spec`'s backends, remembering at most `max_affinity` clients.
    #[must_use]
    pub fn new(spec: &ServiceSpec, max_affinity: u32) -> Self {
        Self {
            table: RwLock::new(Arc::new(Maglev::build(&spec.backends))),
            affinity: Mutex::new(Table::new(max_affinity as usize)),
            timeout_ns: u64::try_from(spec.affinity_timeout.as_nanos()).unwrap_or(u64::MAX),
            clock: Instant::now(),
            counters: Counters::default(),
        }
    }

    /// Replaces the backend set (clients of a departed backend re-pick on their next connection).
    pub fn set_backends(&self, backends: &[SocketAddrV4]) {
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Maglev::build(backends));
    }

    /// The backend of a new connection from `client`, as the kernel would choose it.
    #[must_use]
    pub fn choose(&self, client: std::net::Ipv4Addr) -> Choice<SocketAddrV4> {
        let table = Arc::clone(&self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        let entry = if self.timeout_ns > 0 { self.affinity().get(client) } else { None };
        choose(entry, self.now_ns(), self.timeout_ns, |b| table.backends().contains(b), table.pick(client))
    }

    /// Records that `client`'s connection to `backend` was established.
    pub fn established(&self, client: std::net::Ipv4Addr, backend: SocketAddrV4) {
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

    fn affinity(&self) -> std::sync::MutexGuard<'_, Table<SocketAddrV4>> {
        self.affinity.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Binds the VIP and proxies until `shutdown`; SIGHUP reloads the backends file.
///
/// # Errors
/// The VIP or the admin address cannot be bound.
pub async fn run(args: &TcpArgs, spec: ServiceSpec, shutdown: impl Future<Output = ()>) -> Result<(), L4Error> {
    let addr = SocketAddr::V4(spec.vip);
    let listener = TcpListener::bind(addr).await.map_err(|source| L4Error::Bind { addr, source })?;
    let balancer = Arc::new(Balancer::new(&spec, args.max_affinity));
    tracing::info!(vip = %spec.vip, backends = spec.backends.len(), affinity_timeout = ?spec.affinity_timeout, "tcp mode in user space");
    if let Some(admin_addr) = args.admin {
        let b = Arc::clone(&balancer);
        admin::spawn(admin_addr, move || metrics::render_fallback(&b.snapshot())).await?;
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = hangup(&mut hup) => match args.service() {
                Ok(spec) => {
                    balancer.set_backends(&spec.backends);
                    tracing::info!(backends = ?spec.backends, "backends reloaded");
                }
                Err(e) => tracing::warn!(error = %crate::telemetry::chain(&e), "reload failed; keeping the current backends"),
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(relay(Arc::clone(&balancer), stream, peer));
                }
                Err(e) => {
                    // One connection's failure (or a passing fd shortage) never ends the accept loop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// One client connection: choose, connect, relay until either side closes.
pub(crate) async fn relay(balancer: Arc<Balancer>, mut client: TcpStream, peer: SocketAddr) {
    let IpAddr::V4(client_ip) = peer.ip() else { return };
    let counters = &balancer.counters;
    let backend = match balancer.choose(client_ip) {
        Choice::Affinity(b) => {
            counters.affinity_hit.fetch_add(1, Ordering::Relaxed);
            b
        }
        Choice::Pick(b) => {
            counters.maglev_pick.fetch_add(1, Ordering::Relaxed);
            b
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
    balancer.established(client_ip, backend);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    counters.active.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%peer, %backend, error = %e, "relay ended with an error");
    }
    counters.active.fetch_sub(1, Ordering::Relaxed);
}
