//! A backend's response head, read in the light of its request (RFC 9112 §6.3): a HEAD request, a 204
//! or a 304 has no body; a 1xx is an interim head relayed before the final one; a 101 is a tunnel only
//! for a WebSocket the client asked for, with the right `Sec-WebSocket-Accept`; a 2xx to CONNECT is a
//! tunnel; otherwise Transfer-Encoding, then Content-Length, then the connection's end frame the body.
//!
//! Anything malformed is a [`ResponseError`]: the engine answers 502 (if nothing was sent yet) and
//! closes that upstream connection. Both Content-Length and Transfer-Encoding is not an error here:
//! RFC 9112 §6.3 says Transfer-Encoding wins and the connection closes after, which is what HAProxy
//! does, so a backend framework that sends both still works; the Content-Length line is dropped on
//! the way to the client and the upstream connection is not reused ([`ResponseHead::reusable`]).

use super::{
    framing::{ConnectionOptions, ContentLength, FramingError, TransferCodings},
    head::{self, Head, HeadError, Limits, Parsed, Span},
    request::{Method, RequestHead, Upgrade},
    rewrite_request::forwarded_minor,
    syntax::{self, Name},
    websocket::{self, ACCEPT_LEN},
};

/// Why a response head is refused; the backend is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head itself is malformed or too large.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// Content-Length or Transfer-Encoding cannot be read one way only.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// Transfer-Encoding in an HTTP/1.0 response (RFC 9112 §6.1: the framing is faulty).
    #[error("HTTP/1.0 response has a Transfer-Encoding")]
    TransferEncodingHttp10,
    /// A 101 to a request that asked for no upgrade sticky relays.
    #[error("backend switched protocols without a WebSocket upgrade being asked for")]
    UnexpectedSwitch,
    /// A 101 without `Upgrade: websocket` and `Connection: upgrade`, or in HTTP/1.0.
    #[error("101 response does not upgrade to websocket")]
    WebSocketUpgrade,
    /// A 101 without exactly one `Sec-WebSocket-Accept` matching the client's key.
    #[error("101 response has no Sec-WebSocket-Accept matching the client's key")]
    WebSocketAccept,
}

/// What the response parser needs to know of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    method: Method,
    accept: Option<[u8; ACCEPT_LEN]>,
    /// The request went out as HTTP/1.1 (else HTTP/1.0 without keep-alive: the backend closes after).
    persistent: bool,
}

impl Exchange {
    /// The exchange of a parsed request (the WebSocket accept value is computed here, once).
    #[must_use]
    pub fn of(req: &RequestHead, buf: &[u8]) -> Self {
        let key = (req.upgrade() == Upgrade::WebSocket).then(|| req.websocket_key(buf)).flatten();
        let mut exchange = Self::new(req.method(), key);
        exchange.persistent = forwarded_minor(req, buf) == 1;
        exchange
    }

    /// An exchange for `method` sent as HTTP/1.1, with the client's `Sec-WebSocket-Key` if it asked for
    /// a WebSocket.
    #[must_use]
    pub fn new(method: Method, websocket_key: Option<&[u8]>) -> Self {
        Self { method, accept: websocket_key.map(websocket::accept), persistent: true }
    }
}

/// How a response body is framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, a tunnel, or `Content-Length: 0`).
    #[default]
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (relayed as is).
    Chunked,
    /// Everything until the backend closes (no framing field, or a final coding other than chunked):
    /// the client connection closes after it too.
    UntilClose,
}

/// What kind of head this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseKind {
    /// A 1xx other than 101: relayed (to HTTP/1.1 clients), then the final head follows.
    Interim,
    /// The final response.
    #[default]
    Final,
    /// A checked 101 to a WebSocket upgrade, or a 2xx to CONNECT: both sides become a tunnel after the
    /// head.
    Tunnel,
}

/// A parsed response head. Reusable like [`RequestHead`].
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    head: Head,
    minor: u8,
    status: u16,
    kind: ResponseKind,
    framing: ResponseFraming,
    content_length: ContentLength,
    length_and_chunked: bool,
    connection: ConnectionOptions,
    reusable: bool,
}

