//! Helpers of the L4 tests: a packet lab (the real program through `BPF_PROG_TEST_RUN` inside a
//! namespace with routes and neighbours), parsed output frames with checksum checks, HTTP clients
//! bound to a chosen source address, `sticky run --mode tcp` processes, and a spoofed-SYN flooder.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use etherparse::{Ipv4Header, SlicedPacket, TransportSlice};
use sticky::{
    datapath::{Datapath, PROG_TC, Stats, sizes::MapSizes, sync::MapSync},
    model::TcpService,
};
use sticky_common::{Counter, DatapathConfig};
use testkit::{
    ChildGuard, NetNs, Topology,
    http::{Client, HttpError},
    net::can_connect,
    topology::{CLIENT_ADDR, LB_BACKEND_IFACE, LB_CLIENT_IFACE, backend_addr},
    wait,
};

/// tc verdicts.
pub const TC_ACT_OK: u32 = 0;
/// tc: drop.
pub const TC_ACT_SHOT: u32 = 2;
/// tc: the program redirected the packet.
pub const TC_ACT_REDIRECT: u32 = 7;

/// The lab's SNAT address (on its veth).
pub const LAB_SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The lab's VIP.
pub const LAB_VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 80);
/// The lab's IPv6 SNAT address (on its veth).
pub const LAB_SNAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The lab's IPv6 VIP.
pub const LAB_VIP6: SocketAddrV6 = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x10), 80, 0, 0);
/// IPv6 backend `i` (0..3) of the lab, port 8000.
#[must_use]
pub fn backend6(i: u8) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10 + u16::from(i)), 8000, 0, 0)
}
/// IPv6 client `host` of the lab (`2001:db8:2::host`, with a neighbour entry for 2..=9), `port`.
#[must_use]
pub fn client6(host: u16, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, host), port, 0, 0)
}
/// The MAC the lab gives backend `i`'s neighbour entry.
#[must_use]
pub fn backend_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, i]
}
/// The MAC of every client's neighbour entry.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

/// A namespace where the lab's FIB resolves: veth `t0` holds 198.51.100.1/24 and 192.0.2.1/24, with
/// permanent neighbours for backends 198.51.100.10..=12 and clients 192.0.2.2..=254, and IPv4
/// forwarding on: `bpf_fib_lookup` answers `FWD_DISABLED` on an interface that does not forward (a
/// test run's packet arrives on `lo`), and the program then passes the packet to the stack.
///
/// # Panics
/// The namespace cannot be set up, or the temp dir is not writable.
#[must_use]
pub fn lab_netns() -> NetNs {
    let ns = NetNs::new("lab");
    ns.sysctl("net.ipv4.ip_forward", "1");
    // IPv6 forwarding on every interface (a test run's packet arrives on `lo`: bpf_fib_lookup
    // checks the input interface's forwarding, as for IPv4).
    // This machine disables IPv6 by default (new namespaces inherit it): enable it first.
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "0");
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "0");
    ns.sysctl("net.ipv6.conf.all.forwarding", "1");
    ns.ip(&["link", "add", "t0", "type", "veth", "peer", "name", "t1"]);
    ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "t0"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "t0"]);
    ns.ip(&["addr", "add", "2001:db8:100::1/64", "dev", "t0", "nodad"]);
    ns.ip(&["addr", "add", "2001:db8:2::1/64", "dev", "t0", "nodad"]);
    ns.ip(&["link", "set", "t0", "up"]);
    ns.ip(&["link", "set", "t1", "up"]);
    let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut batch = String::new();
    for i in 0..3u8 {
        writeln!(batch, "neigh add 198.51.100.{} lladdr {} dev t0 nud permanent", 10 + i, mac(backend_mac(i)))
            .expect("a String must take any text");
    }
    for i in 2..=254u8 {
        writeln!(batch, "neigh add 192.0.2.{i} lladdr {} dev t0 nud permanent", mac(CLIENT_MAC))
            .expect("a String must take any text");
    }
    for i in 0..3u8 {
        writeln!(batch, "neigh add {} lladdr {} dev t0 nud permanent", backend6(i).ip(), mac(backend_mac(i)))
            .expect("a String must take any text");
    }
    for host in 2..=9u16 {
        writeln!(batch, "neigh add {} lladdr {} dev t0 nud permanent", client6(host, 0).ip(), mac(CLIENT_MAC))
            .expect("a String must take any text");
    }
    let path = std::env::temp_dir().join(format!("{}.neigh", ns.name()));
    std::fs::write(&path, batch).expect("temp dir must be writable");
    ns.ip(&["-batch", path.to_str().expect("utf-8 temp path")]);
    let _ = std::fs::remove_file(path);
    ns
}

