//! The HTTP reverse proxy: accept loop, one task per client connection, hyper HTTP/1 with limits.
//!
//! Each worker thread runs its own current-thread runtime and accepts on its own handle of the one
//! listening socket (see [`crate::app`]). A connection's failure is logged at debug and never ends the
//! accept loop. The request path itself is in [`phases`].

pub mod check;
pub mod forward;
pub mod h1;
pub mod handoff;
pub mod phases;
pub mod rescue;
pub mod splice;
pub mod upgrade;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Request;
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use crate::{
    config::{Limits, Timeouts},
    state::Shared,
};

/// Response body: streamed from the backend, or a small body sticky made itself. No boxing, no copy.
#[derive(Debug)]
pub enum ProxyBody {
    /// The backend's body, passed through frame by frame.
    Upstream(Incoming),
    /// A body made here (errors); `None` once sent.
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// A complete body.
    #[must_use]
    pub fn full(b: Bytes) -> Self {
        Self::Full(Some(b))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream(b) => b.is_end_stream(),
            Self::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream(b) => b.size_hint(),
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Proxy settings shared by every connection.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Per-connection limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// One client connection's context, shared by its requests.
pub struct ConnCtx {
    /// Routing table, keys, counters.
    pub shared: Arc<Shared>,
    /// Limits and timeouts.
    pub settings: Settings,
    /// Client facts for the forwarding headers.
    pub client: forward::ClientInfo,
    upstreams: Mutex<forward::Upstreams>,
}

impl ConnCtx {
    fn take_upstream(&self, addr: SocketAddr) -> Option<forward::Upstream> {
        // HTTP/1 serves one request at a time per connection, so the lock is never contended
        self.upstreams.lock().ok()?.take(addr)
    }

    fn put_upstream(&self, addr: SocketAddr, up: forward::Upstream) {
        if let Ok(mut u) = self.upstreams.lock() {
            u.put(addr, up);
        }
    }
}

/// Whether any service splices pinned keep-alive connections (then first requests are read before hyper).
fn splices_pinned(shared: &Shared) -> bool {
    shared.table().services.iter().any(|s| s.spec.splice.pinned)
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
    shared: Arc<Shared>,
    settings: Settings,
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
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _active = shared.stats.connection();
            let ctx = Arc::new(ConnCtx {
                shared: shared.clone(),
                settings,
                client: forward::ClientInfo::new(peer),
                upstreams: Mutex::default(),
            });
            // a service with the splice option: the first request is read here, and maybe spliced
            let io = match shared.splice.get().filter(|_| splices_pinned(&shared)) {
                Some(splicer) => {
                    let first = tokio::select! {
                        biased;
                        first = handoff::first(&ctx, splicer, stream) => first,
                        _ = async { stop.wait_for(|s| *s).await.is_ok() } => handoff::First::Close,
                    };
                    match first {
                        handoff::First::Serve(io) => io,
                        handoff::First::HandedOff | handoff::First::Close => return,
                    }
                }
                None => handoff::ClientIo::new(stream, bytes::Bytes::new()),
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
            if settings.limits.max_headers != crate::config::defaults::MAX_HEADERS {
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
