//! The bench's network, built by the test kit's topology builder from the bench's own layout: client,
//! balancer and backend namespaces joined by veth pairs, RFC 2544 benchmark addresses, no default
//! route anywhere; and the bench's processes inside them. Everything is removed on drop.
//!
//! ```text
//!  client ns                 balancer ns                          backend ns
//!  c0 198.18.1.1/24  <->  l1 198.18.1.2/24   l2 198.18.2.1/24  <->  s0 198.18.2.2/24
//!  (+ 198.18.1.64-127)       lo: VIP 198.19.0.100/32                nginx: b1 :8081, b2 :8082, ...
//! ```
//! The client reaches 198.18.2.0/24 and the VIP through the balancer namespace, which forwards;
//! the backends reach the client networks through it too. Nothing else is routed.
//!
//! The same in IPv6 (ULA, for the `-v6` rows), on the same links:
//! ```text
//!  c0 fd00:5ce:1::1/64  <->  l1 fd00:5ce:1::2/64   l2 fd00:5ce:2::1/64  <->  s0 fd00:5ce:2::2/64
//!                            lo: VIP fd00:5ce:100::100/128          nginx: b1 [..]:8081, b2 [..]:8082
//! ```

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddrV6},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::Context as _;
use testkit::{
    ChildGuard, NetNs,
    netns::Naming,
    process,
    topology::{Backends, Layout},
};

/// Extra client addresses for the flow-memory measurement (many clients, see `memory.rs`).
pub const CLIENT_EXTRA: std::ops::RangeInclusive<u8> = 64..=127;
/// The host of every backend (one nginx, one port per backend).
pub const BACKEND_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// The service address every balancer serves on port 80 (on the balancer's `lo` for the user-space ones).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);
/// The IPv6 host of every backend (the `-v6` rows).
pub const BACKEND_HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5ce, 2, 0, 0, 0, 0, 2);
/// The IPv6 service address (the `-v6` rows), on the balancer's `lo`.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5ce, 0x100, 0, 0, 0, 0, 0x100);
/// The client's IPv6 address.
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5ce, 1, 0, 0, 0, 0, 1);
/// The balancer's IPv6 addresses towards the client and towards the backends (the routes' next hops).
const LB_CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5ce, 1, 0, 0, 0, 0, 2);
const LB_BACKEND6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5ce, 2, 0, 0, 0, 0, 1);
/// Port of the service on the VIP.
pub const VIP_PORT: u16 = 80;
/// Backend `bN` listens on `BACKEND_HOST:BACKEND_PORT0 + N`.
pub const BACKEND_PORT0: u16 = 8080;

/// The balancer's interfaces, towards the client and towards the backends.
pub const LB_IFACES: [&str; 2] = ["l1", "l2"];

/// The CPU of the balancer (its process, and the kernel receive path of its namespace).
pub const LB_CPU: u32 = 1;
/// The CPU of wrk, the probes and the backends (and their namespaces' receive path).
pub const LOAD_CPU: u32 = 0;

/// How long a process of the bench gets between SIGTERM and SIGKILL when it is stopped.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The same for whatever is still inside a namespace when the topology goes.
const NETNS_GRACE: Duration = Duration::from_secs(1);

/// The layout of the diagram above. Namespaces are `stbench<pid>{cli,lb,srv}`: not `stk` (the tests'
/// sweep owns that prefix), and one set per process.
const LAYOUT: Layout = Layout {
    naming: Naming::PerProcess("stbench"),
    client_role: "cli",
    lb_role: "lb",
    backend_role: "srv",
    client_iface: "c0",
    client_addr: Ipv4Addr::new(198, 18, 1, 1),
    extra_client_addr,
    lb_client_iface: LB_IFACES[0],
    lb_client_addr: Ipv4Addr::new(198, 18, 1, 2),
    lb_backend_iface: LB_IFACES[1],
    lb_backend_addr: Ipv4Addr::new(198, 18, 2, 1),
    backend_iface: "s0",
    backend_addr: backend_host,
    // No bridge between the balancer and the backends: it would be on every measured path.
    backends: Backends::Veth,
    vip_nets: &["198.19.0.0/24"],
};

/// The `i`-th of the [`CLIENT_EXTRA`] addresses.
fn extra_client_addr(i: usize) -> Ipv4Addr {
    let host = u8::try_from(i).ok().and_then(|i| CLIENT_EXTRA.start().checked_add(i));
    Ipv4Addr::new(198, 18, 1, host.filter(|h| CLIENT_EXTRA.contains(h)).expect("i must index CLIENT_EXTRA"))
}

