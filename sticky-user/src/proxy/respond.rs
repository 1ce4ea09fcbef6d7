//! sticky's own answers as raw HTTP/1.1 bytes: the status of a [`ProxyError`], a short text body,
//! no caching, and `Connection: close` when the connection ends after it.

use bytes::BufMut;
use http::StatusCode;

use super::rescue::ProxyError;

/// Writes the whole response for `error` into `out`.
pub fn error(error: &ProxyError, close: bool, out: &mut impl BufMut) {
    local(error.status(), error.body().as_bytes(), close, out);
}

/// Writes a complete response of `status` with the text `body`.
pub fn local(status: StatusCode, body: &[u8], close: bool, out: &mut impl BufMut) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: ");
    out.put_slice(body.len().to_string().as_bytes());
    if close {
        out.put_slice(b"\r\nConnection: close");
    }
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_answer_is_a_complete_message() {
        let mut out = Vec::new();
        error(&ProxyError::NoRoute, true, &mut out);
        let text = String::from_utf8(out).expect("text");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
        assert!(body.starts_with("404 Not Found: "), "{body}");
    }
}
