//! The discovery seam: a source of [`Catalog`]s (http and tcp services and their backends) that
//! sticky balances.
//!
//! A discovery runs as one task and publishes a complete catalog into a `watch` channel whenever what
//! it sees changes; the app compiles its http services into the routing table
//! ([`crate::state::Routing::publish`]) and hands its tcp services to [`crate::tcp`].
//! Complete snapshots, not deltas: a source that loses its upstream (Docker API down) simply stops
//! publishing and the last catalog stays in force. Backends keep their [`crate::model::BackendId`]
//! across catalogs so that their health, drain mark and sessions carry over.
//!
//! Sources: [`static_list`] (`--backend`, `--config`, `--mode tcp`) and [`swarm`] (`--docker`:
//! services and tasks of a Swarm, through the Docker API ([`docker`]), with [`reconcile`] turning one
//! listing into one catalog); [`status`]: what Swarm discovery last saw, for the dashboard.

pub mod docker;
pub mod reconcile;
pub mod static_list;
pub mod status;
pub mod swarm;

use std::{future::Future, sync::Arc};

use crate::model::Catalog;

/// Where a discovery publishes. `send_replace` never fails, even with no receiver.
pub type Publisher = tokio::sync::watch::Sender<Arc<Catalog>>;

/// Errors of discovery sources.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A backend's host name did not resolve.
    #[error("failed to resolve backend {url} of service {service}")]
    Resolve {
        /// The service.
        service: String,
        /// The backend URL as written.
        url: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The backends file of tcp mode cannot be read.
    #[error("failed to read backends file {path}")]
    BackendsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the backends file is not an IP:PORT (or [IPv6]:PORT).
    #[error("backends file {path}, line {line}")]
    BackendLine {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: crate::values::ValueError,
    },
    /// tcp mode found no backend at start.
    #[error("no backend: give --backend IP:PORT or --backends-file PATH")]
    NoTcpBackends,
    /// The Docker API cannot be used (`--docker`).
    #[error("Swarm discovery cannot use the Docker API")]
    Docker(#[from] docker::DockerError),
}

/// A source of catalogs.
pub trait Discovery: Send + 'static {
    /// Runs until dropped, publishing a catalog first as soon as it has one and then on every change.
    ///
    /// # Errors
    /// A failure the source cannot recover from (transient ones are retried inside and logged).
    ///
    /// # Cancel safety
    /// Dropping the future stops the source; the last published catalog stays in force.
    fn run(self, publish: Publisher) -> impl Future<Output = Result<(), DiscoveryError>> + Send;
}
