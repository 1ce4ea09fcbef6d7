//! Upgraded connections (WebSocket and other `Upgrade:` protocols): once the backend answered 101, the
//! client socket and the backend socket are joined and bytes flow both ways until either side closes.
//!
//! Both sides are recovered as raw `TcpStream`s (plus whatever bytes hyper had already read past the
//! handshake) and handed to [`crate::splice::hand_off`]: the kernel splice carries them when it is loaded
//! and the service allows it (`splice_upgrades`, on by default), the user-space relay otherwise.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client_io::ClientIo;
use crate::{
    splice::{self, Splicer},
    state::BackendLive,
};

/// Waits for both halves of the upgrade, then hands them over on a task of its own. The backend's
/// counter of upgrades is bumped once both sockets are in hand.
pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, backend: &Arc<BackendLive>, splicer: Option<Arc<Splicer>>) {
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
        let result = match (client_parts(client), upstream_parts(upstream)) {
            (Some((c, cbuf)), Some((u, ubuf))) => splice::hand_off(splicer.as_ref(), c, cbuf, u, ubuf).await,
            // sticky's listener and connector always produce TcpStreams; anything else is a bug, and
            // closing both sides is the safe answer
            _ => Err(std::io::Error::other("upgraded connection is not a TCP stream")),
        };
        match result {
            Ok(how) => tracing::debug!(?how, "upgraded connection handed off"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
    });
}

/// The client socket and the bytes read from it that the backend has not seen: what hyper read past
/// the request, then what was never read out of [`ClientIo`]'s prefix.
fn client_parts(up: Upgraded) -> Option<(TcpStream, Bytes)> {
    let parts = up.downcast::<TokioIo<ClientIo>>().ok()?;
    let (stream, unread) = parts.io.into_inner().into_parts();
    let early = if unread.is_empty() {
        parts.read_buf
    } else {
        let mut b = BytesMut::with_capacity(parts.read_buf.len() + unread.len());
        b.extend_from_slice(&parts.read_buf);
        b.extend_from_slice(&unread);
        b.freeze()
    };
    Some((stream, early))
}

fn upstream_parts(up: Upgraded) -> Option<(TcpStream, Bytes)> {
    up.downcast::<TokioIo<TcpStream>>().ok().map(|p| (p.io.into_inner(), p.read_buf))
}