/// The MAC of `iface` in `ns` (read through `ip netns exec`, which mounts the namespace's own sysfs:
/// a thread that only entered the namespace still sees the sysfs of the one that mounted /sys).
///
/// # Panics
/// The interface has no address file, or it does not hold a MAC.
#[must_use]
pub fn iface_mac(ns: &NetNs, iface: &str) -> [u8; 6] {
    let text = ns.output("cat", &[&format!("/sys/class/net/{iface}/address")]);
    let mut mac = [0u8; 6];
    for (i, part) in text.trim().split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("MAC is hex");
    }
    mac
}

/// The real object with a configured L4 service, run through `BPF_PROG_TEST_RUN`. Build it inside
/// [`lab_netns`] (`ns.run(|| Lab::new(..))`): the program's FIB lookups use the calling thread's namespace.
pub struct Lab {
    /// The loaded object.
    pub dp: Datapath,
    /// The service sync (backend ids).
    pub sync: MapSync,
    /// The service.
    pub spec: TcpService,
}

impl Lab {
    /// Loads the object, sets SNAT 198.51.100.1 with `ports`, and writes `spec`.
    ///
    /// # Panics
    /// Loading, the verifier, or a map write fails.
    #[must_use]
    pub fn new(spec: TcpService, ports: (u16, u16), sizes: MapSizes) -> Self {
        let mut dp = Datapath::load_with(aya_log::Level::Warn, &sizes).expect("the embedded eBPF object must load");
        let prog: &mut SchedClassifier =
            dp.ebpf_mut().program_mut(PROG_TC).expect("sticky_tc in object").try_into().expect("a classifier");
        prog.load().expect("sticky_tc must pass the verifier");
        let config = DatapathConfig {
            snat_addr: u32::from(LAB_SNAT).to_be(),
            nat_port_min: ports.0,
            nat_port_max: ports.1,
            pad: 0,
            snat_addr6: sticky_common::Ip6::from_octets(LAB_SNAT6.octets()),
        };
        dp.tcp().set_config(&config).expect("CONFIG must be writable");
        let mut sync = MapSync::new(sizes.backends);
        sync.apply(dp.tcp(), &spec).expect("the service must be written");
        Self { dp, sync, spec }
    }

    /// Runs `sticky_tc` on `frame`: (verdict, output frame).
    ///
    /// # Panics
    /// The kernel refuses the test run.
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let prog: &mut SchedClassifier = self.dp.ebpf_mut().program_mut(PROG_TC).unwrap().try_into().unwrap();
        let result = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::default() })
            .expect("BPF_PROG_TEST_RUN must run");
        out.truncate(usize::try_from(result.data_size_out).unwrap());
        (result.return_value, out)
    }

    /// The counters now.
    ///
    /// # Panics
    /// The `STATS` map cannot be read.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.dp.stats().expect("STATS must be readable")
    }
}

