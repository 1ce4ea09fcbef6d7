//! The L4 path packet by packet: the real `sticky_tc` through `BPF_PROG_TEST_RUN` on crafted frames,
//! checking verdicts, rewritten headers, valid checksums, map entries and counters at every step of a
//! flow's life (SYN, retransmitted SYN, SYN-ACK, ACK, data, FIN, RST), eviction recovery, affinity,
//! port exhaustion, what is passed untouched, and that two loaded instances pick alike.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    time::Duration,
};

use sticky::{
    datapath::{sizes::MapSizes, tcp::kernel_now_ns},
    model::TcpService,
    policy::{affinity::Choice, maglev::Maglev},
    tcp::user::Balancer,
};
use sticky_common::{AffinityKey, AffinityKey6, AffinityValue, Counter, FlowKey, FlowKey6, Ip6, flow::CONN_F_FIN};

use crate::{
    l4::{
        CLIENT_MAC, LAB_SNAT, LAB_SNAT6, LAB_VIP, LAB_VIP6, Lab, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, backend_mac,
        backend6, client6, delta, iface_mac, lab_netns, parse_out, parse_out6,
    },
    packet::{Tcp4, Tcp6, tcp6_syn},
    require_root,
};

fn backends() -> Vec<SocketAddrV4> {
    (0..3).map(|i| SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10 + i), 8000)).collect()
}

fn spec(timeout: Duration) -> TcpService {
    TcpService::at(LAB_VIP.into(), backends().into_iter().map(Into::into).collect(), timeout)
}

/// The Maglev backend user space computes for client `c` (the kernel must agree).
fn maglev_pick(c: SocketAddrV4) -> SocketAddrV4 {
    let set: Vec<SocketAddr> = backends().into_iter().map(Into::into).collect();
    match Maglev::build(&set).pick(IpAddr::V4(*c.ip())) {
        Some(SocketAddr::V4(b)) => b,
        other => panic!("an IPv4 backend for an IPv4 client, not {other:?}"),
    }
}

fn client(host: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, host), port)
}

fn key(src: SocketAddrV4, dst: SocketAddrV4) -> FlowKey {
    FlowKey::tcp(u32::from(*src.ip()).to_be(), u32::from(*dst.ip()).to_be(), src.port().to_be(), dst.port().to_be())
}

fn backend_index(b: SocketAddrV4) -> u8 {
    b.ip().octets()[3] - 10
}

