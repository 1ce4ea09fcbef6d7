//! sticky's test kit: one copy of every harness job the tests crate, sticky-user's end-to-end tests and
//! `cargo xtask bench` share.
//!
//! - [`netns`]: one RAII guard per network namespace (fresh thread per `run` because setns is per
//!   thread; deletion with everything inside on drop; the sweep of namespaces a killed run left).
//! - [`topology`]: client / balancer / backends namespaces joined by veth pairs, from a [`topology::Layout`].
//! - [`process`]: a child killed on drop, signals, commands that must succeed.
//! - [`wait`]: readiness polling, bounded in time.
//! - [`net`]: free loopback ports and bounded TCP connects, optionally from a chosen source address.
//! - [`http`]: one blocking HTTP/1.1 client (keep-alive, raw bytes or a request, bounded reads) and the
//!   framing test servers read requests with.
//! - [`prometheus`]: one sample of a `/metrics` text by its series.
//!
//! Tests panic with messages; the bench wants errors: where both use a job, the plain function panics
//! and its `try_` twin returns the module's error (one thiserror enum per module).
#![deny(unsafe_code)]

pub mod http;
pub mod net;
pub mod netns;
pub mod process;
pub mod prometheus;
pub mod topology;
pub mod wait;

pub use netns::NetNs;
pub use process::ChildGuard;
pub use topology::Topology;

/// `e`'s causes, outermost first, joined with `: ` (what `anyhow`'s `{:#}` prints), for panic and log
/// messages of the panicking twins and the guards' drops.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}
