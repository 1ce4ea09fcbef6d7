//! tcp mode's runtime: L4 client affinity for plain TCP services, the ones `sticky run --mode tcp`
//! gives by flags and the ones Swarm labels mark `sticky.mode=tcp`.
//!
//! In the kernel when it can ([`kernel`]: the eBPF tc program does full NAT, user space only writes
//! the backend sets into the maps and reads usage), else in user space ([`user`]: one tokio proxy
//! per service with the same decisions, from the same [`crate::policy`] code). Swarm's services
//! run in user space on a port from the listener holder by default; one labelled
//! `sticky.tcp.path=kernel` runs in the kernel inside sticky's container ([`container`]): its port
//! is published by sticky's own service in host mode, so its packets enter the container on the
//! `docker_gwbridge` interface, addressed to the container's address there, which is the VIP the
//! kernel matches. Backend sets come from discovery ([`TcpMode::update`]), minus the backends the
//! admin API drains ([`Control`]); `/metrics` and the admin API read [`TcpMetrics`].

pub mod container;
pub mod control;
pub mod kernel;
pub mod user;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, OnceLock},
};

pub use self::control::{Control, DrainError};
use crate::{
    config::TcpConfig,
    datapath::{Datapath, DatapathError, tcp::Usage},
    lock::lock,
    model::{ServiceId, TcpPath, TcpService},
};

/// A backend's slot in the kernel's maps.
type BackendId = sticky_common::BackendId;

