//! The proxy's accept loop: one task per client connection ([`super::client`]), graceful stop.
//!
//! Each worker thread runs its own current-thread runtime and accepts on its own handle of the one
//! listening socket (see [`crate::app`]). A connection's failure never ends the accept loop.

use std::sync::Arc;

use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use super::{client, conn::Proxy, io::ClientIo};
use crate::tls::server::{self as tls, Accepted};

/// Accepts client connections until `stop` turns true (or the listener fails for good); each connection
/// gets its own task. With `tls`, each connection first completes a TLS handshake within the idle
/// timeout (a failed or slow one is dropped, logged at debug), then runs the same engine.
///
/// `permits` bounds the connections open at once across every worker. When `stop` turns true, the
/// listener is closed, idle keep-alive connections are closed, and connections with a request in
/// flight close once it is answered.
///
/// # Errors
/// Only an accept error that is not about one connection or a passing shortage.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let mut stopping = stop.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return Ok(()),
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => crate::net::accept(&listener).await.map(|c| (p, c)),
                Err(_) => return Ok(()),
            },
        };
        let (permit, (stream, peer)) = accepted?;
        let hold = client::Hold { active: Some(proxy.stats.connection_owned()), permit: Some(permit) };
        let Some(acceptor) = tls.clone() else {
            // a plain connection's task is the connection's own small future (see client::Connection)
            tokio::spawn(client::serve(proxy.clone(), ClientIo::Plain(stream), peer, stop.clone(), hold));
            continue;
        };
        let proxy = proxy.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            // boxed: the handshake's state (rustls' connection) must not size the connection's task
            let io = match Box::pin(tls::accept(&acceptor, stream, proxy.settings.timeouts.idle)).await {
                Ok(Accepted::Http(stream)) => ClientIo::tls(*stream),
                Ok(Accepted::AcmeChallenge) => return,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            client::serve(proxy, io, peer, stop, hold).await;
        });
    }
}