#[test]
fn a_flow_from_syn_to_rst() {
    require_root!();
    let ns = lab_netns();
    let t0 = iface_mac(&ns, "t0");
    ns.run(|| {
        let mut lab = Lab::new(spec(Duration::from_secs(60)), (61000, 65535), MapSizes::default());
        let c = client(2, 40000);
        let expected = maglev_pick(c);

        // SYN: a new flow, Maglev's backend, a SNAT port in range, redirected out of t0 to the backend's MAC.
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT, "SYN: redirected");
        let syn = parse_out(&out);
        assert_eq!(syn.dst, expected, "SYN goes to the Maglev backend that user space computes too");
        assert_eq!(*syn.src.ip(), LAB_SNAT, "full NAT: the source is the balancer");
        assert!((61000..=65535).contains(&syn.src.port()), "SNAT port in range: {}", syn.src.port());
        assert!(syn.syn && !syn.ack);
        assert_eq!((syn.dmac, syn.smac), (backend_mac(backend_index(expected)), t0), "MACs from the FIB and neighbour");
        let after = lab.stats();
        for c in [Counter::TcpV4, Counter::NewFlow, Counter::MaglevPick, Counter::FwdToBackend] {
            assert_eq!(delta(&before, &after, c), 1, "SYN: {}", c.name());
        }
        let fwd_key = key(c, LAB_VIP);
        let rev_key = key(syn.dst, syn.src);
        assert!(lab.dp.tcp().half_open(&fwd_key).is_some(), "SYN: forward entry in HALF_OPEN");
        assert!(lab.dp.tcp().half_open(&rev_key).is_some(), "SYN: reverse entry in HALF_OPEN");
        assert!(lab.dp.tcp().conn(&fwd_key).is_none(), "SYN: nothing in CONNS before the handshake completes");

        // Retransmitted SYN: the very same rewrite.
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out), syn, "a retransmitted SYN gets the same backend and port");
        assert_eq!(delta(&before, &lab.stats(), Counter::SynRetransmit), 1);
        assert_eq!(delta(&before, &lab.stats(), Counter::NewFlow), 0);

        // SYN-ACK from the backend: back to the client, from the VIP.
        let (verdict, out) = lab.run(&Tcp4::new(syn.dst, syn.src).syn().ack(1001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT, "SYN-ACK: redirected");
        let synack = parse_out(&out);
        assert_eq!((synack.src, synack.dst), (LAB_VIP, c), "reply rewritten to VIP -> client");
        assert_eq!(synack.dmac, CLIENT_MAC);

        // The client's ACK completes the handshake: both directions move to CONNS, affinity recorded.
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).ack(2001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out).dst, expected);
        assert_eq!(delta(&before, &lab.stats(), Counter::Established), 1);
        assert!(lab.dp.tcp().conn(&fwd_key).is_some() && lab.dp.tcp().conn(&rev_key).is_some(), "ACK: both in CONNS");
        assert!(lab.dp.tcp().half_open(&fwd_key).is_none() && lab.dp.tcp().half_open(&rev_key).is_none());
        let svc = lab.sync.service_id(LAB_VIP.into()).unwrap();
        let aff = lab.dp.tcp().affinity(&AffinityKey { client_addr: u32::from(*c.ip()).to_be(), service: svc });
        assert_eq!(
            aff.map(|a| a.backend),
            lab.sync.backend_id(LAB_VIP.into(), expected.into()),
            "affinity names the backend"
        );

        // Data both ways, checksums valid (parse_out checks them).
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).ack(2001).payload(b"GET / HTTP/1.1\r\n\r\n").build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out).dst, expected);
        let (verdict, out) = lab.run(&Tcp4::new(syn.dst, syn.src).ack(1019).payload(b"I'm b\n").build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out).dst, c);

        // The LRU evicts the client-side entry: the next packet finds the flow through its reply entry.
        lab.dp.tcp().evict_conn(&fwd_key).expect("entry present");
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).ack(2001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out), Tcp4Out::ack(syn), "recovered: same backend, same SNAT port");
        assert_eq!(delta(&before, &lab.stats(), Counter::Recovered), 1);

        // The LRU evicts the reply entry: the client's next packet writes it again.
        lab.dp.tcp().evict_conn(&rev_key).expect("entry present");
        let before = lab.stats();
        let (verdict, _) = lab.run(&Tcp4::new(c, LAB_VIP).ack(2001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(delta(&before, &lab.stats(), Counter::TwinRestored), 1);
        assert!(lab.dp.tcp().conn(&rev_key).is_some(), "reply entry restored");

        // A reply to a SNAT port that has no entry is dropped, not handed to the stack (which would RST).
        let stray = SocketAddrV4::new(LAB_SNAT, if syn.src.port() == 61000 { 61001 } else { 61000 });
        let before = lab.stats();
        let (verdict, _) = lab.run(&Tcp4::new(syn.dst, stray).ack(5).build());
        assert_eq!(verdict, TC_ACT_SHOT, "reply to an unknown SNAT port: dropped");
        assert_eq!(delta(&before, &lab.stats(), Counter::DropNoConn), 1);

        // FIN marks the flow; a new SYN on the same 5-tuple is then a new flow, not a retransmission.
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).fin().ack(2001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert!(parse_out(&out).fin);
        assert_ne!(lab.dp.tcp().conn(&fwd_key).unwrap().flags & CONN_F_FIN, 0, "FIN recorded");
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out).dst, expected, "the reopened flow keeps its backend (affinity)");
        let after = lab.stats();
        assert_eq!((delta(&before, &after, Counter::NewFlow), delta(&before, &after, Counter::SynRetransmit)), (1, 0));
        assert_eq!(delta(&before, &after, Counter::AffinityHit), 1, "a fresh affinity entry to a live backend");

        // Complete it, then RST: forwarded, and both entries are gone.
        let (_, out) = lab.run(&Tcp4::new(c, LAB_VIP).syn().build());
        let reopened = parse_out(&out);
        let _ = lab.run(&Tcp4::new(c, LAB_VIP).ack(1).build());
        let rev_key = key(reopened.dst, reopened.src);
        assert!(lab.dp.tcp().conn(&fwd_key).is_some());
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).rst().build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert!(parse_out(&out).rst, "the RST itself reaches the backend");
        assert_eq!(delta(&before, &lab.stats(), Counter::FlowRst), 1);
        assert!(lab.dp.tcp().conn(&fwd_key).is_none() && lab.dp.tcp().conn(&rev_key).is_none(), "RST: entries deleted");
    });
}

