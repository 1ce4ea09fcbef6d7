//! The limits every HTTP/2 connection gets, chosen as current peers do (nginx, HAProxy, Envoy); the
//! configurable ones (`--h2`, `--h2c`, `--h2-max-streams`, the `[http2]` table) are
//! [`crate::config::Http2`].

/// The HPACK dynamic table sticky keeps for a client's headers, bytes (RFC 9113's default, nginx's and
/// HAProxy's too): a larger one is memory per connection a client chooses to fill.
pub const HEADER_TABLE_SIZE: u32 = 4096;

/// A stream's receive window, bytes: how much of one request body a client may send ahead of the
/// backend (nginx's 64 KiB would slow uploads on long paths; 256 KiB per stream, bounded per
/// connection by [`CONNECTION_WINDOW`]).
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// A connection's receive window, bytes: the most request-body bytes one connection holds in sticky
/// before the backends take them.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Largest frame sticky accepts (RFC 9113's minimum and default).
pub const MAX_FRAME_SIZE: u32 = 16 * 1024;

/// Response bytes buffered per stream towards a slow client (h2's send buffer).
pub const MAX_SEND_BUFFER: usize = 256 * 1024;

/// Streams a client may reset before sticky accepted them, at once (h2's rapid-reset guard,
/// CVE-2023-44487): more is answered with GOAWAY `ENHANCE_YOUR_CALM`.
pub const MAX_PENDING_RESETS: usize = 20;

/// Streams sticky may reset because the client got them wrong, per connection (h2's guard against
/// making the server reset, CVE-2025-8671): more is answered with GOAWAY `ENHANCE_YOUR_CALM`.
pub const MAX_ERROR_RESETS: usize = 100;

/// Streams a client may cancel after sticky accepted them (its `RST_STREAM` before the answer) beyond
/// the requests it lets finish: more closes the connection with a GOAWAY. The accepted-stream half of
/// rapid reset, counted as HAProxy's "glitches" and nginx's per-connection limits do: a browser
/// cancels a few streams when a page changes, an attack thousands a second.
pub const MAX_CANCELLED_STREAMS: u32 = 200;
