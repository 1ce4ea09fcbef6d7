//! HTTP/2 at the edge (issue 15): the front end for clients that negotiate `h2` by ALPN on the TLS
//! listener or send the HTTP/2 preface on a plain listener with `--h2c` ([`front`]), each stream
//! routed, pinned and answered like an HTTP/1 request ([`exchange`]), sent to the tasks as HTTP/1.1,
//! or as h2c for services that ask for it, over per-worker pools ([`pool`]).
//!
//! This path runs on hyper's http2 server and client (over the `h2` crate), not on sticky's own
//! HTTP/1 engine: HTTP/2's framing, HPACK and flow control are h2's, with its fixes for rapid reset
//! and CONTINUATION floods; the engine's rules are shared through their functions (the cookie:
//! [`super::pin`] and [`super::wave`]; the forwarding fields: [`super::h1::forwarded`]; the errors:
//! [`super::rescue`]). [`headers`] rewrites the fields, [`grpc`] answers gRPC clients in their terms.

pub mod exchange;
pub mod front;
pub mod grpc;
pub mod headers;
pub mod pool;
pub mod settings;
