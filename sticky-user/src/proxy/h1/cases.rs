//! The codec's conformance table: raw bytes in, the expected outcome out, for requests (refused with
//! which error, or accepted with which framing and exactly which head the backend receives) and for
//! responses (refused, or relayed as which kind and framing with exactly which head the client
//! receives). Every smuggling shape known to the authors is a row; issue 13's cases are marked.
//! Errors are matched on their `Debug` text, so a row names the variant (`Head(BareLf)`).

use super::*;

/// A client at a documentation address, plain HTTP, earlier hops kept, sticky's cookie `sticky`.
const CLIENT: &str = "192.0.2.7";
const LIMITS: Limits = Limits { max_head: 4096, max_fields: 32 };
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The forwarding fields sticky appends for the client, with X-Forwarded-Host/`host=` when there is a
/// host, then the blank line.
macro_rules! fwd {
    () => {
        "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nForwarded: for=192.0.2.7;proto=http\r\n\r\n"
    };
    ($host:literal) => {
        concat!(
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ",
            $host,
            "\r\nForwarded: for=192.0.2.7;host=\"",
            $host,
            "\";proto=http\r\n\r\n"
        )
    };
}

/// What a request row expects.
enum Req {
    /// Refused with the error whose `Debug` text starts so.
    Refused(&'static str),
    /// Accepted with this framing; the backend receives exactly this head.
    Sent(RequestFraming, &'static str),
}

use Req::{Refused, Sent};
use RequestFraming::{Chunked, Length};

const NONE: RequestFraming = RequestFraming::None;

/// (name, client bytes, expectation)
#[rustfmt::skip]
const REQUESTS: &[(&str, &[u8], Req)] = &[
    // --- accepted: what passes, and what the backend gets ---
    ("plain GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("query kept byte for byte", b"GET /p?q=1&r=%20&s=`x` HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET /p?q=1&r=%20&s=`x` HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("Content-Length body", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        Sent(Length(5), concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n", fwd!("a")))),
    ("chunked body", b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        Sent(Chunked, concat!("POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n", fwd!("a")))),
    ("chunked in any case", b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n",
        Sent(Chunked, concat!("POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n", fwd!("a")))),
    ("TE.TE `chunked ` (trailing space is OWS)", b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n\r\n",
        Sent(Chunked, concat!("POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n", fwd!("a")))),
    ("TE.TE tab before the value (OWS)", b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n",
        Sent(Chunked, concat!("POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n", fwd!("a")))),
    ("CL list of one value is one line", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        Sent(Length(5), concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n", fwd!("a")))),
    ("identical CL lines are one line where the first was", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\ncontent-length: 5\r\n\r\n",
        Sent(Length(5), concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\n", fwd!("a")))),
    ("CL zero is no body", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        Sent(NONE, concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n", fwd!("a")))),
    ("CL with leading zeros", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
        Sent(Length(7), concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n", fwd!("a")))),
    ("CL without a space after the colon", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length:5\r\n\r\n",
        Sent(Length(5), concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length:5\r\n", fwd!("a")))),
    ("largest CL (i64::MAX)", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
        Sent(Length(9_223_372_036_854_775_807), concat!("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n", fwd!("a")))),
    ("absolute-form: the target's authority replaces Host (issue 13 #5)", b"GET http://b.example/x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        Sent(NONE, concat!("GET /x?y=1 HTTP/1.1\r\nHost: b.example\r\nAccept: */*\r\n", fwd!("b.example")))),
    ("absolute-form https, port, query, no path", b"GET https://b.example:8443?q HTTP/1.1\r\nHost: b.example:8443\r\n\r\n",
        Sent(NONE, concat!("GET /?q HTTP/1.1\r\nHost: b.example:8443\r\n", fwd!("b.example:8443")))),
    ("absolute-form without Host gets the authority, not the backend's address", b"GET http://b.example/ HTTP/1.1\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: b.example\r\n", fwd!("b.example")))),
    ("absolute-form scheme in capitals", b"GET HTTP://b.example/ HTTP/1.1\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: b.example\r\n", fwd!("b.example")))),
    ("OPTIONS to an absolute URI without path is OPTIONS *", b"OPTIONS http://b.example:8001 HTTP/1.1\r\n\r\n",
        Sent(NONE, concat!("OPTIONS * HTTP/1.1\r\nHost: b.example:8001\r\n", fwd!("b.example:8001")))),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("OPTIONS * HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("HTTP/1.0 without Host: none invented, stays HTTP/1.0 (issue 13 #6)", b"GET / HTTP/1.0\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.0\r\n", fwd!()))),
    ("HTTP/1.0 keep-alive: Connection is hop-by-hop", b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("Connection: close dropped", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("a field named in Connection is dropped", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nX-Kept: 2\r\n", fwd!("a")))),
    ("Connection cannot remove Host (issue 13 #6)", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("Connection cannot remove Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\n",
        Sent(Length(3), concat!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n", fwd!("a")))),
    ("hop-by-hop fields dropped", b"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic eDp5\r\nUpgrade: foo\r\nAccept: */*\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n", fwd!("a")))),
    ("h2c is not an upgrade sticky relays", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("WebSocket handshake relayed", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        Sent(NONE, concat!("GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nForwarded: for=192.0.2.7;host=\"a\";proto=http\r\n",
            "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))),
    ("WebSocket among other offers: only websocket is offered on", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        Sent(NONE, concat!("GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nForwarded: for=192.0.2.7;host=\"a\";proto=http\r\n",
            "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))),
    ("an upgrade in HTTP/1.0 is ignored", b"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        Sent(NONE, concat!("GET /ws HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("sticky's cookie stripped, the rest kept", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: sticky=abc; a=1\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\n", fwd!("a")))),
    ("a Cookie line with only sticky's cookie is dropped", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: sticky=abc\r\nAccept: */*\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n", fwd!("a")))),
    ("sticky's cookie in the second Cookie line, joins fixed", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2;sticky=x;c=3\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2; c=3\r\n", fwd!("a")))),
    ("other cookies copied as sent", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1;b=2\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1;b=2\r\n", fwd!("a")))),
    ("look-alike cookie names are not sticky's", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: stickyx=1; Sticky=2\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nCookie: stickyx=1; Sticky=2\r\n", fwd!("a")))),
    ("X-Forwarded-For appended", b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
        Sent(NONE, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nForwarded: for=192.0.2.7;host=\"a\";proto=http\r\n\r\n")),
    ("every X-Forwarded-For line joined in order (issue 13 #1)", b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nAccept: */*\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n\r\n",
        Sent(NONE, "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nForwarded: for=192.0.2.7;host=\"a\";proto=http\r\n\r\n")),
    ("an empty X-Forwarded-For line adds nothing", b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
        Sent(NONE, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 2.2.2.2, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nForwarded: for=192.0.2.7;host=\"a\";proto=http\r\n\r\n")),
    ("client X-Forwarded-Proto and -Host are replaced", b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("Forwarded kept, sticky's element appended", b"GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=198.51.100.1\r\nAccept: */*\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=198.51.100.1\r\nAccept: */*\r\n", fwd!("a")))),
    ("Expect: 100-continue passes", b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        Sent(Length(5), concat!("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n", fwd!("a")))),
    ("empty lines before the request line are skipped", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("HTAB and obs-text inside a value", b"GET / HTTP/1.1\r\nHost: a\r\nX-T: a\tb caf\xc3\xa9\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nX-T: a\tb caf\u{e9}\r\n", fwd!("a")))),
    ("an empty value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n", fwd!("a")))),
    ("every tchar in a name", b"GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~0aZ: v\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~0aZ: v\r\n", fwd!("a")))),
    ("trailing whitespace of a kept line copied", b"GET / HTTP/1.1\r\nHost: a\r\nX: v \t\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\nX: v \t\r\n", fwd!("a")))),
    ("IPv6 literal Host", b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n", fwd!("[2001:db8::1]:8080")))),
    ("empty Host (a target without authority)", b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost:\r\n", fwd!()))),
    ("JSON in the path (accepted before, by the http crate)", b"GET /{\"a\":1} HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET /{\"a\":1} HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("backslash in the path", b"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET /a\\b HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("UTF-8 in the path", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("a lowercase method is another method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("get / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("an extension method", b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("PURGE /x HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("HEAD", b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("HEAD / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("CONNECT in authority-form", b"CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n",
        Sent(NONE, concat!("CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n", fwd!("b.example:443")))),
    ("Connection: close, upgrade without Upgrade", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, upgrade\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("Transfer_Encoding look-alike dropped, CL frames", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        Sent(Length(3), concat!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n", fwd!("a")))),
    ("X-Forwarded_For look-alike dropped", b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded_For: 6.6.6.6\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("a pipelined request after the head is not part of it", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a\r\n", fwd!("a")))),
    ("Host with a trailing dot", b"GET / HTTP/1.1\r\nHost: a.example.\r\n\r\n",
        Sent(NONE, concat!("GET / HTTP/1.1\r\nHost: a.example.\r\n", fwd!("a.example.")))),
    ("Expect in HTTP/1.0 passes (and is ignored)", b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        Sent(Length(1), concat!("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n", fwd!()))),

    // --- CL.TE, TE.CL, TE.TE ---
    ("CL.TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", Refused("LengthAndChunked")),
    ("TE.CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", Refused("LengthAndChunked")),
    ("CL.TE with CL 0", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", Refused("LengthAndChunked")),
    ("TE.TE xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Refused("NotChunked")),
    ("TE.TE chunked, identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", Refused("NotChunked")),
    ("TE.TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", Refused("NotChunked")),
    ("TE gzip, chunked (valid RFC, refused by choice)", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Refused("NotChunked")),
    ("TE.TE second line with another coding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", Refused("NotChunked")),
    ("TE.TE duplicated chunked lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Refused("Framing(ChunkedTwice)")),
    ("TE.TE chunked, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Refused("Framing(ChunkedTwice)")),
    ("TE.TE chunked with a parameter", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", Refused("Framing(TransferCoding)")),
    ("TE.TE empty value", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", Refused("Framing(TransferCoding)")),
    ("TE.TE trailing comma", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", Refused("Framing(TransferCoding)")),
    ("TE.TE leading comma", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n", Refused("Framing(TransferCoding)")),
    ("TE.TE quoted chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", Refused("Framing(TransferCoding)")),
    ("TE.TE space before the colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", Refused("Head(WhitespaceBeforeColon)")),
    ("TE.TE tab before the colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", Refused("Head(WhitespaceBeforeColon)")),
    ("TE.TE obs-fold value", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", Refused("Head(ObsFold)")),
    ("TE.TE value after a vertical tab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", Refused("Head(FieldValue)")),
    ("TE.TE name with a NUL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\0: chunked\r\n\r\n", Refused("Head(Nul)")),
    ("TE.TE value with a NUL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\0\r\n\r\n", Refused("Head(Nul)")),
    ("TE.TE bare LF before the line", b"POST / HTTP/1.1\r\nHost: a\nTransfer-Encoding: chunked\r\n\r\n", Refused("Head(BareLf)")),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Refused("TransferEncodingHttp10")),
    ("TE and CL in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Refused("TransferEncodingHttp10")),

    // --- Content-Length values ---
    ("CL +5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL -1", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL 0x5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL 5 5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL 1e3", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL 5.0", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL trailing comma", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL quoted", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \"5\"\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL list of different values", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", Refused("Framing(ContentLengthMismatch)")),
    ("CL lines with different values", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Refused("Framing(ContentLengthMismatch)")),
    ("CL 0 then 5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", Refused("Framing(ContentLengthMismatch)")),
    ("CL over i64::MAX", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", Refused("Framing(ContentLengthTooLarge)")),
    ("CL over u64::MAX", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", Refused("Framing(ContentLength)")),
    ("CL space before the colon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", Refused("Head(WhitespaceBeforeColon)")),
    ("CL obs-fold", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n 6\r\n\r\n", Refused("Head(ObsFold)")),

    // --- line endings, NUL, control bytes ---
    ("bare LF after the request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", Refused("Head(BareLf)")),
    ("bare LF after a field", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", Refused("Head(BareLf)")),
    ("bare LF as the blank line", b"GET / HTTP/1.1\r\nHost: a\r\n\n", Refused("Head(BareLf)")),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: a\n\n", Refused("Head(BareLf)")),
    ("bare LF before the request line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(BareLf)")),
    ("bare CR inside a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", Refused("Head(BareCr)")),
    ("CR CR LF", b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", Refused("Head(BareCr)")),
    ("bare CR ending the request line", b"GET / HTTP/1.1\rHost: a\r\n\r\n", Refused("Head(BareCr)")),
    ("bare CR as the blank line", b"GET / HTTP/1.1\r\nHost: a\r\n\rX", Refused("Head(BareCr)")),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", Refused("Head(Nul)")),
    ("NUL in the target", b"GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Nul)")),
    ("control byte in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", Refused("Head(FieldValue)")),
    ("DEL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", Refused("Head(FieldValue)")),
    ("ESC in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", Refused("Head(FieldValue)")),

    // --- field names and folding ---
    ("obs-fold with a space", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", Refused("Head(ObsFold)")),
    ("obs-fold with a tab", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", Refused("Head(ObsFold)")),
    ("whitespace before the first field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", Refused("Head(ObsFold)")),
    ("space inside a name", b"GET / HTTP/1.1\r\nHost: a\r\nX Y: v\r\n\r\n", Refused("Head(FieldName)")),
    ("empty name", b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", Refused("Head(FieldName)")),
    ("separator in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", Refused("Head(FieldName)")),
    ("non-ASCII name", b"GET / HTTP/1.1\r\nHost: a\r\nH\xc3\xb6st: a\r\n\r\n", Refused("Head(FieldName)")),
    ("line without a colon", b"GET / HTTP/1.1\r\nHost: a\r\nJust-A-Name\r\n\r\n", Refused("Head(FieldName)")),
    ("Host with space before the colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Refused("Head(WhitespaceBeforeColon)")),

    // --- request line ---
    ("two spaces after the method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(StartLine)")),
    ("space after the version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Refused("Head(StartLine)")),
    ("HTTP/0.9 (no version)", b"GET /\r\n\r\n", Refused("Head(StartLine)")),
    ("tab as a separator", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Method)")),
    ("no method", b"/ HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Method)")),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Refused("Head(Version)")),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Refused("Head(Version)")),
    ("lowercase http", b"GET / http/1.1\r\nHost: a\r\n\r\n", Refused("Head(Version)")),
    ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", Refused("Head(Version)")),
    ("method with a separator", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Method)")),
    ("fragment in the target", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Target)")),
    ("angle brackets in the target", b"GET /<x> HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Target)")),
    ("a quote in the query", b"GET /?q=\"x\" HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Target)")),
    ("DEL in the target", b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Target)")),
    ("invalid UTF-8 in the target", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", Refused("Head(Target)")),
    ("fragment in an absolute target", b"GET http://b.example/x#y HTTP/1.1\r\n\r\n", Refused("Head(Target)")),
    ("target without a slash", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("* with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("authority-form with GET", b"GET b.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("CONNECT to a path", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("CONNECT without a port", b"CONNECT b.example HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("CONNECT with an empty port", b"CONNECT b.example: HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("another scheme", b"GET ftp://b.example/ HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetForm")),
    ("userinfo in the target", b"GET http://user:pw@b.example/ HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetAuthority")),
    ("empty authority", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", Refused("TargetAuthority")),
    ("port with letters in the target", b"GET http://b.example:8o/ HTTP/1.1\r\n\r\n", Refused("TargetAuthority")),

    // --- Host ---
    ("two Host lines (issue 13 #4)", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Refused("DuplicateHost")),
    ("two identical Host lines", b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", Refused("DuplicateHost")),
    ("Host and an absolute target with another Host", b"GET http://b.example/ HTTP/1.1\r\nHost: a\r\nHost: c\r\n\r\n", Refused("DuplicateHost")),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", Refused("MissingHost")),
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Refused("InvalidHost")),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Refused("InvalidHost")),
    ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", Refused("InvalidHost")),
    ("Host with an open bracket", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Refused("InvalidHost")),
    ("Host with a path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Refused("InvalidHost")),
    ("Host with a quote", b"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", Refused("InvalidHost")),

    // --- WebSocket handshakes ---
    ("WebSocket without a key", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", Refused("WebSocketKey")),
    ("WebSocket with a short key", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc\r\n\r\n", Refused("WebSocketKey")),
    ("WebSocket with two keys", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", Refused("WebSocketKey")),
    ("WebSocket with POST", b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", Refused("WebSocketMethod")),
];

/// What a response row expects.
enum Resp {
    /// Refused with the error whose `Debug` text starts so.
    Refused(&'static str),
    /// Relayed as this kind and framing, upstream reusable or not; the client receives exactly this
    /// head (empty: nothing is sent).
    Relayed(ResponseKind, ResponseFraming, bool, &'static str),
}

/// How the response rows' requests and clients differ.
#[derive(Clone, Copy)]
enum Ctx {
    /// GET from an HTTP/1.1 client keeping the connection.
    Get,
    /// HEAD.
    Head,
    /// CONNECT.
    Connect,
    /// A WebSocket handshake with the RFC 6455 example key.
    WebSocket,
    /// GET from an HTTP/1.0 client asking for keep-alive.
    Http10,
    /// GET from a client that closes after this exchange.
    Closing,
    /// GET for a new pin: sticky appends its Set-Cookie.
    NewPin,
}

/// sticky's Set-Cookie in `Ctx::NewPin` rows.
const SET_COOKIE: &str = "sticky=NEW; Path=/; HttpOnly";

use Resp::Relayed;
use ResponseFraming::{Chunked as RChunked, Length as RLength, UntilClose};
use ResponseKind::{Final, Interim, Tunnel};

const RNONE: ResponseFraming = ResponseFraming::None;

/// (name, context, backend bytes, expectation)
#[rustfmt::skip]
const RESPONSES: &[(&str, Ctx, &[u8], Resp)] = &[
    ("Content-Length body", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        Relayed(Final, RLength(5), true, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")),
    ("chunked body", Ctx::Get, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Relayed(Final, RChunked, true, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")),
    ("no framing: until close, client closed after", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        Relayed(Final, UntilClose, false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")),
    ("CL and TE: chunked wins, CL dropped, upstream closed (issue 13 #9)", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        Relayed(Final, RChunked, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")),
    ("chunked not last: until close", Ctx::Get, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        Relayed(Final, UntilClose, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\n")),
    ("gzip then chunked", Ctx::Get, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        Relayed(Final, RChunked, true, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")),
    ("CL list of one value is one line", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nX: y\r\n\r\n",
        Relayed(Final, RLength(5), true, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\n")),
    ("CL zero", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")),
    ("HEAD: no body whatever the length", Ctx::Head, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")),
    ("204", Ctx::Get, b"HTTP/1.1 204 No Content\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 204 No Content\r\n\r\n")),
    ("304 with a length", Ctx::Get, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n")),
    ("100 Continue is interim", Ctx::Get, b"HTTP/1.1 100 Continue\r\n\r\n",
        Relayed(Interim, RNONE, true, "HTTP/1.1 100 Continue\r\n\r\n")),
    ("103 Early Hints is interim", Ctx::Get, b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        Relayed(Interim, RNONE, true, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")),
    ("101 for the WebSocket asked for: a tunnel", Ctx::WebSocket, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        Relayed(Tunnel, RNONE, false, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: Upgrade\r\n\r\n")),
    ("a refused WebSocket stays HTTP", Ctx::WebSocket, b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")),
    ("2xx to CONNECT: a tunnel", Ctx::Connect, b"HTTP/1.1 200 Connection Established\r\n\r\n",
        Relayed(Tunnel, RNONE, false, "HTTP/1.1 200 Connection Established\r\n\r\n")),
    ("HTTP/1.0 backend: not reused", Ctx::Get, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
        Relayed(Final, RLength(2), false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")),
    ("HTTP/1.0 backend with keep-alive: reused", Ctx::Get, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
        Relayed(Final, RLength(2), true, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")),
    ("Connection: close from the backend: not reused", Ctx::Get, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
        Relayed(Final, RLength(2), false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")),
    ("sticky's cookie from the backend dropped (issue 13 #7)", Ctx::Get, b"HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nSet-Cookie: sticky=forged; Path=/\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nContent-Length: 0\r\n\r\n")),
    ("sticky's Set-Cookie appended for a new pin", Ctx::NewPin, b"HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nContent-Length: 0\r\nSet-Cookie: sticky=NEW; Path=/; HttpOnly\r\n\r\n")),
    ("hop-by-hop fields dropped", Ctx::Get, b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200 OK\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n")),
    ("no reason phrase", Ctx::Get, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")),
    ("obs-text in the reason", Ctx::Get, b"HTTP/1.1 200 D\xc3\xa9j\xc3\xa0\r\nContent-Length: 0\r\n\r\n",
        Relayed(Final, RNONE, true, "HTTP/1.1 200 D\u{e9}j\u{e0}\r\nContent-Length: 0\r\n\r\n")),
    ("Transfer_Encoding look-alike dropped", Ctx::Get, b"HTTP/1.1 200 OK\r\nTransfer_Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        Relayed(Final, RLength(1), true, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")),
    ("HTTP/1.0 client: chunked sent as data, then close", Ctx::Http10, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Relayed(Final, RChunked, true, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")),
    ("HTTP/1.0 client gets no 100 Continue", Ctx::Http10, b"HTTP/1.1 100 Continue\r\n\r\n",
        Relayed(Interim, RNONE, true, "")),
    ("HTTP/1.0 client keeping the connection", Ctx::Http10, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
        Relayed(Final, RLength(2), true, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n")),
    ("a closing client is told so", Ctx::Closing, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
        Relayed(Final, RLength(2), true, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")),

    ("101 nobody asked for", Ctx::Get, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", Resp::Refused("UnexpectedSwitch")),
    ("101 with a wrong accept (issue 13 #11)", Ctx::WebSocket, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: xxxxLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", Resp::Refused("WebSocketAccept")),
    ("101 without an accept", Ctx::WebSocket, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", Resp::Refused("WebSocketAccept")),
    ("101 with two accepts", Ctx::WebSocket, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", Resp::Refused("WebSocketAccept")),
    ("101 to another protocol", Ctx::WebSocket, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", Resp::Refused("WebSocketUpgrade")),
    ("101 without Connection: upgrade", Ctx::WebSocket, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", Resp::Refused("WebSocketUpgrade")),
    ("101 in HTTP/1.0", Ctx::WebSocket, b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", Resp::Refused("WebSocketUpgrade")),
    ("TE in an HTTP/1.0 response", Ctx::Get, b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Resp::Refused("TransferEncodingHttp10")),
    ("duplicated chunked", Ctx::Get, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Resp::Refused("Framing(ChunkedTwice)")),
    ("empty Transfer-Encoding", Ctx::Get, b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", Resp::Refused("Framing(TransferCoding)")),
    ("different lengths", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 28\r\n\r\n", Resp::Refused("Framing(ContentLengthMismatch)")),
    ("length +5", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", Resp::Refused("Framing(ContentLength)")),
    ("malformed length on a HEAD response", Ctx::Head, b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n", Resp::Refused("Framing(ContentLength)")),
    ("length over i64::MAX", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", Resp::Refused("Framing(ContentLengthTooLarge)")),
    ("obs-fold", Ctx::Get, b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", Resp::Refused("Head(ObsFold)")),
    ("space before a colon", Ctx::Get, b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", Resp::Refused("Head(WhitespaceBeforeColon)")),
    ("bare LF", Ctx::Get, b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", Resp::Refused("Head(BareLf)")),
    ("bare CR", Ctx::Get, b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", Resp::Refused("Head(BareCr)")),
    ("NUL in a value", Ctx::Get, b"HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n", Resp::Refused("Head(Nul)")),
    ("status below 100", Ctx::Get, b"HTTP/1.1 099 Odd\r\n\r\n", Resp::Refused("Head(Status)")),
    ("four-digit status", Ctx::Get, b"HTTP/1.1 2000 OK\r\n\r\n", Resp::Refused("Head(Status)")),
    ("status with letters", Ctx::Get, b"HTTP/1.1 2x0 OK\r\n\r\n", Resp::Refused("Head(Status)")),
    ("HTTP/1.2", Ctx::Get, b"HTTP/1.2 200 OK\r\n\r\n", Resp::Refused("Head(Version)")),
    ("not HTTP at all", Ctx::Get, b"SSH-2.0-OpenSSH_9.2\r\n\r\n", Resp::Refused("Head(Version)")),
];

fn run_request(raw: &[u8]) -> Result<(RequestFraming, Vec<u8>), RequestError> {
    let client = ClientAddr::new(CLIENT.parse().expect("the client address must parse"));
    let rw = RequestRewrite { client: &client, proto: Proto::Http, prior: PriorHops::Keep, cookie: Some(b"sticky") };
    let mut head = RequestHead::default();
    match head.parse(raw, LIMITS)? {
        Parsed::Complete { .. } => {}
        Parsed::Incomplete => panic!("{:?} must be a complete head", String::from_utf8_lossy(raw)),
    }
    let mut out = Vec::new();
    write_request(&head, raw, &rw, &mut out);
    Ok((head.framing(), out))
}

#[test]
fn every_request_row_gets_its_outcome() {
    let mut failures = Vec::new();
    for (name, raw, want) in REQUESTS {
        let got = run_request(raw);
        let ok = match (want, &got) {
            (Refused(prefix), Err(e)) => format!("{e:?}").starts_with(prefix),
            (Sent(framing, head), Ok((f, out))) => {
                // what the backend receives must itself be a valid request with the same framing
                let again = run_request(out).map(|(f, _)| f);
                f == framing && out == head.as_bytes() && again == Ok(*framing)
            }
            _ => false,
        };
        if !ok {
            let got = got.map(|(f, out)| (f, String::from_utf8_lossy(&out).into_owned()));
            failures.push(format!("{name}: got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} request rows failed:\n{}",
        failures.len(),
        REQUESTS.len(),
        failures.join("\n")
    );
}

fn run_response(ctx: Ctx, raw: &[u8]) -> Result<(ResponseKind, ResponseFraming, bool, Vec<u8>), ResponseError> {
    let exchange = match ctx {
        Ctx::Head => Exchange::new(Method::Head, None),
        Ctx::Connect => Exchange::new(Method::Connect, None),
        Ctx::WebSocket => Exchange::new(Method::Get, Some(KEY.as_bytes())),
        Ctx::Get | Ctx::Http10 | Ctx::Closing | Ctx::NewPin => Exchange::new(Method::Get, None),
    };
    let rw = ResponseRewrite {
        cookie: Some(b"sticky"),
        set_cookie: matches!(ctx, Ctx::NewPin).then_some(SET_COOKIE.as_bytes()),
        client_minor: u8::from(!matches!(ctx, Ctx::Http10)),
        keep_alive: !matches!(ctx, Ctx::Closing),
        extra: b"",
    };
    let mut head = ResponseHead::default();
    match head.parse(raw, LIMITS, &exchange)? {
        Parsed::Complete { .. } => {}
        Parsed::Incomplete => panic!("{:?} must be a complete head", String::from_utf8_lossy(raw)),
    }
    let mut out = Vec::new();
    write_response(&head, raw, &rw, &mut out).expect("the rows' Set-Cookie must be writable");
    Ok((head.kind(), head.framing(), head.reusable(), out))
}

#[test]
fn every_response_row_gets_its_outcome() {
    let mut failures = Vec::new();
    for (name, ctx, raw, want) in RESPONSES {
        let got = run_response(*ctx, raw);
        let ok = match (want, &got) {
            (Resp::Refused(prefix), Err(e)) => format!("{e:?}").starts_with(prefix),
            (Relayed(kind, framing, reusable, head), Ok((k, f, r, out))) => {
                k == kind && f == framing && r == reusable && out == head.as_bytes()
            }
            _ => false,
        };
        if !ok {
            let got = got.map(|(k, f, r, out)| (k, f, r, String::from_utf8_lossy(&out).into_owned()));
            failures.push(format!("{name}: got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} response rows failed:\n{}",
        failures.len(),
        RESPONSES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_websocket_rows_use_the_rfc_example() {
    assert_eq!(&websocket::accept(KEY.as_bytes()), ACCEPT.as_bytes(), "the table's accept must be its key's");
}
