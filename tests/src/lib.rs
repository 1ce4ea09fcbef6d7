//! Harness for sticky's integration tests: the packet lab and crafted frames, the L4 and L7 labs, a
//! private Swarm, and loud skips. Namespaces, topologies, processes, the HTTP client and `/metrics`
//! samples come from the shared test kit (`testkit`).
//!
//! The tests themselves are the `tests` module (src/tests/*.rs, one file per feature). Kernel tests
//! need root: without it they print why they skip, append to `$STICKY_SKIP_LOG` (which `cargo xtask
//! test` prints at the end), and under `STICKY_REQUIRE_ALL=1` (CI) fail instead of skipping.
#![deny(unsafe_code)]

use std::path::PathBuf;

pub mod l4;
pub mod l7;
pub mod packet;
pub mod skip;
pub mod swarm;

#[cfg(test)]
mod tests;

/// The `sticky` binary under test: `$STICKY_BIN` (set by `cargo xtask test`), else target/debug/sticky.
#[must_use]
pub fn sticky_bin() -> PathBuf {
    std::env::var_os("STICKY_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/sticky"), PathBuf::from)
}
