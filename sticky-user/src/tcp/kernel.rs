//! tcp mode in the kernel: load the eBPF object with the flags' map sizes, configure the SNAT address
//! and ports, write the services, attach to the interfaces, then only follow backend changes and
//! report usage. No packet of a balanced flow ever reaches this process.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    sync::{Arc, Mutex},
};

use sticky_common::{DatapathConfig, Ip6};

use super::TcpError;
use crate::{
    config::TcpConfig,
    datapath::{Datapath, DatapathError, route, sizes::MapSizes, sync::MapSync},
    lock::lock,
    model::TcpService,
};

/// Why the kernel path did not start.
#[derive(Debug)]
pub enum StartError {
    /// It cannot run here (no object, no privileges, verifier, attach): serve in user space instead.
    Unavailable(DatapathError),
    /// It runs but the configuration is wrong (too many backends, no SNAT address): an error to report.
    Config(TcpError),
}

/// A loaded, configured and attached kernel path.
#[derive(Debug)]
pub struct Kernel {
    datapath: Arc<Mutex<Datapath>>,
    sync: MapSync,
    /// The interfaces the classifier is attached to.
    ifaces: Vec<String>,
}

/// The map capacities `config` asks for.
#[must_use]
pub fn map_sizes(config: &TcpConfig) -> MapSizes {
    let l = &config.limits;
    MapSizes {
        services: l.max_services.max(1),
        backends: l.max_backends.max(1),
        conns: l.max_flows.max(1).saturating_mul(2),
        half_open: l.max_half_open.max(1).saturating_mul(2),
        affinity: l.max_affinity.max(1),
        // tcp mode splices nothing: the smallest size the kernel accepts
        splice: 1,
    }
}

/// Loads, configures and attaches the kernel path for `services` (at least one, with backends).
///
/// # Errors
/// See [`StartError`].
pub fn start(config: &TcpConfig, services: &[TcpService]) -> Result<Kernel, StartError> {
    let sizes = map_sizes(config);
    let mut datapath =
        Datapath::load_with(crate::telemetry::kernel_log_level(), &sizes).map_err(StartError::Unavailable)?;
    if services.iter().all(|s| s.backends.is_empty()) {
        return Err(StartError::Config(TcpError::NoBackends));
    }
    // One SNAT address per family that has backends: IPv4 from --snat-addr or the route towards the
    // first IPv4 backend, IPv6 from the route towards the first IPv6 backend. A family without
    // backends keeps its L4 path off (0 / `::` in CONFIG).
    let first_of = |v6: bool| services.iter().flat_map(|s| &s.backends).find(|b| b.is_ipv6() == v6).copied();
    let snat_addr = match (config.snat_addr, first_of(false)) {
        (Some(a), _) => Some(IpAddr::V4(a)),
        (None, Some(first)) => Some(source_addr_towards(first).map_err(StartError::Config)?),
        (None, None) => None,
    };
    let snat_addr6 = match first_of(true) {
        Some(first) => Some(source_addr_towards(first).map_err(StartError::Config)?),
        None => None,
    };
    warn_on_port_overlap(config.snat_ports.low, config.snat_ports.high);
    let datapath_config = DatapathConfig {
        snat_addr: match snat_addr {
            Some(IpAddr::V4(a)) => u32::from(a).to_be(),
            _ => 0,
        },
        nat_port_min: config.snat_ports.low,
        nat_port_max: config.snat_ports.high,
        pad: 0,
        snat_addr6: match snat_addr6 {
            Some(IpAddr::V6(a)) => Ip6::from_octets(a.octets()),
            _ => Ip6::default(),
        },
    };
    let ifaces = if config.ifaces.is_empty() { default_ifaces() } else { config.ifaces.clone() };
    // A mistyped --iface is a configuration error, not a reason to fall back to user space.
    if let Some(missing) = ifaces.iter().find(|i| !std::path::Path::new("/sys/class/net").join(i).exists()) {
        return Err(StartError::Config(TcpError::NoInterface { iface: missing.clone() }));
    }
    for service in services {
        check_routes(service, &ifaces).map_err(StartError::Config)?;
    }
    let mut sync = MapSync::new(sizes.backends);
    let maps = datapath.tcp();
    maps.set_config(&datapath_config).map_err(|e| StartError::Config(e.into()))?;
    for service in services {
        sync.apply(maps, service).map_err(|e| StartError::Config(e.into()))?;
    }
    for iface in &ifaces {
        datapath.attach_tc(iface).map_err(StartError::Unavailable)?;
    }
    for service in services {
        tracing::info!(
            service = %service.name, vip = %service.vip, backends = service.backends.len(),
            snat_addr = ?if service.vip.is_ipv6() { snat_addr6 } else { snat_addr },
            ifaces = ?ifaces, affinity_timeout = ?service.affinity_timeout, "tcp mode in the kernel"
        );
    }
    datapath.spawn_log_drain();
    Ok(Kernel { datapath: Arc::new(Mutex::new(datapath)), sync, ifaces })
}