/// Every backend is one host, [`BACKEND_HOST`], one port each.
fn backend_host(_: usize) -> Ipv4Addr {
    BACKEND_HOST
}

/// Backend `n` (1-based): its name, which is also its whole response body without the newline.
#[must_use]
pub fn backend_name(n: u16) -> String {
    format!("b{n}")
}

/// Backend `n`'s address.
#[must_use]
pub fn backend_addr(n: u16) -> std::net::SocketAddrV4 {
    std::net::SocketAddrV4::new(BACKEND_HOST, BACKEND_PORT0 + n)
}

/// Backend `n`'s IPv6 address (the same nginx server as [`backend_addr`], also listening there).
#[must_use]
pub fn backend_addr6(n: u16) -> SocketAddrV6 {
    SocketAddrV6::new(BACKEND_HOST6, BACKEND_PORT0 + n, 0, 0)
}

/// The three namespaces; deleted (with every process still inside: SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Topology {
    /// Client namespace (wrk, probes).
    pub cli: NetNs,
    /// Balancer namespace (the configuration under test).
    pub lb: NetNs,
    /// Backend namespace (nginx).
    pub srv: NetNs,
}

impl Topology {
    /// Creates the namespaces, links, addresses and routes. With `steer`, each namespace's receive
    /// processing goes to its CPU (RPS): the balancer namespace's to [`LB_CPU`], the others' to
    /// [`LOAD_CPU`]; without, it runs on the CPU of the sender (veth delivers in the sender's softirq).
    ///
    /// # Errors
    /// An `ip` or `sysctl` command fails (not root, iproute2 missing).
    pub fn build(steer: bool) -> anyhow::Result<Self> {
        let extra = CLIENT_EXTRA.count();
        let built = testkit::Topology::with_layout(LAYOUT).extra_client_addrs(extra).grace(NETNS_GRACE).try_build()?;
        let testkit::Topology { client: cli, lb, mut backends } = built;
        let srv = backends.pop().context("the bench's layout has one backend namespace")?;
        let topo = Self { cli, lb, srv };
        topo.lb.try_ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        // Many short-lived connections in the probes: reuse TIME_WAIT ports towards the same peer.
        topo.cli.try_sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        topo.add_ipv6()?;
        let steering = [
            (&topo.cli, "c0", LOAD_CPU),
            (&topo.lb, "l1", LB_CPU),
            (&topo.lb, "l2", LB_CPU),
            (&topo.srv, "s0", LOAD_CPU),
        ];
        for (ns, dev, cpu) in steering.into_iter().filter(|_| steer) {
            let mask = format!("{:x}", 1u32 << cpu);
            let path = format!("/sys/class/net/{dev}/queues/rx-0/rps_cpus");
            process::run(ns.command("sh").args(["-c", &format!("echo {mask} > {path}")]))?;
        }
        Ok(topo)
    }
}

impl Topology {
    /// IPv6 on the same links (the test kit turns it off in new namespaces): the addresses of the
    /// module's second diagram, without duplicate address detection (usable at once), routes through
    /// the balancer namespace, and IPv6 forwarding there.
    fn add_ipv6(&self) -> anyhow::Result<()> {
        for ns in [&self.cli, &self.lb, &self.srv] {
            for key in ["default", "all"] {
                ns.try_sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0")?;
            }
        }
        let add = |ns: &NetNs, addr: Ipv6Addr, prefix: u8, dev: &str| {
            ns.try_ip(&["-6", "addr", "add", &format!("{addr}/{prefix}"), "dev", dev, "nodad"])
        };
        add(&self.cli, CLIENT6, 64, LAYOUT.client_iface)?;
        add(&self.lb, LB_CLIENT6, 64, LAYOUT.lb_client_iface)?;
        add(&self.lb, LB_BACKEND6, 64, LAYOUT.lb_backend_iface)?;
        add(&self.lb, VIP6, 128, "lo")?;
        add(&self.srv, BACKEND_HOST6, 64, LAYOUT.backend_iface)?;
        self.lb.try_sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for net in ["fd00:5ce:2::/64", "fd00:5ce:100::/64"] {
            self.cli.try_ip(&["-6", "route", "add", net, "via", &LB_CLIENT6.to_string()])?;
        }
        self.srv.try_ip(&["-6", "route", "add", "fd00:5ce:1::/64", "via", &LB_BACKEND6.to_string()])?;
        Ok(())
    }
}

