//! The first request of a connection when a service has the `splice` option: its head is read and
//! parsed here, before hyper. With a valid cookie for an available backend of a `splice` service, the
//! head goes to that backend (with the forwarding headers) and the connection to the kernel splice;
//! anything else is served by hyper as usual, which first gets the bytes read here
//! ([`super::client_io::ClientIo`]).
//!
//! Only the first request is looked at: after the splice, the client and the backend talk through the
//! kernel, so later requests on the connection are not inspected (no re-pin, no per-request metrics,
//! no Set-Cookie refresh), and the backend answers the client directly (its response headers pass
//! as they are). A new session (no cookie, an invalid one, a backend gone) stays on the normal path.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Version};
use tokio::{io::AsyncReadExt as _, net::TcpStream};

use super::{client_io::ClientIo, conn::ConnCtx, headers, phases, pin};
use crate::{
    cookie,
    policy::{Decision, Pinned},
    splice::{self, Splicer},
    state::ServiceRoute,
};

/// What became of a connection's first request.
#[derive(Debug)]
pub enum FirstRequest {
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
pub async fn first(ctx: &Arc<ConnCtx>, splicer: &Arc<Splicer>, mut stream: TcpStream) -> FirstRequest {
    let settings = ctx.settings();
    let limits = settings.limits;
    let mut buf = BytesMut::with_capacity(4096);
    let read = tokio::time::timeout(settings.timeouts.idle, async {
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
        Ok(None) if buf.is_empty() => return FirstRequest::Close,
        // a partial head before EOF: hyper answers or closes as it always does
        Ok(None) => 0,
        Err(_) => return FirstRequest::Close,
    };
    if head == 0 {
        return FirstRequest::Serve(ClientIo::new(stream, buf.freeze()));
    }
    let Some(Spliceable { mut req, service, index }) = spliceable(ctx, &buf[..head]) else {
        return FirstRequest::Serve(ClientIo::new(stream, buf.freeze()));
    };
    let Some(b) = service.backends.get(index) else { return FirstRequest::Serve(ClientIo::new(stream, buf.freeze())) };
    let Ok(Ok(upstream)) = tokio::time::timeout(settings.timeouts.connect, TcpStream::connect(b.addr)).await else {
        // the normal path connects again, pauses the backend on failure and re-pins
        return FirstRequest::Serve(ClientIo::new(stream, buf.freeze()));
    };
    let _ = upstream.set_nodelay(true);
    pin::strip_cookie_headers(req.headers_mut(), service.spec.cookie.name.as_bytes());
    let (mut parts, ()) = req.into_parts();
    headers::add_forwarded(&mut parts.headers, &ctx.client);
    let mut to_upstream = headers::encode_head(&parts);
    to_upstream.extend_from_slice(&buf[head..]);
    b.live.stats.pinned();
    b.live.stats.spliced();
    match splice::hand_off(Some(splicer), stream, to_upstream.freeze(), upstream, Bytes::new()).await {
        Ok(how) => tracing::debug!(service = %service.spec.name, backend = %b.id, ?how, "pinned connection handed off"),
        Err(e) => tracing::debug!(service = %service.spec.name, backend = %b.id, error = %e, "pinned connection ended"),
    }
    FirstRequest::HandedOff
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
struct Spliceable {
    req: Request<()>,
    service: Arc<ServiceRoute>,
    index: usize,
}

/// The parsed head and its pinned backend, if this first request qualifies for the splice: HTTP/1.1,
/// not CONNECT nor an upgrade, routed to a service with `splice` on, with a valid cookie for a
/// backend the policy keeps (available), and no cookie refresh due.
fn spliceable(ctx: &ConnCtx, head: &[u8]) -> Option<Spliceable> {
    let mut fields = vec![httparse::EMPTY_HEADER; ctx.settings().limits.max_headers];
    let mut parsed = httparse::Request::new(&mut fields);
    parsed.parse(head).ok()?;
    if parsed.version != Some(1) {
        return None;
    }
    let mut builder = Request::builder().method(parsed.method?.as_bytes()).uri(parsed.path?).version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let req = builder.body(()).ok()?;
    if req.method() == Method::CONNECT || headers::is_upgrade(req.headers()) {
        return None;
    }
    let service = phases::route(ctx, &req).ok()?;
    if !service.spec.splice.pinned {
        return None;
    }
    let index = pinned_backend(ctx, &service, &req)?;
    Some(Spliceable { req, service, index })
}

/// The backend sticky's own cookie names, if the policy keeps the session there now and no
/// refresh is due (a refresh, like the answer to a Traefik cookie, is a `Set-Cookie`, which only
/// the proxy path writes).
fn pinned_backend(ctx: &ConnCtx, service: &ServiceRoute, req: &Request<()>) -> Option<usize> {
    let cookie = pin::read(&ctx.proxy.routing.keys, service, req.headers());
    let (Pinned::Backend(index), Some(issued), false) = (cookie.pinned, cookie.issued, cookie.legacy) else {
        return None;
    };
    if cookie::needs_refresh(issued, pin::now_secs(), service.max_age) {
        return None;
    }
    let decision = pin::decide(ctx, service, cookie.pinned, &[]);
    matches!(decision, Decision::Keep(i) if i == index).then_some(index)
}