/// The output expected for a client ACK of the flow whose SYN went out as `syn`.
struct Tcp4Out;
impl Tcp4Out {
    fn ack(syn: crate::l4::Out) -> crate::l4::Out {
        crate::l4::Out { syn: false, ack: true, ..syn }
    }
}

#[test]
fn untouched_what_is_not_a_service_flow() {
    require_root!();
    let ns = lab_netns();
    ns.run(|| {
        let mut lab = Lab::new(spec(Duration::from_secs(60)), (61000, 65535), MapSizes::default());
        let c = client(2, 40001);
        let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
            ("SYN to a backend directly", Tcp4::new(c, backends()[0]).syn().build(), Counter::PassNotService),
            (
                "SYN to the VIP on another port",
                Tcp4::new(c, SocketAddrV4::new(*LAB_VIP.ip(), 81)).syn().build(),
                Counter::PassNotService,
            ),
            (
                "fragment to the VIP",
                Tcp4::new(c, LAB_VIP).payload(&[1; 64]).fragment(true, 0).build(),
                Counter::PassFragment,
            ),
            (
                "VIP SYN with IP options",
                Tcp4::new(c, LAB_VIP).syn().ip_options(&[0x94, 4, 0, 0]).build(),
                Counter::PassIpOptions,
            ),
            ("IPv6 SYN to no IPv6 service", tcp6_syn(), Counter::PassNotService),
        ];
        for (what, frame, counter) in cases {
            let before = lab.stats();
            let (verdict, out) = lab.run(&frame);
            assert_eq!(verdict, TC_ACT_OK, "{what}: passed");
            assert_eq!(out, frame, "{what}: untouched");
            assert_eq!(delta(&before, &lab.stats(), counter), 1, "{what}: counted as {}", counter.name());
        }
        // A RST or an ACK of no known flow: the ACK rebuilds (its entries were evicted), the RST is dropped.
        let before = lab.stats();
        let (verdict, _) = lab.run(&Tcp4::new(c, LAB_VIP).rst().build());
        assert_eq!(verdict, TC_ACT_SHOT, "RST of no flow");
        let (verdict, out) = lab.run(&Tcp4::new(c, LAB_VIP).ack(7).build());
        assert_eq!(verdict, TC_ACT_REDIRECT, "ACK of an evicted flow is rebuilt");
        assert_eq!(parse_out(&out).dst, maglev_pick(c));
        let after = lab.stats();
        assert_eq!((delta(&before, &after, Counter::DropNoConn), delta(&before, &after, Counter::Rebuilt)), (1, 1));
    });
}

