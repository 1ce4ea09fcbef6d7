//! Handing a connection pair over for good: the bytes each side has not seen yet are written, then
//! the pair is spliced in the kernel, or relayed in user space when there is no splice or the
//! kernel refuses it.

use std::{io, sync::Arc};

use bytes::Bytes;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use super::Splicer;

/// How a handed-off connection went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// The kernel carries it; the watcher closes it when it ends.
    Spliced,
    /// Relayed in user space until it ended (no eBPF, or the splice was refused).
    Relayed,
}

/// Hands a client connection and its upstream connection over for good: `client_early` (bytes read
/// from the client that the upstream has not seen) and `upstream_early` are written first, then the
/// pair is spliced in the kernel if `splicer` is given and accepts it, else relayed here until it
/// ends.
///
/// # Errors
/// Writing the early bytes or the relay failed.
pub async fn hand_off(
    splicer: Option<&Arc<Splicer>>,
    mut client: TcpStream,
    client_early: Bytes,
    mut upstream: TcpStream,
    upstream_early: Bytes,
) -> io::Result<Handoff> {
    // Written before the join: the kernel's bytes then follow them on each socket.
    if !client_early.is_empty() {
        upstream.write_all(&client_early).await?;
    }
    if !upstream_early.is_empty() {
        client.write_all(&upstream_early).await?;
    }
    let Some(splicer) = splicer else {
        relay(client, upstream).await?;
        return Ok(Handoff::Relayed);
    };
    // into_std takes the sockets out of tokio's epoll: a spliced socket must not wake this thread
    let (client, upstream) = (client.into_std()?, upstream.into_std()?);
    match splicer.join(client, upstream) {
        Ok(()) => Ok(Handoff::Spliced),
        Err((e, [client, upstream])) => {
            tracing::debug!(error = %e, "splice refused; relaying in user space");
            relay(TcpStream::from_std(client)?, TcpStream::from_std(upstream)?).await?;
            Ok(Handoff::Relayed)
        }
    }
}

/// The user-space copy loop: bytes both ways until both directions are closed (a FIN is passed on as
/// a FIN).
///
/// # Errors
/// Either socket fails.
pub async fn relay(mut client: TcpStream, mut upstream: TcpStream) -> io::Result<()> {
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await.map(|_| ())
}
