//! Client affinity types: which backend a client last used for a service, and when.

use crate::{addr::Ip6, backend::BackendId};

/// A client of a service: the key of `AFFINITY` ([`AffinityKey`]) and `AFFINITY6` ([`AffinityKey6`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKeyOf<A> {
    /// Client address, network byte order.
    pub client_addr: A,
    /// Service id (`ServiceValue::id`).
    pub service: u32,
}

/// The IPv4 affinity key (`AFFINITY`).
pub type AffinityKey = AffinityKeyOf<u32>;
/// The IPv6 affinity key (`AFFINITY6`): the whole 128-bit client address.
pub type AffinityKey6 = AffinityKeyOf<Ip6>;

/// The client's backend: the value of `AFFINITY` and `AFFINITY6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    /// The backend the client's last connection went to.
    pub backend: BackendId,
    /// Explicit padding, always zero.
    pub pad: u32,
    /// When that connection was established (or last ended), nanoseconds of `CLOCK_MONOTONIC`.
    pub last_used_ns: u64,
}

const _: () = assert!(size_of::<AffinityKey>() == 8);
const _: () = assert!(size_of::<AffinityKey6>() == 20);
const _: () = assert!(size_of::<AffinityValue>() == 16);

/// Whether an affinity entry written at `entry.last_used_ns` is still trusted at `now_ns` under a
/// timeout of `timeout_ns` (all nanoseconds of one monotonic clock). The kernel and the user-space
/// fallback both decide with this function.
#[must_use]
#[inline(always)]
pub const fn is_fresh(entry: &AffinityValue, now_ns: u64, timeout_ns: u64) -> bool {
    now_ns.wrapping_sub(entry.last_used_ns) < timeout_ns
}
