//! The first request of a connection when its service has the `splice` option: with a valid cookie
//! for an available backend, its rewritten head goes to that backend and the connection to the kernel
//! splice; anything else is served by the engine as usual ([`super::client`] read and parsed it
//! already, so nothing is read twice).
//!
//! Only the first request is looked at: after the splice, the client and the backend talk through the
//! kernel, so **later requests on the connection reach the backend exactly as the client sent them**
//! (its own `X-Forwarded-*`/`Forwarded` fields, sticky's cookie not stripped; no re-pin, no
//! per-request metrics, no Set-Cookie refresh), and the backend answers the client directly. So that
//! a client cannot choose what the backend believes about it on the first request either, a first
//! request carrying forwarding fields is not spliced (issue 13 item 3). A new session (no cookie, an
//! invalid one, a backend gone) stays on the normal path.

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::net::TcpStream;

use super::{
    conn::Proxy,
    h1::{ClientAddr, Method, Proto, RequestHead, RequestRewrite, Upgrade, write_request},
    pin, upstream,
};
use crate::{
    policy::{Decision, Pinned},
    splice,
    state::ServiceRoute,
};

/// A first request that goes to the splice: the backend connection and what it must receive first.
#[derive(Debug)]
pub struct Splice {
    /// The pinned backend.
    pub upstream: TcpStream,
    /// The rewritten head and every byte the client sent after it.
    pub to_upstream: Bytes,
}

/// The backend sticky's cookie names, if this first request qualifies for the splice: HTTP/1.1, not
/// CONNECT nor an upgrade, no forwarding fields from the client, routed to a service with `splice`
/// on, with a valid cookie for a backend the policy keeps (available), and no refresh due (a refresh,
/// like the answer to a Traefik cookie, is a `Set-Cookie`, which only the proxy path writes).
#[must_use]
pub fn spliceable(proxy: &Proxy, service: &ServiceRoute, req: &RequestHead, buf: &[u8]) -> Option<usize> {
    if !service.spec.splice.pinned
        || req.minor() != 1
        || req.method() == Method::Connect
        || req.upgrade() != Upgrade::None
        || carries_forwarding(req)
    {
        return None;
    }
    let cookie = pin::read(&service.keys, service, req.cookies(buf));
    // a Traefik cookie or one of an older key is answered with a new cookie: not spliced
    let (Pinned::Backend(index), Some(seen), false) = (cookie.pinned, cookie.seen, cookie.legacy || cookie.older_key)
    else {
        return None;
    };
    if service.lifetimes.needs_refresh(seen, pin::now_secs()) {
        return None;
    }
    let decision = pin::decide(proxy, service, cookie.pinned, &[]);
    matches!(decision, Decision::Keep(i) if i == index).then_some(index)
}

/// Whether the request carries `X-Forwarded-*` or `Forwarded` fields of its own.
fn carries_forwarding(req: &RequestHead) -> bool {
    use super::h1::syntax::Name;
    req.head()
        .fields()
        .iter()
        .any(|f| matches!(f.kind, Name::XForwardedFor | Name::XForwardedProto | Name::XForwardedHost | Name::Forwarded))
}

/// Connects to the backend at `index` and prepares its first bytes; `None` if the connect fails (the
/// normal path then connects again, pauses the backend and re-pins).
pub async fn prepare(
    proxy: &Proxy,
    service: &ServiceRoute,
    index: usize,
    req: &RequestHead,
    buf: &[u8],
    peer: &ClientAddr,
) -> Option<Splice> {
    let b = service.backends.get(index)?;
    let upstream = upstream::connect(b.addr, proxy.settings.timeouts.connect).await.ok()?;
    let rest = buf.get(req.len()..).unwrap_or_default();
    let mut out = BytesMut::with_capacity(req.len() + 256 + rest.len());
    // the spliced connection carries this one client's requests only: one header fits them all
    if let Some(header) = service.spec.proxy_protocol.header(&peer.origin()) {
        out.put_slice(&header);
    }
    let cookie = Some(service.spec.cookie.name.as_bytes());
    write_request(
        req,
        buf,
        &RequestRewrite { client: peer, proto: Proto::Http, prior: peer.prior(), cookie },
        &mut out,
    );
    out.put_slice(rest);
    b.live.stats.pinned();
    b.live.stats.spliced();
    Some(Splice { upstream, to_upstream: out.freeze() })
}

/// Hands the client connection and its backend over for good (spliced, or relayed in user space if
/// the kernel refused).
pub async fn run(proxy: &Proxy, client: TcpStream, splice: Splice) {
    let splicer = proxy.splicer.as_ref();
    let idle = proxy.settings.timeouts.tunnel;
    match splice::hand_off(splicer, client, splice.to_upstream, splice.upstream, Bytes::new(), idle).await {
        Ok(how) => tracing::debug!(?how, "pinned connection handed off"),
        Err(e) => tracing::debug!(error = %e, "pinned connection ended"),
    }
}
