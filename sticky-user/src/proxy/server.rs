//! The proxy's accept loop: one task per client connection ([`super::client`]), graceful stop.
//!
//! Each worker thread runs its own current-thread runtime and accepts on its own handle of the one
//! listening socket (see [`crate::app`]). A connection's failure never ends the accept loop.

use std::sync::Arc;

use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use super::{client, conn::Proxy, h1::Proto, h2, io::ClientIo};
use crate::{
    proxy_protocol::Origin,
    tls::server::{self as tls, Accepted},
};

/// Accepts client connections until `stop` turns true (or the listener fails for good); each connection
/// gets its own task. With `tls`, each connection first completes a TLS handshake within the idle
/// timeout (a failed or slow one is dropped, logged at debug), then runs the same engine, or the
/// HTTP/2 path ([`h2`]) when ALPN chose `h2`; a plain connection goes to the HTTP/2 path with `--h2c`
/// when it starts with the HTTP/2 preface.
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
    // a plain connection with nothing to look at before its first request (no PROXY protocol header,
    // no HTTP/2 preface) is spawned as the connection's own small future (see client::Connection)
    let direct = tls.is_none() && !proxy.h2.h2c && proxy.clients.proxy_protocol_from.is_empty();
    loop {
        // the stop is watched while waiting for a permit and while waiting in accept (cancel safe:
        // a connection not taken stays queued), so a stopping worker closes its handle of the
        // listener at once, and a successor sharing the socket takes the queue
        let permit = tokio::select! {
            biased;
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return Ok(()),
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => return Ok(()),
            accepted = crate::net::accept(&listener) => accepted?,
        };
        // counted from here, not from the task's first poll: a stop must wait for this connection
        let hold = client::Hold { active: Some(proxy.stats.accepted()), permit: Some(permit) };
        if direct {
            let origin = Origin { client: peer, destination: stream.local_addr().unwrap_or(peer) };
            let addr = client::client_addr(&proxy, origin);
            tokio::spawn(client::serve(proxy.clone(), ClientIo::Plain(stream), addr, stop.clone(), hold));
            continue;
        }
        let proxy = proxy.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // the PROXY protocol header comes before the TLS handshake (boxed: its buffer is not
            // kept in the task of a connection that lives on)
            let from = &proxy.clients.proxy_protocol_from;
            let Ok(origin) = Box::pin(crate::proxy_protocol::accept::accept(&stream, peer, from, true)).await else {
                return;
            };
            let addr = client::client_addr(&proxy, origin);
            let io = match tls {
                None if proxy.h2.h2c => {
                    match h2::front::preface(&stream, proxy.settings.timeouts.idle, stop.clone()).await {
                        Some(true) => {
                            h2::front::serve(&proxy, stream, addr, Proto::Http, stop).await;
                            return;
                        }
                        Some(false) => ClientIo::Plain(stream),
                        None => return,
                    }
                }
                None => ClientIo::Plain(stream),
                // boxed: the handshake's state (rustls' connection) must not size the connection's task
                Some(acceptor) => match Box::pin(tls::accept(&acceptor, stream, proxy.settings.timeouts.idle)).await {
                    Ok(Accepted::Http(stream)) if stream.get_ref().1.alpn_protocol() == Some(tls::H2) => {
                        h2::front::serve(&proxy, *stream, addr, Proto::Https, stop).await;
                        return;
                    }
                    Ok(Accepted::Http(stream)) => ClientIo::tls(*stream),
                    Ok(Accepted::AcmeChallenge) => return,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            client::serve(proxy, io, addr, stop, hold).await;
        });
    }
}
