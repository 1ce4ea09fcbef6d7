//! The PROXY protocol at accept time: a connection from a trusted source must start with a header
//! (read within [`HEADER_TIMEOUT`], at most [`parse::V2_MAX`] bytes, never a byte past it), whose
//! client becomes the connection's client; a header from any other source closes the connection.
//! Each refusal is counted by reason ([`Reject`], `sticky_proxy_protocol_rejects_total`).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{net::TcpStream, time::Instant};

use super::parse::{self, Addresses, HeaderError, Parsed};
use crate::cidr::Cidrs;

/// How long a trusted source has to send its whole header. The balancer in front writes it with the
/// connection's first bytes; 3 s covers a lost segment's retransmission (1 s initial RTO) twice.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two looks at a header that arrived in part (peeking again at once would spin).
const PARTIAL_PAUSE: Duration = Duration::from_millis(5);
/// First read size: a v1 header, or a v2 header with addresses and a few TLVs, fits.
const FIRST_PEEK: usize = 536;

/// Why a connection was closed at accept (`sticky_proxy_protocol_rejects_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// A header from a source not in `--proxy-protocol-from`.
    Untrusted = 0,
    /// A header that breaks the grammar or is longer than sticky accepts.
    Malformed = 1,
    /// A trusted source's header not complete within [`HEADER_TIMEOUT`], or the connection closed
    /// in the middle of it.
    Truncated = 2,
    /// A trusted source's connection without a header.
    Missing = 3,
}

impl Reject {
    /// Every reason, in label order.
    pub const ALL: [Self; 4] = [Self::Untrusted, Self::Malformed, Self::Truncated, Self::Missing];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Untrusted => "untrusted",
            Self::Malformed => "malformed",
            Self::Truncated => "truncated",
            Self::Missing => "missing",
        }
    }
}

/// Refusals since start, by reason: one process-wide set, since every listener (http, https, tcp
/// mode) applies the one rule.
static REJECTS: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Connections closed for `reason` since start.
#[must_use]
pub fn rejects(reason: Reject) -> u64 {
    REJECTS[reason as usize].load(Ordering::Relaxed)
}

/// Who the connection is for: the client and the address it connected to (the PROXY header's, or the
/// socket's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The client.
    pub client: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
}

/// Applies the PROXY protocol rule to a connection just accepted from `peer`.
///
/// With an empty `from`, nothing is read: the peer is the client. From a source in `from`, the header
/// is required and consumed. From any other source, when `client_first` (http and https: the client
/// speaks first, so looking costs no wait), the first bytes are peeked and a header closes the
/// connection; tcp mode passes `false` (a server-speaks-first protocol would wait forever) and leaves
/// the bytes to the backend.
///
/// # Errors
/// The reason the connection must be closed (already counted).
///
/// # Cancel safety
/// Not cancel safe: a header may be half consumed.
pub async fn accept(stream: &TcpStream, peer: SocketAddr, from: &Cidrs, client_first: bool) -> Result<Origin, Reject> {
    let own = Origin { client: peer, destination: stream.local_addr().unwrap_or(peer) };
    if from.is_empty() {
        return Ok(own);
    }
    let outcome = if from.contains(peer.ip()) {
        read(stream).await.map(|a| match a {
            Addresses::Proxied { source, destination } => Origin { client: source, destination },
            Addresses::Local => own,
        })
    } else if client_first && untrusted_header(stream).await {
        Err(Reject::Untrusted)
    } else {
        Ok(own)
    };
    if let Err(r) = outcome {
        REJECTS[r as usize].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, reason = r.as_str(), "PROXY protocol: connection refused");
    }
    outcome
}

/// Reads (and consumes) a trusted source's header.
async fn read(stream: &TcpStream) -> Result<Addresses, Reject> {
    let deadline = Instant::now() + HEADER_TIMEOUT;
    // on the heap, and only while the header is read: a connection's task must stay small
    let mut buf = vec![0u8; FIRST_PEEK];
    let mut last = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Err(Reject::Truncated),
            Ok(Ok(n)) => n,
        };
        match parse::parse(buf.get(..n).unwrap_or_default()) {
            Ok(Parsed::Complete { addresses, len }) => return consume(stream, len, deadline).await.map(|()| addresses),
            Ok(Parsed::Incomplete) => {
                if n == buf.len() && buf.len() < parse::V2_MAX {
                    buf.resize(parse::V2_MAX, 0);
                } else if n == last {
                    // nothing new since the last look: wait a moment rather than spin on peek
                    if tokio::time::timeout_at(deadline, tokio::time::sleep(PARTIAL_PAUSE)).await.is_err() {
                        return Err(Reject::Truncated);
                    }
                }
                last = n;
            }
            Err(HeaderError::Missing) => return Err(Reject::Missing),
            Err(HeaderError::Malformed(_)) => return Err(Reject::Malformed),
        }
    }
}

/// Reads exactly `len` bytes already peeked (the header) and drops them.
async fn consume(stream: &TcpStream, len: usize, deadline: Instant) -> Result<(), Reject> {
    let mut sink = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match stream.try_read(sink.get_mut(done..).unwrap_or_default()) {
            Ok(0) => return Err(Reject::Truncated),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout_at(deadline, stream.readable()).await {
                    Ok(Ok(())) => {}
                    _ => return Err(Reject::Truncated),
                }
            }
            Err(_) => return Err(Reject::Truncated),
        }
    }
    Ok(())
}

/// Whether an untrusted client's first bytes are a PROXY header. Waits at most [`HEADER_TIMEOUT`] for
/// enough bytes to tell; a client still silent then is left to the idle timeout.
async fn untrusted_header(stream: &TcpStream) -> bool {
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut buf = [0u8; parse::MIN_PEEK];
    let mut last = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        let seen = buf.get(..n).unwrap_or_default();
        match parse::parse(seen) {
            Ok(Parsed::Complete { .. }) | Err(HeaderError::Malformed(_)) => return true,
            Err(HeaderError::Missing) => return false,
            // "P" could be POST or PUT: only the whole prefix (6 or 12 bytes) tells
            Ok(Parsed::Incomplete) if n >= 6 && (seen.starts_with(b"PROXY ") || n >= 12) => return true,
            Ok(Parsed::Incomplete) => {
                if n == last && tokio::time::timeout_at(deadline, tokio::time::sleep(PARTIAL_PAUSE)).await.is_err() {
                    return false;
                }
                last = n;
            }
        }
    }
}
