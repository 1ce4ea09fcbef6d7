//! sticky: a sticky-session load balancer for Docker Swarm, with an eBPF fast path.
//!
//! Crate map (one job per module; ARCHITECTURE.md has the whole picture):
//! - [`labels`]: Swarm service labels (`sticky.*`, Traefik v1 and v2/v3) -> what to do with a service.
//! - [`rule`]: routing rules in Traefik's syntaxes, parsed and matched.
//! - [`docker`]: the Docker Engine API edge (services, tasks with addresses, events) for Swarm discovery.
//! - [`datapath`]: load the embedded eBPF object, attach its programs, read and write its maps.
//! - [`l4`]: `sticky run --mode tcp`: the kernel path's control loop, or the user-space fallback proxy.
//! - [`policy`]: pure balancing decisions (Maglev table, affinity) shared by both.
//! - [`whoami`]: the tiny demo app (`sticky whoami`): every request gets `I'm NAME`.
//! - [`telemetry`]: tracing set-up, and the bridge that carries aya-log records into it.
#![deny(unsafe_code)]

pub mod datapath;
pub mod docker;
pub mod l4;
pub mod labels;
pub mod policy;
pub mod rule;
pub mod telemetry;
pub mod whoami;
