//! The request head sticky sends to the backend, written into the engine's output buffer: the
//! unchanged field lines are copied as they arrived (runs of adjacent lines in one copy), and only the
//! changes are written.
//!
//! The changes: the request line in origin-form with `HTTP/1.1` (`HTTP/1.0` kept for an HTTP/1.0 request
//! without any authority, which HTTP/1.1 would require); hop-by-hop fields dropped
//! (`Connection` and the fields it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`,
//! `Proxy-Authorization`), a WebSocket handshake's `Connection: Upgrade` and `Upgrade: websocket`
//! written anew; sticky's cookie removed from every `Cookie` line (an emptied line dropped); Host
//! replaced by the target's authority for absolute-form (RFC 9112 §3.2.2, issue 13 item 5) and never
//! invented when there is none (issue 13 item 6); repeated or listed Content-Length written as one
//! plain line; every `X-Forwarded-For` line joined in order and the client appended (issue 13 item 1);
//! `X-Forwarded-Proto` and `X-Forwarded-Host` set; an RFC 7239 `Forwarded` element appended; field
//! names that read as a framing or forwarding field with `_` for `-` dropped ([`Name::Lookalike`]).
//! Content-Length and Transfer-Encoding otherwise pass as they are: the body is relayed as framed.

use bytes::BufMut;

use super::{
    cookies,
    forwarded::{self, ClientAddr, PriorHops, Proto},
    request::{Method, RequestHead, TargetForm, Upgrade},
    syntax::Name,
    write::{Lines, put_field, put_length},
};

/// What the rewrite needs beyond the head: the connection's forwarding facts and the service's cookie.
#[derive(Clone, Copy, Debug)]
pub struct RequestRewrite<'a> {
    /// The client (the peer of the connection).
    pub client: &'a ClientAddr,
    /// The scheme the client used.
    pub proto: Proto,
    /// Whether earlier hops' X-Forwarded-For and Forwarded lines are kept.
    pub prior: PriorHops,
    /// Sticky's cookie name, removed from Cookie lines; `None` for a service without a cookie.
    pub cookie: Option<&'a [u8]>,
}

