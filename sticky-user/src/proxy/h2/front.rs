//! One HTTP/2 client connection: hyper's http2 server with sticky's limits ([`super::settings`]),
//! every stream served by [`super::exchange`], closed on shutdown (GOAWAY, streams in flight finish),
//! when idle, or when the client cancels streams faster than it lets them finish.

use std::{sync::Arc, time::Duration};

use hyper::{server::conn::http2, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::watch,
};

use super::{
    exchange::{self, Conn},
    settings::{
        CONNECTION_WINDOW, HEADER_TABLE_SIZE, MAX_ERROR_RESETS, MAX_FRAME_SIZE, MAX_PENDING_RESETS, MAX_SEND_BUFFER,
        STREAM_WINDOW,
    },
};
use crate::{
    proxy::{
        conn::Proxy,
        h1::{ClientAddr, Proto},
    },
    stats::Timeout,
};

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a connection closing (GOAWAY sent) may take to finish its streams before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Whether a plain connection speaks HTTP/2 with prior knowledge: its first bytes, peeked (nothing is
/// consumed, no buffer is taken), are the preface. `Some(false)` as soon as a byte differs (HTTP/1);
/// `None` when the client closes, idles past `idle` or sticky stops first.
pub async fn preface(stream: &TcpStream, idle: Duration, mut stop: watch::Receiver<bool>) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + idle;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = tokio::select! {
            biased;
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return None,
            peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)) => match peeked {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            },
        };
        if buf.get(..n) != PREFACE.get(..n) {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        // part of the preface: the rest follows at once from any real client (peek would return
        // the same bytes again without waiting)
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Serves one HTTP/2 connection (after the TLS handshake, or a plain one that sent the preface)
/// until it closes, idles out, abuses, or `stop` turns true.
pub async fn serve<IO>(proxy: &Arc<Proxy>, io: IO, client: ClientAddr, proto: Proto, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = proxy.settings.limits;
    let timeouts = proxy.settings.timeouts;
    let peer = client.origin().client;
    let state = Arc::new(Conn::new(proxy.clone(), client, proto));
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(proxy.h2.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .header_table_size(HEADER_TABLE_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buf_size(MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS)
        // a peer that stops answering pings is gone (a dead NAT entry, a sleeping phone)
        .keep_alive_interval(timeouts.idle)
        .keep_alive_timeout(timeouts.client);
    let streams = state.clone();
    // boxed: the stream's future is ~3 KiB, and hyper moves it into every stream's spawned task (a
    // memmove of the whole future per request); a box moves 16 bytes
    let service = service_fn(move |req| Box::pin(exchange::handle(streams.clone(), req)));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut seen = 0;
    let closing = loop {
        tokio::select! {
            biased;
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "h2 connection ended with an error");
                }
                return;
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break "shutdown",
            () = state.abuse.notified() => {
                tracing::info!(%peer, "h2 client cancels streams faster than it lets them finish (rapid reset): closing the connection");
                break "abuse";
            }
            () = tokio::time::sleep(timeouts.idle) => {
                // idle: no stream finished or open since the last look
                let now = state.finished.load(std::sync::atomic::Ordering::Relaxed)
                    + u64::from(state.cancelled.load(std::sync::atomic::Ordering::Relaxed));
                if now == seen && std::sync::Arc::strong_count(&state) <= 2 {
                    proxy.stats.timeout(Timeout::Idle);
                    break "idle";
                }
                seen = now;
            }
        }
    };
    tracing::debug!(%peer, why = closing, "closing h2 connection");
    conn.as_mut().graceful_shutdown();
    let grace = if closing == "shutdown" { timeouts.shutdown } else { CLOSE_GRACE };
    let _ = tokio::time::timeout(grace, conn).await;
}