/// What a rewritten frame says, with both checksums verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "the TCP header's flag bits, one field each, so an assertion names the flag it checks"
)]
pub struct Out {
    /// Destination MAC.
    pub dmac: [u8; 6],
    /// Source MAC.
    pub smac: [u8; 6],
    /// IPv4 source and TCP source port.
    pub src: SocketAddrV4,
    /// IPv4 destination and TCP destination port.
    pub dst: SocketAddrV4,
    /// SYN, ACK, FIN, RST bits as set.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// Parses an output frame and checks its IPv4 header checksum and its TCP checksum.
///
/// # Panics
/// The frame is not Ethernet/IPv4/TCP, or a checksum is wrong.
#[must_use]
pub fn parse_out(frame: &[u8]) -> Out {
    let packet = SlicedPacket::from_ethernet(frame).expect("output must be a valid Ethernet frame");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = packet.link else { panic!("not Ethernet II") };
    let Some(etherparse::NetSlice::Ipv4(ip)) = packet.net else { panic!("not IPv4") };
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else { panic!("not TCP") };
    let ip_header: Ipv4Header = ip.header().to_header();
    assert_eq!(ip_header.header_checksum, ip_header.calc_header_checksum(), "IPv4 header checksum must be valid");
    let payload = tcp.payload();
    let expected = tcp.to_header().calc_checksum_ipv4(&ip_header, payload).expect("payload fits");
    assert_eq!(tcp.checksum(), expected, "TCP checksum must be valid");
    Out {
        dmac: eth.destination(),
        smac: eth.source(),
        src: SocketAddrV4::new(ip_header.source.into(), tcp.source_port()),
        dst: SocketAddrV4::new(ip_header.destination.into(), tcp.destination_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
    }
}

/// What a rewritten IPv6 frame says, its TCP checksum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out6 {
    /// Destination MAC.
    pub dmac: [u8; 6],
    /// Source MAC.
    pub smac: [u8; 6],
    /// IPv6 source and TCP source port.
    pub src: SocketAddrV6,
    /// IPv6 destination and TCP destination port.
    pub dst: SocketAddrV6,
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
}

/// Parses an IPv6 output frame (walking hop-by-hop, routing and destination-options headers) and
/// checks its TCP checksum over the IPv6 pseudo-header.
///
/// # Panics
/// The frame is not Ethernet/IPv6/TCP, or the checksum is wrong.
#[must_use]
pub fn parse_out6(frame: &[u8]) -> Out6 {
    assert_eq!(&frame[12..14], &[0x86, 0xdd], "output must be IPv6");
    let ip = &frame[14..54];
    assert_eq!(ip[0] >> 4, 6, "IPv6 version");
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let (mut next, mut off) = (ip[6], 54);
    while matches!(next, 0 | 43 | 60) {
        next = frame[off];
        off += (usize::from(frame[off + 1]) + 1) * 8;
    }
    assert_eq!(next, 6, "TCP after the extension headers");
    let tcp = &frame[off..54 + payload_len];
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&ip[8..40]);
    pseudo.extend_from_slice(&u32::try_from(tcp.len()).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 6]);
    let sum = ones_complement(tcp, ones_complement(&pseudo, 0));
    assert_eq!(sum, 0xffff, "TCP checksum over the IPv6 pseudo-header must be valid");
    let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap());
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    Out6 {
        dmac: frame[0..6].try_into().unwrap(),
        smac: frame[6..12].try_into().unwrap(),
        src: SocketAddrV6::new(addr(&ip[8..24]), port(&tcp[0..2]), 0, 0),
        dst: SocketAddrV6::new(addr(&ip[24..40]), port(&tcp[2..4]), 0, 0),
        syn: tcp[13] & 0x02 != 0,
        ack: tcp[13] & 0x10 != 0,
    }
}

/// `after - before` for one counter.
#[must_use]
pub fn delta(before: &Stats, after: &Stats, counter: Counter) -> u64 {
    after.get(counter) - before.get(counter)
}

