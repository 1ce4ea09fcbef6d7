//! `sticky run --mode tcp`: L4 client affinity for plain TCP services.
//!
//! In the kernel when it can ([`kernel`]: the eBPF tc program does full NAT, user space only writes
//! the backend set into the maps and reads usage), else in user space ([`fallback`]: a tokio proxy
//! with the same decisions, from the same [`crate::policy`] code). Both reload the backend set on
//! SIGHUP from `--backends-file`, and serve `/metrics` on `--admin` ([`metrics`]).

pub mod admin;
pub mod fallback;
pub mod kernel;
pub mod metrics;
pub mod swarm;

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use crate::datapath::{DatapathError, l4::MapSizes, sync::ServiceSpec};

/// The flags only tcp mode reads, grouped under "TCP mode" in `sticky run --help` (each also from the
/// environment variable named in its help). `--listen`, `--backend` and `--admin` are shared with
/// http mode ([`crate::config::RunArgs`]).
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "TCP mode (--mode tcp)")]
pub struct TcpFlags {
    /// A file of backends, one IP:PORT per line (`#` starts a comment), added to --backend. Re-read on
    /// SIGHUP: a backend that disappears drains (its open connections go on, it gets no new ones).
    #[arg(long, env = "STICKY_BACKENDS_FILE", value_name = "PATH")]
    pub backends_file: Option<PathBuf>,
    /// Interface to attach the kernel path to; repeat for more. Default: every interface except
    /// loopback and ports enslaved to a bridge or bond (the bridge itself is attached).
    #[arg(long = "iface", env = "STICKY_IFACES", value_name = "IFACE", value_delimiter = ',')]
    pub ifaces: Vec<String>,
    /// How long a client stays with its backend after its last new connection (e.g. `30s`, `10m`,
    /// `3h`); `0s` turns affinity off (Maglev alone, which moves clients when the backend set changes).
    #[arg(long, env = "STICKY_AFFINITY_TIMEOUT", value_name = "DURATION", default_value = "3h", value_parser = humantime::parse_duration)]
    pub affinity_timeout: Duration,
    /// Source address of balancer-to-backend packets (full NAT); backends must route it back here.
    /// Default: the address the kernel would use to reach the first backend.
    #[arg(long, env = "STICKY_SNAT_ADDR", value_name = "IPV4")]
    pub snat_addr: Option<Ipv4Addr>,
    /// Source ports of balancer-to-backend packets, LOW-HIGH inclusive. Must not overlap this host's
    /// ephemeral ports (net.ipv4.ip_local_port_range, 32768-60999 by default) or its listeners.
    #[arg(long, env = "STICKY_SNAT_PORTS", value_name = "LOW-HIGH", default_value = "61000-65535", value_parser = parse_port_range)]
    pub snat_ports: PortRange,
    /// Established flows the kernel tracks (CONNS holds two entries per flow); beyond it the least
    /// recently used are evicted and rebuilt on their next packet.
    #[arg(long, env = "STICKY_MAX_FLOWS", value_name = "N", default_value_t = sticky_common::maps::CONNS_MAX_ENTRIES / 2)]
    pub max_flows: u32,
    /// Flows in their handshake the kernel tracks (HALF_OPEN, two entries each); a SYN flood churns
    /// only these.
    #[arg(long, env = "STICKY_MAX_HALF_OPEN", value_name = "N", default_value_t = sticky_common::maps::HALF_OPEN_MAX_ENTRIES / 2)]
    pub max_half_open: u32,
    /// (client address, service) pairs whose affinity is remembered, kernel and fallback alike; beyond
    /// it the least recently used are forgotten (those clients re-pick through Maglev).
    #[arg(long, env = "STICKY_MAX_AFFINITY", value_name = "N", default_value_t = sticky_common::maps::AFFINITY_MAX_ENTRIES)]
    pub max_affinity: u32,
    /// Backend slots, over all services.
    #[arg(long, env = "STICKY_MAX_BACKENDS", value_name = "N", default_value_t = sticky_common::maps::BACKENDS_MAX_ENTRIES)]
    pub max_backends: u32,
    /// Services (each takes one Maglev row of 16381 slots, 64 KiB).
    #[arg(long, env = "STICKY_MAX_SERVICES", value_name = "N", default_value_t = sticky_common::maps::SERVICES_MAX_ENTRIES)]
    pub max_services: u32,
    /// Serve in user space even where the kernel path could load (tcp mode: the fallback proxy; http
    /// mode: no kernel splice, upgraded connections are relayed in user space).
    #[arg(long, env = "STICKY_NO_EBPF")]
    pub no_ebpf: bool,
}

