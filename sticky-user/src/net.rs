//! Listening and accepting: how a listening socket is bound, and one accept loop rule for every
//! listener (proxy, admin, whoami, tcp services).

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

/// A listening TCP socket on `addr`: `SO_REUSEADDR` (a restart binds at once, whatever connections
/// of the previous process linger), dual-stack for an IPv6 address, a backlog of 4096, non-blocking.
///
/// # Errors
/// The address cannot be bound (in use, not local, not permitted).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
