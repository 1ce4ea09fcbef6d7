//! Types shared by sticky's eBPF programs and its daemon: `#[repr(C)]`, `no_std`, one definition for both sides.
//!
//! The kernel side (`sticky-ebpf`) and user space (`sticky-user`) address every map by the name constants
//! in [`maps`] and lay out every key and value with the types here, so the two can never drift apart.
//! [`hash`] holds the hashes both sides must compute alike (Maglev slot, SNAT-port candidates).
//! The `user` feature adds [`aya::Pod`] impls so user space can read and write these types in maps.
#![no_std]
#![deny(unsafe_code)]

pub mod affinity;
pub mod backend;
pub mod config;
pub mod flow;
pub mod hash;
pub mod maps;
pub mod service;
pub mod stats;

pub use affinity::{AffinityKey, AffinityValue};
pub use backend::{BackendId, BackendValue};
pub use config::DatapathConfig;
pub use flow::{ConnValue, FlowKey};
pub use service::{ServiceKey, ServiceValue};
pub use stats::{Counter, CounterKind, StatsValue};

#[cfg(feature = "user")]
extern crate std;
#[cfg(feature = "user")]
pub mod user;