impl Default for TcpFlags {
    /// The same values clap fills in when no flag is given.
    fn default() -> Self {
        Self {
            backends_file: None,
            ifaces: Vec::new(),
            affinity_timeout: Duration::from_secs(3 * 3600),
            snat_addr: None,
            snat_ports: PortRange { low: 61000, high: 65535 },
            max_flows: sticky_common::maps::CONNS_MAX_ENTRIES / 2,
            max_half_open: sticky_common::maps::HALF_OPEN_MAX_ENTRIES / 2,
            max_affinity: sticky_common::maps::AFFINITY_MAX_ENTRIES,
            max_backends: sticky_common::maps::BACKENDS_MAX_ENTRIES,
            max_services: sticky_common::maps::SERVICES_MAX_ENTRIES,
            no_ebpf: false,
        }
    }
}

/// Everything tcp mode runs with: the shared flags resolved for L4, and the tcp-only ones.
#[derive(Clone, Debug)]
pub struct TcpArgs {
    /// The service's virtual IP and port (IPv4). The kernel path needs the VIP routed to this host;
    /// the user-space fallback binds it, so it must be a local address there.
    pub listen: SocketAddrV4,
    /// Backends, IPv4 address and port.
    pub backends: Vec<SocketAddrV4>,
    /// See [`TcpFlags::backends_file`].
    pub backends_file: Option<PathBuf>,
    /// See [`TcpFlags::ifaces`].
    pub ifaces: Vec<String>,
    /// See [`TcpFlags::affinity_timeout`].
    pub affinity_timeout: Duration,
    /// See [`TcpFlags::snat_addr`].
    pub snat_addr: Option<Ipv4Addr>,
    /// See [`TcpFlags::snat_ports`].
    pub snat_ports: PortRange,
    /// See [`TcpFlags::max_flows`].
    pub max_flows: u32,
    /// See [`TcpFlags::max_half_open`].
    pub max_half_open: u32,
    /// See [`TcpFlags::max_affinity`].
    pub max_affinity: u32,
    /// See [`TcpFlags::max_backends`].
    pub max_backends: u32,
    /// See [`TcpFlags::max_services`].
    pub max_services: u32,
    /// See [`TcpFlags::no_ebpf`].
    pub no_ebpf: bool,
    /// Serve `GET /metrics` (Prometheus text: counters, map usage, flows per backend) on this address.
    pub admin: Option<SocketAddr>,
}

