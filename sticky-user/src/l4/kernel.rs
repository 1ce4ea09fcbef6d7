//! tcp mode in the kernel: load the eBPF object with the flags' map sizes, configure the SNAT address
//! and ports, write the service, attach to the interfaces, then only follow reloads and serve usage.
//! No packet of a balanced flow ever reaches this process.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{Arc, Mutex},
};

use sticky_common::DatapathConfig;

use super::{L4Error, TcpArgs, admin, hangup, metrics};
use crate::datapath::{
    Datapath, DatapathError, route,
    sync::{ServiceSpec, Sync},
};

/// Why the kernel path did not start.
#[derive(Debug)]
pub enum StartError {
    /// It cannot run here (no object, no privileges, verifier, attach): serve in user space instead.
    Unavailable(DatapathError),
    /// It runs but the configuration is wrong (too many backends, no SNAT address): an error to report.
    Config(L4Error),
}

/// A loaded, configured and attached kernel path.
pub struct Kernel {
    datapath: Arc<Mutex<Datapath>>,
    sync: Sync,
    /// The interfaces the classifier is attached to.
    ifaces: Vec<String>,
}

/// Loads, configures and attaches the kernel path for `spec`.
///
/// # Errors
/// See [`StartError`].
pub fn start(args: &TcpArgs, spec: &ServiceSpec) -> Result<Kernel, StartError> {
    let sizes = args.map_sizes();
    let mut datapath =
        Datapath::load_with(crate::telemetry::kernel_log_level(), &sizes).map_err(StartError::Unavailable)?;
    let snat_addr = match args.snat_addr {
        Some(a) => a,
        None => source_addr_towards(spec.backends[0]).map_err(StartError::Config)?,
    };
    warn_on_port_overlap(args.snat_ports.low, args.snat_ports.high);
    let config = DatapathConfig {
        snat_addr: u32::from(snat_addr).to_be(),
        nat_port_min: args.snat_ports.low,
        nat_port_max: args.snat_ports.high,
        pad: 0,
    };
    let ifaces = if args.ifaces.is_empty() { default_ifaces() } else { args.ifaces.clone() };
    // A mistyped --iface is a configuration error, not a reason to fall back to user space.
    if let Some(missing) = ifaces.iter().find(|i| !std::path::Path::new("/sys/class/net").join(i).exists()) {
        return Err(StartError::Config(L4Error::NoInterface { iface: missing.clone() }));
    }
    check_routes(spec, &ifaces).map_err(StartError::Config)?;
    let mut sync = Sync::new(sizes.backends);
    let l4 = datapath.l4();
    l4.set_config(&config).map_err(|e| StartError::Config(e.into()))?;
    let report = sync.apply(l4, spec).map_err(|e| StartError::Config(e.into()))?;
    for iface in &ifaces {
        datapath.attach_tc(iface).map_err(StartError::Unavailable)?;
    }
    tracing::info!(
        vip = %spec.vip, backends = report.added.len(), %snat_addr, ifaces = ?ifaces,
        affinity_timeout = ?spec.affinity_timeout, "tcp mode in the kernel"
    );
    Ok(Kernel { datapath: Arc::new(Mutex::new(datapath)), sync, ifaces })
}

impl Kernel {
    /// Serves `/metrics` if asked, applies the backends file on SIGHUP, until `shutdown`.
    /// Dropping the datapath at the end detaches the programs.
    ///
    /// # Errors
    /// The admin address cannot be bound, or a reload cannot be written to the maps.
    pub async fn run(mut self, args: &TcpArgs, shutdown: impl Future<Output = ()>) -> Result<(), L4Error> {
        self.datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner).spawn_log_drain();
        if let Some(addr) = args.admin {
            let datapath = Arc::clone(&self.datapath);
            admin::spawn(addr, move || {
                let dp = datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match dp.usage() {
                    Ok(usage) => metrics::render_kernel(&usage),
                    Err(e) => format!("# error: {}\n", crate::telemetry::chain(&e)),
                }
            })
            .await?;
        }
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = hangup(&mut hup) => {}
            }
            let spec = match args.service().and_then(|spec| check_routes(&spec, &self.ifaces).map(|()| spec)) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "reload failed; keeping the current backends");
                    continue;
                }
            };
            let mut dp = self.datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let report = self.sync.apply(dp.l4(), &spec)?;
            tracing::info!(
                added = ?report.added, draining = ?report.removed, slots_changed = report.slots_changed,
                "backends reloaded"
            );
        }
    }
}

/// Refuses a set-up that would black-hole flows: every attached interface must forward IPv4
/// (`bpf_fib_lookup` refuses otherwise), and every backend must be routed out of an attached
/// interface (its replies arrive there and must be translated back) and not be local (a local
/// backend's replies never cross tc ingress).
fn check_routes(spec: &ServiceSpec, ifaces: &[String]) -> Result<(), L4Error> {
    for iface in ifaces {
        let on = route::forwarding(iface)
            .map_err(|source| L4Error::Route { what: format!("forwarding on {iface}"), source })?;
        if on == Some(false) {
            return Err(L4Error::NoForwarding { iface: iface.clone() });
        }
    }
    for backend in &spec.backends {
        let found = route::lookup(*backend.ip())
            .map_err(|source| L4Error::Route { what: format!("the route to {backend}"), source })?;
        if found.local {
            return Err(L4Error::LocalBackend { backend: *backend });
        }
        if !ifaces.contains(&found.iface) {
            return Err(L4Error::ReplyIfaceNotAttached {
                backend: *backend,
                iface: found.iface,
                attached: ifaces.join(","),
            });
        }
    }
    Ok(())
}

/// The source address the kernel picks to reach `backend` (a UDP connect sends nothing).
fn source_addr_towards(backend: SocketAddrV4) -> Result<Ipv4Addr, L4Error> {
    let probe = || -> std::io::Result<Ipv4Addr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect(backend)?;
        match socket.local_addr()? {
            std::net::SocketAddr::V4(a) => Ok(*a.ip()),
            std::net::SocketAddr::V6(_) => Err(std::io::Error::other("IPv6 source address")),
        }
    };
    probe().map_err(|source| L4Error::SnatAddr { backend, source })
}

/// Warns when the SNAT ports overlap this host's ephemeral ports: a local connection could then
/// collide with a NATed flow's 4-tuple.
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