/// A keep-alive HTTP connection to `addr` from `from` (any port), as the L4 tests' clients make them:
/// 2 s to connect, 3 s per read, `host: test`.
///
/// # Errors
/// The connect fails.
pub fn connect(addr: SocketAddrV4, from: Ipv4Addr) -> Result<Client, HttpError> {
    Client::to(addr).from(from).io_timeout(Duration::from_secs(3)).host("test").open()
}

/// A fresh connection's body: connect from `from`, one `GET /`, close.
///
/// # Errors
/// The connection or the request fails.
pub fn get_once(addr: SocketAddrV4, from: Ipv4Addr) -> Result<String, HttpError> {
    Ok(connect(addr, from)?.get("/")?.into_text())
}

/// How long a check after a SYN flood gives a new connection: a real client's SYN may need TCP's
/// retransmits (after 1 s, 3 s, 7 s) while the backends still answer the flood's SYNs, which the 2 s
/// of the other checks leave no room for (a loaded CI machine timed out once there).
pub const AFTER_FLOOD_CONNECT: Duration = Duration::from_secs(10);

/// A new keep-alive connection to `addr` from `from` after a SYN flood, given [`AFTER_FLOOD_CONNECT`]
/// to connect; prints how long it took.
///
/// # Panics
/// It does not connect in that time.
#[must_use]
pub fn connect_after_flood(addr: impl Into<SocketAddr>, from: impl Into<std::net::IpAddr>) -> Client {
    let from = from.into();
    let connecting = Instant::now();
    let c = Client::to(addr)
        .from(from)
        .connect_timeout(AFTER_FLOOD_CONNECT)
        .io_timeout(Duration::from_secs(3))
        .host("test")
        .open()
        .unwrap_or_else(|e| panic!("a new connection from {from} must work after the flood: {e}"));
    eprintln!("a new connection from {from} after the flood: connected in {:?}", connecting.elapsed());
    c
}

/// Sends `count` TCP SYNs with spoofed sources (198.18.0.0/15, 131072 addresses, times 8 source
/// ports: up to 1,048,576 distinct 5-tuples) to `dst` through an `AF_PACKET` socket on `iface` in the
/// calling thread's namespace, for at most `deadline`. Returns how many were sent.
///
/// # Panics
/// The socket cannot be opened (needs `CAP_NET_RAW`).
#[must_use]
pub fn syn_flood(
    iface: &str,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dst: SocketAddrV4,
    count: u32,
    deadline: Duration,
) -> u32 {
    let frame = crate::packet::Tcp4::new(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1024), dst).syn().build();
    send_frames(iface, (src_mac, dst_mac), frame, (count, deadline), |frame, sent| {
        let host = sent % 131_072;
        let src_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + host);
        patch_source(frame, src_ip, 1024 + u16::try_from(sent / 131_072).unwrap());
    })
}

/// Sends `frame` (its MAC addresses set to `macs`: source, destination) through an `AF_PACKET` socket
/// on `iface`, `count` times at most and for at most `deadline`, `patch` rewriting it before each send
/// (given how many were sent). The flood is best effort: a send the device queue refuses (ENOBUFS)
/// is not counted. Returns how many were sent.
fn send_frames(
    iface: &str,
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    mut frame: Vec<u8>,
    (count, deadline): (u32, Duration),
    mut patch: impl FnMut(&mut [u8], u32),
) -> u32 {
    #![expect(unsafe_code, reason = "AF_PACKET sockets have no std API")]
    let ifindex = {
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    };
    assert!(ifindex != 0, "no interface {iface}");
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).expect("AF_PACKET must fit sll_family");
    addr.sll_ifindex = i32::try_from(ifindex).unwrap();
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    let started = Instant::now();
    let mut sent = 0u32;
    while sent < count && started.elapsed() < deadline {
        for _ in 0..1024 {
            if sent >= count {
                break;
            }
            patch(&mut frame, sent);
            // SAFETY: frame and addr are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap(),
                )
            };
            if n < 0 {
                // ENOBUFS when the device queue is full: the flood is best effort, move on.
                continue;
            }
            sent += 1;
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    sent
}

