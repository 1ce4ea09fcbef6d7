//! Packet tests: the real programs run on crafted frames through `BPF_PROG_TEST_RUN`, table-driven
//! (description, frame, expected verdict, expected counter), as Katran's test fixtures are.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp};
use sticky::datapath::{Datapath, PROG_TC, PROG_XDP, Stats};
use sticky_common::Counter;

use crate::{
    packet::{Tcp4, Tcp6, arp_request, tcp6_syn, udp4, udp6},
    require_root,
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn client() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 40000)
}
fn server() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 80)
}
fn client6() -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2), 40000, 0, 0)
}
fn server6() -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10), 80, 0, 0)
}

/// What the program must do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Hand it on untouched (`TC_ACT_OK` / `XDP_PASS`), counting this reason.
    Pass(Counter),
    /// Drop it (`TC_ACT_SHOT` / `XDP_DROP`), counting this reason.
    Drop(Counter),
    /// An IPv4 TCP segment of no service and no flow (this table configures none): counted as
    /// `TcpV4` and passed untouched, by tc as `PassNotService`, by XDP as `PassToTc`.
    Tcp,
    /// The same for an IPv6 TCP segment (after any extension headers the parser walks): `TcpV6`.
    Tcp6,
}

struct Case {
    description: &'static str,
    frame: Vec<u8>,
    expect: Expect,
    /// The kernel's `BPF_PROG_TEST_RUN` for skb programs refuses this frame itself (EINVAL): an IPv4
    /// frame shorter than an IPv4 header never reaches a tc program. XDP still gets it.
    xdp_only: bool,
}

