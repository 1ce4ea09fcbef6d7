//! The holder's wire protocol (pure): one request line from the client, one response line back with
//! the listening sockets attached (`SCM_RIGHTS`), in the order the line names them.
//!
//! ```text
//! -> sticky-hold/1 get 0.0.0.0:80 0.0.0.0:443
//! <- sticky-hold/1 ok 0.0.0.0:80 0.0.0.0:443          + two descriptors, in this order
//! -> sticky-hold/1 all                                 (a new holder taking over: every socket)
//! <- sticky-hold/1 err not held: 0.0.0.0:8443 (held: 0.0.0.0:80, 0.0.0.0:443)
//! ```
//!
//! Sockets are named by their bound address. The version is in every line: a holder answers a
//! request of another version with an `err` line naming both, and a client refuses a response of
//! another version, so a mixed-version pair fails with one clear line instead of misreading.

use std::{fmt::Write as _, net::SocketAddr};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The longest line either side sends or accepts, newline included (bytes).
pub const MAX_LINE: usize = 4096;
/// The most sockets one response carries.
pub const MAX_SOCKETS: usize = 32;

const MAGIC: &str = "sticky-hold/";

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// These sockets, in this order.
    Get(Vec<SocketAddr>),
    /// Every socket held (a new holder taking over from the running one).
    All,
}

/// What the holder answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The sockets follow, one descriptor per address, in this order.
    Ok(Vec<SocketAddr>),
    /// The request cannot be served; the message says why.
    Err(String),
}

/// A line that does not follow the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not a sticky-hold line at all.
    #[error("not a sticky-hold line: {line:?}")]
    NotOurs {
        /// The line (cut to 80 characters).
        line: String,
    },
    /// Another version of the protocol.
    #[error("protocol version sticky-hold/{got} is not this build's sticky-hold/{VERSION}")]
    Version {
        /// The version the line carries.
        got: String,
    },
    /// An unknown verb.
    #[error("unknown verb {verb:?} (expected {expected})")]
    Verb {
        /// The verb.
        verb: String,
        /// What the side expected.
        expected: &'static str,
    },
    /// A word that is not an address `IP:PORT`.
    #[error("{word:?} is not an address IP:PORT")]
    Address {
        /// The word.
        word: String,
    },
    /// Nothing asked for, or too many sockets.
    #[error("a request names 1 to {MAX_SOCKETS} addresses, this one {count}")]
    Count {
        /// How many.
        count: usize,
    },
    /// The line is longer than [`MAX_LINE`] or has no newline.
    #[error("the line is longer than {MAX_LINE} bytes or not terminated")]
    Length,
}

impl Request {
    /// The request as one line, newline included.
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Self::Get(addrs) => {
                let mut line = format!("{MAGIC}{VERSION} get");
                for a in addrs {
                    let _ = write!(line, " {a}");
                }
                line.push('\n');
                line
            }
            Self::All => format!("{MAGIC}{VERSION} all\n"),
        }
    }

    /// Reads a request line (with or without its newline).
    ///
    /// # Errors
    /// The line is not a request of this version.
    pub fn parse(line: &str) -> Result<Self, ProtocolError> {
        let mut words = split(line)?;
        match words.next() {
            Some("get") => {
                let addrs = addresses(words)?;
                if addrs.is_empty() || addrs.len() > MAX_SOCKETS {
                    return Err(ProtocolError::Count { count: addrs.len() });
                }
                Ok(Self::Get(addrs))
            }
            Some("all") => Ok(Self::All),
            verb => Err(ProtocolError::Verb { verb: verb.unwrap_or_default().to_owned(), expected: "get or all" }),
        }
    }
}

impl Response {
    /// The response as one line, newline included (an error message's newlines become spaces).
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Self::Ok(addrs) => {
                let mut line = format!("{MAGIC}{VERSION} ok");
                for a in addrs {
                    let _ = write!(line, " {a}");
                }
                line.push('\n');
                line
            }
            Self::Err(message) => {
                let mut line = format!("{MAGIC}{VERSION} err {}", message.replace(['\n', '\r'], " "));
                // keep within MAX_LINE, on a character boundary
                let mut cut = MAX_LINE - 1;
                while !line.is_char_boundary(cut.min(line.len())) {
                    cut -= 1;
                }
                line.truncate(cut.min(line.len()));
                line.push('\n');
                line
            }
        }
    }

    /// Reads a response line (with or without its newline).
    ///
    /// # Errors
    /// The line is not a response of this version.
    pub fn parse(line: &str) -> Result<Self, ProtocolError> {
        let mut words = split(line)?;
        match words.next() {
            Some("ok") => {
                let addrs = addresses(words)?;
                if addrs.len() > MAX_SOCKETS {
                    return Err(ProtocolError::Count { count: addrs.len() });
                }
                Ok(Self::Ok(addrs))
            }
            Some("err") => {
                let message = line.trim_end().splitn(3, ' ').nth(2).unwrap_or_default();
                Ok(Self::Err(message.to_owned()))
            }
            verb => Err(ProtocolError::Verb { verb: verb.unwrap_or_default().to_owned(), expected: "ok or err" }),
        }
    }
}

/// The holder's answer to `request` over the sockets it holds (`held`, by address): the positions
/// in `held` to send, in the order asked, or the `err` message naming what is not held.
///
/// # Errors
/// An address asked for is not held (the message lists what is).
pub fn select(held: &[SocketAddr], request: &Request) -> Result<Vec<usize>, String> {
    match request {
        Request::All => Ok((0..held.len().min(MAX_SOCKETS)).collect()),
        Request::Get(want) => {
            let missing: Vec<String> = want.iter().filter(|a| !held.contains(a)).map(ToString::to_string).collect();
            if missing.is_empty() {
                Ok(want.iter().filter_map(|a| held.iter().position(|h| h == a)).collect())
            } else {
                let held: Vec<String> = held.iter().map(ToString::to_string).collect();
                Err(format!(
                    "not held: {} (held: {}); add --listen {} to `sticky hold`",
                    missing.join(", "),
                    if held.is_empty() { "none".to_owned() } else { held.join(", ") },
                    missing.join(" --listen ")
                ))
            }
        }
    }
}

/// Checks the magic and version of `line` and returns its remaining words.
fn split(line: &str) -> Result<std::str::SplitWhitespace<'_>, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::Length);
    }
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut words = line.split_whitespace();
    let head = words.next().unwrap_or_default();
    let Some(version) = head.strip_prefix(MAGIC) else {
        return Err(ProtocolError::NotOurs { line: line.chars().take(80).collect() });
    };
    if version != VERSION.to_string() {
        return Err(ProtocolError::Version { got: version.chars().take(16).collect() });
    }
    Ok(words)
}

fn addresses<'a>(words: impl Iterator<Item = &'a str>) -> Result<Vec<SocketAddr>, ProtocolError> {
    words.map(|w| w.parse().map_err(|_| ProtocolError::Address { word: w.chars().take(80).collect() })).collect()
}

#[cfg(test)]
mod tests;
