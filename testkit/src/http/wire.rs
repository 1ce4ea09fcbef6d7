//! HTTP/1.1 framing on a byte stream: a head parsed with httparse, a body by Content-Length, chunked
//! coding or (responses only) the end of the connection, every read bounded in size; and a request
//! written with Content-Length or in two chunks.

use std::{
    fmt::Write as _,
    io::{BufRead, ErrorKind, Read as _, Write},
};

use super::message::{Request, Response};

/// The largest head read (request or status line and headers).
pub const MAX_HEAD: u64 = 64 * 1024;
/// The most header lines in a head.
pub const MAX_HEADERS: usize = 128;
/// The largest body read (the L7 tests echo 1 MiB bodies).
pub const MAX_BODY: u64 = 64 << 20;
/// The longest chunk-size line.
const MAX_CHUNK_LINE: u64 = 1024;

/// How a request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `content-length` (left out for a GET or HEAD without a body, as browsers do).
    Length,
    /// `transfer-encoding: chunked`, the body in two chunks (so a proxy must re-frame, not pass one
    /// chunk through by luck).
    Chunked,
}

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or timed out.
    #[error("failed to read the {part}")]
    Io {
        /// The head, a body, a chunk.
        part: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the {part}")]
    Closed {
        /// Where.
        part: &'static str,
    },
    /// The bytes are not HTTP/1.
    #[error("malformed {part}: {detail}")]
    Malformed {
        /// What did not parse.
        part: &'static str,
        /// What it said.
        detail: String,
    },
    /// More bytes than the bound.
    #[error("{part} larger than {limit} bytes")]
    TooLarge {
        /// What.
        part: &'static str,
        /// The bound.
        limit: u64,
    },
}

/// Reads one response head and its body from `r`. `head_request`: it answers a HEAD (no body).
///
/// # Errors
/// The stream fails, closes mid-message, or does not carry an HTTP/1 response.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> Result<Response, WireError> {
    let head = read_head(r)?.ok_or(WireError::Closed { part: "response head" })?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    complete(parsed.parse(&head), "response head")?;
    let status = parsed.code.ok_or_else(|| malformed("response head", "no status code"))?;
    let headers = owned(parsed.headers);
    // RFC 9112 6.3: these never have a body, whatever their headers say.
    let bodyless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if bodyless { Vec::new() } else { read_body(r, &headers, Until::Close)? };
    Ok(Response { status, headers, body })
}

/// Reads one request from `r`, for test servers: `Ok(None)` if the peer closed before sending one.
///
/// # Errors
/// The stream fails, closes mid-request, or does not carry an HTTP/1 request.
pub fn read_request(r: &mut impl BufRead) -> Result<Option<Request>, WireError> {
    let Some(head) = read_head(r)? else { return Ok(None) };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    complete(parsed.parse(&head), "request head")?;
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return Err(malformed("request head", "no method or target"));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let headers = owned(parsed.headers);
    // A request without framing headers has no body (it cannot be delimited by close).
    let body = read_body(r, &headers, Until::Empty)?;
    Ok(Some(Request { method, path, headers, body }))
}

/// Writes one request: `method path HTTP/1.1`, `host` unless `headers` has one, `headers`, the framing
/// headers, then `body`.
///
/// # Errors
/// The write fails.
pub fn write_request(
    w: &mut impl Write,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    framing: Framing,
) -> std::io::Result<()> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        write!(out, "host: {host}\r\n").map_err(std::io::Error::other)?;
    }
    for (k, v) in headers {
        write!(out, "{k}: {v}\r\n").map_err(std::io::Error::other)?;
    }
    let mut bytes = match framing {
        Framing::Chunked => {
            out.push_str("transfer-encoding: chunked\r\n\r\n");
            let mut v = out.into_bytes();
            let (a, b) = body.split_at(body.len() / 2);
            for part in [a, b].into_iter().filter(|p| !p.is_empty()) {
                v.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                v.extend_from_slice(part);
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b"0\r\n\r\n");
            v
        }
        Framing::Length => {
            if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
                write!(out, "content-length: {}\r\n", body.len()).map_err(std::io::Error::other)?;
            }
            out.push_str("\r\n");
            let mut v = out.into_bytes();
            v.extend_from_slice(body);
            v
        }
    };
    w.write_all(&bytes)?;
    w.flush()?;
    bytes.clear();
    Ok(())
}

