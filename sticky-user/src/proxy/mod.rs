//! The http data path: the reverse proxy that pins each client to a backend with its cookie, on
//! sticky's own HTTP/1 engine (issue 12).
//!
//! [`server`] accepts; [`client`] runs one connection's requests in order on one task: a head parsed
//! by the codec ([`h1`]) from a pooled buffer ([`buffers`]), routed, [`pin`]ned, then [`forward`]ed
//! over a pooled or new [`upstream`] connection ([`named`] for services sending the PROXY protocol), bodies moved by their framing ([`relay`]).
//! [`rescue`] maps every error to its status, [`respond`] writes sticky's own answers. [`io`] is the
//! client side's I/O, a plain socket or a TLS stream (issue 19); [`server`] runs the TLS handshake. [`handoff`]
//! hands `--splice` connections, and [`client`] upgraded ones, to [`crate::splice`]. [`h2`] serves HTTP/2
//! clients (ALPN `h2`, or the preface with `--h2c`) with the same [`pin`] rules; [`wave`] keeps a
//! connection's cookie-less first requests on one backend (both paths).

pub mod buffers;
pub mod client;
pub mod conn;
pub mod forward;
pub mod h1;
pub mod h2;
pub mod handoff;
pub mod idle;
pub mod io;
pub mod named;
pub mod pin;
pub mod relay;
pub mod rescue;
pub mod respond;
pub mod server;
pub mod upstream;
pub mod wave;

pub use self::{
    conn::{Proxy, Settings},
    server::serve,
};
