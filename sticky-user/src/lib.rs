//! sticky: a sticky-session load balancer for Docker Swarm, with an eBPF fast path.
//!
//! Crate map (one job per module; ARCHITECTURE.md has the whole picture):
//! - [`labels`]: Swarm service labels (`sticky.*`, Traefik v1 and v2/v3) -> what to do with a service.
//! - [`rule`]: routing rules in Traefik's syntaxes, parsed and matched.
//! - [`docker`]: the Docker Engine API edge (services, tasks with addresses, events) for Swarm discovery.
//! - [`model`]: services, rules, cookie options and backends as plain data (what discovery publishes).
//! - [`config`]: `sticky run` flags, `STICKY_*` variables and TOML file into a validated `Config`.
//! - [`cookie`]: encode, sign, verify and expire the opaque sticky cookie.
//! - [`policy`]: keep, re-pin, pick or refuse (weighted round robin); [`policy::health`]: the health state machine;
//!   [`policy::maglev`], [`policy::affinity`]: tcp mode's Maglev table and client affinity.
//! - [`discovery`]: the seam that publishes catalogs; [`discovery::static_list`] for `--backend`/`--config`.
//! - [`state`]: the routing table the proxy reads lock-free, and the live per-backend state behind it.
//! - [`proxy`]: the HTTP reverse proxy (accept loops, request phases, forwarding, upgrades, error mapping).
//! - [`admin`]: the admin listener: Prometheus `/metrics`, `/api/backends`, draining.
//! - [`net`]: the accept rule shared by every listener (transient errors retried after a pause).
//! - [`app`]: wires discovery, state, workers, health checks and admin into `sticky run` and `sticky demo`.
//! - [`datapath`]: load the embedded eBPF object, attach its programs, read and write its maps.
//! - [`l4`]: `sticky run --mode tcp`: the kernel path's control loop, or the user-space fallback proxy.
//! - [`whoami`]: the tiny demo app (`sticky whoami`): every request gets `I'm NAME`.
//! - [`telemetry`]: tracing set-up, and the bridge that carries aya-log records into it.
//! - [`tls`]: HTTPS at the edge: rustls server config, certificates (files, directories, Swarm secrets,
//!   ACME), SNI, hot reload (the listener wiring comes with the HTTP engine).
#![deny(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod cookie;
pub mod datapath;
pub mod discovery;
pub mod docker;
pub mod l4;
pub mod labels;
pub mod model;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod rule;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod whoami;