/// What ends a body that has neither Content-Length nor chunked coding.
#[derive(Clone, Copy)]
enum Until {
    /// The end of the connection (a response).
    Close,
    /// Nothing: there is no body (a request).
    Empty,
}

/// Reads the head up to and including its blank line; `None` on EOF before the first byte.
fn read_head(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, WireError> {
    let mut head = Vec::new();
    // Bytes of empty lines skipped before the head count against the bound too.
    let mut skipped = 0;
    loop {
        let left = MAX_HEAD - skipped - head.len() as u64;
        if left == 0 {
            return Err(WireError::TooLarge { part: "head", limit: MAX_HEAD });
        }
        let n = (&mut *r)
            .take(left)
            .read_until(b'\n', &mut head)
            .map_err(|source| WireError::Io { part: "head", source })?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(WireError::Closed { part: "head" }) };
        }
        if matches!(head.as_slice(), b"\r\n" | b"\n") {
            // RFC 9112 2.2: empty lines before a message are ignored.
            skipped += head.len() as u64;
            head.clear();
        } else if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            return Ok(Some(head));
        }
    }
}

fn read_body(r: &mut impl BufRead, headers: &[(String, String)], until: Until) -> Result<Vec<u8>, WireError> {
    let value = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // Chunked wins over Content-Length (RFC 9112 6.3), and only as the last coding.
    if value("transfer-encoding")
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
    {
        return read_chunked(r);
    }
    if let Some(len) = value("content-length") {
        let len: u64 = len.parse().map_err(|_| malformed("content-length", len))?;
        if len > MAX_BODY {
            return Err(WireError::TooLarge { part: "body", limit: MAX_BODY });
        }
        return read_exact(r, len, "body");
    }
    match until {
        Until::Empty => Ok(Vec::new()),
        Until::Close => {
            let mut body = Vec::new();
            match (&mut *r).take(MAX_BODY + 1).read_to_end(&mut body) {
                Ok(_) => {}
                // The head arrived: a server that closes with unread input resets the connection
                // after its response; what came before the reset is the body.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                Err(source) => return Err(WireError::Io { part: "body", source }),
            }
            if body.len() as u64 > MAX_BODY {
                return Err(WireError::TooLarge { part: "body", limit: MAX_BODY });
            }
            Ok(body)
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_CHUNK_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|source| WireError::Io { part: "chunk size", source })?;
        if n == 0 {
            return Err(WireError::Closed { part: "chunked body" });
        }
        let Ok(httparse::Status::Complete((_, size))) = httparse::parse_chunk_size(&line) else {
            return Err(malformed("chunk size", &String::from_utf8_lossy(&line)));
        };
        if size == 0 {
            // Trailers, then the blank line: read and dropped.
            let mut trailers = Vec::new();
            loop {
                let before = trailers.len();
                let n = (&mut *r)
                    .take(MAX_HEAD)
                    .read_until(b'\n', &mut trailers)
                    .map_err(|source| WireError::Io { part: "trailers", source })?;
                if n == 0 {
                    return Err(WireError::Closed { part: "trailers" });
                }
                if matches!(&trailers[before..], b"\r\n" | b"\n") {
                    return Ok(body);
                }
                if trailers.len() as u64 > MAX_HEAD {
                    return Err(WireError::TooLarge { part: "trailers", limit: MAX_HEAD });
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(WireError::TooLarge { part: "body", limit: MAX_BODY });
        }
        body.extend(read_exact(r, size, "chunk")?);
        if read_exact(r, 2, "chunk")? != b"\r\n" {
            return Err(malformed("chunk", "no CRLF after the data"));
        }
    }
}

/// Exactly `len` bytes (already checked against a bound).
fn read_exact(r: &mut impl BufRead, len: u64, part: &'static str) -> Result<Vec<u8>, WireError> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| WireError::TooLarge { part, limit: MAX_BODY })?];
    r.read_exact(&mut buf).map_err(|source| match source.kind() {
        ErrorKind::UnexpectedEof => WireError::Closed { part },
        _ => WireError::Io { part, source },
    })?;
    Ok(buf)
}

fn complete(parsed: httparse::Result<usize>, part: &'static str) -> Result<(), WireError> {
    match parsed {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Ok(httparse::Status::Partial) => Err(malformed(part, "incomplete")),
        Err(e) => Err(malformed(part, &e.to_string())),
    }
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers.iter().map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned())).collect()
}