/// Rewrites a crafted SYN's source address and port and recomputes both checksums.
fn patch_source(frame: &mut [u8], ip: Ipv4Addr, port: u16) {
    frame[26..30].copy_from_slice(&ip.octets());
    frame[34..36].copy_from_slice(&port.to_be_bytes());
    frame[24..26].fill(0);
    let ip_sum = ones_complement(&frame[14..34], 0);
    frame[24..26].copy_from_slice(&(!ip_sum).to_be_bytes());
    frame[50..52].fill(0);
    let tcp_len = frame.len() - 34;
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&frame[26..34]);
    pseudo[9] = 6;
    pseudo[10..].copy_from_slice(&u16::try_from(tcp_len).unwrap().to_be_bytes());
    let sum = ones_complement(&frame[34..], ones_complement(&pseudo, 0));
    frame[50..52].copy_from_slice(&(!sum).to_be_bytes());
}

fn ones_complement(bytes: &[u8], start: u16) -> u16 {
    let mut sum = u32::from(start);
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap()
}

/// Which tcp-mode engine a topology test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The eBPF tc program (full NAT in the kernel).
    Kernel,
    /// The user-space proxy (`--no-ebpf`).
    Fallback,
    /// No flag, but run as `nobody` with no capabilities: sticky must find out that eBPF cannot
    /// load, say so once, and serve in user space.
    Unprivileged,
}

impl Engine {
    /// Whether this engine serves in user space.
    #[must_use]
    pub fn is_user_space(self) -> bool {
        matches!(self, Self::Fallback | Self::Unprivileged)
    }
}

/// The topology's VIP and port.
pub const VIP: SocketAddrV4 = SocketAddrV4::new(testkit::topology::VIP, 80);
/// Where `sticky run` serves /metrics, inside the balancer namespace.
pub const ADMIN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100);

/// A client / balancer / 3-backend topology with `sticky whoami` backends (`I'm b<i>`) and
/// `sticky run --mode tcp` on the balancer, its backends in a file it re-reads on SIGHUP.
pub struct L4Topo {
    /// The namespaces (dropped last: they kill what is left inside).
    pub topo: Topology,
    /// The balancer process.
    pub lb: ChildGuard,
    /// The engine.
    pub engine: Engine,
    backends_file: std::path::PathBuf,
    log: std::path::PathBuf,
    args: Vec<std::ffi::OsString>,
    _backends: Vec<ChildGuard>,
}