impl TcpArgs {
    /// Resolves `sticky run --mode tcp`'s flags: `--listen` must be an IPv4 VIP:PORT and each
    /// `--backend` an IPv4 `IP:PORT` (an optional `tcp://` is accepted).
    ///
    /// # Errors
    /// `--listen` is missing or not IPv4, or a backend is not `IP:PORT`; the message names the flag.
    pub fn from_run(run: &crate::config::RunArgs) -> Result<Self, String> {
        let listen = match run.listen {
            Some(SocketAddr::V4(v4)) => v4,
            Some(other) => return Err(format!("--listen {other}: tcp mode needs an IPv4 VIP:PORT")),
            None => return Err("--listen VIP:PORT is required with --mode tcp".to_owned()),
        };
        let backends = run
            .backends
            .iter()
            .map(|b| {
                let addr = b.strip_prefix("tcp://").unwrap_or(b);
                addr.parse::<SocketAddrV4>().map_err(|_| format!("--backend {b:?}: tcp mode needs IPv4 IP:PORT"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let f = run.tcp.clone();
        Ok(Self {
            listen,
            backends,
            backends_file: f.backends_file,
            ifaces: f.ifaces,
            affinity_timeout: f.affinity_timeout,
            snat_addr: f.snat_addr,
            snat_ports: f.snat_ports,
            max_flows: f.max_flows,
            max_half_open: f.max_half_open,
            max_affinity: f.max_affinity,
            max_backends: f.max_backends,
            max_services: f.max_services,
            no_ebpf: f.no_ebpf,
            admin: run.admin,
        })
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port.
    pub low: u16,
    /// Highest port (inclusive).
    pub high: u16,
}

fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let (low, high) = s.split_once('-').ok_or_else(|| format!("{s:?}: expected LOW-HIGH"))?;
    let low: u16 = low.trim().parse().map_err(|e| format!("{low:?}: {e}"))?;
    let high: u16 = high.trim().parse().map_err(|e| format!("{high:?}: {e}"))?;
    if low == 0 || low > high {
        return Err(format!("{s:?}: need 1 <= LOW <= HIGH"));
    }
    Ok(PortRange { low, high })
}

/// What can stop tcp mode.
#[derive(Debug, thiserror::Error)]
pub enum L4Error {
    /// The kernel path loaded but could not be configured.
    #[error("kernel data path")]
    Datapath(#[from] DatapathError),
    /// The backends file cannot be read.
    #[error("failed to read backends file {path}")]
    BackendsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the backends file is not IP:PORT.
    #[error("{path}:{line}: {text:?} is not an IPv4 IP:PORT")]
    BackendLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
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
    /// No backend at all at start-up.
    #[error("no backend: give --backend IP:PORT or --backends-file PATH")]
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
    /// The fallback cannot bind the VIP, or the admin listener its address.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl TcpArgs {
    /// The map capacities these flags ask for.
    #[must_use]
    pub fn map_sizes(&self) -> MapSizes {
        MapSizes {
            services: self.max_services.max(1),
            backends: self.max_backends.max(1),
            conns: self.max_flows.max(1).saturating_mul(2),
            half_open: self.max_half_open.max(1).saturating_mul(2),
            affinity: self.max_affinity.max(1),
            // tcp mode splices nothing: the smallest size the kernel accepts
            splice: 1,
        }
    }

    /// The service as configured now: --backend plus the backends file's current contents.
    ///
    /// # Errors
    /// The file cannot be read or has a bad line.
    pub fn service(&self) -> Result<ServiceSpec, L4Error> {
        let mut backends = self.backends.clone();
        if let Some(path) = &self.backends_file {
            backends.extend(read_backends_file(path)?);
        }
        backends.sort_unstable_by_key(|b| (u32::from(*b.ip()), b.port()));
        backends.dedup();
        Ok(ServiceSpec { vip: self.listen, backends, affinity_timeout: self.affinity_timeout })
    }
}

/// Parses a backends file: one IPv4 IP:PORT per line, blank lines and `#` comments ignored.
///
/// # Errors
/// The file cannot be read, or a line is not IP:PORT.
pub fn read_backends_file(path: &std::path::Path) -> Result<Vec<SocketAddrV4>, L4Error> {
    let text =
        std::fs::read_to_string(path).map_err(|source| L4Error::BackendsFile { path: path.to_owned(), source })?;
    parse_backends(&text).map_err(|(line, text)| L4Error::BackendLine { path: path.to_owned(), line, text })
}

/// Parses backends text; `Err((line number, text))` names the first bad line.
fn parse_backends(text: &str) -> Result<Vec<SocketAddrV4>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(line.parse().map_err(|_| (i + 1, line.to_owned()))?);
    }
    Ok(out)
}

/// Runs tcp mode until `shutdown` completes: the kernel path if it loads and attaches (unless
/// `--no-ebpf`), else, after one log line saying why, the user-space fallback.
///
/// # Errors
/// No backend, a bad backends file, or a failure of the mode that runs.
pub async fn run(args: TcpArgs, shutdown: impl Future<Output = ()>) -> Result<(), L4Error> {
    let spec = args.service()?;
    if spec.backends.is_empty() {
        return Err(L4Error::NoBackends);
    }
    if args.no_ebpf {
        tracing::warn!("tcp mode in user space (--no-ebpf): every byte passes through this process");
        return fallback::run(&args, spec, shutdown).await;
    }
    match kernel::start(&args, &spec) {
        Ok(kernel) => kernel.run(&args, shutdown).await,
        Err(kernel::StartError::Unavailable(e)) => {
            tracing::warn!(
                error = %crate::telemetry::chain(&e),
                "eBPF data path unavailable; tcp mode runs in user space (same decisions, slower)"
            );
            fallback::run(&args, spec, shutdown).await
        }
        Err(kernel::StartError::Config(e)) => Err(e),
    }
}

/// Completes when SIGHUP arrives (never, if the handler cannot be installed).
///
/// # Cancel safety
/// Cancel safe: a signal that arrives while not polled is kept for the next call on the same stream.
pub(crate) async fn hangup(stream: &mut Option<tokio::signal::unix::Signal>) {
    match stream {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{PortRange, parse_backends, parse_port_range};

    #[test]
    fn backends_file_lines() {
        let got = parse_backends("# three\n198.51.100.10:8000\n\n 198.51.100.11:8000 # b1\n").unwrap();
        assert_eq!(got, vec!["198.51.100.10:8000".parse().unwrap(), "198.51.100.11:8000".parse().unwrap()]);
        assert_eq!(parse_backends("198.51.100.10\n"), Err((1, "198.51.100.10".to_owned())));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("61000-65535"), Ok(PortRange { low: 61000, high: 65535 }));
        assert!(parse_port_range("5-4").is_err());
        assert!(parse_port_range("0-4").is_err());
        assert!(parse_port_range("61000").is_err());
    }
}
