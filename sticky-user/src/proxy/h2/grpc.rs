//! sticky's own answers on the HTTP/2 path: the status [`ProxyError::status`] decides, as text for a
//! person, or, for a gRPC client (`content-type: application/grpc…`), as gRPC expects a proxy's
//! failure: HTTP 200 with a trailers-only answer, `grpc-status` (503/502 are `UNAVAILABLE`, 504
//! `DEADLINE_EXCEEDED`, …) and a `grpc-message`, never an HTML page a gRPC library cannot read.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;

use crate::proxy::rescue::ProxyError;

/// gRPC status codes sticky answers with (grpc/grpc `doc/statuscodes.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// `INTERNAL`: the request could not be relayed as sent.
    Internal = 13,
    /// `UNIMPLEMENTED`: no service of sticky takes this path.
    Unimplemented = 12,
    /// `UNAVAILABLE`: no backend now; a retry may succeed.
    Unavailable = 14,
    /// `DEADLINE_EXCEEDED`: the backend did not answer in time.
    DeadlineExceeded = 4,
    /// `RESOURCE_EXHAUSTED`: the request is over a limit of sticky's.
    ResourceExhausted = 8,
}

/// The gRPC code for an HTTP status of sticky's (gRPC's own HTTP-to-gRPC table, `doc/http-grpc-status-mapping.md`,
/// with 504 as `DEADLINE_EXCEEDED`).
#[must_use]
pub fn code(status: StatusCode) -> Code {
    match status.as_u16() {
        404 => Code::Unimplemented,
        431 => Code::ResourceExhausted,
        504 => Code::DeadlineExceeded,
        400 => Code::Internal,
        _ => Code::Unavailable,
    }
}

/// Whether a request is gRPC (its `content-type` is `application/grpc` or `application/grpc+…`).
#[must_use]
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// sticky's answer to `e`: text, or a gRPC trailers-only answer when `grpc`.
#[must_use]
pub fn answer(e: &ProxyError, grpc: bool) -> Response<Full<Bytes>> {
    let status = e.status();
    if grpc {
        return trailers_only(code(status), &e.to_string());
    }
    let mut r = Response::new(Full::new(Bytes::from(e.body())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A gRPC trailers-only answer: HTTP 200, `grpc-status`, `grpc-message` (percent-encoded as gRPC wants).
#[must_use]
pub fn trailers_only(code: Code, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(code as u8)));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    r
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is, every other byte `%XX`.
fn percent_encode(message: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_client_gets_unavailable_not_a_503_page() {
        let r = answer(&ProxyError::NoBackend { service: "g".into() }, true);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get("grpc-status").map(HeaderValue::as_bytes), Some(&b"14"[..]));
        assert!(r.headers().get("grpc-message").is_some_and(|m| m.as_bytes().starts_with(b"no backend")));
        let page = answer(&ProxyError::NoBackend { service: "g".into() }, false);
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn grpc_is_told_by_its_content_type() {
        let with = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_grpc(&h)
        };
        assert!(with("application/grpc") && with("application/grpc+proto") && with("Application/GRPC"));
        assert!(!with("application/grpcx") && !with("text/html") && !with("application/grpc-web"));
        assert_eq!(percent_encode("a b%\n"), "a b%25%0A");
        assert_eq!(code(StatusCode::GATEWAY_TIMEOUT), Code::DeadlineExceeded);
    }
}