/// What can stop tcp mode.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// The kernel path loaded but its maps refused the configuration.
    #[error("failed to write tcp mode's kernel maps")]
    Datapath(#[from] DatapathError),
    /// An --iface that does not exist.
    #[error("no interface {iface} (see `ip link`)")]
    NoInterface {
        /// The name given.
        iface: String,
    },
    /// An attached interface does not forward IPv4, so the kernel's FIB lookup refuses every flow.
    #[error(
        "tcp mode in the kernel needs IPv4 forwarding on {iface} (bpf_fib_lookup refuses to route otherwise): \
         sysctl -w net.ipv4.conf.{iface}.forwarding=1, or --no-ebpf"
    )]
    NoForwarding {
        /// The interface.
        iface: String,
    },
    /// An attached interface does not forward IPv6 (an IPv6 service).
    #[error(
        "tcp mode in the kernel needs IPv6 forwarding on {iface} for an IPv6 VIP (bpf_fib_lookup refuses to route \
         otherwise): sysctl -w net.ipv6.conf.{iface}.forwarding=1, or --no-ebpf"
    )]
    NoForwarding6 {
        /// The interface.
        iface: String,
    },
    /// A backend's replies would arrive on an interface the classifier is not attached to.
    #[error(
        "replies from backend {backend} arrive on {iface}, where the kernel path is not attached \
         (--iface {attached}): add --iface {iface}"
    )]
    ReplyIfaceNotAttached {
        /// The backend.
        backend: SocketAddr,
        /// The interface that routes to it.
        iface: String,
        /// The interfaces attached, comma-separated.
        attached: String,
    },
    /// A backend is an address of this host: its replies never cross tc ingress.
    #[error("backend {backend} is an address of this host, which the kernel path cannot balance to: use --no-ebpf")]
    LocalBackend {
        /// The backend.
        backend: SocketAddr,
    },
    /// A routing fact could not be read.
    #[error("failed to read {what}")]
    Route {
        /// What was read.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No backend to work out the SNAT address from.
    #[error("no backend to reach, so no source address to NAT with; give --snat-addr")]
    NoBackends,
    /// The SNAT address could not be worked out.
    #[error("cannot tell the source address towards {backend}; give --snat-addr")]
    SnatAddr {
        /// The backend probed.
        backend: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The user-space path cannot listen on a service's address (bound here, or taken from the
    /// listener holder with `--listen-from`).
    #[error("cannot listen for the service")]
    Listen(#[from] crate::listen::ListenError),
    /// The user-space path cannot register a listener with the runtime.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// tcp mode serving its services, in the kernel or in user space.
#[derive(Debug)]
pub struct TcpMode {
    config: TcpConfig,
    /// `--mode tcp`'s service given by flags (else Swarm's, which come and go).
    statically: bool,
    /// The kernel path, once started (at start for `--mode tcp`, at the first Swarm service
    /// labelled `sticky.tcp.path=kernel` with a backend).
    kernel: Option<kernel::Kernel>,
    /// Set once the kernel path failed to start for Swarm's services (said once; they are served
    /// in user space from then on).
    kernel_failed: bool,
    /// The address Swarm's kernel-path services are matched on (see [`container`]).
    container_addr: Option<std::net::Ipv4Addr>,
    /// Each kernel-path service as last written to the maps (with the container's address).
    kernel_applied: HashMap<ServiceId, TcpService>,
    /// User-space services on sockets from `--listen-from` (or bound here).
    user: user::Listeners,
    /// Swarm's kernel-path services while the kernel path cannot serve them: relayed in user space
    /// on sockets bound in sticky's own network namespace, where their published port arrives.
    local: user::Listeners,
    metrics: TcpMetrics,
    /// Whether the user-space path has said once that Swarm's services run there.
    announced: bool,
}

impl TcpMode {
    /// Starts serving `services`: in the kernel if `config` allows it and eBPF loads and attaches,
    /// else (after one line saying why) in user space, on listeners from `source` (bound here, or
    /// taken from the listener holder).
    ///
    /// # Errors
    /// The kernel path refuses the configuration (a set-up that would black-hole flows), or the
    /// user-space path cannot bind a service given by flags.
    pub async fn start(
        config: &TcpConfig,
        services: &[TcpService],
        source: crate::listen::Source,
    ) -> Result<Self, TcpError> {
        let statically = config.service.is_some();
        let max_affinity = config.limits.max_affinity;
        let from = config.clients.proxy_protocol_from.clone();
        let user = user::Listeners::new(max_affinity, source, from.clone());
        let local = user::Listeners::new(max_affinity, crate::listen::Source::Bind, from).stopping_with(&user);
        let metrics = TcpMetrics {
            kernel: Arc::default(),
            services: user.published(),
            local: local.published(),
            control: Arc::default(),
        };
        let mut mode = Self {
            config: config.clone(),
            statically,
            kernel: None,
            kernel_failed: false,
            container_addr: None,
            kernel_applied: HashMap::new(),
            user,
            local,
            metrics,
            announced: statically,
        };
        if !statically {
            mode.update(services).await;
            return Ok(mode);
        }
        // the kernel's NAT rewrites addresses and ports, never a stream's bytes: a PROXY protocol
        // header can be neither stripped (in) nor inserted (out) there
        let proxy_protocol = !config.clients.proxy_protocol_from.is_empty()
            || services.iter().any(|s| s.proxy_protocol != crate::proxy_protocol::Version::Off);
        if config.kernel && proxy_protocol {
            tracing::warn!(
                "tcp mode in user space: the PROXY protocol (--proxy-protocol-from or --backend-proxy-protocol) needs the stream's bytes, which the kernel path does not touch"
            );
        } else if config.kernel {
            match kernel::start(config, services) {
                Ok(kernel) => {
                    mode.publish_kernel(&kernel);
                    mode.kernel = Some(kernel);
                    *lock(&mode.metrics.control.services) = services.to_vec();
                    mode.note_kernel_ids(services);
                    return Ok(mode);
                }
                Err(kernel::StartError::Unavailable(e)) => tracing::warn!(
                    error = %crate::telemetry::chain(&e),
                    "eBPF data path unavailable; tcp mode runs in user space (same decisions, slower)"
                ),
                Err(kernel::StartError::Config(e)) => return Err(e),
            }
        } else {
            tracing::warn!("tcp mode in user space (--no-ebpf): every byte passes through this process");
        }
        // a service given by flags must be served, or sticky has nothing to do
        mode.user.update(services, true).await?;
        *lock(&mode.metrics.control.services) = services.to_vec();
        for s in services {
            tracing::info!(vip = %s.vip, backends = s.backends.len(), affinity_timeout = ?s.affinity_timeout, "tcp mode in user space");
        }
        Ok(mode)
    }

    /// Serves `services` from now on (the backend sets discovery last published), minus the
    /// backends the admin API drains.
    pub async fn update(&mut self, services: &[TcpService]) {
        let control = self.metrics.control.clone();
        *lock(&control.services) = services.to_vec();
        let effective = control.effective(services);
        if self.statically {
            match &mut self.kernel {
                Some(kernel) => {
                    kernel.update(&effective);
                    self.note_kernel_ids(&effective);
                }
                None => {
                    let _ = self.user.update(&effective, false).await;
                }
            }
            return;
        }
        let (kernel_path, user_path): (Vec<TcpService>, Vec<TcpService>) =
            effective.into_iter().partition(|s| s.path == TcpPath::Kernel);
        self.announce(&user_path);
        // without `strict` every failure is logged and retried, never returned
        let _ = self.user.update(&user_path, false).await;
        self.update_kernel_path(&kernel_path).await;
    }

    /// The drained backends changed (admin API): serve the last services again without them.
    pub async fn reapply(&mut self) {
        let services = lock(&self.metrics.control.services).clone();
        self.update(&services).await;
    }

    /// What the admin API's drain and `/api/backends` use.
    #[must_use]
    pub fn control(&self) -> Arc<Control> {
        self.metrics.control.clone()
    }

    /// Swarm's kernel-path services: written to the kernel's maps at the container's address, the
    /// kernel path started at the first one with a backend; in user space (bound here) if it cannot.
    async fn update_kernel_path(&mut self, services: &[TcpService]) {
        if self.kernel.is_none() && !self.kernel_failed && services.iter().any(|s| !s.backends.is_empty()) {
            self.start_kernel_path(services);
        }
        let Some(kernel) = &mut self.kernel else {
            // not started yet (no backend so far: nothing to serve), or failed: user space
            if self.kernel_failed {
                let _ = self.local.update(services, false).await;
            }
            return;
        };
        let Some(addr) = self.container_addr else { return };
        let mut wanted: Vec<TcpService> = services.iter().map(|s| container::at(s, addr)).collect();
        // a service that left (label removed, service gone) keeps its entry with no backend: its
        // open flows go on, new connections find no backend
        for (id, old) in &self.kernel_applied {
            if !wanted.iter().any(|s| &s.id == id) && !old.backends.is_empty() {
                wanted.push(TcpService { backends: Vec::new(), ..old.clone() });
            }
        }
        let changed: Vec<TcpService> =
            wanted.into_iter().filter(|s| self.kernel_applied.get(&s.id) != Some(s)).collect();
        if changed.is_empty() {
            return;
        }
        kernel.update(&changed);
        for s in &changed {
            self.kernel_applied.insert(s.id.clone(), s.clone());
        }
        let applied: Vec<TcpService> = self.kernel_applied.values().cloned().collect();
        self.note_kernel_ids(&applied);
    }

    /// Starts the kernel path for Swarm's kernel-path services; on failure says why once and
    /// leaves them to user space.
    fn start_kernel_path(&mut self, services: &[TcpService]) {
        let refuse = |why: &str| {
            tracing::warn!(
                services = ?services.iter().map(|s| &s.name).collect::<Vec<_>>(), why,
                "sticky.tcp.path=kernel: tcp services served in user space instead, on sockets bound in sticky's container"
            );
        };
        self.kernel_failed = true;
        if !self.config.kernel {
            return refuse("--no-ebpf");
        }
        if let Some(s) = services.iter().find(|s| s.proxy_protocol != crate::proxy_protocol::Version::Off) {
            return refuse(&format!("{} sends the PROXY protocol, which the kernel's NAT cannot insert", s.name));
        }
        let addr = match container::published_addr() {
            Ok(a) => a,
            Err(e) => return refuse(&format!("no address for published ports ({e})")),
        };
        let at: Vec<TcpService> =
            services.iter().filter(|s| !s.backends.is_empty()).map(|s| container::at(s, addr)).collect();
        match kernel::start(&self.config, &at) {
            Ok(kernel) => {
                tracing::info!(
                    address = %addr, ifaces = ?kernel.ifaces(),
                    "tcp services labelled sticky.tcp.path=kernel: in the kernel, for the ports sticky's service publishes in host mode"
                );
                self.publish_kernel(&kernel);
                self.kernel = Some(kernel);
                self.container_addr = Some(addr);
                self.kernel_failed = false;
                self.note_kernel_ids(&at);
                for s in at {
                    self.kernel_applied.insert(s.id.clone(), s);
                }
            }
            Err(kernel::StartError::Unavailable(e)) => refuse(&crate::telemetry::chain(&e)),
            Err(kernel::StartError::Config(e)) => refuse(&crate::telemetry::chain(&e)),
        }
    }

    /// Makes the kernel path's maps visible to `/metrics` and the admin API.
    fn publish_kernel(&self, kernel: &kernel::Kernel) {
        let _ = self.metrics.kernel.set(KernelView {
            datapath: kernel.datapath(),
            ifaces: kernel.ifaces().into(),
            ids: Mutex::default(),
            services: Mutex::default(),
        });
    }

    /// Remembers which kernel backend id serves which member, so that flows per id can be named.
    fn note_kernel_ids(&self, services: &[TcpService]) {
        let (Some(kernel), Some(view)) = (&self.kernel, self.metrics.kernel.get()) else { return };
        let mut ids = lock(&view.ids);
        ids.clear();
        let mut numbers = lock(&view.services);
        numbers.clear();
        for s in services {
            if let Some(n) = kernel.service_id(s.vip) {
                numbers.insert(s.id.clone(), n);
            }
            for b in &s.backends {
                if let Some(id) = kernel.backend_id(s.vip, *b) {
                    ids.insert((b.is_ipv6(), id), (s.id.clone(), *b));
                }
            }
        }
    }

    /// What `/metrics` reads.
    #[must_use]
    pub fn metrics(&self) -> TcpMetrics {
        self.metrics.clone()
    }

    /// What stops the user-space listeners at sticky's graceful stop (none for the kernel path,
    /// which has no listener).
    #[must_use]
    pub fn stopper(&self) -> Option<Arc<tokio::sync::watch::Sender<bool>>> {
        if self.statically && self.kernel.is_some() {
            return None;
        }
        Some(self.user.stopper())
    }

    /// Says once that Swarm's tcp services are served in user space.
    fn announce(&mut self, services: &[TcpService]) {
        if !self.announced && !services.is_empty() {
            tracing::info!(
                "tcp services from Swarm labels are served in user space (same affinity and Maglev decisions as the kernel path; sticky.tcp.path=kernel for the kernel)"
            );
            self.announced = true;
        }
    }
}

/// The kernel path as `/metrics` and the admin API see it.
#[derive(Debug)]
struct KernelView {
    datapath: Arc<Mutex<Datapath>>,
    ifaces: Arc<[String]>,
    /// Kernel backend id (per family: `BACKENDS` and `BACKENDS6` number apart, so the key says
    /// whether it is an IPv6 one) -> (service, backend address).
    ids: Mutex<HashMap<(bool, BackendId), (ServiceId, SocketAddr)>>,
    /// Service -> its kernel id (the `service` of its affinity keys).
    services: Mutex<HashMap<ServiceId, u32>>,
}

/// The numbers of tcp mode, read by `/metrics` and the admin API.
#[derive(Clone, Debug, Default)]
pub struct TcpMetrics {
    kernel: Arc<OnceLock<KernelView>>,
    services: user::Published,
    local: user::Published,
    control: Arc<Control>,
}

/// How tcp mode would place a new connection of one client, for `/api/explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Whether the kernel path serves the service (else the user-space relay).
    pub kernel: bool,
    /// The service's address.
    pub vip: SocketAddr,
    /// The client's Maglev slot.
    pub slot: u32,
    /// The backend that owns the slot (none: no backend).
    pub maglev: Option<SocketAddr>,
    /// The backend a fresh affinity entry names, if it is still in the set.
    pub affinity: Option<SocketAddr>,
    /// Whether the affinity table was read (the kernel's is not before the service reaches the maps).
    pub affinity_read: bool,
    /// The service's affinity timeout (zero: affinity off).
    pub affinity_timeout: std::time::Duration,
    /// How long ago the kernel's entry was last used (kernel path, with `affinity`).
    pub affinity_age: Option<std::time::Duration>,
}

/// The kernel's affinity decision for one `AFFINITY`/`AFFINITY6` entry, as `select_backend` in
/// sticky-ebpf makes it: fresh under `timeout_ns` at `now_ns` (both `CLOCK_MONOTONIC`) and naming
/// a backend (`backend`, resolved from its id) still in `set`. Gives that backend and the entry's age.
fn kernel_affinity(
    entry: &sticky_common::AffinityValue,
    now_ns: u64,
    timeout_ns: u64,
    backend: Option<SocketAddr>,
    set: &[SocketAddr],
) -> Option<(SocketAddr, std::time::Duration)> {
    let backend = backend.filter(|b| set.contains(b))?;
    (timeout_ns > 0 && sticky_common::affinity::is_fresh(entry, now_ns, timeout_ns))
        .then(|| (backend, std::time::Duration::from_nanos(now_ns.saturating_sub(entry.last_used_ns))))
}

/// tcp mode's numbers at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpSnapshot {
    /// The kernel path's counters and map usage (none in user space, or if the maps cannot be read).
    pub kernel: Option<Usage>,
    /// Each service served in user space: its name and counters.
    pub services: Vec<(String, user::Snapshot)>,
    /// Every backend of every tcp service, with its drain state and connections.
    pub backends: Vec<BackendRow>,
}

/// One backend of a tcp service at one moment, as `/metrics` and `/api/backends` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendRow {
    /// Its service's name.
    pub service: String,
    /// Its id (Swarm task id or slot; the address for static backends).
    pub id: String,
    /// Address.
    pub addr: String,
    /// `active` or `draining` (by Swarm or by the admin API).
    pub state: &'static str,
    /// `kernel` or `user space`.
    pub path: &'static str,
    /// Connections now (user space: relays open; kernel: its flows in the connection table,
    /// finished ones until the LRU evicts them).
    pub active: u64,
    /// Connections relayed to it since start (user space only; the kernel counts packets, not
    /// connections per backend).
    pub connections: Option<u64>,
    /// Bytes from clients to it, counted as each relay ends (user space only).
    pub bytes_to_backend: Option<u64>,
    /// Bytes from it to clients, counted as each relay ends (user space only).
    pub bytes_to_client: Option<u64>,
}