impl L4Topo {
    /// Builds the topology (with `extra_clients` extra client addresses) and starts everything.
    /// The VIP is on the balancer's `lo` (the fallback binds it; the kernel path does not need it),
    /// and 198.18.0.0/15 (a flood's spoofed sources) routes back to the client namespace.
    ///
    /// # Panics
    /// Anything fails to start within 10 s.
    #[must_use]
    pub fn start(engine: Engine, extra_clients: usize, extra_args: &[&str]) -> Self {
        let topo = Topology::builder().backends(3).extra_client_addrs(extra_clients).build();
        topo.lb.ip(&["addr", "add", &format!("{}/32", VIP.ip()), "dev", "lo"]);
        topo.lb.ip(&["route", "add", "198.18.0.0/15", "via", &CLIENT_ADDR.to_string()]);
        let bin = crate::sticky_bin();
        let bin = bin.to_str().expect("utf-8 path");
        let mut backends = Vec::new();
        for (i, ns) in topo.backends.iter().enumerate() {
            let addr = format!("{}:8000", backend_addr(i));
            backends.push(ChildGuard::spawn(ns.command(bin).args([
                "whoami",
                "--listen",
                &addr,
                "--name",
                &format!("b{i}"),
            ])));
        }
        let backends_file = std::env::temp_dir().join(format!("{}.backends", topo.lb.name()));
        let all: Vec<SocketAddrV4> = (0..3).map(|i| SocketAddrV4::new(backend_addr(i), 8000)).collect();
        write_backends(&backends_file, &all);
        let mut args: Vec<std::ffi::OsString> =
            ["run", "--mode", "tcp", "--listen", &VIP.to_string(), "--admin", &ADMIN.to_string()]
                .iter()
                .chain(&[
                    "--iface",
                    LB_CLIENT_IFACE,
                    "--iface",
                    LB_BACKEND_IFACE,
                    "--affinity-timeout",
                    "10m",
                    "--backends-file",
                ])
                .map(Into::into)
                .collect();
        args.push(backends_file.clone().into());
        args.extend(extra_args.iter().map(Into::into));
        if engine == Engine::Fallback {
            args.push("--no-ebpf".into());
        }
        if engine == Engine::Unprivileged {
            // Let the unprivileged process bind port 80 (a namespaced sysctl), and nothing else.
            topo.lb.sysctl("net.ipv4.ip_unprivileged_port_start", "0");
            let mut wrapped: Vec<std::ffi::OsString> =
                ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin]
                    .iter()
                    .map(Into::into)
                    .collect();
            wrapped.extend(args);
            args = wrapped;
        }
        let program = if engine == Engine::Unprivileged { "setpriv" } else { bin };
        let log = std::env::temp_dir().join(format!("{}.log", topo.lb.name()));
        let lb = spawn_logged(topo.lb.command(program).args(&args), &log);
        let this = Self { topo, lb, engine, backends_file, log, args, _backends: backends };
        let ready = wait::until(Duration::from_secs(10), || {
            this.topo.lb.run(|| can_connect(SocketAddr::V4(ADMIN)))
                && this
                    .topo
                    .client
                    .run(|| (0..3).all(|i| can_connect(SocketAddr::V4(SocketAddrV4::new(backend_addr(i), 8000)))))
        });
        assert!(ready, "{engine:?}: sticky run and the backends must come up");
        let reachable =
            wait::until(Duration::from_secs(5), || this.topo.client.run(|| get_once(VIP, CLIENT_ADDR).is_ok()));
        assert!(reachable, "{engine:?}: the VIP must answer");
        this
    }

    /// Kills the balancer (SIGKILL: its programs detach, its maps are gone) and starts it again.
    ///
    /// # Panics
    /// It does not come back within 10 s.
    pub fn restart(&mut self) {
        // Kill and reap the old process first: the new one binds the same admin address.
        assert_ne!(self.engine, Engine::Unprivileged, "restart runs sticky directly");
        self.lb.kill();
        let bin = crate::sticky_bin();
        self.lb = spawn_logged(self.topo.lb.command(bin.to_str().expect("utf-8 path")).args(&self.args), &self.log);
        let ready = wait::until(Duration::from_secs(10), || self.topo.lb.run(|| can_connect(SocketAddr::V4(ADMIN))));
        assert!(ready, "sticky must come back after a restart");
    }

    /// What the balancer has logged so far (stderr).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics` of the balancer.
    ///
    /// # Panics
    /// The admin endpoint does not answer.
    #[must_use]
    pub fn metrics(&self) -> String {
        self.topo.lb.run(|| {
            // 10 s: a scrape walks the flow maps, which a flood fills.
            let mut admin = Client::to(ADMIN).io_timeout(Duration::from_secs(10)).open().expect("admin must accept");
            admin.request("GET", "/metrics", &[("connection", "close")], b"").expect("metrics must arrive").into_text()
        })
    }

    /// One sample of `/metrics`, e.g. `sticky_l4_map_entries{map="CONNS"}`.
    ///
    /// # Panics
    /// The series is missing.
    #[must_use]
    pub fn sample(&self, series: &str) -> u64 {
        let text = self.metrics();
        testkit::prometheus::sample(&text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }

    /// Replaces the backend set with backends `indices` and sends SIGHUP.
    pub fn set_backends(&self, indices: &[usize]) {
        let set: Vec<SocketAddrV4> = indices.iter().map(|&i| SocketAddrV4::new(backend_addr(i), 8000)).collect();
        write_backends(&self.backends_file, &set);
        self.signal(libc::SIGHUP);
    }

    /// Sends `signal` to the balancer process.
    ///
    /// # Panics
    /// It has exited.
    pub fn signal(&self, signal: i32) {
        self.lb.signal(signal).unwrap_or_else(|e| panic!("signal {signal} must reach sticky: {e}"));
    }

    /// The balancer's scheduler state letter from /proc (`T` while stopped).
    #[must_use]
    pub fn lb_state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.lb.id())).unwrap_or_default();
        stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).unwrap_or('?')
    }
}

