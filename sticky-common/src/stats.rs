//! Per-CPU packet counters of the data path: what each program saw, passed, forwarded and dropped,
//! by reason, and the L4 path's events.

/// One slot of the per-CPU `STATS` array; user space sums the slots of every CPU.
pub type StatsValue = u64;

/// What a counter counts; the invariants below are what tests check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// [`Counter::Seen`]: every packet a program ran on.
    Total,
    /// [`Counter::TcpV4`], [`Counter::TcpV6`]: a class of packets handed to the L4 path, not a verdict.
    Class,
    /// A verdict: passed to the stack untouched (or, for [`Counter::PassFibFailed`], rewritten and
    /// handed to the stack to route).
    Pass,
    /// A verdict: dropped.
    Drop,
    /// A verdict: rewritten and redirected by the program.
    Forward,
    /// Not a verdict: something the L4 path did on the way (any number per packet, often none).
    Event,
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident = $value:literal, $kind:ident, $label:literal, $l4:literal;)*) => {
        /// Index of a counter in the `STATS` per-CPU array (the map's key, host byte order).
        ///
        /// Every packet a program sees increments [`Counter::Seen`] and exactly one verdict counter
        /// (kind `Pass`, `Drop` or `Forward`). Every packet the L4 path takes ([`Counter::TcpV4`],
        /// [`Counter::TcpV6`]) ends in exactly one of the verdicts marked L4 ([`Counter::is_l4_verdict`]).
        /// So, per CPU and in total: `Seen == sum(verdicts)` and `TcpV4 + TcpV6 == sum(L4 verdicts)`.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Counter {
            $($(#[doc = $doc])* $name = $value,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: [Self; Self::COUNT as usize] = [$(Self::$name,)*];

            /// What this counter counts.
            #[must_use]
            pub const fn kind(self) -> CounterKind {
                match self { $(Self::$name => CounterKind::$kind,)* }
            }

            /// Stable `snake_case` name, used as the Prometheus label and in JSON.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$name => $label,)* }
            }

            /// Whether this verdict ends a packet of the L4 path (one of them per [`Counter::TcpV4`]).
            #[must_use]
            pub const fn is_l4_verdict(self) -> bool {
                match self { $(Self::$name => $l4,)* }
            }
        }
    };
}

