//! tcp mode's kernel path in IPv6, end to end: the client, balancer and backend namespaces of the
//! IPv4 topology get IPv6 addresses too (client `2001:db8:2::/64`, backends `2001:db8:100::/64`, VIP
//! `2001:db8:113::10`, routed through the balancer), the backends are `sticky whoami` on their IPv6
//! address, and `sticky run --mode tcp` balances the IPv6 VIP in the kernel. Every assertion reads
//! the body, so it knows which backend answered.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use testkit::{
    ChildGuard, NetNs, Topology,
    http::{Client, HttpError},
    net::can_connect,
    topology::{BACKEND_IFACE, CLIENT_IFACE, LB_BACKEND_IFACE, LB_CLIENT_IFACE},
    wait,
};

use crate::{
    l4::{connect_after_flood, iface_mac, syn_flood6},
    require_root,
};

const VIP6: SocketAddrV6 = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x10), 80, 0, 0);
const LB_CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const LB_BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
const ADMIN: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9100);
const ALL_BODIES: [&str; 3] = ["I'm b0\n", "I'm b1\n", "I'm b2\n"];

/// Client address `i` (0 is the main one, `2001:db8:2::2`).
fn client6(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2 + i)
}

fn backend6(i: usize) -> SocketAddrV6 {
    let host = 0x10 + u16::try_from(i).expect("a few backends");
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, host), 8000, 0, 0)
}

fn backend_of(body: &str) -> usize {
    ALL_BODIES
        .iter()
        .position(|b| *b == body)
        .unwrap_or_else(|| panic!("unexpected body {body:?}: not one of our backends"))
}

/// testkit disables IPv6 in new namespaces; this topology wants it (addresses without DAD, so
/// they are usable at once).
fn enable_ipv6(ns: &NetNs) {
    for key in ["default", "all"] {
        ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0");
    }
}

fn add6(ns: &NetNs, addr: Ipv6Addr, prefix: u8, iface: &str) {
    ns.ip(&["-6", "addr", "add", &format!("{addr}/{prefix}"), "dev", iface, "nodad"]);
}

/// The IPv4 topology with IPv6 on top, `whoami` on each backend's IPv6 address, and sticky
/// balancing the IPv6 VIP in the kernel.
struct Topo6 {
    topo: Topology,
    lb: ChildGuard,
    log: std::path::PathBuf,
    _backends: Vec<ChildGuard>,
}

impl Topo6 {
    fn start(extra_clients: u16, extra_args: &[&str]) -> Self {
        let topo = Topology::builder().backends(3).build();
        for ns in std::iter::once(&topo.client).chain([&topo.lb]).chain(&topo.backends) {
            enable_ipv6(ns);
        }
        add6(&topo.lb, LB_CLIENT6, 64, LB_CLIENT_IFACE);
        add6(&topo.lb, LB_BACKEND6, 64, LB_BACKEND_IFACE);
        add6(&topo.lb, *VIP6.ip(), 128, "lo");
        topo.lb.sysctl("net.ipv6.conf.all.forwarding", "1");
        for i in 0..=extra_clients {
            add6(&topo.client, client6(i), 64, CLIENT_IFACE);
        }
        for net in ["2001:db8:100::/64", "2001:db8:113::/64"] {
            topo.client.ip(&["-6", "route", "add", net, "via", &LB_CLIENT6.to_string()]);
        }
        let bin = crate::sticky_bin();
        let bin = bin.to_str().expect("utf-8 path");
        let mut backends = Vec::new();
        for (i, ns) in topo.backends.iter().enumerate() {
            add6(ns, *backend6(i).ip(), 64, BACKEND_IFACE);
            ns.ip(&["-6", "route", "add", "2001:db8:2::/64", "via", &LB_BACKEND6.to_string()]);
            let listen = backend6(i).to_string();
            backends.push(ChildGuard::spawn(ns.command(bin).args([
                "whoami",
                "--listen",
                &listen,
                "--name",
                &format!("b{i}"),
            ])));
        }
        let mut args: Vec<String> =
            ["run", "--mode", "tcp", "--listen", &VIP6.to_string(), "--admin", &ADMIN.to_string()]
                .iter()
                .chain(&["--iface", LB_CLIENT_IFACE, "--iface", LB_BACKEND_IFACE, "--affinity-timeout", "10m"])
                .map(|s| (*s).to_owned())
                .collect();
        for i in 0..3 {
            args.extend(["--backend".to_owned(), backend6(i).to_string()]);
        }
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        // Replies to a flood's spoofed sources go back towards the client namespace (which drops them).
        topo.lb.ip(&["-6", "route", "add", "2001:db8:ff::/64", "via", &client6(0).to_string()]);
        let log = std::env::temp_dir().join(format!("{}.log", topo.lb.name()));
        let mut cmd = topo.lb.command(bin);
        cmd.args(&args).env("RUST_LOG", "info").env("NO_COLOR", "1");
        testkit::process::log_to(&mut cmd, &log).expect("the temp dir must be writable");
        let lb = ChildGuard::spawn(&mut cmd);
        let this = Self { topo, lb, log, _backends: backends };
        let ready = wait::until(Duration::from_secs(10), || {
            this.topo.lb.run(|| can_connect(SocketAddr::V4(ADMIN)))
                && this.topo.client.run(|| (0..3).all(|i| can_connect(SocketAddr::V6(backend6(i)))))
        });
        assert!(ready, "sticky run and the IPv6 backends must come up:\n{}", this.log());
        let reachable = wait::until(Duration::from_secs(5), || this.topo.client.run(|| get_once(client6(0)).is_ok()));
        assert!(reachable, "the IPv6 VIP must answer:\n{}", this.log());
        this
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        self.topo.lb.run(|| {
            let mut admin = Client::to(ADMIN).io_timeout(Duration::from_secs(10)).open().expect("admin must accept");
            admin.request("GET", "/metrics", &[("connection", "close")], b"").expect("metrics must arrive").into_text()
        })
    }