impl Drop for L4Topo {
    fn drop(&mut self) {
        // A stopped process still dies of SIGKILL, but let it run so its exit is orderly in logs.
        let _ = self.lb.signal(libc::SIGCONT);
        let _ = std::fs::remove_file(&self.backends_file);
        if std::thread::panicking() {
            eprintln!("--- sticky run ({:?}) log ---\n{}", self.engine, self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Spawns `cmd` with `RUST_LOG=info`, its output appended to `log` (shown if the test fails).
fn spawn_logged(cmd: &mut std::process::Command, log: &std::path::Path) -> ChildGuard {
    testkit::process::log_to(cmd, log).expect("the temp dir must be writable");
    ChildGuard::spawn(cmd.env("RUST_LOG", "info").env("NO_COLOR", "1"))
}

fn write_backends(path: &std::path::Path, set: &[SocketAddrV4]) {
    let text = set.iter().fold(String::new(), |mut text, b| {
        writeln!(text, "{b}").expect("a String must take any text");
        text
    });
    // Write then rename: a reload never reads a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("temp dir must be writable");
    std::fs::rename(&tmp, path).expect("rename within the temp dir");
}

/// IPv6 twin of [`syn_flood`]: `count` SYNs from spoofed sources in `2001:db8:ff::/64` (131072
/// hosts times 8 source ports) to `dst`, through an `AF_PACKET` socket on `iface`, for at most
/// `deadline`. Returns how many were sent.
///
/// # Panics
/// The socket cannot be opened (needs `CAP_NET_RAW`).
#[must_use]
pub fn syn_flood6(
    iface: &str,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dst: SocketAddrV6,
    count: u32,
    deadline: Duration,
) -> u32 {
    let spoofed = |host: u32| Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, (host >> 16) as u16, (host & 0xffff) as u16);
    let frame = crate::packet::Tcp6::new(SocketAddrV6::new(spoofed(1), 1024, 0, 0), dst).syn().build();
    send_frames(iface, (src_mac, dst_mac), frame, (count, deadline), |frame, sent| {
        patch_source6(frame, spoofed(1 + sent % 131_072), 1024 + u16::try_from(sent / 131_072).unwrap());
    })
}

/// Rewrites a crafted IPv6 SYN's source address and port and recomputes its TCP checksum.
fn patch_source6(frame: &mut [u8], ip: Ipv6Addr, port: u16) {
    frame[22..38].copy_from_slice(&ip.octets());
    frame[54..56].copy_from_slice(&port.to_be_bytes());
    frame[70..72].fill(0);
    let tcp_len = frame.len() - 54;
    let mut pseudo = [0u8; 40];
    pseudo[..32].copy_from_slice(&frame[22..54]);
    pseudo[32..36].copy_from_slice(&u32::try_from(tcp_len).unwrap().to_be_bytes());
    pseudo[39] = 6;
    let sum = ones_complement(&frame[54..], ones_complement(&pseudo, 0));
    frame[70..72].copy_from_slice(&(!sum).to_be_bytes());
}
