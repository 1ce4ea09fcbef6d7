//! The proxy's accept loop: one task per client connection, hyper HTTP/1 with limits, graceful
//! stop.
//!
//! Each worker thread runs its own current-thread runtime and accepts on its own handle of the one
//! listening socket (see [`crate::app`]). A connection's failure is logged at debug and never ends the
//! accept loop. The request path itself is in [`super::phases`].

use std::{convert::Infallible, sync::Arc};

use http::Request;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use super::{
    client_io::ClientIo,
    conn::{ConnCtx, Proxy},
    handoff, phases,
};
use crate::{config::defaults, state::Routing};

/// Whether any service splices pinned keep-alive connections (then first requests are read before hyper).
fn splices_pinned(routing: &Routing) -> bool {
    routing.table().services.iter().any(|s| s.spec.splice.pinned)
}

/// Accepts client connections until `stop` turns true (or the listener fails for good); each connection
/// gets its own task.
///
/// `permits` bounds the connections open at once across every worker. When `stop` turns true, the
/// listener is closed, idle keep-alive connections are closed, and connections with a request in
/// flight close once it is answered (hyper's graceful shutdown).
///
/// # Errors
/// Only an accept error that is not about one connection or a passing shortage.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
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
        let proxy = proxy.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let stats = proxy.stats.clone();
            let _active = stats.connection();
            let settings = proxy.settings;
            let splicer = proxy.splicer.clone().filter(|_| splices_pinned(&proxy.routing));
            let ctx = Arc::new(ConnCtx::new(proxy, peer));
            // a service with the splice option: the first request is read here, and maybe spliced
            let io = match splicer {
                Some(splicer) => {
                    let first = tokio::select! {
                        biased;
                        first = handoff::first(&ctx, &splicer, stream) => first,
                        _ = async { stop.wait_for(|s| *s).await.is_ok() } => handoff::FirstRequest::Close,
                    };
                    match first {
                        handoff::FirstRequest::Serve(io) => io,
                        handoff::FirstRequest::HandedOff | handoff::FirstRequest::Close => return,
                    }
                }
                None => ClientIo::new(stream, bytes::Bytes::new()),
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(phases::handle(ctx, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                // also bounds keep-alive idle time: hyper arms it as soon as it waits for a request head
                .header_read_timeout(settings.timeouts.idle)
                .max_header_size(settings.limits.max_header_size)
                // the read buffer bounds what one connection holds in memory (headers or body chunks)
                .max_buf_size(settings.limits.max_header_size.max(8192));
            if settings.limits.max_headers != defaults::MAX_HEADERS {
                // hyper keeps 100 header slots on the stack; another count costs a heap allocation per request
                builder.max_headers(settings.limits.max_headers);
            }
            let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
            tokio::pin!(conn);
            let ended = tokio::select! {
                biased;
                ended = &mut conn => ended,
                // (the watch guard must not live across the await below: map it to a bool)
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            drop(permit);
        });
    }
}
