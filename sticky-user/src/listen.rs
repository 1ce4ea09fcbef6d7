//! Where sticky's listening sockets come from: bound by this process, or (`--listen-from PATH`)
//! taken from the listener holder, `sticky hold`, so that a new sticky accepts on the very socket
//! the old one did and an update of sticky refuses nothing (see [`crate::hold`]).

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::hold::{HoldError, client, standin::Taken};

/// How long sticky waits at start for a holder to answer (it starts beside sticky, so it may come
/// up a moment later); then it stops with the error, and Swarm starts it again.
pub const HOLDER_WAIT: Duration = Duration::from_secs(60);

/// Why a listening socket cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding here failed.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The holder did not give the socket.
    #[error("failed to take the listening sockets {addrs:?} from the holder")]
    Holder {
        /// The addresses asked for.
        addrs: Vec<SocketAddr>,
        /// Why.
        #[source]
        source: HoldError,
    },
}

/// Where the listening sockets come from.
#[derive(Clone, Debug, Default)]
pub enum Source {
    /// This process binds them.
    #[default]
    Bind,
    /// The holder at this unix socket has them; copies of those taken are kept in `taken`.
    Holder {
        /// The holder's unix socket.
        path: PathBuf,
        /// Copies of the sockets taken so far.
        taken: Taken,
    },
}

impl Source {
    /// The holder at `listen_from`, else binding.
    #[must_use]
    pub fn new(listen_from: Option<&Path>) -> Self {
        listen_from.map_or(Self::Bind, |p| Self::Holder { path: p.to_owned(), taken: Taken::default() })
    }

    /// Listening sockets for `addrs`, in order (non-blocking), bound here or asked of the holder in
    /// one request, waiting up to `wait` for a holder to answer. Blocking: call it off the runtime.
    ///
    /// # Errors
    /// An address cannot be bound, or the holder is absent after `wait`, does not hold one of
    /// them, or answers wrongly.
    pub fn take(&self, addrs: &[SocketAddr], wait: Duration) -> Result<Vec<TcpListener>, ListenError> {
        let listeners = match self {
            Self::Bind => addrs
                .iter()
                .map(|&addr| crate::net::bind(addr).map_err(|source| ListenError::Bind { addr, source }))
                .collect::<Result<Vec<_>, _>>()?,
            Self::Holder { path, taken } => {
                let listeners = client::fetch_waiting(path, addrs, wait)
                    .map_err(|source| ListenError::Holder { addrs: addrs.to_vec(), source })?;
                let mut kept = crate::lock::lock(taken);
                for (listener, &addr) in listeners.iter().zip(addrs) {
                    if !kept.iter().any(|(a, _)| *a == addr)
                        && let Ok(copy) = listener.try_clone()
                    {
                        kept.push((addr, copy));
                    }
                }
                listeners
            }
        };
        for (listener, &addr) in listeners.iter().zip(addrs) {
            // O_NONBLOCK belongs to the socket shared with the holder and other instances: all want it
            listener.set_nonblocking(true).map_err(|source| ListenError::Bind { addr, source })?;
        }
        Ok(listeners)
    }

    /// [`Source::take`] on a blocking thread of the runtime.
    ///
    /// # Errors
    /// See [`Source::take`].
    pub async fn take_async(&self, addrs: &[SocketAddr], wait: Duration) -> Result<Vec<TcpListener>, ListenError> {
        let (source, owned) = (self.clone(), addrs.to_vec());
        match tokio::task::spawn_blocking(move || source.take(&owned, wait)).await {
            Ok(result) => result,
            Err(e) => {
                let addr = addrs.first().copied().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                Err(ListenError::Bind { addr, source: std::io::Error::other(e) })
            }
        }
    }
}