impl ResponseHead {
    /// Parses the head at the start of `buf`, the answer to `exchange`.
    ///
    /// # Errors
    /// A malformed or oversized head, or a 101 that is not the WebSocket the client asked for.
    pub fn parse(&mut self, buf: &[u8], limits: Limits, exchange: &Exchange) -> Result<Parsed, ResponseError> {
        *self = Self { head: std::mem::take(&mut self.head), ..Self::default() };
        self.head.clear();
        let window = buf.get(..limits.max_head).unwrap_or(buf);
        let mut slots = head::slots();
        let fields = &mut slots[..limits.max_fields.min(head::MAX_FIELDS)];
        let mut resp = httparse::Response::new(&mut []);
        let len = match head::parser().parse_response_with_uninit_headers(&mut resp, window, fields) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if window.len() >= limits.max_head => {
                return Err(HeadError::TooLarge { max: limits.max_head }.into());
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(e) => return Err(head::refused(window, e, limits, false).into()),
        };
        self.head.record(window, resp.headers, len)?;
        let (Some(minor), Some(status)) = (resp.version, resp.code) else { return Err(HeadError::Malformed.into()) };
        if status < 100 {
            return Err(HeadError::Status.into());
        }
        self.minor = minor;
        self.status = status;
        self.read_fields(window, exchange)?;
        Ok(Parsed::Complete { len })
    }

