//! Upgraded connections (WebSocket and other `Upgrade:` protocols): once the backend answered 101, the
//! client socket and the backend socket are joined and bytes flow both ways until either side closes.
//!
//! Both sides are recovered as raw `TcpStream`s (plus whatever bytes hyper had already read past the
//! handshake), and [`relay`] is the one function that moves bytes between them: a later version hands
//! the two sockets to the kernel (SOCKHASH + sk_skb redirect) there instead of copying in user space.

use std::sync::Arc;

use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use crate::state::BackendLive;

/// Waits for both halves of the upgrade, then relays on a task of its own. The backend's counter of
/// upgrades is bumped once both sockets are in hand.
pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, backend: &Arc<BackendLive>) {
    let backend = backend.clone();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        backend.stats.upgrade();
        let result = match (into_tcp(client), into_tcp(upstream)) {
            (Ok((c, cbuf)), Ok((u, ubuf))) => relay(c, cbuf, u, ubuf).await,
            // sticky's listener and connector always produce TcpStreams; anything else is a bug, and
            // closing both sides is the safe answer
            _ => Err(std::io::Error::other("upgraded connection is not a TCP stream")),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}

type Parts = (TcpStream, Bytes);

fn into_tcp(up: Upgraded) -> Result<Parts, Upgraded> {
    up.downcast::<TokioIo<TcpStream>>().map(|p| (p.io.into_inner(), p.read_buf))
}

/// Joins two sockets of an upgraded connection. `client_early` and `upstream_early` are bytes each side
/// sent right after the handshake that hyper had already read; they are delivered first.
///
/// # Errors
/// Either socket fails; a clean close by either side ends the relay with `Ok`.
pub async fn relay(
    mut client: TcpStream,
    client_early: Bytes,
    mut upstream: TcpStream,
    upstream_early: Bytes,
) -> std::io::Result<()> {
    if !client_early.is_empty() {
        upstream.write_all(&client_early).await?;
    }
    if !upstream_early.is_empty() {
        client.write_all(&upstream_early).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await.map(|_| ())
}