#[test]
fn affinity_is_trusted_only_fresh_and_alive() {
    require_root!();
    let ns = lab_netns();
    ns.run(|| {
        let mut lab = Lab::new(spec(Duration::from_secs(5)), (61000, 65535), MapSizes::default());
        let svc = lab.sync.service_id(LAB_VIP.into()).unwrap();
        let c = client(7, 1);
        let maglev = maglev_pick(c);
        let other = *backends().iter().find(|b| **b != maglev).unwrap();
        let other_id = lab.sync.backend_id(LAB_VIP.into(), other.into()).unwrap();
        let akey = AffinityKey { client_addr: u32::from(*c.ip()).to_be(), service: svc };
        let syn_from =
            |lab: &mut Lab, port: u16| parse_out(&lab.run(&Tcp4::new(client(7, port), LAB_VIP).syn().build()).1).dst;

        let fresh = AffinityValue { backend: other_id, pad: 0, last_used_ns: kernel_now_ns() };
        lab.dp.tcp().set_affinity(&akey, &fresh).unwrap();
        assert_eq!(syn_from(&mut lab, 1000), other, "a fresh entry to a live backend wins over Maglev");

        let stale = AffinityValue { last_used_ns: kernel_now_ns() - 6_000_000_000, ..fresh };
        lab.dp.tcp().set_affinity(&akey, &stale).unwrap();
        assert_eq!(syn_from(&mut lab, 1001), maglev, "an entry older than the timeout is ignored");

        lab.dp.tcp().set_affinity(&akey, &fresh).unwrap();
        let rest: Vec<SocketAddr> = backends().into_iter().filter(|b| *b != other).map(Into::into).collect();
        let report = lab.sync.apply(lab.dp.tcp(), &TcpService { backends: rest.clone(), ..lab.spec.clone() }).unwrap();
        assert_eq!(report.removed, vec![(other.into(), other_id)]);
        let now = syn_from(&mut lab, 1002);
        assert_ne!(now, other, "an entry to a backend that left is ignored");
        assert_eq!(SocketAddr::V4(now), Maglev::build(&rest).pick(IpAddr::V4(*c.ip())).unwrap());
    });
}

#[test]
fn exhausted_snat_ports_drop_the_syn() {
    require_root!();
    let ns = lab_netns();
    ns.run(|| {
        // One backend and a single SNAT port: the second concurrent flow has nowhere to go.
        let one = TcpService::at(LAB_VIP.into(), vec![backends()[0].into()], Duration::from_secs(5));
        let mut lab = Lab::new(one, (61000, 61000), MapSizes::default());
        let (verdict, out) = lab.run(&Tcp4::new(client(2, 1), LAB_VIP).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out(&out).src.port(), 61000);
        let before = lab.stats();
        let (verdict, _) = lab.run(&Tcp4::new(client(3, 1), LAB_VIP).syn().build());
        assert_eq!(verdict, TC_ACT_SHOT, "no free SNAT port: the SYN is dropped (the client retries)");
        assert_eq!(delta(&before, &lab.stats(), Counter::DropPortExhausted), 1);
    });
}

#[test]
fn two_instances_and_the_fallback_pick_the_same_backends() {
    require_root!();
    let ns = lab_netns();
    ns.run(|| {
        let a = spec(Duration::from_secs(60));
        let mut reversed = a.clone();
        reversed.backends.reverse();
        let mut first = Lab::new(a.clone(), (61000, 65535), MapSizes::default());
        let mut second = Lab::new(reversed, (61000, 65535), MapSizes::default());
        let fallback = Balancer::new(&a, 1024);
        let mut seen = std::collections::BTreeSet::new();
        for host in 2..=200u8 {
            let syn = Tcp4::new(client(host, 50000), LAB_VIP).syn().build();
            let one = parse_out(&first.run(&syn).1).dst;
            let two = parse_out(&second.run(&syn).1).dst;
            assert_eq!(one, two, "192.0.2.{host}: both instances agree");
            assert_eq!(
                fallback.choose(IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))),
                Choice::Pick(SocketAddr::V4(one)),
                "192.0.2.{host}: the fallback agrees"
            );
            seen.insert(one);
        }
        assert_eq!(seen.len(), 3, "199 clients reach all three backends");
    });
}

/// The IPv6 lab service: [`LAB_VIP6`] over three IPv6 backends.
fn backends6() -> Vec<SocketAddr> {
    (0..3).map(|i| SocketAddr::V6(backend6(i))).collect()
}

fn key6(src: SocketAddrV6, dst: SocketAddrV6) -> FlowKey6 {
    FlowKey6::tcp(
        Ip6::from_octets(src.ip().octets()),
        Ip6::from_octets(dst.ip().octets()),
        src.port().to_be(),
        dst.port().to_be(),
    )
}

