//! The response head sticky sends to the client, written like the request's: unchanged field lines
//! copied, changes written. Hop-by-hop fields dropped (a checked 101 keeps its `Upgrade`); a backend's
//! `Set-Cookie` for sticky's cookie name dropped and counted (it would override the pin: issue 13
//! item 7, as HAProxy does); Content-Length dropped when Transfer-Encoding is there too (RFC 9112
//! §6.3), or written as one line when repeated; sticky's own `Set-Cookie` appended when the engine
//! gives one; `Connection` written for what the engine does with the client connection.
//!
//! An HTTP/1.0 client gets no 1xx (RFC 9110 §15.2) and no chunked framing: a chunked body is sent as
//! its data only ([`Relay::dechunk`], with [`super::ChunkedBody::feed_data`]) and the end of the
//! connection ends it, as hyper did for such clients.

use bytes::BufMut;

use super::{
    cookies,
    response::{ResponseFraming, ResponseHead, ResponseKind},
    syntax::{self, Name},
    write::{Lines, put_field, put_length},
};

/// Something the engine gave the rewrite that cannot go into a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The Set-Cookie value to append is empty or has a control byte (CR, LF, NUL, ...): writing it
    /// would split the head.
    #[error("Set-Cookie value to append is empty or has a control byte")]
    SetCookie,
}

/// What the rewrite needs beyond the head: the service's cookie and the client connection's state.
#[derive(Clone, Copy, Debug)]
pub struct ResponseRewrite<'a> {
    /// Sticky's cookie name: a backend's Set-Cookie for it is dropped. `None` for a service without one.
    pub cookie: Option<&'a [u8]>,
    /// Sticky's Set-Cookie value (`name=value; attributes`) to append, for a new or refreshed pin.
    pub set_cookie: Option<&'a [u8]>,
    /// The client's minor version (0 for HTTP/1.0).
    pub client_minor: u8,
    /// Whether the engine means to keep the client connection open after this response (the client
    /// asked for it and sticky is not shutting down).
    pub keep_alive: bool,
    /// Field lines sticky adds to a final response, each ending in CRLF (`Strict-Transport-Security`
    /// over TLS); empty for none.
    pub extra: &'a [u8],
}

/// What the engine does with the head written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relay {
    /// Whether a head was written (an interim response to an HTTP/1.0 client is not).
    pub sent: bool,
    /// Backend Set-Cookie lines for sticky's cookie that were dropped (to count).
    pub dropped_set_cookies: u32,
    /// The body is chunked but the client speaks HTTP/1.0: send only its data, then close.
    pub dechunk: bool,
    /// Close the client connection after this response's body.
    pub close: bool,
}

