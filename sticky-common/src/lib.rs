//! Types shared by sticky's eBPF programs and its daemon: `#[repr(C)]`, `no_std`, one definition for both sides.
//!
//! The kernel side (`sticky-ebpf`) and user space (`sticky-user`) address every map by the name constants
//! in [`maps`] and lay out every key and value with the types here, so the two can never drift apart.
//! The `user` feature adds [`aya::Pod`] impls so user space can read and write these types in maps.
#![no_std]

pub mod maps;
pub mod stats;

pub use stats::{Counter, StatsValue};

#[cfg(feature = "user")]
extern crate std;
#[cfg(feature = "user")]
pub mod user;
