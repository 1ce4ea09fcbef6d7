//! A client's request head: parsed by httparse, then held to RFC 9112 where httparse is lenient, and
//! read into what the engine decides on: the framing of the body, the routing authority and path,
//! keep-alive, an upgrade, `Expect: 100-continue`.
//!
//! Refused (the engine answers 400, or 431 for [`RequestError::is_over_limit`], and closes): any
//! [`HeadError`] (bare LF or CR, obs-fold, whitespace before a colon, NUL or a control byte in a value,
//! an invalid method, target or version); both Content-Length and Transfer-Encoding; a
//! Transfer-Encoding that is not exactly `chunked` (see [`RequestError::NotChunked`] for why not
//! `gzip, chunked`); Transfer-Encoding in HTTP/1.0; Content-Length values that differ or are malformed;
//! two Host lines, an invalid Host, HTTP/1.1 without Host (unless the target carries the authority); a
//! target form that does not fit the method; a malformed WebSocket handshake.

use super::{
    framing::{ConnectionOptions, ContentLength, FramingError, TransferCodings},
    head::{self, Head, HeadError, Limits, Parsed, Span},
    syntax::{self, Name},
    websocket,
};

/// Why a request head is refused; the client is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head itself is malformed or too large.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// Content-Length or Transfer-Encoding cannot be read one way only.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The target's form does not fit the method: origin-form (`/path`) or absolute-form
    /// (`http(s)://authority/path`) for every method, authority-form (`host:port`) for CONNECT only
    /// and always there, `*` for OPTIONS only.
    #[error("request target form does not fit the method")]
    TargetForm,
    /// The authority of an absolute-form or authority-form target is malformed (userinfo, no host,
    /// bad port).
    #[error("authority of the request target is malformed")]
    TargetAuthority,
    /// More than one Host line (RFC 9112 §3.2: 400; HAProxy answers 400 too).
    #[error("request has more than one Host field")]
    DuplicateHost,
    /// HTTP/1.1 without Host and without an authority in the target.
    #[error("HTTP/1.1 request has no Host field")]
    MissingHost,
    /// A Host value that is not `host[:port]`.
    #[error("Host field of the request is not a valid authority")]
    InvalidHost,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3 lets a server read this as chunked and
    /// close after; it is the classic CL.TE/TE.CL smuggling shape, so sticky refuses it as HAProxy
    /// refuses the rest of this family).
    #[error("request has both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// A Transfer-Encoding other than exactly `chunked`. RFC 9112 allows other codings before a final
    /// `chunked`; no browser or common client sends them, backends disagree on them, and sticky
    /// relays bodies unchanged, so every coding but `chunked` alone is refused (HAProxy refuses a
    /// request whose final coding is not chunked; sticky refuses the rest too).
    #[error("Transfer-Encoding of the request is not exactly chunked")]
    NotChunked,
    /// Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1: the framing is faulty).
    #[error("HTTP/1.0 request has a Transfer-Encoding")]
    TransferEncodingHttp10,
    /// A WebSocket upgrade whose method is not GET.
    #[error("WebSocket upgrade request does not use GET")]
    WebSocketMethod,
    /// A WebSocket upgrade without exactly one valid Sec-WebSocket-Key (HAProxy answers 400 too).
    #[error("WebSocket upgrade request has no valid Sec-WebSocket-Key")]
    WebSocketKey,
}

impl RequestError {
    /// Whether the head exceeded a limit (431 Request Header Fields Too Large), rather than being
    /// malformed (400).
    #[must_use]
    pub fn is_over_limit(&self) -> bool {
        matches!(self, Self::Head(HeadError::TooLarge { .. } | HeadError::TooManyFields { .. }))
    }
}

/// The methods the codec treats apart (HEAD and CONNECT change the response's framing, OPTIONS allows
/// `*`, GET carries WebSocket upgrades); the others pass as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD: its response has no body.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// CONNECT: authority-form target; a 2xx answer turns the connection into a tunnel.
    Connect,
    /// OPTIONS: may target `*`.
    Options,
    /// TRACE.
    Trace,
    /// PATCH.
    Patch,
    /// Any other token (methods are case-sensitive: `get` is not GET).
    Other,
}

