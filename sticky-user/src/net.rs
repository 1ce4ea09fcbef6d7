//! Accepting connections: one accept loop rule for every listener (proxy, admin, whoami).

use std::{net::SocketAddr, time::Duration};

use tokio::net::{TcpListener, TcpStream};

/// How long to back off after an accept error caused by a passing shortage (EMFILE and friends), so
/// that a full file table does not turn the accept loop into a busy loop.
const BACKOFF: Duration = Duration::from_millis(20);

/// Accept errors that concern one connection or a passing resource shortage, not the listener.
#[must_use]
pub fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error().is_some_and(|c| c == libc::ENFILE || c == libc::EMFILE)
}

/// The next connection, with `TCP_NODELAY` set. Transient errors are logged and retried after a
/// short pause.
///
/// # Errors
/// Only an error that will not go away (the listener is broken).
///
/// # Cancel safety
/// Cancel safe: a connection is either returned or left in the kernel's queue.
pub async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, peer));
            }
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(BACKOFF).await;
            }
            Err(e) => return Err(e),
        }
    }
}