fn malformed(part: &'static str, detail: &str) -> WireError {
    WireError::Malformed { part, detail: detail.to_owned() }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::{Framing, WireError, read_request, read_response, write_request};

    fn response(bytes: &[u8]) -> Result<super::Response, WireError> {
        read_response(&mut BufReader::new(bytes), false)
    }

    #[test]
    fn a_content_length_body_ends_where_it_says_and_the_next_response_follows() {
        let bytes =
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nX-Backend: b1\r\n\r\nI'm b1\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut r = BufReader::new(&bytes[..]);
        let first = read_response(&mut r, false).expect("the first response must parse");
        assert_eq!((first.status, first.header("x-backend"), first.text().as_ref()), (200, Some("b1"), "I'm b1\n"));
        let second = read_response(&mut r, false).expect("the second response on the connection must parse");
        assert_eq!((second.status, second.body.len()), (204, 0));
    }

    #[test]
    fn a_chunked_body_is_decoded_and_its_trailers_dropped() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nI'm \r\n3\r\nb2\n\r\n0\r\nx-trailer: 1\r\n\r\n";
        let r = response(bytes).expect("a chunked response must parse");
        assert_eq!(r.text(), "I'm b2\n");
    }

    #[test]
    fn without_framing_a_response_body_runs_to_the_close() {
        let r = response(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n404 page not found\n")
            .expect("a close-delimited response must parse");
        assert_eq!((r.status, r.text().as_ref()), (404, "404 page not found\n"));
    }

    #[test]
    fn cut_and_malformed_messages_are_errors() {
        let cut = response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        assert!(matches!(cut, Err(WireError::Closed { part: "body" })), "{cut:?}");
        let garbage = response(b"THIS IS NOT HTTP\r\n\r\n");
        assert!(matches!(garbage, Err(WireError::Malformed { .. })), "{garbage:?}");
        let length = response(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n");
        assert!(matches!(length, Err(WireError::Malformed { part: "content-length", .. })), "{length:?}");
        let empty = response(b"");
        assert!(matches!(empty, Err(WireError::Closed { part: "response head" })), "{empty:?}");
    }

    #[test]
    fn an_endless_head_is_refused_at_the_bound() {
        let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
        while bytes.len() < 70_000 {
            bytes.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let r = response(&bytes);
        assert!(matches!(r, Err(WireError::TooLarge { part: "head", .. })), "{:?}", r.map(|r| r.status));
    }

    #[test]
    fn a_written_request_reads_back_with_either_framing() {
        for framing in [Framing::Length, Framing::Chunked] {
            let mut wire = Vec::new();
            write_request(&mut wire, "POST", "/echo", "lab", &[("cookie", "sticky=x")], b"hello world", framing)
                .expect("writing to a Vec must work");
            let got = read_request(&mut BufReader::new(&wire[..]))
                .expect("the request must parse")
                .expect("a request must be there");
            assert_eq!((got.method.as_str(), got.path.as_str()), ("POST", "/echo"));
            assert_eq!((got.header("host"), got.header("cookie")), (Some("lab"), Some("sticky=x")));
            assert_eq!(got.body, b"hello world", "{framing:?} must carry the body intact");
        }
        let mut get = Vec::new();
        write_request(&mut get, "GET", "/", "lab", &[("Host", "other")], b"", Framing::Length)
            .expect("writing to a Vec must work");
        let text = String::from_utf8(get).expect("a request head must be ASCII");
        assert_eq!(text, "GET / HTTP/1.1\r\nHost: other\r\n\r\n", "a caller's Host wins; a GET needs no length");
    }

    #[test]
    fn a_closed_connection_before_a_request_is_no_request() {
        assert!(
            read_request(&mut BufReader::new(&b""[..])).expect("EOF before a request must not be an error").is_none()
        );
    }
}