#[expect(
    clippy::too_many_lines,
    reason = "the packet table: one case after another, each a description, a frame and a verdict"
)]
fn cases() -> Vec<Case> {
    let syn = Tcp4::new(client(), server()).syn().build();
    let mut bad_ihl = syn.clone();
    bad_ihl[14] = 0x44; // version 4, IHL 4 words (16 bytes): shorter than the fixed header
    let mut bad_version = syn.clone();
    bad_version[14] = 0x65;
    let mut short_tot_len = syn.clone();
    short_tot_len[16..18].copy_from_slice(&16u16.to_be_bytes()); // below the 20-byte IPv4 header
    let mut bad_doff = syn.clone();
    bad_doff[14 + 20 + 12] = 0x40; // TCP data offset 4 words
    let mut doff_past_packet = syn.clone();
    doff_past_packet[14 + 20 + 12] = 0xf0; // 60-byte TCP header in a 40-byte IP packet
    let syn6 = Tcp6::new(client6(), server6()).syn().build();
    let mut bad_version6 = syn6.clone();
    bad_version6[14] = 0x40;
    let mut doff_past_packet6 = syn6.clone();
    doff_past_packet6[14 + 40 + 12] = 0xf0; // 60-byte TCP header in a 20-byte payload
    vec![
        Case { description: "TCP SYN", frame: syn.clone(), expect: Expect::Tcp, xdp_only: false },
        Case {
            description: "TCP ACK with payload",
            frame: Tcp4::new(client(), server()).ack(1).payload(b"GET / HTTP/1.1\r\n\r\n").build(),
            expect: Expect::Tcp,
            xdp_only: false,
        },
        Case {
            description: "TCP FIN",
            frame: Tcp4::new(client(), server()).fin().ack(2).build(),
            expect: Expect::Tcp,
            xdp_only: false,
        },
        Case {
            description: "TCP RST",
            frame: Tcp4::new(client(), server()).rst().build(),
            expect: Expect::Tcp,
            xdp_only: false,
        },
        Case { description: "IPv6 TCP SYN", frame: tcp6_syn(), expect: Expect::Tcp6, xdp_only: false },
        Case {
            description: "IPv6 TCP behind hop-by-hop, destination options and a finished routing header",
            frame: Tcp6::new(client6(), server6()).ext(0, 8, 0).ext(60, 16, 0).ext(43, 24, 0).syn().build(),
            expect: Expect::Tcp6,
            xdp_only: false,
        },
        Case {
            description: "IPv6 TCP behind 4 extension headers (the most the parser walks)",
            frame: Tcp6::new(client6(), server6()).ext(0, 8, 0).ext(60, 8, 0).ext(60, 8, 0).ext(60, 8, 0).syn().build(),
            expect: Expect::Tcp6,
            xdp_only: false,
        },
        Case {
            description: "IPv6 behind 5 extension headers",
            frame: Tcp6::new(client6(), server6())
                .ext(0, 8, 0)
                .ext(60, 8, 0)
                .ext(60, 8, 0)
                .ext(60, 8, 0)
                .ext(60, 8, 0)
                .syn()
                .build(),
            expect: Expect::Pass(Counter::PassIpv6ExtHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv6 with 264 bytes of extension headers (over the 256 walked)",
            frame: Tcp6::new(client6(), server6()).ext(60, 264, 0).syn().build(),
            expect: Expect::Pass(Counter::PassIpv6ExtHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv6 routing header with segments left (the destination is not final)",
            frame: Tcp6::new(client6(), server6()).ext(43, 24, 1).syn().build(),
            expect: Expect::Pass(Counter::PassIpv6ExtHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv6 fragment",
            frame: Tcp6::new(client6(), server6()).ext(44, 8, 0).syn().build(),
            expect: Expect::Pass(Counter::PassIpv6Fragment),
            xdp_only: false,
        },
        Case {
            description: "IPv6 fragment behind hop-by-hop",
            frame: Tcp6::new(client6(), server6()).ext(0, 8, 0).ext(44, 8, 0).syn().build(),
            expect: Expect::Pass(Counter::PassIpv6Fragment),
            xdp_only: false,
        },
        Case {
            description: "IPv6 ESP (the TCP header is encrypted)",
            frame: Tcp6::new(client6(), server6()).ext(50, 8, 0).syn().build(),
            expect: Expect::Pass(Counter::PassIpv6ExtHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv6 authentication header",
            frame: Tcp6::new(client6(), server6()).ext(51, 16, 0).syn().build(),
            expect: Expect::Pass(Counter::PassIpv6ExtHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv6 UDP datagram",
            frame: udp6(client6(), server6(), b"hello"),
            expect: Expect::Pass(Counter::PassNotTcp),
            xdp_only: false,
        },
        Case {
            description: "IP version 4 in an IPv6 ethertype",
            frame: bad_version6,
            expect: Expect::Drop(Counter::DropBadIpHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv6 frame cut inside its TCP header",
            frame: syn6[..14 + 40 + 10].to_vec(),
            expect: Expect::Drop(Counter::DropTruncated),
            xdp_only: false,
        },
        Case {
            description: "IPv6 frame cut inside an extension header",
            frame: Tcp6::new(client6(), server6()).ext(0, 8, 0).syn().build()[..14 + 40 + 2].to_vec(),
            expect: Expect::Drop(Counter::DropTruncated),
            xdp_only: false,
        },
        Case {
            description: "IPv6 TCP header longer than the payload length",
            frame: doff_past_packet6,
            expect: Expect::Drop(Counter::DropBadTcpHeader),
            xdp_only: false,
        },
        Case {
            description: "ARP request",
            frame: arp_request(),
            expect: Expect::Pass(Counter::PassNotIp),
            xdp_only: false,
        },
        Case {
            description: "UDP datagram",
            frame: udp4(client(), server(), b"hello"),
            expect: Expect::Pass(Counter::PassNotTcp),
            xdp_only: false,
        },
        Case {
            description: "first IPv4 fragment (MF set)",
            frame: Tcp4::new(client(), server()).payload(&[7; 64]).fragment(true, 0).build(),
            expect: Expect::Pass(Counter::PassFragment),
            xdp_only: false,
        },
        Case {
            description: "later IPv4 fragment (offset 185 x 8 bytes)",
            frame: Tcp4::new(client(), server()).fragment(false, 185).build(),
            expect: Expect::Pass(Counter::PassFragment),
            xdp_only: false,
        },
        Case {
            description: "IPv4 with options (router alert + padding)",
            frame: Tcp4::new(client(), server()).syn().ip_options(&[0x94, 0x04, 0, 0]).build(),
            expect: Expect::Pass(Counter::PassIpOptions),
            xdp_only: false,
        },
        Case {
            description: "frame cut inside the IPv4 header",
            frame: syn[..14 + 12].to_vec(),
            expect: Expect::Drop(Counter::DropTruncated),
            xdp_only: true,
        },
        Case {
            description: "frame cut inside the TCP header",
            frame: syn[..14 + 20 + 10].to_vec(),
            expect: Expect::Drop(Counter::DropTruncated),
            xdp_only: false,
        },
        Case {
            description: "IPv4 IHL below 5 words",
            frame: bad_ihl,
            expect: Expect::Drop(Counter::DropBadIpHeader),
            xdp_only: false,
        },
        Case {
            description: "IP version 6 in an IPv4 ethertype",
            frame: bad_version,
            expect: Expect::Drop(Counter::DropBadIpHeader),
            xdp_only: false,
        },
        Case {
            description: "IPv4 total length below its header",
            frame: short_tot_len,
            expect: Expect::Drop(Counter::DropBadIpHeader),
            xdp_only: false,
        },
        Case {
            description: "TCP data offset below 5 words",
            frame: bad_doff,
            expect: Expect::Drop(Counter::DropBadTcpHeader),
            xdp_only: false,
        },
        Case {
            description: "TCP header longer than the IP packet",
            frame: doff_past_packet,
            expect: Expect::Drop(Counter::DropBadTcpHeader),
            xdp_only: false,
        },
    ]
}

/// Which program a table runs against.
#[derive(Clone, Copy, Debug)]
enum Prog {
    Tc,
    Xdp,
}

fn run_table(prog: Prog) {
    let mut dp = Datapath::load(aya_log_level()).expect("the embedded eBPF object must load");
    match prog {
        Prog::Tc => {
            let p: &mut SchedClassifier = dp
                .ebpf_mut()
                .program_mut(PROG_TC)
                .expect("sticky_tc in object")
                .try_into()
                .expect("sticky_tc is a classifier");
            p.load().expect("sticky_tc must pass the verifier");
        }
        Prog::Xdp => {
            let p: &mut Xdp = dp
                .ebpf_mut()
                .program_mut(PROG_XDP)
                .expect("sticky_xdp in object")
                .try_into()
                .expect("sticky_xdp is XDP");
            p.load().expect("sticky_xdp must pass the verifier");
        }
    }
    let mut before = dp.stats().expect("STATS must be readable");
    assert_eq!(before, Stats::default(), "a freshly loaded object starts at zero");
    for case in cases() {
        if case.xdp_only && matches!(prog, Prog::Tc) {
            continue;
        }
        let mut out = vec![0u8; case.frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(&case.frame), data_out: Some(&mut out), ..TestRunOptions::default() };
        let result = match prog {
            Prog::Tc => {
                let p: &mut SchedClassifier = dp.ebpf_mut().program_mut(PROG_TC).unwrap().try_into().unwrap();
                p.test_run(opts)
            }
            Prog::Xdp => {
                let p: &mut Xdp = dp.ebpf_mut().program_mut(PROG_XDP).unwrap().try_into().unwrap();
                p.test_run(opts)
            }
        }
        .unwrap_or_else(|e| panic!("{prog:?} {}: BPF_PROG_TEST_RUN failed: {e:?}", case.description));
        let (pass, drop) = match prog {
            Prog::Tc => (TC_ACT_OK, TC_ACT_SHOT),
            Prog::Xdp => (XDP_PASS, XDP_DROP),
        };
        let (verdict, counters) = match (case.expect, prog) {
            (Expect::Pass(c), _) => (pass, [c, c]),
            (Expect::Drop(c), _) => (drop, [c, c]),
            (Expect::Tcp, Prog::Tc) => (pass, [Counter::TcpV4, Counter::PassNotService]),
            (Expect::Tcp, Prog::Xdp) => (pass, [Counter::TcpV4, Counter::PassToTc]),
            (Expect::Tcp6, Prog::Tc) => (pass, [Counter::TcpV6, Counter::PassNotService]),
            (Expect::Tcp6, Prog::Xdp) => (pass, [Counter::TcpV6, Counter::PassToTc]),
        };
        assert_eq!(result.return_value, verdict, "{prog:?} {}: verdict", case.description);
        if verdict == pass {
            let len = usize::try_from(result.data_size_out).unwrap();
            assert_eq!(
                &out[..len],
                &case.frame[..],
                "{prog:?} {}: a passed frame must leave untouched",
                case.description
            );
        }
        let after = dp.stats().expect("STATS must be readable");
        for c in Counter::ALL {
            let want = before.get(c) + u64::from(c == Counter::Seen || counters.contains(&c));
            assert_eq!(after.get(c), want, "{prog:?} {}: counter {} after the frame", case.description, c.name());
        }
        before = after;
    }
}

fn aya_log_level() -> aya_log::Level {
    aya_log::Level::Warn
}

#[test]
fn tc_classifier_verdicts_and_counters() {
    require_root!();
    run_table(Prog::Tc);
}

#[test]
fn xdp_verdicts_and_counters() {
    require_root!();
    run_table(Prog::Xdp);
}