impl TcpMetrics {
    /// The interfaces the kernel path is attached to, or none when tcp mode runs in user space.
    #[must_use]
    pub fn attached(&self) -> Option<&[String]> {
        self.kernel.get().map(|k| &*k.ifaces)
    }

    /// Where a new connection of `client` to service `name` would go now (see [`Placement`]); none
    /// for an unknown service. Reads only: the affinity table is not touched.
    #[must_use]
    pub fn placement(&self, name: &str, client: IpAddr) -> Option<Placement> {
        let balancer = lock(&self.services)
            .iter()
            .chain(lock(&self.local).iter())
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone());
        if let Some(balancer) = balancer {
            return Some(balancer.placement(client));
        }
        // not relayed here: the kernel's, over the set it was given (drained backends left out)
        let view = self.kernel.get()?;
        let services = lock(&self.control.services).clone();
        let spec = self.control.effective(&services).into_iter().find(|s| s.name == name || &*s.id.0 == name)?;
        let table = crate::policy::maglev::Maglev::build(&spec.backends);
        // the client's entry, looked up (never written); the clock is read after it, as the kernel does
        let number = lock(&view.services).get(&spec.id).copied();
        let entry = number.and_then(|n| lock(&view.datapath).tcp().affinity_of(client, n));
        let affinity = entry.and_then(|e| {
            let named =
                lock(&view.ids).get(&(client.is_ipv6(), e.backend)).filter(|(s, _)| *s == spec.id).map(|(_, a)| *a);
            let timeout = u64::try_from(spec.affinity_timeout.as_nanos()).unwrap_or(u64::MAX);
            kernel_affinity(&e, crate::datapath::tcp::kernel_now_ns(), timeout, named, &spec.backends)
        });
        Some(Placement {
            kernel: true,
            vip: spec.vip,
            slot: crate::policy::maglev::client_slot(client),
            maglev: table.pick(client),
            affinity: affinity.map(|(b, _)| b),
            affinity_read: number.is_some(),
            affinity_timeout: spec.affinity_timeout,
            affinity_age: affinity.map(|(_, age)| age),
        })
    }

    /// The names of the services tcp mode serves.
    #[must_use]
    pub fn service_names(&self) -> Vec<String> {
        lock(&self.control.services).iter().map(|s| s.name.clone()).collect()
    }

    /// Connections the user-space path relays now, over every service.
    #[must_use]
    pub fn relayed(&self) -> u64 {
        let count = |p: &user::Published| lock(p).iter().map(|(_, b)| b.snapshot().active).sum::<u64>();
        count(&self.services) + count(&self.local)
    }

    /// Marks `backend` of `service` draining (or active again): see [`Control::set_draining`].
    ///
    /// # Errors
    /// No such service or backend.
    pub fn set_draining(&self, service: &str, backend: &str, drain: bool) -> Result<(), DrainError> {
        self.control.set_draining(service, backend, drain)
    }

    /// The numbers now (the kernel's are a walk over the maps: a syscall or two per entry).
    #[must_use]
    pub fn snapshot(&self) -> TcpSnapshot {
        let kernel = self.kernel.get().and_then(|k| match lock(&k.datapath).usage() {
            Ok(usage) => Some(usage),
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot read tcp mode's kernel maps for /metrics");
                None
            }
        });
        let balancers: Vec<(String, Arc<user::Balancer>)> =
            lock(&self.services).iter().chain(lock(&self.local).iter()).cloned().collect();
        let services = balancers.iter().map(|(name, b)| (name.clone(), b.snapshot())).collect();
        let backends = self.backends(kernel.as_ref(), &balancers);
        TcpSnapshot { kernel, services, backends }
    }

    /// Every member of every service with its state and numbers.
    fn backends(&self, usage: Option<&Usage>, balancers: &[(String, Arc<user::Balancer>)]) -> Vec<BackendRow> {
        let services = lock(&self.control.services).clone();
        // kernel flows by (service, address)
        let mut flows: HashMap<(ServiceId, SocketAddr), u64> = HashMap::new();
        if let (Some(usage), Some(view)) = (usage, self.kernel.get()) {
            let ids = lock(&view.ids);
            let v4 = usage.flows_per_backend.iter().map(|(id, n)| ((false, *id), n));
            let v6 = usage.flows_per_backend6.iter().map(|(id, n)| ((true, *id), n));
            for (id, n) in v4.chain(v6) {
                if let Some(key) = ids.get(&id) {
                    *flows.entry(key.clone()).or_default() += n;
                }
            }
        }
        let mut rows = Vec::new();
        for s in &services {
            let balancer = balancers.iter().find(|(name, _)| name == &s.name).map(|(_, b)| b);
            let in_kernel = balancer.is_none() && self.kernel.get().is_some();
            for m in &s.members {
                let draining = m.draining || self.control.drained(&s.id, &m.id);
                let mut row = BackendRow {
                    service: s.name.clone(),
                    id: m.id.clone(),
                    addr: m.addr.to_string(),
                    state: if draining { "draining" } else { "active" },
                    path: if in_kernel { "kernel" } else { "user space" },
                    ..BackendRow::default()
                };
                if let Some(b) = balancer {
                    let c = b.backend(m.addr);
                    row.active = c.active;
                    row.connections = Some(c.opened);
                    row.bytes_to_backend = Some(c.to_backend);
                    row.bytes_to_client = Some(c.to_client);
                } else if in_kernel {
                    row.active = flows.get(&(s.id.clone(), m.addr)).copied().unwrap_or(0);
                }
                rows.push(row);
            }
        }
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests;
