//! The PROXY protocol (haproxy.org's proxy-protocol.txt, v1 and v2): the client's real address from a
//! balancer in front (in), and to the backends of a service that asks for it (out, v2).
//!
//! # Pieces (one job per file)
//! - [`parse`]: a header's bytes -> client and destination addresses, or why not (pure).
//! - [`encode`]: client and destination -> a v2 header (pure).
//! - [`accept`]: the rule at accept time on every listener (http, https before its handshake, tcp
//!   mode in user space): trusted sources must send a header, others must not; refusals counted.
//!
//! Who is trusted is a [`crate::cidr::Cidrs`] list (`--proxy-protocol-from`); what a service sends
//! its backends is [`Version`] (`sticky.proxyprotocol`, Traefik's
//! `loadbalancer.proxyprotocol.version`, `proxy_protocol` in the TOML file).

pub mod accept;
pub mod encode;
pub mod parse;

pub use accept::{Origin, Reject};

/// What a service sends its backends first on each connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// Nothing: the backend sees sticky as the client (http mode: `X-Forwarded-For` says who).
    #[default]
    Off,
    /// A PROXY protocol v2 header naming the client.
    V2,
}

impl Version {
    /// Parses `v2` / `2` (Traefik writes the version as a number) or `off` / `none` / `0`.
    ///
    /// # Errors
    /// Any other text, named; v1 is not sent (v2 is what HAProxy, nginx and Traefik all read).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v2" | "2" => Ok(Self::V2),
            "off" | "none" | "0" | "false" | "" => Ok(Self::Off),
            "v1" | "1" => Err(format!("{text:?}: sticky sends PROXY protocol v2 only (write v2)")),
            _ => Err(format!("{text:?} is not v2 or off")),
        }
    }

    /// The header for a connection of `origin`'s client, if any.
    #[must_use]
    pub fn header(self, origin: &Origin) -> Option<Vec<u8>> {
        match self {
            Self::Off => None,
            Self::V2 => Some(encode::v2(origin.client, origin.destination)),
        }
    }
}

#[cfg(test)]
mod tests;
