//! sticky: a sticky-session load balancer for Docker Swarm, with an eBPF fast path.
//!
//! Crate map (one job per module, dependencies pointing down the list; ARCHITECTURE.md has the
//! whole picture):
//! - [`app`]: `sticky run` as one application (discovery, the http proxy, tcp mode, admin, stop),
//!   `sticky demo` and `sticky inspect`.
//! - [`cli`]: every flag and subcommand (clap); [`config`]: flags and the TOML file into a validated
//!   `Config`; [`values`]: one parser per kind of value, for flags, file and labels alike.
//! - [`discovery`]: the seam that publishes catalogs: static lists, or Swarm through the Docker API.
//! - [`labels`]: Swarm service labels (`sticky.*`, Traefik v1 and v2/v3) -> what to do with a service.
//! - [`access_log`]: one line per request (text or JSON), written off the data path.
//! - [`admin`]: the one admin listener: the dashboard, Prometheus `/metrics` (every metric in one
//!   table), `/api/backends` and `/api/overview`, draining.
//! - [`proxy`]: the http data path on sticky's own HTTP/1 engine (codec, connection loop, forwarding,
//!   body relay, pools, upgrades, error mapping).
//! - [`health_check`]: active HTTP health checks feeding each backend's health state machine.
//! - [`state`]: the routing table the proxy reads lock-free, and the live per-backend state behind it.
//! - [`stats`]: the proxy's sharded counters.
//! - [`tcp`]: tcp mode's runtime: the kernel path's control, or the user-space proxy.
//! - [`splice`]: the kernel splice of pinned and upgraded connections, or the user-space relay.
//! - [`datapath`]: the only user of aya: load the embedded eBPF object, attach, read and write maps.
//! - [`model`]: services, backends and their options as plain data, and their one validation.
//! - [`rule`]: routing rules in Traefik's syntaxes, parsed and matched.
//! - [`cookie`]: encode, sign, verify and expire the opaque sticky cookie.
//! - [`policy`]: keep, re-pin, pick or refuse; health; tcp mode's Maglev table and client affinity.
//! - [`listen`]: where listening sockets come from: bound here, or taken from the holder;
//!   [`hold`]: `sticky hold`, the holder of listening sockets that outlives sticky's updates.
//! - [`proxy_protocol`]: the PROXY protocol in (trusted sources' headers at accept) and out (v2 to
//!   backends); [`cidr`]: address ranges of trusted sources and proxies.
//! - [`net`]: binding and the accept rule of every listener; [`signal`]: shutdown and reload signals;
//!   [`lock`]: the one rule for poisoned locks; [`telemetry`]: tracing, with aya-log bridged in.
//! - [`whoami`]: the tiny demo app (`sticky whoami`): every request gets `I'm NAME`.
//! - [`tls`]: HTTPS at the edge: rustls server config, certificates (files, directories, Swarm secrets,
//!   ACME), SNI, hot reload; the TLS listener itself is the proxy's (`--listen-tls`).
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod cookie;
pub mod datapath;
pub mod discovery;
pub mod health_check;
pub mod hold;
pub mod labels;
pub mod listen;
pub mod lock;
pub mod model;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod rule;
pub mod signal;
pub mod splice;
pub mod state;
pub mod stats;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod values;
pub mod whoami;

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::Path};

    /// Every source file but the sibling test modules (`tests.rs`), as `sticky-user/src/...`.
    fn sources(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("src must be readable") {
            let path = entry.expect("a directory entry must be readable").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
                let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).expect("a file under the crate");
                out.insert(format!("sticky-user/{}", relative.display()));
            }
        }
    }

    #[test]
    fn architecture_md_lists_every_file_and_no_other() {
        let mut files = BTreeSet::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let listed: BTreeSet<String> = include_str!("../../ARCHITECTURE.md")
            .lines()
            .filter(|l| l.starts_with("sticky-user/src/"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        assert_eq!(listed, files, "ARCHITECTURE.md's module list must have one line per file of sticky-user/src");
    }
}