impl Method {
    fn classify(m: &[u8]) -> Self {
        match m {
            b"GET" => Self::Get,
            b"HEAD" => Self::Head,
            b"POST" => Self::Post,
            b"PUT" => Self::Put,
            b"DELETE" => Self::Delete,
            b"CONNECT" => Self::Connect,
            b"OPTIONS" => Self::Options,
            b"TRACE" => Self::Trace,
            b"PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }
}

/// The four request-target forms (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    #[default]
    Origin,
    /// `http://authority/path?query` (a client talking to sticky as to a forward proxy).
    Absolute,
    /// `host:port`, CONNECT only.
    Authority,
    /// `*`, OPTIONS only.
    Asterisk,
}

/// How the request body is framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body (no framing field, or `Content-Length: 0`).
    #[default]
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (relayed as is, validated by [`super::ChunkedBody`]).
    Chunked,
}

/// The upgrade a request asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Upgrade {
    /// None.
    #[default]
    None,
    /// A valid WebSocket handshake: relayed, and a tunnel once the backend's 101 checks out.
    WebSocket,
    /// Another protocol (`h2c`, ...), or any upgrade in HTTP/1.0: not relayed; the backend sees a
    /// plain request (Upgrade and Connection are hop-by-hop and dropped).
    Ignored,
}

/// A parsed request head: offsets into the buffer it was parsed from, and what they mean. Reusable:
/// [`Self::parse`] clears it first, so a pooled head allocates only while its field list grows.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    head: Head,
    method: Method,
    method_span: Span,
    target: Span,
    form: TargetForm,
    /// The authority of an absolute-form or authority-form target.
    target_authority: Option<Span>,
    /// What goes on the backend's request line: the path and query of an absolute-form target (may be
    /// empty or start with `?`), else the whole target.
    origin: Span,
    minor: u8,
    host: Option<Span>,
    framing: RequestFraming,
    content_length: ContentLength,
    connection: ConnectionOptions,
    keep_alive: bool,
    upgrade: Upgrade,
    websocket_key: Option<Span>,
    expect_continue: bool,
}

