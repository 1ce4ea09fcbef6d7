//! tcp mode's runtime: L4 client affinity for plain TCP services, the ones `sticky run --mode tcp`
//! gives by flags and the ones Swarm labels mark `sticky.mode=tcp`.
//!
//! In the kernel when it can ([`kernel`]: the eBPF tc program does full NAT, user space only writes
//! the backend sets into the maps and reads usage), else in user space ([`user`]: one tokio proxy
//! per service with the same decisions, from the same [`crate::policy`] code). Swarm's services are
//! always served in user space: the kernel path matches one VIP address per service, and a Swarm
//! task receives a service's clients on several addresses (its overlay addresses, `docker_gwbridge`
//! for published ports), which it does not cover yet. Backend sets come from discovery
//! ([`TcpMode::update`]); `/metrics` reads [`TcpMetrics`].

pub mod kernel;
pub mod user;

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::{Arc, Mutex},
};

use crate::{
    config::TcpConfig,
    datapath::{Datapath, DatapathError, tcp::Usage},
    lock::lock,
    model::TcpService,
};

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
    /// A backend's replies would arrive on an interface the classifier is not attached to.
    #[error(
        "replies from backend {backend} arrive on {iface}, where the kernel path is not attached \
         (--iface {attached}): add --iface {iface}"
    )]
    ReplyIfaceNotAttached {
        /// The backend.
        backend: SocketAddrV4,
        /// The interface that routes to it.
        iface: String,
        /// The interfaces attached, comma-separated.
        attached: String,
    },
    /// A backend is an address of this host: its replies never cross tc ingress.
    #[error("backend {backend} is an address of this host, which the kernel path cannot balance to: use --no-ebpf")]
    LocalBackend {
        /// The backend.
        backend: SocketAddrV4,
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
        backend: SocketAddrV4,
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
    engine: Engine,
    metrics: TcpMetrics,
    /// Whether the user-space path has said once that Swarm's services run there.
    announced: bool,
}

#[derive(Debug)]
enum Engine {
    Kernel(kernel::Kernel),
    User(user::Listeners),
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
                    let metrics = TcpMetrics {
                        kernel: Some(kernel.datapath()),
                        services: Arc::default(),
                        ifaces: kernel.ifaces().into(),
                        kernel_services: Arc::new(Mutex::new(services.to_vec())),
                    };
                    return Ok(Self { engine: Engine::Kernel(kernel), metrics, announced: false });
                }
                Err(kernel::StartError::Unavailable(e)) => tracing::warn!(
                    error = %crate::telemetry::chain(&e),
                    "eBPF data path unavailable; tcp mode runs in user space (same decisions, slower)"
                ),
                Err(kernel::StartError::Config(e)) => return Err(e),
            }
        } else if statically {
            tracing::warn!("tcp mode in user space (--no-ebpf): every byte passes through this process");
        }
        let mut listeners =
            user::Listeners::new(config.limits.max_affinity, source, config.clients.proxy_protocol_from.clone());
        let metrics = TcpMetrics {
            kernel: None,
            services: listeners.published(),
            ifaces: Arc::default(),
            kernel_services: Arc::default(),
        };
        // a service given by flags must be served, or sticky has nothing to do; Swarm's come and go
        listeners.update(services, statically).await?;
        for s in services.iter().filter(|_| statically) {
            tracing::info!(vip = %s.vip, backends = s.backends.len(), affinity_timeout = ?s.affinity_timeout, "tcp mode in user space");
        }
        let mut mode = Self { engine: Engine::User(listeners), metrics, announced: statically };
        mode.announce(services);
        Ok(mode)
    }

    /// Serves `services` from now on (the backend sets discovery last published).
    pub async fn update(&mut self, services: &[TcpService]) {
        self.announce(services);
        match &mut self.engine {
            Engine::Kernel(kernel) => {
                kernel.update(services);
                services.clone_into(&mut lock(&self.metrics.kernel_services));
            }
            Engine::User(listeners) => {
                // without `strict` every failure is logged and retried, never returned
                let _ = listeners.update(services, false).await;
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
        match &self.engine {
            Engine::Kernel(_) => None,
            Engine::User(listeners) => Some(listeners.stopper()),
        }
    }

    /// Says once that Swarm's tcp services are served in user space.
    fn announce(&mut self, services: &[TcpService]) {
        if !self.announced && matches!(self.engine, Engine::User(_)) && !services.is_empty() {
            tracing::info!(
                "tcp services from Swarm labels are served in user space (same affinity and Maglev decisions as the kernel path)"
            );
            self.announced = true;
        }
    }
}

/// The numbers of tcp mode, read by `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct TcpMetrics {
    kernel: Option<Arc<Mutex<Datapath>>>,
    services: user::Published,
    ifaces: Arc<[String]>,
    /// The services the kernel path was last given (`/api/explain` rebuilds their Maglev tables).
    kernel_services: Arc<Mutex<Vec<TcpService>>>,
}

