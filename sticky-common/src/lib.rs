//! Types shared by sticky's eBPF programs and its daemon: `#[repr(C)]`, `no_std`, one definition for both sides.
//!
//! The kernel side (`sticky-ebpf`) and user space (`sticky-user`) address every map by the name constants
//! in [`maps`] and lay out every key and value with the types here, so the two can never drift apart.
//! [`hash`] holds the hashes both sides must compute alike (Maglev slot, SNAT-port candidates).
//! The `user` feature adds [`aya::Pod`] impls so user space can read and write these types in maps.
#![no_std]
#![deny(unsafe_code)]

pub mod addr;
pub mod affinity;
pub mod backend;
pub mod config;
pub mod flow;
pub mod hash;
pub mod maps;
pub mod service;
pub mod stats;

pub use addr::Ip6;
pub use affinity::{AffinityKey, AffinityKey6, AffinityKeyOf, AffinityValue};
pub use backend::{BackendId, BackendValue, BackendValue6, BackendValueOf};
pub use config::DatapathConfig;
pub use flow::{ConnValue, ConnValue6, ConnValueOf, FlowKey, FlowKey6, FlowKeyOf};
pub use service::{ServiceKey, ServiceKey6, ServiceKeyOf, ServiceValue};
pub use stats::{Counter, CounterKind, StatsValue};

#[cfg(feature = "user")]
extern crate std;
#[cfg(feature = "user")]
pub mod user;
