//! One blocking HTTP/1.1 client for every test and the bench, and the framing that test servers read
//! requests with.
//!
//! - [`client`]: a connection (optionally from a chosen source address, with timeouts) that sends a
//!   request or raw bytes and reads responses, kept alive; one-shot `get`/`request`/`raw`.
//! - [`message`]: a [`Response`] (status, headers, body) and a received [`Request`], with the questions
//!   tests ask of them (a header, a cookie, which whoami backend answered).
//! - [`wire`]: heads parsed with httparse, bodies by Content-Length, chunked coding or connection
//!   close, every read bounded; requests written with Content-Length or in two chunks.
//!
//! Blocking on purpose: callers run it on the thread that entered a namespace (setns is per thread),
//! and a hung peer ends in a timeout, not a stuck runtime.

pub mod client;
pub mod message;
pub mod wire;

pub use client::{Client, Connect, HttpError, get, raw, request};
pub use message::{Request, Response};
pub use wire::Framing;
