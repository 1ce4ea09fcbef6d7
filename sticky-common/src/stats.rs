//! Per-CPU packet counters of the data path: what each program saw, passed and dropped, by reason.

/// One slot of the per-CPU `STATS` array; user space sums the slots of every CPU.
pub type StatsValue = u64;

/// Index of a counter in the `STATS` per-CPU array (the map's key, host byte order).
///
/// Every packet a program sees increments [`Counter::Seen`] and exactly one verdict counter:
/// one `Pass*` reason when it goes to the stack untouched, one `Drop*` reason when it is dropped,
/// or [`Counter::TcpV4`] when it is an IPv4 TCP segment the data path handles. So
/// `Seen == sum(Pass*) + sum(Drop*) + TcpV4` at all times (per CPU, and therefore in total).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Every packet a sticky program ran on.
    Seen = 0,
    /// IPv4 TCP segments parsed to the TCP header: the traffic the L4 path handles.
    TcpV4 = 1,
    /// Passed: an ethertype other than IPv4 or IPv6 (ARP, VLAN tags, LLDP, ...).
    PassNotIp = 2,
    /// Passed: IPv6 (not handled yet).
    PassIpv6 = 3,
    /// Passed: IPv4 but not TCP (UDP, ICMP, ...).
    PassNotTcp = 4,
    /// Passed: an IPv4 fragment (MF set or non-zero offset): the L4 ports are not in every fragment.
    PassFragment = 5,
    /// Passed: an IPv4 header with options (IHL > 5); rare, and the stack handles them correctly.
    PassIpOptions = 6,
    /// Dropped: the frame ends inside the Ethernet, IPv4 or TCP header.
    DropTruncated = 7,
    /// Dropped: the IPv4 header is invalid (version not 4, IHL < 5, or total length shorter than the headers).
    DropBadIpHeader = 8,
    /// Dropped: the TCP data offset is below 5 words or runs past the IP packet.
    DropBadTcpHeader = 9,
}

impl Counter {
    /// Number of counters: the `STATS` array's `max_entries`.
    pub const COUNT: u32 = 10;

    /// Every counter, in index order.
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::Seen,
        Self::TcpV4,
        Self::PassNotIp,
        Self::PassIpv6,
        Self::PassNotTcp,
        Self::PassFragment,
        Self::PassIpOptions,
        Self::DropTruncated,
        Self::DropBadIpHeader,
        Self::DropBadTcpHeader,
    ];

    /// The array index of this counter.
    #[must_use]
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// Whether this counter is a drop reason.
    #[must_use]
    pub const fn is_drop(self) -> bool {
        matches!(self, Self::DropTruncated | Self::DropBadIpHeader | Self::DropBadTcpHeader)
    }

    /// Whether this counter is a pass-to-the-stack reason.
    #[must_use]
    pub const fn is_pass(self) -> bool {
        matches!(self, Self::PassNotIp | Self::PassIpv6 | Self::PassNotTcp | Self::PassFragment | Self::PassIpOptions)
    }

    /// Stable snake_case name, used as the Prometheus label and in JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::TcpV4 => "tcp_v4",
            Self::PassNotIp => "pass_not_ip",
            Self::PassIpv6 => "pass_ipv6",
            Self::PassNotTcp => "pass_not_tcp",
            Self::PassFragment => "pass_fragment",
            Self::PassIpOptions => "pass_ip_options",
            Self::DropTruncated => "drop_truncated",
            Self::DropBadIpHeader => "drop_bad_ip_header",
            Self::DropBadTcpHeader => "drop_bad_tcp_header",
        }
    }
}

// `ALL` must list every variant at its own index: a new variant without an `ALL` entry fails here.
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i].index() as usize == i);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn every_counter_but_seen_and_tcp_is_exactly_one_of_pass_or_drop() {
        for c in Counter::ALL {
            let kinds = u8::from(c.is_pass()) + u8::from(c.is_drop());
            let expected = u8::from(!matches!(c, Counter::Seen | Counter::TcpV4));
            assert_eq!(kinds, expected, "{c:?}");
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