/// How tcp mode would place a new connection of one client, for `/api/explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Whether the kernel path serves the service (else the user-space relay).
    pub kernel: bool,
    /// The service's address.
    pub vip: SocketAddrV4,
    /// The client's Maglev slot.
    pub slot: u32,
    /// The backend that owns the slot (none: no backend).
    pub maglev: Option<SocketAddrV4>,
    /// The backend a live affinity entry names; `None` also when the table was not read (kernel).
    pub affinity: Option<SocketAddrV4>,
    /// Whether the affinity table was read (the user-space path's is; the kernel's is not).
    pub affinity_read: bool,
    /// The service's affinity timeout (zero: affinity off).
    pub affinity_timeout: std::time::Duration,
}

/// tcp mode's numbers at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpSnapshot {
    /// The kernel path's counters and map usage (none in user space, or if the maps cannot be read).
    pub kernel: Option<Usage>,
    /// Each service served in user space: its name and counters.
    pub services: Vec<(String, user::Snapshot)>,
}

impl TcpMetrics {
    /// The interfaces the kernel path is attached to, or none when tcp mode runs in user space.
    #[must_use]
    pub fn attached(&self) -> Option<&[String]> {
        self.kernel.as_ref().map(|_| &*self.ifaces)
    }

    /// Where a new connection of `client` to service `name` would go now (see [`Placement`]); none
    /// for an unknown service. Reads only: the affinity table is not touched.
    #[must_use]
    pub fn placement(&self, name: &str, client: std::net::Ipv4Addr) -> Option<Placement> {
        let slot = sticky_common::hash::maglev_slot(u32::from(client));
        if self.kernel.is_some() {
            let services = lock(&self.kernel_services);
            let spec = services.iter().find(|s| s.name == name || &*s.id.0 == name)?;
            let table = crate::policy::maglev::Maglev::build(&spec.backends);
            return Some(Placement {
                kernel: true,
                vip: spec.vip,
                slot,
                maglev: table.pick(client),
                affinity: None,
                affinity_read: false,
                affinity_timeout: spec.affinity_timeout,
            });
        }
        let balancer = lock(&self.services).iter().find(|(n, _)| n == name).map(|(_, b)| b.clone())?;
        Some(balancer.placement(client))
    }

    /// The names of the services tcp mode serves.
    #[must_use]
    pub fn service_names(&self) -> Vec<String> {
        if self.kernel.is_some() {
            return lock(&self.kernel_services).iter().map(|s| s.name.clone()).collect();
        }
        lock(&self.services).iter().map(|(n, _)| n.clone()).collect()
    }

    /// Connections the user-space path relays now, over every service.
    #[must_use]
    pub fn relayed(&self) -> u64 {
        lock(&self.services).iter().map(|(_, b)| b.snapshot().active).sum()
    }

    /// The numbers now (the kernel's are a walk over the maps: a syscall or two per entry).
    #[must_use]
    pub fn snapshot(&self) -> TcpSnapshot {
        let kernel = self.kernel.as_ref().and_then(|dp| match lock(dp).usage() {
            Ok(usage) => Some(usage),
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "cannot read tcp mode's kernel maps for /metrics");
                None
            }
        });
        let services = lock(&self.services).iter().map(|(name, b)| (name.clone(), b.snapshot())).collect();
        TcpSnapshot { kernel, services }
    }
}
