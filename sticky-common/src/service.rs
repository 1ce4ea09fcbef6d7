//! Service types: a virtual IP and port the L4 path balances, and its settings.

use crate::addr::Ip6;

/// A service's frontend: the key of `SERVICES` ([`ServiceKey`]) and `SERVICES6` ([`ServiceKey6`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKeyOf<A> {
    /// Virtual IP, network byte order.
    pub addr: A,
    /// Port, network byte order.
    pub port: u16,
    /// IP protocol number (`flow::IPPROTO_TCP`).
    pub proto: u8,
    /// Explicit padding, always zero.
    pub pad: u8,
}

/// An IPv4 frontend (`SERVICES`).
pub type ServiceKey = ServiceKeyOf<u32>;
/// An IPv6 frontend (`SERVICES6`).
pub type ServiceKey6 = ServiceKeyOf<Ip6>;

/// A service's settings: the value of `SERVICES` and `SERVICES6`. Service ids are one space over
/// both maps: the id is the service's row in the shared `MAGLEV` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Service id: its row in `MAGLEV` (`id * MAGLEV_SIZE ..`) and the service half of affinity keys.
    pub id: u32,
    /// `SVC_F_*` bits.
    pub flags: u32,
    /// How long a client's affinity entry is trusted after its last new connection, nanoseconds
    /// (`CLOCK_MONOTONIC`, as `bpf_ktime_get_ns`).
    pub affinity_timeout_ns: u64,
}

/// `ServiceValue::flags`: keep each client on its backend through `AFFINITY` (else Maglev alone).
pub const SVC_F_AFFINITY: u32 = 1 << 0;

impl ServiceValue {
    /// Whether client affinity is on.
    #[must_use]
    pub const fn has_affinity(&self) -> bool {
        self.flags & SVC_F_AFFINITY != 0
    }
}

const _: () = assert!(size_of::<ServiceKey>() == 8);
const _: () = assert!(size_of::<ServiceKey6>() == 20);
const _: () = assert!(size_of::<ServiceValue>() == 16);