    fn read_fields(&mut self, buf: &[u8], exchange: &Exchange) -> Result<(), ResponseError> {
        let mut codings = TransferCodings::default();
        let mut upgrade_websocket = false;
        let mut accepts = 0u32;
        let mut accept_ok = false;
        for f in self.head.fields() {
            let value = f.value.of(buf);
            match f.kind {
                Name::ContentLength => self.content_length.add(value)?,
                Name::TransferEncoding => codings.add(value)?,
                Name::Connection => self.connection.add(value),
                Name::Upgrade => upgrade_websocket |= syntax::list_has(value, b"websocket"),
                Name::SecWebSocketAccept => {
                    accepts += 1;
                    accept_ok = exchange.accept.is_some_and(|a| a.as_slice() == value);
                }
                _ => {}
            }
        }
        if codings.is_present() && self.minor == 0 {
            return Err(ResponseError::TransferEncodingHttp10);
        }
        self.kind = match self.status {
            101 => {
                if exchange.accept.is_none() {
                    return Err(ResponseError::UnexpectedSwitch);
                }
                if self.minor != 1 || !upgrade_websocket || !self.connection.upgrade {
                    return Err(ResponseError::WebSocketUpgrade);
                }
                if accepts != 1 || !accept_ok {
                    return Err(ResponseError::WebSocketAccept);
                }
                ResponseKind::Tunnel
            }
            100..=199 => ResponseKind::Interim,
            200..=299 if exchange.method == Method::Connect => ResponseKind::Tunnel,
            _ => ResponseKind::Final,
        };
        let no_body = self.kind != ResponseKind::Final
            || exchange.method == Method::Head
            || self.status == 204
            || self.status == 304;
        #[expect(
            clippy::match_same_arms,
            reason = "the arms are RFC 9112 §6.3's rules in its order (no body, Transfer-Encoding, Content-Length); merging equal results would interleave the rules"
        )]
        let framing = match (no_body, codings.is_present(), self.content_length.value()) {
            (true, _, _) => ResponseFraming::None,
            (false, true, _) if codings.is_chunked() => ResponseFraming::Chunked,
            // RFC 9112 §6.3: a final coding other than chunked is read until the connection closes
            (false, true, _) => ResponseFraming::UntilClose,
            (false, false, Some(0)) => ResponseFraming::None,
            (false, false, Some(n)) => ResponseFraming::Length(n),
            (false, false, None) => ResponseFraming::UntilClose,
        };
        self.framing = framing;
        self.length_and_chunked = codings.is_present() && self.content_length.value().is_some();
        let keep_alive =
            exchange.persistent && !self.connection.close && (self.minor == 1 || self.connection.keep_alive);
        self.reusable = keep_alive
            && self.kind != ResponseKind::Tunnel
            && self.framing != ResponseFraming::UntilClose
            && !self.length_and_chunked;
        Ok(())
    }

    /// The fields and lengths shared with requests.
    #[must_use]
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Length of the head; the body starts here.
    #[must_use]
    pub fn len(&self) -> usize {
        self.head.len()
    }

    /// Whether nothing was parsed yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// The status code.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    #[must_use]
    pub fn minor(&self) -> u8 {
        self.minor
    }

    /// Interim, final or tunnel.
    #[must_use]
    pub fn kind(&self) -> ResponseKind {
        self.kind
    }

    /// How the body is framed.
    #[must_use]
    pub fn framing(&self) -> ResponseFraming {
        self.framing
    }

    /// Whether the upstream connection may carry another request once this response and its body are
    /// through (keep-alive, a framed body, not a tunnel, not both Content-Length and Transfer-Encoding).
    #[must_use]
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    /// The Connection options.
    #[must_use]
    pub fn connection(&self) -> ConnectionOptions {
        self.connection
    }

    /// Both framing fields were present (the Content-Length lines are dropped on the way out).
    pub(super) fn length_and_chunked(&self) -> bool {
        self.length_and_chunked
    }

    /// The Content-Length lines as read.
    pub(super) fn content_length(&self) -> ContentLength {
        self.content_length
    }

    /// The status line after `HTTP/1.x `: the code and the reason as sent.
    pub(super) fn status_and_reason(&self) -> Span {
        let line = self.head.start_line();
        // "HTTP/1.x " is nine bytes (httparse accepts no other version and exactly one space)
        Span::new((line.start() + 9).min(line.end())..line.end())
    }

    /// The values of the Set-Cookie fields, in order.
    pub fn set_cookies<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.head.values(buf, Name::SetCookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_head: 8192, max_fields: 100 };
    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn parse(raw: &[u8], exchange: &Exchange) -> Result<ResponseHead, ResponseError> {
        let mut head = ResponseHead::default();
        match head.parse(raw, LIMITS, exchange)? {
            Parsed::Complete { .. } => Ok(head),
            Parsed::Incomplete => panic!("{:?} must be a complete head", String::from_utf8_lossy(raw)),
        }
    }

    fn get() -> Exchange {
        Exchange::new(Method::Get, None)
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let framing = |raw: &[u8], ex: &Exchange| parse(raw, ex).expect("a valid response must be accepted").framing();
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &get()), ResponseFraming::Length(5));
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &get()), ResponseFraming::Chunked);
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\n\r\n", &get()), ResponseFraming::UntilClose);
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &get()),
            ResponseFraming::UntilClose
        );
        let head = Exchange::new(Method::Head, None);
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &head), ResponseFraming::None);
        assert_eq!(framing(b"HTTP/1.1 204 No Content\r\n\r\n", &get()), ResponseFraming::None);
        assert_eq!(framing(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", &get()), ResponseFraming::None);
    }

    #[test]
    fn length_and_chunked_is_read_as_chunked_and_closes_the_upstream() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &get())
            .expect("both framing fields must be read as chunked");
        assert_eq!((r.framing(), r.reusable(), r.length_and_chunked()), (ResponseFraming::Chunked, false, true));
    }

    #[test]
    fn a_websocket_switch_must_carry_the_right_accept() {
        let ws = Exchange::new(Method::Get, Some(KEY));
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let r = parse(ok, &ws).expect("a matching accept must be accepted");
        assert_eq!((r.kind(), r.framing(), r.reusable()), (ResponseKind::Tunnel, ResponseFraming::None, false));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAALMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(parse(wrong, &ws).map(|r| r.kind()), Err(ResponseError::WebSocketAccept));
        assert_eq!(parse(ok, &get()).map(|r| r.kind()), Err(ResponseError::UnexpectedSwitch));
        let refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(refused, &ws).map(|r| r.kind()), Ok(ResponseKind::Final), "a refused upgrade stays HTTP");
    }

    #[test]
    fn interim_heads_and_connect_tunnels_have_no_body() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\n", &get()).expect("100 must be accepted");
        assert_eq!((r.kind(), r.framing()), (ResponseKind::Interim, ResponseFraming::None));
        let connect = Exchange::new(Method::Connect, None);
        let r =
            parse(b"HTTP/1.1 200 Connection Established\r\n\r\n", &connect).expect("a CONNECT 200 must be accepted");
        assert_eq!((r.kind(), r.framing()), (ResponseKind::Tunnel, ResponseFraming::None));
        assert_eq!(parse(b"HTTP/1.1 099 Odd\r\n\r\n", &get()).map(|r| r.status()), Err(HeadError::Status.into()));
    }
}
