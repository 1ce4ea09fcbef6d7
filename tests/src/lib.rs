//! Harness for sticky's integration tests: network namespaces, client/balancer/backend topologies,
//! processes that die with the test, crafted frames, and loud skips.
//!
//! The tests themselves are the `tests` module (src/tests/*.rs, one file per feature). Kernel tests
//! need root: without it they print why they skip, append to `$STICKY_SKIP_LOG` (which `cargo xtask
//! test` prints at the end), and under `STICKY_REQUIRE_ALL=1` (CI) fail instead of skipping.
#![deny(unsafe_code)]
#![expect(
    clippy::pedantic,
    reason = "the harness moves to the shared test kit (issue 20, point 5), which is held to the workspace's pedantic lints"
)]

pub mod l4;
pub mod l7;
pub mod netns;
pub mod packet;
pub mod process;
pub mod skip;
pub mod swarm;
pub mod topology;

pub use netns::NetNs;
pub use process::{ChildGuard, sticky_bin};
pub use topology::Topology;

#[cfg(test)]
mod tests;
