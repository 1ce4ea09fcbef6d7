//! The classifier on real traffic: attached to a backend's interface in a namespace topology, it
//! must count exactly the packets that arrive and let every one of them through.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use sticky::datapath::{Datapath, Stats};
use sticky_common::Counter;
use testkit::{
    ChildGuard, Topology, http,
    net::can_connect,
    topology::{BACKEND_IFACE, backend_addr},
    wait,
};

use crate::{require_root, sticky_bin};

const REQUESTS: usize = 20;
const DATAGRAMS: u64 = 7;

#[derive(Clone, Copy, Debug)]
enum Attach {
    Tc,
    XdpGeneric,
}

/// Packet-level counters of the backend namespace that the classifier's counters must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Observed {
    stats: Stats,
    rx_packets: u64,
    tcp_in_segs: u64,
    ip_in_receives: u64,
}

fn observe(topo: &Topology, dp: &Datapath) -> Observed {
    let backend = &topo.backends[0];
    Observed {
        stats: dp.stats().expect("STATS must be readable"),
        rx_packets: backend.iface_counter(BACKEND_IFACE, "rx_packets"),
        tcp_in_segs: backend.snmp("Tcp", "InSegs"),
        ip_in_receives: backend.snmp("Ip", "InReceives"),
    }
}

fn counts_real_traffic(attach: Attach) {
    let topo = Topology::builder().backends(1).build();
    let backend = &topo.backends[0];
    let addr = SocketAddr::from((backend_addr(0), 8000));
    let _whoami = ChildGuard::spawn(backend.command(sticky_bin().to_str().unwrap()).args([
        "whoami",
        "--listen",
        &addr.to_string(),
        "--name",
        "b0",
    ]));
    assert!(topo.client.run(|| wait::until(Duration::from_secs(5), || can_connect(addr))), "whoami must come up");

    let dp = backend.run(|| {
        let mut dp = Datapath::load(aya_log::Level::Warn).expect("the embedded eBPF object must load");
        match attach {
            Attach::Tc => dp.attach_tc(BACKEND_IFACE).expect("tc attach must work on veth"),
            Attach::XdpGeneric => {
                dp.attach_xdp(BACKEND_IFACE, aya::programs::XdpMode::Skb)
                    .expect("generic XDP attach must work on veth");
            }
        }
        dp
    });
    // Let the readiness probe's last packets (FIN/ACK) land before the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let before = observe(&topo, &dp);

    let bodies = topo.client.run(|| {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..DATAGRAMS {
            udp.send_to(format!("datagram {i}").as_bytes(), (backend_addr(0), 9)).unwrap();
        }
        // One connection per request (`connection: close`): each adds its handshake to the counts.
        (0..REQUESTS).map(|_| http::get(addr, "/", &[]).expect("whoami must answer").into_text()).collect::<Vec<_>>()
    });
    assert!(bodies.iter().all(|b| b == "I'm b0\n"), "every request must reach whoami and come back: {bodies:?}");

    // The last FIN/ACKs are still in flight when the client returns: wait until the counters settle.
    let mut last = observe(&topo, &dp);
    let settled = wait::until(Duration::from_secs(3), || {
        std::thread::sleep(Duration::from_millis(150));
        let now = observe(&topo, &dp);
        let same = now == last;
        last = now;
        same
    });
    assert!(settled, "counters must settle once the traffic stops");
    let after = last;
    let delta = |c: Counter| after.stats.get(c) - before.stats.get(c);

    assert_eq!(
        delta(Counter::Seen),
        after.rx_packets - before.rx_packets,
        "{attach:?}: every received packet is seen once"
    );
    assert_eq!(
        delta(Counter::TcpV4),
        after.tcp_in_segs - before.tcp_in_segs,
        "{attach:?}: TCP segments seen == segments TCP received"
    );
    assert!(delta(Counter::TcpV4) >= 3 * REQUESTS as u64, "{attach:?}: at least SYN, request and ACK per connection");
    // Besides our datagrams the namespace may receive other non-TCP IPv4 (e.g. the bridge's IGMP):
    // the kernel's own count of received IPv4 packets minus TCP segments is the exact reference.
    let ip_not_tcp = (after.ip_in_receives - before.ip_in_receives) - (after.tcp_in_segs - before.tcp_in_segs);
    assert_eq!(
        delta(Counter::PassNotTcp),
        ip_not_tcp,
        "{attach:?}: non-TCP IPv4 seen == IPv4 received minus TCP segments"
    );
    assert!(delta(Counter::PassNotTcp) >= DATAGRAMS, "{attach:?}: every UDP datagram counted as not-TCP and passed");
    for c in Counter::ALL.into_iter().filter(|c| c.is_drop()) {
        assert_eq!(delta(c), 0, "{attach:?}: nothing dropped ({})", c.name());
    }
    let verdicts: u64 = Counter::ALL.into_iter().filter(|c| c.is_verdict()).map(delta).sum();
    assert_eq!(verdicts, delta(Counter::Seen), "{attach:?}: one verdict counter per packet seen");
    let l4_verdicts: u64 = Counter::ALL.into_iter().filter(|c| c.is_l4_verdict()).map(delta).sum();
    // IPv6 is disabled in these namespaces: no TcpV6, and the invariant is over both classes.
    assert_eq!(delta(Counter::TcpV6), 0, "{attach:?}: no IPv6 TCP here");
    assert_eq!(
        l4_verdicts,
        delta(Counter::TcpV4) + delta(Counter::TcpV6),
        "{attach:?}: one L4 verdict per TCP segment"
    );
}

#[test]
fn tc_counts_every_packet_and_passes_traffic() {
    require_root!();
    counts_real_traffic(Attach::Tc);
}

#[test]
fn xdp_generic_counts_every_packet_and_passes_traffic() {
    require_root!();
    counts_real_traffic(Attach::XdpGeneric);
}