/// Writes the client's response head for `resp` (parsed from `buf`) into `out`.
///
/// # Errors
/// [`RewriteError::SetCookie`] before anything is written.
pub fn write_response(
    resp: &ResponseHead,
    buf: &[u8],
    rw: &ResponseRewrite<'_>,
    out: &mut impl BufMut,
) -> Result<Relay, RewriteError> {
    if rw.set_cookie.is_some_and(|v| v.is_empty() || !syntax::is_field_value(v)) {
        return Err(RewriteError::SetCookie);
    }
    let kind = resp.kind();
    let http10 = rw.client_minor == 0;
    if kind == ResponseKind::Interim && http10 {
        return Ok(Relay::default());
    }
    let switch = kind == ResponseKind::Tunnel && resp.status() == 101;
    let dechunk = http10 && kind == ResponseKind::Final && resp.framing() == ResponseFraming::Chunked;
    let close =
        kind == ResponseKind::Final && (!rw.keep_alive || resp.framing() == ResponseFraming::UntilClose || dechunk);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(resp.status_and_reason().of(buf));
    out.put_slice(b"\r\n");
    let head = resp.head();
    let connection = resp.connection();
    let content_length = resp.content_length();
    let mut dropped_set_cookies = 0u32;
    let mut lines = Lines::default();
    for f in head.fields() {
        let keep = match f.kind {
            Name::Upgrade => switch,
            k if k.is_hop_by_hop() => false,
            Name::Lookalike => false,
            _ if connection.drops(head, buf, f) => false,
            Name::ContentLength if resp.length_and_chunked() => false,
            Name::ContentLength if content_length.needs_rewrite() => {
                if let Some(n) = content_length.value().filter(|_| !lines.length_written) {
                    lines.flush(buf, out);
                    put_length(out, n);
                    lines.length_written = true;
                }
                false
            }
            Name::TransferEncoding => !http10,
            Name::SetCookie => {
                let theirs = rw.cookie.is_some_and(|name| cookies::set_cookie_name(f.value.of(buf)) == Some(name));
                dropped_set_cookies += u32::from(theirs);
                !theirs
            }
            _ => true,
        };
        if keep {
            lines.keep(f.line, buf, out);
        }
    }
    lines.flush(buf, out);
    if switch {
        out.put_slice(b"Connection: Upgrade\r\n");
    } else if close {
        out.put_slice(b"Connection: close\r\n");
    } else if http10 && kind == ResponseKind::Final {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    if let Some(v) = rw.set_cookie.filter(|_| kind != ResponseKind::Interim) {
        put_field(out, b"Set-Cookie", &[v]);
    }
    if kind != ResponseKind::Interim {
        out.put_slice(rw.extra);
    }
    out.put_slice(b"\r\n");
    Ok(Relay { sent: true, dropped_set_cookies, dechunk, close })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::{Exchange, Limits, Method, Parsed};

    fn head(raw: &[u8]) -> ResponseHead {
        let mut h = ResponseHead::default();
        let parsed = h.parse(raw, Limits { max_head: 4096, max_fields: 32 }, &Exchange::new(Method::Get, None));
        assert!(matches!(parsed, Ok(Parsed::Complete { .. })), "{parsed:?}: the response must be accepted");
        h
    }

    const RW: ResponseRewrite<'static> =
        ResponseRewrite { cookie: Some(b"sticky"), set_cookie: None, client_minor: 1, keep_alive: true, extra: b"" };

    #[test]
    fn a_set_cookie_that_would_split_the_head_is_refused_before_writing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for bad in [&b"sticky=a\r\nX-Injected: 1"[..], b"sticky=a\nb", b"", b"sticky=\0"] {
            let mut out = Vec::new();
            let rw = ResponseRewrite { set_cookie: Some(bad), ..RW };
            assert_eq!(write_response(&head(raw), raw, &rw, &mut out), Err(RewriteError::SetCookie));
            assert!(out.is_empty(), "nothing may be written before the error");
        }
    }

    #[test]
    fn the_relay_plan_follows_the_framing_and_the_client() {
        let plan = |raw: &[u8], rw: &ResponseRewrite<'_>| {
            write_response(&head(raw), raw, rw, &mut Vec::new()).expect("the response must be written")
        };
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(plan(chunked, &RW), Relay { sent: true, dropped_set_cookies: 0, dechunk: false, close: false });
        let old = ResponseRewrite { client_minor: 0, ..RW };
        assert_eq!(plan(chunked, &old), Relay { sent: true, dropped_set_cookies: 0, dechunk: true, close: true });
        let until_close = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(plan(until_close, &RW), Relay { sent: true, dropped_set_cookies: 0, dechunk: false, close: true });
        let forged = b"HTTP/1.1 200 OK\r\nSet-Cookie: sticky=1\r\nSet-Cookie: sticky=2\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(plan(forged, &RW).dropped_set_cookies, 2);
        let no_cookie = ResponseRewrite { cookie: None, ..RW };
        assert_eq!(plan(forged, &no_cookie).dropped_set_cookies, 0, "a service without a cookie keeps them");
    }
}