impl RequestHead {
    /// Parses the head at the start of `buf`.
    ///
    /// # Errors
    /// A malformed head (400), or one over `limits` (431, see [`RequestError::is_over_limit`]).
    pub fn parse(&mut self, buf: &[u8], limits: Limits) -> Result<Parsed, RequestError> {
        *self = Self { head: std::mem::take(&mut self.head), ..Self::default() };
        self.head.clear();
        // bytes past the limit are never looked at
        let window = buf.get(..limits.max_head).unwrap_or(buf);
        let mut slots = head::slots();
        let fields = &mut slots[..limits.max_fields.min(head::MAX_FIELDS)];
        let mut req = httparse::Request::new(&mut []);
        let len = match head::parser().parse_request_with_uninit_headers(&mut req, window, fields) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if window.len() >= limits.max_head => {
                return Err(HeadError::TooLarge { max: limits.max_head }.into());
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(e) => return Err(head::refused(window, e, limits, true).into()),
        };
        self.head.record(window, req.headers, len)?;
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HeadError::Malformed.into());
        };
        self.method_span = Span::new(head::offset(window, method.as_bytes()).ok_or(HeadError::Malformed)?);
        self.target = Span::new(head::offset(window, target.as_bytes()).ok_or(HeadError::Malformed)?);
        self.method = Method::classify(method.as_bytes());
        self.minor = minor;
        self.read_target(window)?;
        self.read_fields(window)?;
        Ok(Parsed::Complete { len })
    }

    /// Classifies the target and checks its form against the method and its bytes.
    fn read_target(&mut self, buf: &[u8]) -> Result<(), RequestError> {
        let target = self.target.of(buf);
        let start = self.target.start();
        self.origin = self.target;
        if self.method == Method::Connect {
            // authority-form: host and a port, nothing else
            let has_port = matches!(syntax::authority_port(target), Some(Some(port)) if !port.is_empty());
            if !has_port {
                return Err(RequestError::TargetForm);
            }
            self.form = TargetForm::Authority;
            self.target_authority = Some(self.target);
            return Ok(());
        }
        if target == b"*" {
            if self.method != Method::Options {
                return Err(RequestError::TargetForm);
            }
            self.form = TargetForm::Asterisk;
            return Ok(());
        }
        if target.starts_with(b"/") {
            if !syntax::is_path_and_query(target) {
                return Err(HeadError::Target.into());
            }
            return Ok(());
        }
        let scheme_end = target.windows(3).position(|w| w == b"://").ok_or(RequestError::TargetForm)?;
        let scheme = &target[..scheme_end];
        if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
            return Err(RequestError::TargetForm);
        }
        let authority_start = scheme_end + 3;
        let rest = &target[authority_start..];
        let authority_len = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
        if !syntax::is_authority(&rest[..authority_len]) {
            return Err(RequestError::TargetAuthority);
        }
        if !syntax::is_path_and_query(&rest[authority_len..]) {
            return Err(HeadError::Target.into());
        }
        let authority_at = start + authority_start;
        self.form = TargetForm::Absolute;
        self.target_authority = Some(Span::new(authority_at..authority_at + authority_len));
        self.origin = Span::new(authority_at + authority_len..self.target.end());
        Ok(())
    }

    /// One pass over the fields: framing, Host, connection options, upgrade, expectation.
    fn read_fields(&mut self, buf: &[u8]) -> Result<(), RequestError> {
        let mut codings = TransferCodings::default();
        let mut upgrade_websocket = false;
        let mut upgrade_listed = false;
        let mut keys = 0u32;
        let mut expect_continue = false;
        for f in self.head.fields() {
            let value = f.value.of(buf);
            match f.kind {
                Name::Host => {
                    if self.host.is_some() {
                        return Err(RequestError::DuplicateHost);
                    }
                    // an empty Host is what RFC 9110 §7.2 asks of a client whose target has no authority
                    if !value.is_empty() && !syntax::is_authority(value) {
                        return Err(RequestError::InvalidHost);
                    }
                    self.host = Some(f.value);
                }
                Name::ContentLength => self.content_length.add(value)?,
                Name::TransferEncoding => codings.add(value)?,
                Name::Connection => self.connection.add(value),
                Name::Upgrade => {
                    upgrade_listed = true;
                    upgrade_websocket |= syntax::list(value).any(|p| p.eq_ignore_ascii_case(b"websocket"));
                }
                Name::Expect => expect_continue |= value.eq_ignore_ascii_case(b"100-continue"),
                Name::SecWebSocketKey => {
                    keys += 1;
                    self.websocket_key = Some(f.value);
                }
                _ => {}
            }
        }
        self.framing = match (codings.is_present(), self.content_length.value()) {
            (true, _) if self.minor == 0 => return Err(RequestError::TransferEncodingHttp10),
            (true, Some(_)) => return Err(RequestError::LengthAndChunked),
            (true, None) if !codings.is_only_chunked() => return Err(RequestError::NotChunked),
            (true, None) => RequestFraming::Chunked,
            (false, Some(0) | None) => RequestFraming::None,
            (false, Some(n)) => RequestFraming::Length(n),
        };
        if self.minor == 1 && self.host.is_none() && self.target_authority.is_none() {
            return Err(RequestError::MissingHost);
        }
        self.keep_alive = !self.connection.close && (self.minor == 1 || self.connection.keep_alive);
        self.upgrade = match (self.connection.upgrade && upgrade_listed, self.minor) {
            (false, _) => Upgrade::None,
            // RFC 9110 §7.8: an Upgrade received in HTTP/1.0 is ignored
            (true, 0) => Upgrade::Ignored,
            (true, _) if !upgrade_websocket => Upgrade::Ignored,
            (true, _) => {
                if self.method != Method::Get {
                    return Err(RequestError::WebSocketMethod);
                }
                if keys != 1 || !self.websocket_key.is_some_and(|k| websocket::is_valid_key(k.of(buf))) {
                    return Err(RequestError::WebSocketKey);
                }
                Upgrade::WebSocket
            }
        };
        if self.upgrade != Upgrade::WebSocket {
            self.websocket_key = None;
        }
        // RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored
        self.expect_continue = expect_continue && self.minor == 1;
        Ok(())
    }

    /// The fields and lengths shared with responses.
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

    /// The method's class.
    #[must_use]
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method as sent.
    #[must_use]
    pub fn method_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method_span.of(buf)
    }

    /// The target as sent.
    #[must_use]
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.of(buf)
    }

    /// The target's form.
    #[must_use]
    pub fn form(&self) -> TargetForm {
        self.form
    }

    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    #[must_use]
    pub fn minor(&self) -> u8 {
        self.minor
    }

    /// The authority to route on: the target's for absolute-form and authority-form (RFC 9112 §3.2.2:
    /// it wins over Host), else Host's, if not empty.
    #[must_use]
    pub fn authority<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.target_authority.or(self.host).map(|s| s.of(buf)).filter(|a| !a.is_empty())
    }

    /// The path to route on, without the query: `/` for an absolute-form target without one, empty for
    /// `*` and authority-form.
    #[must_use]
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        if matches!(self.form, TargetForm::Asterisk | TargetForm::Authority) {
            return b"";
        }
        let origin = self.origin.of(buf);
        let path = &origin[..origin.iter().position(|&b| b == b'?').unwrap_or(origin.len())];
        if path.is_empty() { b"/" } else { path }
    }

    /// What follows the authority of the target (the whole target unless absolute-form).
    pub(super) fn origin(&self) -> Span {
        self.origin
    }

    /// The Host field's value, if there is one.
    #[must_use]
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host.map(|s| s.of(buf))
    }

    /// How the body is framed.
    #[must_use]
    pub fn framing(&self) -> RequestFraming {
        self.framing
    }

    /// The Content-Length lines as read (whether they must be forwarded as one).
    pub(super) fn content_length(&self) -> ContentLength {
        self.content_length
    }

    /// The Connection options.
    #[must_use]
    pub fn connection(&self) -> ConnectionOptions {
        self.connection
    }

    /// Whether the client keeps the connection open after this exchange (HTTP/1.1 unless `close`;
    /// HTTP/1.0 only with `keep-alive`).
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The upgrade asked for.
    #[must_use]
    pub fn upgrade(&self) -> Upgrade {
        self.upgrade
    }

    /// The `Sec-WebSocket-Key` of a WebSocket upgrade.
    #[must_use]
    pub fn websocket_key<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.websocket_key.map(|s| s.of(buf))
    }

    /// Whether the client waits for `100 Continue` before its body (HTTP/1.1 only).
    #[must_use]
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    /// The values of the Cookie fields, in order: where the engine looks for sticky's cookie with
    /// [`crate::cookie::pairs`].
    pub fn cookies<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.head.values(buf, Name::Cookie)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    const LIMITS: Limits = Limits { max_head: 8192, max_fields: 100 };

    fn parse(raw: &[u8]) -> Result<RequestHead, RequestError> {
        let mut head = RequestHead::default();
        match head.parse(raw, LIMITS)? {
            Parsed::Complete { len } => {
                assert_eq!(len, head.len(), "the length returned must be the head's");
                Ok(head)
            }
            Parsed::Incomplete => panic!("{:?} must be a complete head", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_head_is_read_into_its_facts() {
        let raw = b"POST /a/b?c=1 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 3\r\nCookie: a=1\r\nCookie: b=2\r\nExpect: 100-continue\r\n\r\nabc";
        let h = parse(raw).expect("a valid request must be accepted");
        assert_eq!((h.method(), h.method_bytes(raw), h.minor()), (Method::Post, &b"POST"[..], 1));
        assert_eq!(h.framing(), RequestFraming::Length(3));
        assert_eq!(h.authority(raw), Some(&b"example.com:8080"[..]));
        assert_eq!(h.path(raw), b"/a/b");
        assert!(h.keep_alive() && h.expect_continue());
        assert_eq!(h.cookies(raw).collect::<Vec<_>>(), vec![&b"a=1"[..], b"b=2"]);
        assert_eq!(&raw[h.len()..], b"abc");
    }

    #[test]
    fn a_partial_head_waits_and_an_oversized_one_is_431() {
        let mut h = RequestHead::default();
        assert_eq!(h.parse(b"GET / HTTP/1.1\r\nHost: a\r\n", LIMITS), Ok(Parsed::Incomplete));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(9000, b'a');
        let e = h.parse(&big, LIMITS).expect_err("a head over the limit must be refused");
        assert!(e.is_over_limit(), "{e:?}");
        let many = (0..101).fold(String::new(), |mut many, i| {
            write!(many, "X-{i}: v\r\n").expect("a String must take any text");
            many
        });
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        let e = h
            .parse(raw.as_bytes(), Limits { max_head: 1 << 20, max_fields: 100 })
            .expect_err("too many fields must be refused");
        assert_eq!(e, RequestError::Head(HeadError::TooManyFields { max: 100 }));
        assert!(e.is_over_limit());
        let exactly = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let fits = Limits { max_head: exactly.len(), max_fields: 1 };
        assert!(matches!(h.parse(exactly.as_bytes(), fits), Ok(Parsed::Complete { .. })), "a head at the limit fits");
    }

    #[test]
    fn a_reused_head_forgets_the_previous_request() {
        let mut h = RequestHead::default();
        let first = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        h.parse(first, LIMITS).expect("a WebSocket handshake must be accepted");
        assert_eq!(h.upgrade(), Upgrade::WebSocket);
        let second = b"GET / HTTP/1.0\r\n\r\n";
        h.parse(second, LIMITS).expect("an HTTP/1.0 request must be accepted");
        assert_eq!(
            (h.upgrade(), h.host(second), h.keep_alive(), h.head().fields().len()),
            (Upgrade::None, None, false, 0)
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_options() {
        let keep = |raw: &[u8]| parse(raw).expect("the request must be accepted").keep_alive();
        assert!(keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: Close\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    }

    #[test]
    fn upgrades_and_expectations_are_read_for_http_1_1_only() {
        let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let h = parse(ws).expect("a WebSocket handshake must be accepted");
        assert_eq!((h.upgrade(), h.websocket_key(ws)), (Upgrade::WebSocket, Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..])));
        let h2c = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
        assert_eq!(parse(h2c).expect("an h2c offer must be accepted").upgrade(), Upgrade::Ignored);
        let no_option = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(parse(no_option).expect("Upgrade without the option must be accepted").upgrade(), Upgrade::None);
        let expect = |raw: &[u8]| parse(raw).expect("the request must be accepted").expect_continue();
        assert!(expect(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"));
        assert!(!expect(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"));
        assert!(!expect(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\n\r\n"));
    }

    #[test]
    fn routing_uses_the_target_authority_over_host() {
        let raw = b"GET http://b.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n";
        let h = parse(raw).expect("absolute-form must be accepted");
        assert_eq!(
            (h.form(), h.authority(raw), h.path(raw)),
            (TargetForm::Absolute, Some(&b"b.example"[..]), &b"/x"[..])
        );
        let raw = b"GET http://b.example?y HTTP/1.1\r\n\r\n";
        let h = parse(raw).expect("absolute-form without Host must be accepted");
        assert_eq!(h.path(raw), b"/");
    }
}