fn maglev_pick6(c: SocketAddrV6) -> SocketAddrV6 {
    match Maglev::build(&backends6()).pick(IpAddr::V6(*c.ip())) {
        Some(SocketAddr::V6(b)) => b,
        other => panic!("an IPv6 backend for an IPv6 client, not {other:?}"),
    }
}

fn backend6_index(b: SocketAddrV6) -> u8 {
    u8::try_from(b.ip().segments()[7] - 0x10).unwrap()
}

#[test]
fn an_ipv6_flow_full_nat_both_ways_with_extension_headers_and_affinity() {
    require_root!();
    let ns = lab_netns();
    let t0 = iface_mac(&ns, "t0");
    ns.run(|| {
        let spec = TcpService::at(LAB_VIP6.into(), backends6(), Duration::from_secs(60));
        let mut lab = Lab::new(spec, (61000, 65535), MapSizes::default());
        let c = client6(2, 40000);
        let expected = maglev_pick6(c);

        // SYN: Maglev's backend (the same one user space computes over the 128-bit client), the IPv6
        // SNAT address, a port in range, out of t0 to the backend's MAC, TCP checksum valid.
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp6::new(c, LAB_VIP6).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT, "IPv6 SYN: redirected");
        let syn = parse_out6(&out);
        assert_eq!(syn.dst, expected, "IPv6 SYN goes to the Maglev backend");
        assert_eq!(*syn.src.ip(), LAB_SNAT6, "full NAT: the source is the balancer's IPv6 address");
        assert!((61000..=65535).contains(&syn.src.port()), "SNAT port in range: {}", syn.src.port());
        assert!(syn.syn && !syn.ack);
        assert_eq!((syn.dmac, syn.smac), (backend_mac(backend6_index(expected)), t0), "MACs from the IPv6 FIB");
        let after = lab.stats();
        for counter in [Counter::TcpV6, Counter::NewFlow, Counter::MaglevPick, Counter::FwdToBackend] {
            assert_eq!(delta(&before, &after, counter), 1, "IPv6 SYN: {}", counter.name());
        }
        assert_eq!(delta(&before, &after, Counter::TcpV4), 0);
        let fwd_key = key6(c, LAB_VIP6);
        let rev_key = key6(syn.dst, syn.src);
        assert!(lab.dp.tcp().half_open6(&fwd_key).is_some(), "forward entry in HALF_OPEN6");
        assert!(lab.dp.tcp().half_open6(&rev_key).is_some(), "reverse entry in HALF_OPEN6");

        // SYN-ACK from the backend: back to the client, from the VIP.
        let (verdict, out) = lab.run(&Tcp6::new(syn.dst, syn.src).syn().ack(1001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT, "IPv6 SYN-ACK: redirected");
        let synack = parse_out6(&out);
        assert_eq!((synack.src, synack.dst), (LAB_VIP6, c), "reply rewritten to VIP -> client");
        assert_eq!(synack.dmac, CLIENT_MAC);

        // ACK: established; both directions in CONNS6; affinity keyed by the whole client address.
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp6::new(c, LAB_VIP6).ack(2001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out6(&out).dst, expected);
        assert_eq!(delta(&before, &lab.stats(), Counter::Established), 1);
        assert!(lab.dp.tcp().conn6(&fwd_key).is_some() && lab.dp.tcp().conn6(&rev_key).is_some(), "both in CONNS6");
        assert!(lab.dp.tcp().half_open6(&fwd_key).is_none() && lab.dp.tcp().half_open6(&rev_key).is_none());
        let svc = lab.sync.service_id(LAB_VIP6.into()).unwrap();
        let akey = AffinityKey6 { client_addr: Ip6::from_octets(c.ip().octets()), service: svc };
        let aff = lab.dp.tcp().affinity6(&akey);
        assert_eq!(aff.map(|a| a.backend), lab.sync.backend_id(LAB_VIP6.into(), expected.into()), "AFFINITY6");

        // Data behind a hop-by-hop and a destination-options header: the TCP header after them is
        // rewritten, its checksum still valid; the reply's payload too.
        let data = Tcp6::new(c, LAB_VIP6).ext(0, 8, 0).ext(60, 16, 0).ack(2001).payload(b"GET / HTTP/1.1\r\n\r\n");
        let (verdict, out) = lab.run(&data.build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let fwd = parse_out6(&out);
        assert_eq!((fwd.src, fwd.dst), (syn.src, expected), "same SNAT port and backend behind extension headers");
        let (verdict, out) = lab.run(&Tcp6::new(syn.dst, syn.src).ack(1019).payload(b"I'm b\n").build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out6(&out).dst, c);

        // Eviction of the client-side entry: found again through the reply entry.
        lab.dp.tcp().evict_conn6(&fwd_key).expect("entry present");
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp6::new(c, LAB_VIP6).ack(2001).build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out6(&out).src, syn.src, "recovered: same SNAT port");
        assert_eq!(delta(&before, &lab.stats(), Counter::Recovered), 1);

        // Affinity decides over Maglev, keyed by all 128 bits: client d pinned to a backend Maglev
        // would not give it follows the pin; a client differing only in its low 64 bits does not.
        let d = client6(3, 41000);
        let other = (0..3).map(backend6).find(|b| *b != maglev_pick6(d)).unwrap();
        let other_id = lab.sync.backend_id(LAB_VIP6.into(), other.into()).unwrap();
        let dkey = AffinityKey6 { client_addr: Ip6::from_octets(d.ip().octets()), service: svc };
        let pin = AffinityValue { backend: other_id, pad: 0, last_used_ns: kernel_now_ns() };
        lab.dp.tcp().set_affinity6(&dkey, &pin).unwrap();
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp6::new(d, LAB_VIP6).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out6(&out).dst, other, "the pinned backend, not Maglev's");
        assert_eq!(delta(&before, &lab.stats(), Counter::AffinityHit), 1);
        let mut segments = d.ip().segments();
        segments[4] = 1;
        let near = SocketAddrV6::new(Ipv6Addr::from(segments), 41000, 0, 0);
        let before = lab.stats();
        let (verdict, out) = lab.run(&Tcp6::new(near, LAB_VIP6).syn().build());
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(parse_out6(&out).dst, maglev_pick6(near), "another /128 has no affinity: Maglev");
        assert_eq!(delta(&before, &lab.stats(), Counter::AffinityHit), 0);

        // A reply to an IPv6 SNAT port with no entry is dropped (the stack would RST the flow).
        let before = lab.stats();
        let stray = SocketAddrV6::new(LAB_SNAT6, 61000, 0, 0);
        let (verdict, _) = lab.run(&Tcp6::new(backend6(0), stray).ack(5).build());
        assert_eq!(verdict, TC_ACT_SHOT);
        assert_eq!(delta(&before, &lab.stats(), Counter::DropNoConn), 1);
    });
}

