//! The header rewrites of the proxy: on the way to the backend (origin-form, hop-by-hop headers out,
//! `X-Forwarded-*` and `Forwarded` in) and back (hop-by-hop headers out), and a request head as
//! bytes for a connection the kernel takes over.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut as _, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Version, header, request, uri::Uri};

/// Per-connection facts used for the forwarding headers, computed once per client connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// The client's IP as text, for X-Forwarded-For.
    ip: HeaderValue,
    /// `for=...` as RFC 7239 wants it (IPv6 quoted and bracketed).
    forwarded_for: String,
    /// Last (Host, Forwarded element) built, since a connection usually sends one host.
    cache: std::sync::Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl ClientInfo {
    /// Facts about a client at `peer`.
    #[must_use]
    pub fn new(peer: SocketAddr) -> Self {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let forwarded_for = match ip {
            IpAddr::V4(v4) => format!("for={v4}"),
            IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        };
        let ip = HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, forwarded_for, cache: std::sync::Mutex::new(None) }
    }

    fn forwarded_element(&self, host: Option<&HeaderValue>) -> HeaderValue {
        // try_lock: the cache never makes a request wait; a busy (or poisoned) cache is passed by
        // and the element built anew
        if let (Some(h), Ok(cache)) = (host, self.cache.try_lock()) {
            if let Some((cached_host, value)) = &*cache {
                if cached_host == h {
                    return value.clone();
                }
            }
        }
        let mut buf = BytesMut::with_capacity(self.forwarded_for.len() + 32);
        buf.put_slice(self.forwarded_for.as_bytes());
        if let Some(h) = host {
            // quoted-string: drop characters that would end the quote
            buf.put_slice(b";host=\"");
            buf.extend(h.as_bytes().iter().copied().filter(|&b| b != b'"' && b != b'\\'));
            buf.put_u8(b'"');
        }
        buf.put_slice(b";proto=http");
        let value =
            HeaderValue::from_maybe_shared(buf.freeze()).unwrap_or_else(|_| HeaderValue::from_static("for=unknown"));
        if let (Some(h), Ok(mut cache)) = (host, self.cache.try_lock()) {
            *cache = Some((h.clone(), value.clone()));
        }
        value
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1), those named in `Connection` too. For an upgrade,
/// `Connection: upgrade` and `Upgrade` are end-to-end in effect and stay.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // one pass over the (few) header names is cheaper than a hash lookup per hop-by-hop name, and
    // most messages have none of them
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        // rare (HTTP/1.1 clients keep alive by default), so the allocation does not matter
        let named: Vec<HeaderName> = conn
            .as_bytes()
            .split(|&b| b == b',')
            .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
        if !upgrade {
            headers.remove(header::CONNECTION);
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::PROXY_AUTHORIZATION);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::PROXY_AUTHORIZATION
        || name == header::UPGRADE
}

/// Rewrites a client request's head for the backend: origin-form URI, HTTP/1.1, hop-by-hop headers
/// removed, X-Forwarded-For appended, X-Forwarded-Proto/-Host set, a `Forwarded` element appended.
/// Host is passed through untouched.
pub fn prepare_request(parts: &mut request::Parts, client: &ClientInfo, upgrade: bool) {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // absolute-form (a client talking to us as to a proxy): the backend gets origin-form
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = Uri::try_from(pq) {
            parts.uri = uri;
        }
    }
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_forwarded(&mut parts.headers, client);
}

/// Appends the client to `X-Forwarded-For` and `Forwarded`, and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (from Host, or removed without one).
pub fn add_forwarded(headers: &mut HeaderMap, client: &ClientInfo) {
    match headers.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = BytesMut::with_capacity(prev.len() + 2 + client.ip.len());
            v.put_slice(prev.as_bytes());
            v.put_slice(b", ");
            v.put_slice(client.ip.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(v.freeze()) {
                headers.insert(&X_FORWARDED_FOR, v);
            }
        }
        None => {
            headers.insert(&X_FORWARDED_FOR, client.ip.clone());
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    let host = headers.get(header::HOST).cloned();
    match &host {
        Some(h) => {
            headers.insert(&X_FORWARDED_HOST, h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers.append(header::FORWARDED, client.forwarded_element(host.as_ref()));
}

/// An HTTP/1.1 request head as bytes (origin-form target, headers as they are in `parts`), for a
/// connection that sticky hands to the kernel right after: its framing headers (Content-Length,
/// Transfer-Encoding, Connection) stay the client's, because the body and every later byte pass
/// through unchanged.
#[must_use]
pub fn encode_head(parts: &request::Parts) -> BytesMut {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let size = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>();
    let mut out = BytesMut::with_capacity(parts.method.as_str().len() + target.len() + size + 16);
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

/// Whether a request asks for a protocol upgrade (WebSocket and friends).
#[must_use]
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> request::Parts {
        req.into_parts().0
    }

    #[test]
    fn forwarding_headers_are_set_and_hop_by_hop_removed() {
        let client = ClientInfo::new("10.1.2.3:5555".parse().expect("addr"));
        let mut p = parts(
            http::Request::get("http://example.com:8080/a?b=1")
                .header("host", "example.com:8080")
                .header("connection", "keep-alive, x-secret")
                .header("x-secret", "1")
                .header("keep-alive", "timeout=5")
                .header("x-forwarded-for", "192.0.2.1")
                .header("x-forwarded-proto", "https")
                .header("forwarded", "for=192.0.2.1")
                .header("cookie", "a=1")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client, false);
        assert_eq!(p.uri, "/a?b=1");
        assert_eq!(p.version, Version::HTTP_11);
        let h = &p.headers;
        assert_eq!(h["host"], "example.com:8080", "Host passes through");
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com:8080");
        let fwd: Vec<_> = h.get_all("forwarded").iter().map(|v| v.to_str().expect("ascii")).collect();
        assert_eq!(fwd, vec!["for=192.0.2.1", "for=10.1.2.3;host=\"example.com:8080\";proto=http"]);
        assert!(!h.contains_key("connection") && !h.contains_key("x-secret") && !h.contains_key("keep-alive"));
        assert_eq!(h["cookie"], "a=1");
    }

    #[test]
    fn ipv6_clients_are_quoted_and_upgrades_keep_their_headers() {
        let client = ClientInfo::new("[2001:db8::1]:5555".parse().expect("addr"));
        let mut p = parts(
            http::Request::get("/ws")
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .body(())
                .expect("request"),
        );
        assert!(is_upgrade(&p.headers));
        prepare_request(&mut p, &client, true);
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
        assert!(!p.headers.contains_key("x-forwarded-host"));
        assert_eq!(p.headers["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(p.headers["x-forwarded-for"], "2001:db8::1");
        let mapped = ClientInfo::new("[::ffff:127.0.0.1]:1".parse().expect("addr"));
        assert_eq!(mapped.ip, "127.0.0.1");
    }
}