counters! {
    /// Every packet a sticky program ran on.
    Seen = 0, Total, "seen", false;
    /// IPv4 TCP segments parsed to the TCP header: the traffic the L4 path handles.
    TcpV4 = 1, Class, "tcp_v4", false;
    /// Passed: an ethertype other than IPv4 or IPv6 (ARP, VLAN tags, LLDP, ...).
    PassNotIp = 2, Pass, "pass_not_ip", false;
    /// Passed: an IPv6 extension header the parser does not walk (AH, ESP, Mobility, HIP, Shim6, an
    /// unknown one), a routing header with segments left (the destination is not final), more than 4
    /// extension headers, or more than 256 bytes of them.
    PassIpv6ExtHeader = 3, Pass, "pass_ipv6_ext_header", false;
    /// Passed: IPv4 or IPv6 but not TCP (UDP, ICMP, `ICMPv6`, no next header, ...).
    PassNotTcp = 4, Pass, "pass_not_tcp", false;
    /// Passed: an IPv4 fragment (MF set or non-zero offset): the L4 ports are not in every fragment.
    PassFragment = 5, Pass, "pass_fragment", false;
    /// Passed: an IPv4 header with options (IHL > 5); rare, and the stack handles them correctly.
    PassIpOptions = 6, Pass, "pass_ip_options", false;
    /// Dropped: the frame ends inside the Ethernet, IPv4 or TCP header.
    DropTruncated = 7, Drop, "drop_truncated", false;
    /// Dropped: the IPv4 header is invalid (version not 4, IHL < 5, or total length shorter than the
    /// headers), or the IPv6 header is (version not 6, payload length shorter than the extension headers).
    DropBadIpHeader = 8, Drop, "drop_bad_ip_header", false;
    /// Dropped: the TCP data offset is below 5 words or runs past the IP packet.
    DropBadTcpHeader = 9, Drop, "drop_bad_tcp_header", false;
    /// Passed: TCP that belongs to no flow and no service (the balancer's own traffic, routed traffic).
    PassNotService = 10, Pass, "pass_not_service", true;
    /// Passed by XDP: TCP is left to the tc program, which runs the L4 path (needs the skb's checksum helpers).
    PassToTc = 11, Pass, "pass_to_tc", true;
    /// Forwarded: a client's packet, rewritten to its backend and redirected.
    FwdToBackend = 12, Forward, "fwd_to_backend", true;
    /// Forwarded: a backend's reply, rewritten to come from the VIP and redirected to the client.
    FwdToClient = 13, Forward, "fwd_to_client", true;
    /// Passed after the rewrite: the FIB has no usable route to the new destination; the stack routes or drops it.
    PassFibFailed = 14, Pass, "pass_fib_failed", true;
    /// Dropped: a new connection to a service that has no live backend.
    DropNoBackend = 15, Drop, "drop_no_backend", true;
    /// Dropped: every SNAT-port candidate of a new connection is taken (the client retries its SYN).
    DropPortExhausted = 16, Drop, "drop_port_exhausted", true;
    /// Dropped: a packet of no usable flow: a reply to a SNAT port with no entry (the stack would RST a
    /// flow that can still be rebuilt), a RST of an unknown flow, or a half-open flow whose SNAT port an
    /// established flow took after an eviction.
    DropNoConn = 17, Drop, "drop_no_conn", true;
    /// Dropped: a rewrite helper failed (should not happen; the packet is already half rewritten).
    DropRewrite = 18, Drop, "drop_rewrite", true;
    /// Event: a SYN started a new flow (entries in `HALF_OPEN`).
    NewFlow = 19, Event, "new_flow", false;
    /// Event: a SYN of a flow already in the tables (a retransmission): same backend.
    SynRetransmit = 20, Event, "syn_retransmit", false;
    /// Event: a new flow followed its client's fresh affinity entry to a live backend.
    AffinityHit = 21, Event, "affinity_hit", false;
    /// Event: a new flow's backend came from the Maglev table.
    MaglevPick = 22, Event, "maglev_pick", false;
    /// Event: a flow's handshake completed; its entries moved from `HALF_OPEN` to `CONNS`.
    Established = 23, Event, "established", false;
    /// Event: a non-SYN packet of an unknown flow got its backend again (affinity or Maglev) in `HALF_OPEN`.
    Rebuilt = 24, Event, "rebuilt", false;
    /// Event: a client's packet whose own entry was evicted, matched through its surviving reply entry.
    Recovered = 25, Event, "recovered", false;
    /// Event: a reply entry missing from `CONNS` was written again from its client-side twin.
    TwinRestored = 26, Event, "twin_restored", false;
    /// Event: a FIN was seen; the flow's next SYN on the same 5-tuple starts afresh.
    FlowFin = 27, Event, "flow_fin", false;
    /// Event: a RST was forwarded; the flow's entries were deleted.
    FlowRst = 28, Event, "flow_rst", false;
    /// Event (`sticky_splice`): an skb of a spliced socket was redirected out of its peer.
    SpliceRedirect = 29, Event, "splice_redirect", false;
    /// Event (`sticky_splice`): an skb of a spliced socket whose peer is gone (closing) stayed on
    /// the socket's own receive queue.
    SpliceNoPeer = 30, Event, "splice_no_peer", false;
    /// IPv6 TCP segments parsed to the TCP header (after at most 4 extension headers): the IPv6
    /// traffic the L4 path handles.
    TcpV6 = 31, Class, "tcp_v6", false;
    /// Passed: an IPv6 fragment (a Fragment extension header): the L4 ports are not in every fragment.
    PassIpv6Fragment = 32, Pass, "pass_ipv6_fragment", false;
}

impl Counter {
    /// Number of counters: the `STATS` array's `max_entries`.
    pub const COUNT: u32 = 33;

    /// The array index of this counter.
    #[must_use]
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// Whether this counter is a drop reason.
    #[must_use]
    pub const fn is_drop(self) -> bool {
        matches!(self.kind(), CounterKind::Drop)
    }

    /// Whether this counter is a pass-to-the-stack reason.
    #[must_use]
    pub const fn is_pass(self) -> bool {
        matches!(self.kind(), CounterKind::Pass)
    }

    /// Whether this counter is a verdict (pass, drop or forward): exactly one per packet seen.
    #[must_use]
    pub const fn is_verdict(self) -> bool {
        matches!(self.kind(), CounterKind::Pass | CounterKind::Drop | CounterKind::Forward)
    }
}

// `ALL` must list every variant at its own index: a gap or a duplicate fails here.
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i].index() as usize == i);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::{Counter, CounterKind};

    #[test]
    fn every_verdict_is_exactly_one_of_pass_drop_or_forward() {
        for c in Counter::ALL {
            let kinds = u8::from(c.is_pass()) + u8::from(c.is_drop()) + u8::from(c.kind() == CounterKind::Forward);
            assert_eq!(kinds, u8::from(c.is_verdict()), "{c:?}");
            if c.is_l4_verdict() {
                assert!(c.is_verdict(), "{c:?}: an L4 verdict is a verdict");
            }
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            assert!(a.name().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{a:?}");
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
