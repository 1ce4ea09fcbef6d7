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

/// Writes `308 Permanent Redirect` to `location` (a plain-HTTP request of a service that redirects to
/// HTTPS: the method and body are kept by the client, as RFC 9110 says of 308).
pub fn redirect(location: &[u8], close: bool, out: &mut impl BufMut) {
    out.put_slice(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: ");
    out.put_slice(location);
    out.put_slice(b"\r\nContent-Length: 0\r\nCache-Control: no-store");
    if close {
        out.put_slice(b"\r\nConnection: close");
    }
    out.put_slice(b"\r\n\r\n");
}

/// The `https://` URL of a plain request: its authority's host with `https_port` (left out when it
/// is 443), then its target's path and query. `None` when the request names no host.
#[must_use]
pub fn https_location(authority: Option<&[u8]>, target: &[u8], https_port: u16) -> Option<Vec<u8>> {
    let authority = authority.filter(|a| !a.is_empty())?;
    // the host without its port: an IPv6 literal keeps its brackets
    let host = match authority.iter().rposition(|&b| b == b':') {
        Some(i) if !authority[i..].contains(&b']') => &authority[..i],
        _ => authority,
    };
    // an absolute-form target (`http://a/b`) keeps only its path
    let path = match target.strip_prefix(b"http://") {
        Some(rest) => rest.iter().position(|&b| b == b'/').map_or(&b"/"[..], |i| &rest[i..]),
        None if target.starts_with(b"/") => target,
        None => b"/",
    };
    let mut url = Vec::with_capacity(8 + host.len() + 6 + path.len());
    url.extend_from_slice(b"https://");
    url.extend_from_slice(host);
    if https_port != 443 {
        url.extend_from_slice(format!(":{https_port}").as_bytes());
    }
    url.extend_from_slice(path);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_https_location_keeps_host_path_and_query() {
        let loc = |a: &str, t: &str, p| {
            https_location(Some(a.as_bytes()), t.as_bytes(), p).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(loc("a.example:8080", "/x?y=1", 443).as_deref(), Some("https://a.example/x?y=1"));
        assert_eq!(loc("a.example", "/", 8443).as_deref(), Some("https://a.example:8443/"));
        assert_eq!(loc("[::1]:80", "/p", 443).as_deref(), Some("https://[::1]/p"));
        assert_eq!(loc("[::1]", "/p", 443).as_deref(), Some("https://[::1]/p"));
        assert_eq!(loc("a", "http://a/q", 443).as_deref(), Some("https://a/q"));
        assert_eq!(https_location(None, b"/", 443), None);
    }

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
