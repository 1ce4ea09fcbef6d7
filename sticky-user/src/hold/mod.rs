//! `sticky hold`: a tiny long-lived process that holds sticky's listening sockets, so that sticky
//! itself can be replaced without a moment in which nothing listens (HAProxy's seamless reload,
//! with the sockets passed over a unix socket, `SCM_RIGHTS`).
//!
//! The holder binds each `--listen` address and never accepts on it. Every sticky started with
//! `--listen-from PATH` asks it for the addresses of its listeners and accepts on the same kernel
//! socket: during a start-first update of sticky both tasks accept from one queue, and when the old
//! one stops (closing its copies) the socket, its queue and the connections in it stay. A new
//! holder (its own start-first update) first asks the running one for every socket, then puts its
//! unix socket in place by renaming it over the path: the listening sockets never close.
//!
//! - [`protocol`]: the request and response lines (pure);
//! - [`fds`]: bytes with descriptors attached over a unix socket;
//! - [`client`]: asking a holder (sticky, and a new holder taking over);
//! - [`server`]: the holder's sockets, its unix socket, its answers;
//! - [`standin`]: sticky handing out its copies while no holder answers (a holder that crashed).

pub mod client;
pub mod fds;
pub mod protocol;
pub mod server;
pub mod standin;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use crate::cli::HoldArgs;

/// Why the holder, or asking it, fails.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// Nothing answers at the path (no holder yet, or a stale file).
    #[error("no listener holder answers at {path} (is `sticky hold` running, with its socket in the same volume?)")]
    Absent {
        /// The holder's socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange with the holder failed.
    #[error("listener holder at {path}: cannot {action}")]
    Exchange {
        /// The holder's socket.
        path: PathBuf,
        /// What failed.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The holder's answer does not follow the protocol (another version?).
    #[error("listener holder at {path} answered outside the protocol")]
    Protocol {
        /// The holder's socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: protocol::ProtocolError,
    },
    /// The holder refused the request.
    #[error("listener holder at {path} refused: {message}")]
    Refused {
        /// The holder's socket.
        path: PathBuf,
        /// Its message.
        message: String,
    },
    /// The holder's descriptors do not match what it named.
    #[error("listener holder at {path}: {what}")]
    Mismatch {
        /// The holder's socket.
        path: PathBuf,
        /// What does not match.
        what: String,
    },
    /// The holder cannot bind an address.
    #[error("cannot listen on {addr} (another holder whose socket is elsewhere, or another program?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The holder's socket directory is missing.
    #[error("--socket {path}: directory {dir} does not exist (mount the volume shared with sticky there)")]
    NoDirectory {
        /// The socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The holder's unix socket cannot be put in place or served.
    #[error("--socket {path}: cannot {action}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `sticky hold`: takes over or binds the sockets, serves them at `--socket` until `stop`.
///
/// # Errors
/// See [`HoldError`]: a running holder answers wrongly, an address cannot be bound, the socket
/// cannot be put in place.
pub async fn run(args: &HoldArgs, stop: impl Future<Output = ()>) -> Result<(), HoldError> {
    server::Endpoint::check_directory(&args.socket)?;
    let path = args.socket.clone();
    let listen = args.listen.clone();
    let held = tokio::task::spawn_blocking(move || server::Held::acquire(&path, &listen)).await.map_err(|e| {
        HoldError::Socket { path: args.socket.clone(), action: "start", source: std::io::Error::other(e) }
    })??;
    let held = Arc::new(held);
    let (endpoint, listener) = server::Endpoint::bind(&args.socket)?;
    tracing::info!(socket = %args.socket.display(), sockets = ?held.addrs(), "holding the listening sockets");
    tokio::select! {
        served = server::serve(listener, held.clone()) => {
            if let Err(source) = served {
                return Err(HoldError::Socket { path: args.socket.clone(), action: "accept", source });
            }
        }
        () = stop => {}
    }
    let successor = !endpoint.ours();
    tracing::info!(
        successor,
        "stopping; the listening sockets stay open in every process that holds them ({})",
        if successor { "a new holder took over the socket path" } else { "no successor: the socket file is removed" }
    );
    drop(endpoint);
    Ok(())
}