    fn sample(&self, series: &str) -> u64 {
        let text = self.metrics();
        testkit::prometheus::sample(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }

    fn lb_state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.lb.id())).unwrap_or_default();
        stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).unwrap_or('?')
    }
}

impl Drop for Topo6 {
    fn drop(&mut self) {
        let _ = self.lb.signal(libc::SIGCONT);
        if std::thread::panicking() {
            eprintln!("--- sticky run (IPv6) log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn connect(from: Ipv6Addr) -> Result<Client, HttpError> {
    Client::to(VIP6).from(IpAddr::V6(from)).io_timeout(Duration::from_secs(3)).host("test").open()
}

fn get_once(from: Ipv6Addr) -> Result<String, HttpError> {
    Ok(connect(from)?.get("/")?.into_text())
}

/// One client's 20 connections reach one backend; eight more clients each stick and together use
/// more than one backend. Returns the first client's body.
fn sticks_and_spreads(lab: &Topo6) -> String {
    // One client: 20 connections, one backend.
    let first: Vec<String> =
        lab.topo.client.run(|| (0..20).map(|_| get_once(client6(0)).expect("IPv6 connection must work")).collect());
    let mine = first[0].clone();
    backend_of(&mine);
    assert!(first.iter().all(|b| *b == mine), "20 connections of one IPv6 client reach one backend: {first:?}");

    // Eight more clients: each sticks, together they use more than one backend.
    let per_client: BTreeMap<Ipv6Addr, (String, String)> = lab.topo.client.run(|| {
        (1..=8)
            .map(|i| {
                let from = client6(i);
                (from, (get_once(from).expect("connection"), get_once(from).expect("connection")))
            })
            .collect()
    });
    let mut used = BTreeSet::new();
    for (client, (one, two)) in &per_client {
        assert_eq!(one, two, "{client}'s two connections reach the same backend");
        used.insert(backend_of(one));
    }
    assert!(used.len() > 1, "9 IPv6 clients spread over the backends: {per_client:?}");
    mine
}

#[test]
fn l6_fallback_ipv6_clients_stick_and_spread_in_user_space() {
    require_root!();
    let lab = Topo6::start(8, &["--no-ebpf"]);
    let _ = sticks_and_spreads(&lab);
    let hits = lab.sample(r#"sticky_l4_fallback_connections_total{service="default",outcome="affinity_hit"}"#);
    assert!(hits >= 19 + 8, "repeat IPv6 connections follow the relay's affinity ({hits})");
}

#[test]
fn l6_kernel_ipv6_clients_stick_spread_and_need_no_user_space() {
    require_root!();
    let lab = Topo6::start(8, &[]);
    let mine = sticks_and_spreads(&lab);

    // SIGSTOP proof: with sticky stopped, the established connection and new ones keep working,
    // on the same backend (the kernel's CONNS6 and AFFINITY6), so no byte passes through user space.
    let mut open = lab.topo.client.run(|| connect(client6(0)).expect("connect"));
    let before = lab.topo.client.run(|| open.get("/").expect("request").into_text());
    assert_eq!(before, mine);
    lab.lb.signal(libc::SIGSTOP).expect("SIGSTOP must reach sticky");
    assert!(wait::until(Duration::from_secs(2), || lab.lb_state() == 'T'), "sticky must be stopped");
    let (same, fresh) = lab.topo.client.run(|| {
        let same: Vec<String> =
            (0..10).map(|_| open.get("/").expect("the established connection must keep working").into_text()).collect();
        let fresh: Vec<String> = (0..5).map(|_| get_once(client6(0)).expect("new connections must work")).collect();
        (same, fresh)
    });
    assert_eq!(lab.lb_state(), 'T', "sticky stayed stopped the whole time");
    lab.lb.signal(libc::SIGCONT).expect("SIGCONT must reach sticky");
    assert!(same.iter().all(|b| *b == mine), "established: same backend while sticky is stopped: {same:?}");
    assert!(fresh.iter().all(|b| *b == mine), "new connections: same backend (affinity) while stopped: {fresh:?}");

    // The kernel did it, in IPv6: its counters and maps say so.
    assert!(lab.sample(r#"sticky_l4_packets_total{counter="tcp_v6"}"#) > 0, "IPv6 segments in the L4 path");
    assert!(lab.sample(r#"sticky_l4_packets_total{counter="established"}"#) >= 9 * 2 + 20, "kernel handshakes");
    assert!(lab.sample(r#"sticky_l4_map_entries{map="AFFINITY6"}"#) >= 9, "one AFFINITY6 entry per client");
    assert_eq!(lab.sample(r#"sticky_l4_map_entries{map="AFFINITY"}"#), 0, "nothing in the IPv4 map");
}

#[test]
fn l6_kernel_syn_flood_keeps_established_ipv6_flows() {
    // 300 times HALF_OPEN6's 1024 entries, as the IPv4 flood: every entry is overwritten many times over.
    const SYNS: u32 = 300_000;
    const FLOOD_DEADLINE: Duration = Duration::from_secs(120);
    require_root!();
    let small = ["--max-flows", "512", "--max-half-open", "1024", "--max-affinity", "1024"];
    let lab = Topo6::start(4, &small);
    let lb_mac = iface_mac(&lab.topo.lb, LB_CLIENT_IFACE);
    let cli_mac = iface_mac(&lab.topo.client, CLIENT_IFACE);
    let mut conns: Vec<(Client, String)> = lab.topo.client.run(|| {
        (1..=4)
            .map(|i| {
                let mut c = connect(client6(i)).expect("connect");
                let body = c.get("/").expect("request").into_text();
                (c, body)
            })
            .collect()
    });
    let flooding = AtomicBool::new(true);
    let started = Instant::now();
    let (sent, exchanges) = std::thread::scope(|s| {
        let flooder = s.spawn(|| {
            let n = lab.topo.client.run(|| syn_flood6(CLIENT_IFACE, cli_mac, lb_mac, VIP6, SYNS, FLOOD_DEADLINE));
            flooding.store(false, Ordering::Relaxed);
            n
        });
        let exchanges = lab.topo.client.run(|| {
            let mut n = 0u32;
            while flooding.load(Ordering::Relaxed) {
                for (c, body) in &mut conns {
                    let got = c.get("/").expect("an established IPv6 connection must keep working during the flood");
                    assert_eq!(got.text(), body.as_str(), "same backend during the flood");
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        });
        (flooder.join().expect("flooder"), exchanges)
    });
    assert_eq!(sent, SYNS, "the flooder sent every SYN within its deadline");
    assert!(exchanges > 0, "requests ran during the flood");
    lab.topo.client.run(|| {
        for (c, body) in &mut conns {
            let got = c.get("/").expect("established IPv6 connections work after the flood");
            assert_eq!(got.text(), body.as_str());
        }
        let mut fresh = connect_after_flood(VIP6, IpAddr::V6(client6(0)));
        backend_of(&fresh.get("/").expect("new IPv6 connections work after the flood").into_text());
    });
    let text = lab.metrics();
    let get = |s: &str| testkit::prometheus::sample(&text, s).unwrap_or(0);
    let new_flows = get(r#"sticky_l4_packets_total{counter="new_flow"}"#);
    let half_open = get(r#"sticky_l4_map_entries{map="HALF_OPEN6"}"#);
    let conns6 = get(r#"sticky_l4_map_entries{map="CONNS6"}"#);
    let affinity = get(r#"sticky_l4_map_entries{map="AFFINITY6"}"#);
    eprintln!(
        "IPv6: {sent} SYNs in {:.1} s, {exchanges} requests meanwhile; new_flow {new_flows}, HALF_OPEN6 {half_open}, \
         CONNS6 {conns6}, AFFINITY6 {affinity}",
        started.elapsed().as_secs_f64()
    );
    assert!(new_flows > 100_000, "the flood reached the kernel path ({new_flows} new flows)");
    assert!(half_open <= 2048 && half_open > 1024, "HALF_OPEN6 full but bounded: {half_open}");
    assert!(conns6 <= 1024, "CONNS6 bounded: {conns6}");
    assert!(affinity < 64, "spoofed SYNs never become clients with affinity: {affinity}");
}