/// Writes the backend's request head for `req` (parsed from `buf`) into `out`.
pub fn write_request(req: &RequestHead, buf: &[u8], rw: &RequestRewrite<'_>, out: &mut impl BufMut) {
    write_request_line(req, buf, out);
    // absolute-form: the target's authority wins over Host (RFC 9112 §3.2.2); authority-form is the Host
    let authority = match req.form() {
        TargetForm::Absolute | TargetForm::Authority => req.authority(buf),
        TargetForm::Origin | TargetForm::Asterisk => None,
    };
    if let Some(a) = authority {
        put_field(out, b"Host", &[a]);
    }
    let head = req.head();
    let connection = req.connection();
    let content_length = req.content_length();
    let mut lines = Lines::default();
    for f in head.fields() {
        let value = f.value.of(buf);
        let keep = match f.kind {
            k if k.is_hop_by_hop() => false,
            Name::Lookalike => false,
            _ if connection.drops(head, buf, f) => false,
            Name::Host => authority.is_none(),
            Name::ContentLength if content_length.needs_rewrite() => {
                if let Some(n) = content_length.value().filter(|_| !lines.length_written) {
                    lines.flush(buf, out);
                    put_length(out, n);
                    lines.length_written = true;
                }
                false
            }
            Name::Cookie => match rw.cookie {
                Some(name) if cookies::holds(value, name) => {
                    lines.flush(buf, out);
                    cookies::write_without(value, name, out);
                    false
                }
                _ => true,
            },
            // written below from every line, then ours
            Name::XForwardedFor | Name::XForwardedProto | Name::XForwardedHost => false,
            Name::Forwarded => rw.prior == PriorHops::Keep,
            _ => true,
        };
        if keep {
            lines.keep(f.line, buf, out);
        }
    }
    lines.flush(buf, out);
    write_forwarding(req, buf, rw, authority.or_else(|| req.host(buf).filter(|h| !h.is_empty())), out);
    if req.upgrade() == Upgrade::WebSocket {
        out.put_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    out.put_slice(b"\r\n");
}

/// `METHOD origin-form HTTP/1.1`, or `HTTP/1.0` for an HTTP/1.0 request without any authority: HTTP/1.1
/// requires a Host, and sticky will not invent one (issue 13 item 6), so such a request keeps the
/// version that needs none (see [`forwarded_minor`]).
fn write_request_line(req: &RequestHead, buf: &[u8], out: &mut impl BufMut) {
    out.put_slice(req.method_bytes(buf));
    out.put_u8(b' ');
    let origin = req.origin().of(buf);
    match req.form() {
        // RFC 9112 §3.2.4: OPTIONS to an absolute URI without a path is OPTIONS *
        TargetForm::Absolute if origin.is_empty() && req.method() == Method::Options => out.put_u8(b'*'),
        TargetForm::Absolute if !origin.starts_with(b"/") => {
            out.put_u8(b'/');
            out.put_slice(origin);
        }
        _ => out.put_slice(origin),
    }
    out.put_slice(if forwarded_minor(req, buf) == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
}

/// The minor version of the request sent to the backend: 1, except for an HTTP/1.0 request without
/// Host or an absolute target (forwarded as HTTP/1.0, so the backend closes the connection after it).
#[must_use]
pub fn forwarded_minor(req: &RequestHead, buf: &[u8]) -> u8 {
    u8::from(req.minor() == 1 || req.authority(buf).is_some())
}

/// X-Forwarded-For (earlier lines joined, then the client), X-Forwarded-Proto, X-Forwarded-Host, and a
/// Forwarded element.
fn write_forwarding(
    req: &RequestHead,
    buf: &[u8],
    rw: &RequestRewrite<'_>,
    host: Option<&[u8]>,
    out: &mut impl BufMut,
) {
    let head = req.head();
    let connection = req.connection();
    out.put_slice(b"X-Forwarded-For: ");
    if rw.prior == PriorHops::Keep {
        let earlier = head
            .fields()
            .iter()
            .filter(|f| f.kind == Name::XForwardedFor && !connection.drops(head, buf, f))
            .map(|f| f.value.of(buf))
            .filter(|v| !v.is_empty());
        for v in earlier {
            out.put_slice(v);
            out.put_slice(b", ");
        }
    }
    out.put_slice(&rw.client.ip());
    out.put_slice(b"\r\nX-Forwarded-Proto: ");
    out.put_slice(rw.proto.as_bytes());
    out.put_slice(b"\r\n");
    if let Some(h) = host {
        put_field(out, b"X-Forwarded-Host", &[h]);
    }
    out.put_slice(b"Forwarded: ");
    forwarded::write_element(rw.client, host, rw.proto, out);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::{Limits, Parsed};

    fn rewrite(raw: &[u8], rw: &RequestRewrite<'_>) -> String {
        let mut req = RequestHead::default();
        let parsed = req.parse(raw, Limits { max_head: 4096, max_fields: 32 });
        assert!(matches!(parsed, Ok(Parsed::Complete { .. })), "{parsed:?}: the request must be accepted");
        let mut out = Vec::new();
        write_request(&req, raw, rw, &mut out);
        String::from_utf8(out).expect("the rewritten head must be text")
    }

    const RAW: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nCookie: sticky=x; b=1\r\n\r\n";

    #[test]
    fn an_untrusted_peer_loses_its_forwarding_fields() {
        let client = ClientAddr::new([192, 0, 2, 7].into());
        let rw =
            RequestRewrite { client: &client, proto: Proto::Http, prior: PriorHops::Discard, cookie: Some(b"sticky") };
        assert_eq!(
            rewrite(RAW, &rw),
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: b=1\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: a\r\nForwarded: for=192.0.2.7;host=\"a\";proto=http\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_clients_are_bracketed_https_is_said_and_cookies_stay_without_a_cookie_name() {
        let client = ClientAddr::new("2001:db8::1".parse().expect("an IPv6 literal must parse"));
        let rw = RequestRewrite { client: &client, proto: Proto::Https, prior: PriorHops::Keep, cookie: None };
        assert_eq!(
            rewrite(RAW, &rw),
            "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6\r\nCookie: sticky=x; b=1\r\n\
             X-Forwarded-For: 6.6.6.6, 2001:db8::1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\n\
             Forwarded: for=\"[2001:db8::1]\";host=\"a\";proto=https\r\n\r\n"
        );
    }

    #[test]
    fn only_an_http_1_0_request_without_authority_stays_http_1_0() {
        let minor = |raw: &[u8]| {
            let mut req = RequestHead::default();
            req.parse(raw, Limits { max_head: 4096, max_fields: 32 }).expect("the request must be accepted");
            forwarded_minor(&req, raw)
        };
        assert_eq!(minor(b"GET / HTTP/1.0\r\n\r\n"), 0);
        assert_eq!(minor(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"), 1);
        assert_eq!(minor(b"GET http://a/ HTTP/1.0\r\n\r\n"), 1);
        assert_eq!(minor(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 1);
    }
}
