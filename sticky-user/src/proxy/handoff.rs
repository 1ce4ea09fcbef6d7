//! The first request of a connection when a service has the `splice` option: its head is read and
//! parsed here, before hyper. With a valid cookie for an available backend of a `splice` service, the
//! head goes to that backend (with the forwarding headers) and the connection to the kernel splice;
//! anything else is served by hyper as usual, which first gets the bytes read here ([`ClientIo`]).
//!
//! Only the first request is looked at: after the splice, the client and the backend talk through the
//! kernel, so later requests on the connection are not inspected (no re-pin, no per-request metrics,
//! no Set-Cookie refresh), and the backend answers the client directly (its response headers pass
//! as they are). A new session (no cookie, an invalid one, a backend gone) stays on the normal path.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Buf as _, Bytes, BytesMut};
use http::{Method, Request, Version};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::{ConnCtx, forward, phases, splice};
use crate::{
    cookie,
    policy::{self, Decision},
    state::{ServiceRoute, View},
};

/// The client socket as hyper reads it: `prefix` (bytes already read by [`first`]) first, then the
/// socket. Writes go straight to the socket.
#[derive(Debug)]
pub struct ClientIo {
    stream: TcpStream,
    prefix: Bytes,
}

impl ClientIo {
    /// The socket, with `prefix` to be read before anything else.
    #[must_use]
    pub fn new(stream: TcpStream, prefix: Bytes) -> Self {
        Self { stream, prefix }
    }

    /// The socket and the part of the prefix nobody has read yet.
    #[must_use]
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        (self.stream, self.prefix)
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What became of a connection's first request.
#[derive(Debug)]
pub enum First {
    /// Handed over for good (spliced, or relayed in user space if the kernel refused).
    HandedOff,
    /// Not for the splice: serve it with hyper.
    Serve(ClientIo),
    /// The client went away, or sent no complete head in time: close.
    Close,
}

/// Reads the first request head of `stream` (within the idle timeout) and splices the connection
/// if it qualifies (see the module doc).
///
/// # Cancel safety
/// Not cancel safe: bytes read from the client are lost if the future is dropped (the connection is
/// then dropped as well, which is what the caller does on shutdown).
pub async fn first(ctx: &Arc<ConnCtx>, splicer: &Arc<splice::Splicer>, mut stream: TcpStream) -> First {
    let limits = ctx.settings.limits;
    let mut buf = BytesMut::with_capacity(4096);
    let read = tokio::time::timeout(ctx.settings.timeouts.idle, async {
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            // a complete head, or something hyper has to answer (400/431): stop reading here
            match head_len(&buf, limits.max_headers) {
                Some(n) => return Some(n),
                None if buf.len() >= limits.max_header_size => return Some(0),
                None => {}
            }
        }
    })
    .await;
    let head = match read {
        Ok(Some(n)) => n,
        Ok(None) if buf.is_empty() => return First::Close,
        // a partial head before EOF: hyper answers or closes as it always does
        Ok(None) => 0,
        Err(_) => return First::Close,
    };
    if head == 0 {
        return First::Serve(ClientIo::new(stream, buf.freeze()));
    }
    let Some(Pinned { mut req, service, index }) = spliceable(ctx, &buf[..head]) else {
        return First::Serve(ClientIo::new(stream, buf.freeze()));
    };
    let Some(b) = service.backends.get(index) else { return First::Serve(ClientIo::new(stream, buf.freeze())) };
    let upstream = match tokio::time::timeout(ctx.settings.timeouts.connect, TcpStream::connect(b.addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            // the normal path connects again, pauses the backend on failure and re-pins
            return First::Serve(ClientIo::new(stream, buf.freeze()));
        }
    };
    let _ = upstream.set_nodelay(true);
    phases::strip_cookie_headers(req.headers_mut(), service.spec.cookie.name.as_bytes());
    let (mut parts, ()) = req.into_parts();
    forward::add_forwarded(&mut parts.headers, &ctx.client);
    let mut to_upstream = forward::encode_head(&parts);
    to_upstream.extend_from_slice(&buf[head..]);
    b.live.stats.pinned();
    b.live.stats.spliced();
    match splice::hand_off(Some(splicer), stream, to_upstream.freeze(), upstream, Bytes::new()).await {
        Ok(how) => tracing::debug!(service = %service.spec.name, backend = %b.id, ?how, "pinned connection handed off"),
        Err(e) => tracing::debug!(service = %service.spec.name, backend = %b.id, error = %e, "pinned connection ended"),
    }
    First::HandedOff
}

/// Length of the request head at the start of `buf` (through its blank line), if it is complete and parses.
fn head_len(buf: &[u8], max_headers: usize) -> Option<usize> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    }
}

/// A first request that qualifies for the splice: its head, its service, its backend's index.
struct Pinned {
    req: Request<()>,
    service: Arc<ServiceRoute>,
    index: usize,
}

/// The parsed head and its pinned backend, if this first request qualifies for the splice: HTTP/1.1,
/// not CONNECT nor an upgrade, routed to a service with `splice` on, with a valid cookie for a
/// backend the policy keeps (available), and no cookie refresh due.
fn spliceable(ctx: &ConnCtx, head: &[u8]) -> Option<Pinned> {
    let mut headers = vec![httparse::EMPTY_HEADER; ctx.settings.limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    if parsed.version != Some(1) {
        return None;
    }
    let mut builder = Request::builder().method(parsed.method?.as_bytes()).uri(parsed.path?).version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let req = builder.body(()).ok()?;
    if req.method() == Method::CONNECT || forward::is_upgrade(req.headers()) {
        return None;
    }
    let service = phases::route(ctx, &req).ok()?;
    if !service.spec.splice.pinned {
        return None;
    }
    let index = pinned_backend(ctx, &service, &req)?;
    Some(Pinned { req, service, index })
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// The backend a valid cookie names, if the policy keeps the session there now.
fn pinned_backend(ctx: &ConnCtx, service: &ServiceRoute, req: &Request<()>) -> Option<usize> {
    let name = service.spec.cookie.name.as_bytes();
    let now = if service.max_age.is_some() { now_secs() } else { 0 };
    let pin = req
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| cookie::pairs(v.as_bytes()))
        .filter(|(n, _)| *n == name)
        .find_map(|(_, v)| ctx.shared.keys.decode(v, now, service.max_age).ok())?;
    // a refresh is a Set-Cookie, which only the proxy path writes
    if cookie::needs_refresh(pin.issued, now, service.max_age) {
        return None;
    }
    let index = service.find(pin.tag)?;
    let view = View::new(service, &ctx.shared.clock);
    let decision = policy::decide(
        policy::Pinned::Backend(index),
        service.spec.strict,
        &view,
        &service.schedule,
        || service.next_cursor(),
        &[],
    );
    matches!(decision, Decision::Keep(i) if i == index).then_some(index)
}