#[test]
fn ipv6_instances_and_the_fallback_pick_the_same_backends() {
    require_root!();
    let ns = lab_netns();
    ns.run(|| {
        let a = TcpService::at(LAB_VIP6.into(), backends6(), Duration::from_secs(60));
        let mut reversed = a.clone();
        reversed.backends.reverse();
        let mut first = Lab::new(a.clone(), (61000, 65535), MapSizes::default());
        let mut second = Lab::new(reversed, (61000, 65535), MapSizes::default());
        let fallback = Balancer::new(&a, 1024);
        let mut seen = std::collections::BTreeSet::new();
        for host in 2..=9u16 {
            for high in [0u16, 0x1234, 0xfffe] {
                let mut seg = client6(host, 50000).ip().segments();
                seg[3] = high;
                let c = SocketAddrV6::new(Ipv6Addr::from(seg), 50000, 0, 0);
                let syn = Tcp6::new(c, LAB_VIP6).syn().build();
                let one = parse_out6(&first.run(&syn).1).dst;
                let two = parse_out6(&second.run(&syn).1).dst;
                assert_eq!(one, two, "{c}: both instances agree");
                assert_eq!(fallback.choose(IpAddr::V6(*c.ip())), Choice::Pick(SocketAddr::V6(one)), "{c}: fallback");
                seen.insert(one);
            }
        }
        assert!(seen.len() > 1, "24 clients spread over more than one backend: {seen:?}");
    });
}
