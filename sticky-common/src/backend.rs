//! Backend types: one task of a service, addressed by a [`BackendId`] (its index in `BACKENDS`, or
//! in `BACKENDS6` for a backend of an IPv6 service).

use crate::addr::Ip6;

/// Index of a backend in the `BACKENDS` array; stable for as long as the backend is in its set.
pub type BackendId = u32;

/// Marks an empty `MAGLEV` slot (a service with no backend).
pub const NO_BACKEND: BackendId = u32::MAX;

/// One backend: the value of `BACKENDS` ([`BackendValue`]) and `BACKENDS6` ([`BackendValue6`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendValueOf<A> {
    /// Address, network byte order.
    pub addr: A,
    /// Port, network byte order.
    pub port: u16,
    /// `BACKEND_F_*` bits; 0 is an unused slot.
    pub flags: u16,
    /// The service this backend belongs to (`ServiceValue::id`).
    pub service: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}

/// `BackendValue::flags`: in its service's set and taking new connections. Cleared when the backend
/// leaves the set: its established flows go on (the connection table holds its address), its
/// clients' affinity entries stop being trusted, and Maglev no longer picks it.
pub const BACKEND_F_ALIVE: u16 = 1 << 0;

/// An IPv4 backend (`BACKENDS`).
pub type BackendValue = BackendValueOf<u32>;
/// An IPv6 backend (`BACKENDS6`).
pub type BackendValue6 = BackendValueOf<Ip6>;

impl<A> BackendValueOf<A> {
    /// Whether this backend takes new connections for `service`.
    #[must_use]
    pub const fn is_alive_for(&self, service: u32) -> bool {
        self.flags & BACKEND_F_ALIVE != 0 && self.service == service
    }
}

const _: () = assert!(size_of::<BackendValue>() == 16);
const _: () = assert!(size_of::<BackendValue6>() == 28);