/// A command running `program` inside `ns`, pinned to `cpu`, with its open-file limit raised to
/// the hard limit (`prlimit`, then `taskset`, both exec).
#[must_use]
pub fn pinned(ns: &NetNs, cpu: u32, program: &Path) -> Command {
    let mut cmd = ns.command("prlimit");
    let limit = fd_limit();
    cmd.arg(format!("--nofile={limit}:{limit}")).args(["taskset", "-c", &cpu.to_string()]).arg(program);
    cmd
}

/// Starts `cmd` as the bench's process `name`, stdout and stderr appended to `log`; stopped on drop
/// with SIGTERM, then SIGKILL if it has not exited within 3 s.
///
/// # Errors
/// The log cannot be opened or the command cannot start.
pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<ChildGuard> {
    process::log_to(cmd, log)?;
    Ok(ChildGuard::try_spawn(cmd)?.named(name).with_grace(STOP_GRACE))
}

/// Guards a process of the bench spawned with pipes (SIGTERM, then SIGKILL after 3 s, on drop).
#[must_use]
pub fn adopt(name: &str, child: std::process::Child) -> ChildGuard {
    ChildGuard::adopt(name, child).with_grace(STOP_GRACE)
}

/// The hard limit of open files (this process's; without `CAP_SYS_RESOURCE` nothing can go above it).
#[must_use]
pub fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|l| l.split_whitespace().nth(1).map(|h| h.parse().unwrap_or(1 << 20)))
        })
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
        time::Duration,
    };

    use super::{BACKEND_HOST, BACKEND_HOST6, CLIENT_EXTRA, CLIENT6, Topology, VIP, VIP6, extra_client_addr};

    #[test]
    fn the_bench_network_routes_clients_to_the_backends_and_the_vips_in_both_families_and_goes_on_drop() {
        if !xtask::setup::is_root() {
            // No skip log here (that is the tests crate's); the bench smoke run needs root as well.
            eprintln!("SKIPPED bench topology test: needs root (network namespaces)");
            return;
        }
        let topo = Topology::build(false).expect("the bench network must build as root");
        let names = [&topo.cli, &topo.lb, &topo.srv].map(|ns| ns.name().to_owned());
        let pid = std::process::id();
        assert_eq!(names, ["cli", "lb", "srv"].map(|role| format!("stbench{pid}{role}")), "README's names");
        for (ns, host, what) in [(&topo.srv, BACKEND_HOST, "the backend host"), (&topo.lb, VIP, "the VIP")] {
            let listener = ns.run(|| TcpListener::bind((host, 0)).expect("a listener must bind in its namespace"));
            let addr = listener.local_addr().expect("a bound listener must have an address");
            let from = extra_client_addr(5);
            let connected = topo.cli.run(|| testkit::net::connect(addr, Some(from.into()), Duration::from_secs(5)));
            connected.unwrap_or_else(|e| panic!("a client must reach {what} through the balancer: {e}"));
            let (_, peer) = listener.accept().expect("the connection must be accepted");
            assert_eq!(peer, SocketAddr::from((from, peer.port())), "{what} must see the client's own address");
        }
        for (ns, host, what) in [(&topo.srv, BACKEND_HOST6, "the IPv6 backend host"), (&topo.lb, VIP6, "the IPv6 VIP")]
        {
            let listener =
                ns.run(|| TcpListener::bind((host, 0)).expect("an IPv6 listener must bind in its namespace"));
            let addr = listener.local_addr().expect("a bound listener must have an address");
            let connected = topo.cli.run(|| testkit::net::connect(addr, None, Duration::from_secs(5)));
            connected.unwrap_or_else(|e| panic!("the client must reach {what} through the balancer: {e}"));
            let (_, peer) = listener.accept().expect("the connection must be accepted");
            assert_eq!(peer.ip(), IpAddr::V6(CLIENT6), "{what} must see the client's own IPv6 address");
        }
        drop(topo);
        let left = testkit::process::run(std::process::Command::new("ip").args(["netns", "list"]))
            .expect("ip netns list must run");
        let left = String::from_utf8_lossy(&left.stdout);
        assert!(names.iter().all(|n| !left.contains(n.as_str())), "every namespace must be gone: {left}");
    }

    #[test]
    fn extra_clients_are_the_documented_range() {
        assert_eq!(extra_client_addr(0), Ipv4Addr::new(198, 18, 1, 64));
        assert_eq!(extra_client_addr(CLIENT_EXTRA.count() - 1), Ipv4Addr::new(198, 18, 1, 127));
    }

    #[test]
    #[should_panic(expected = "i must index CLIENT_EXTRA")]
    fn no_extra_client_beyond_the_range() {
        let _ = extra_client_addr(CLIENT_EXTRA.count());
    }
}
