//! The HTTP/1 codec of the L7 engine (issue 12): pure functions and types over byte buffers, no
//! tokio, no sockets, no hyper. The engine moves bytes and calls these; every decision about what
//! a message means, whether it is safe to forward, and what the other side receives is made here.
//!
//! ```text
//!  client bytes ─▶ RequestHead::parse ─▶ write_request ─▶ backend     (Body::request relays the body)
//!  client  ◀─ write_response ◀─ ResponseHead::parse(Exchange) ◀─ backend bytes  (Body::response)
//! ```
//!
//! Shapes, and why (read against Pingora's `protocols/http/v1`, Sozu's `kawa` and HAProxy's `h1.c`):
//! - **Heads are offsets, not borrows or copies** ([`Span`]): the engine keeps its pooled buffer and
//!   re-borrows; no `String` or `HeaderMap` per request. Pingora copies heads into `http` types (an
//!   allocation per field); kawa keeps blocks over the buffer, which is the model here.
//! - **A head is reusable** ([`RequestHead::parse`] clears and refills it): a connection's field list
//!   allocates only while it grows. httparse gets uninitialised stack slots, so a head of 10 fields
//!   pays for 10.
//! - **httparse, held to RFC 9112 where it is lenient**: it accepts bare LF line endings (checked in
//!   [`head`] per line), non-RFC target bytes (checked against the `http` crate's sets, `#` refused),
//!   any byte in chunk extensions (hence our own [`ChunkedBody`]), a `+` in Content-Length through
//!   `str::parse` as Pingora uses it (hence [`syntax::decimal`]). Its leniency switches are all set
//!   off explicitly.
//! - **Rewrites copy, then write the changes** ([`write_request`], [`write_response`]): kept lines are
//!   copied in runs, as kawa's blocks and HAProxy's in-place edits avoid re-serialising a head.
//! - **Bodies are relayed as framed** ([`Body`]): never re-chunked, never buffered whole; a chunked
//!   body is validated byte by byte in constant memory, a length counted down.
//! - **Errors say who is at fault**: the engine maps each to a status and a side in its one table
//!   (`proxy/rescue.rs`):
//!
//! | error | status | fault | connection |
//! |---|---|---|---|
//! | [`RequestError`] with [`RequestError::is_over_limit`] | 431 | client | close |
//! | any other [`RequestError`] | 400 | client | close |
//! | [`BodyError`] on a request body | 400 (if no response started) | client (issue 13 item 10) | close both |
//! | [`ResponseError`] | 502 | backend | close the upstream |
//! | [`BodyError`] on a response body | none (head sent) | backend | close both |
//! | [`RewriteError`] | 500 | sticky (configuration) | close |
//!
//! Choices the RFCs leave open: identical Content-Length repeats are one length, forwarded as one line
//! (HAProxy); a request's Transfer-Encoding must be exactly `chunked` ([`RequestError::NotChunked`]);
//! a request with both framing fields is refused, a response with both is read as chunked and its
//! upstream connection closed ([`response`]); only WebSocket upgrades are relayed ([`Upgrade`]); a
//! `Connection` option cannot remove Host, Content-Length or Transfer-Encoding
//! ([`syntax::Name::is_protected`]); names that read as those or as `X-Forwarded-*` with `_` for `-`
//! are dropped ([`syntax::Name::Lookalike`]); an HTTP/1.0 request without any authority is forwarded
//! as HTTP/1.0 rather than given an invented Host ([`rewrite_request::forwarded_minor`]); an HTTP/1.0
//! client gets a chunked body as its data, then the connection's end ([`Relay::dechunk`]).

pub mod body;
pub mod chunked;
pub mod cookies;
pub mod forwarded;
pub mod framing;
pub mod head;
pub mod request;
pub mod response;
pub mod rewrite_request;
pub mod rewrite_response;
pub mod syntax;
pub mod websocket;
mod write;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod cases;
#[cfg(test)]
mod roundtrip;

pub use body::{Body, BodyError};
pub use chunked::{ChunkedBody, ChunkedError, Progress};
pub use forwarded::{ClientAddr, PriorHops, Proto};
pub use framing::FramingError;
pub use head::{Field, Head, HeadError, Limits, Parsed, Span};
pub use request::{Method, RequestError, RequestFraming, RequestHead, TargetForm, Upgrade};
pub use response::{Exchange, ResponseError, ResponseFraming, ResponseHead, ResponseKind};
pub use rewrite_request::{RequestRewrite, write_request};
pub use rewrite_response::{Relay, ResponseRewrite, RewriteError, write_response};