impl Kernel {
    /// The loaded object, for `/metrics` (usage walks the maps).
    #[must_use]
    pub fn datapath(&self) -> Arc<Mutex<Datapath>> {
        self.datapath.clone()
    }

    /// The interfaces the classifier is attached to.
    #[must_use]
    pub fn ifaces(&self) -> &[String] {
        &self.ifaces
    }

    /// The kernel's id of `vip`'s service (the `service` of its affinity keys).
    #[must_use]
    pub fn service_id(&self, vip: SocketAddr) -> Option<u32> {
        self.sync.service_id(vip)
    }

    /// The kernel's id of `backend` in `vip`'s service (for naming flows per backend).
    #[must_use]
    pub fn backend_id(&self, vip: SocketAddr, backend: SocketAddr) -> Option<sticky_common::BackendId> {
        self.sync.backend_id(vip, backend)
    }

    /// Writes `services`' backend sets, changing only what differs; a set-up that would black-hole
    /// flows, or a write the maps refuse, is logged and the current backends stay.
    pub fn update(&mut self, services: &[TcpService]) {
        for service in services {
            let written = check_routes(service, &self.ifaces)
                .and_then(|()| self.sync.apply(lock(&self.datapath).tcp(), service).map_err(TcpError::from));
            match written {
                Ok(report) => tracing::info!(
                    service = %service.name, added = ?report.added, draining = ?report.removed,
                    slots_changed = report.slots_changed, "backends reloaded"
                ),
                Err(e) => tracing::warn!(
                    service = %service.name, error = %crate::telemetry::chain(&e),
                    "reload failed; keeping the current backends"
                ),
            }
        }
    }
}

/// Refuses a set-up that would black-hole flows: every attached interface must forward the
/// service's family (`bpf_fib_lookup` refuses otherwise), and every backend must be routed out of an attached
/// interface (its replies arrive there and must be translated back) and not be local (a local
/// backend's replies never cross tc ingress).
fn check_routes(service: &TcpService, ifaces: &[String]) -> Result<(), TcpError> {
    let v6 = service.vip.is_ipv6();
    for iface in ifaces {
        let on = if v6 { route::forwarding6(iface) } else { route::forwarding(iface) }
            .map_err(|source| TcpError::Route { what: format!("forwarding on {iface}"), source })?;
        if on == Some(false) {
            return Err(if v6 {
                TcpError::NoForwarding6 { iface: iface.clone() }
            } else {
                TcpError::NoForwarding { iface: iface.clone() }
            });
        }
    }
    for backend in &service.backends {
        let found = route::lookup(backend.ip())
            .map_err(|source| TcpError::Route { what: format!("the route to {backend}"), source })?;
        if found.local {
            return Err(TcpError::LocalBackend { backend: *backend });
        }
        if !ifaces.contains(&found.iface) {
            return Err(TcpError::ReplyIfaceNotAttached {
                backend: *backend,
                iface: found.iface,
                attached: ifaces.join(","),
            });
        }
    }
    Ok(())
}

/// The source address the kernel picks to reach `backend` (a UDP connect sends nothing), of the
/// backend's family.
fn source_addr_towards(backend: SocketAddr) -> Result<IpAddr, TcpError> {
    let probe = || -> std::io::Result<IpAddr> {
        let any: IpAddr = if backend.is_ipv6() { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
        let socket = UdpSocket::bind((any, 0))?;
        socket.connect(backend)?;
        Ok(socket.local_addr()?.ip())
    };
    probe().map_err(|source| TcpError::SnatAddr { backend, source })
}

/// Warns when the SNAT ports overlap this host's ephemeral ports: a local connection could then
/// collide with a translated flow's 4-tuple.
fn warn_on_port_overlap(low: u16, high: u16) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else { return };
    let mut it = text.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next())
        && low <= hi
        && lo <= high
    {
        tracing::warn!(
            snat_ports = %format!("{low}-{high}"), ephemeral = %format!("{lo}-{hi}"),
            "--snat-ports overlaps net.ipv4.ip_local_port_range; local connections may collide with NATed flows"
        );
    }
}

/// Every interface but loopback and bridge/bond ports (their bridge sees their traffic, addressed to it).
fn default_ifaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    let mut out: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "lo" && !e.path().join("master").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}
