//! The forwarding facts of one client connection, formatted once when it is accepted: the client's
//! address as `X-Forwarded-For` and RFC 7239's `for=` want it, the scheme it used, and whether the
//! forwarding fields of earlier hops are kept. No allocation: the text lives inline.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
};

use crate::proxy_protocol::Origin;

use bytes::BufMut;

/// Longest text of an IP address (`INET6_ADDRSTRLEN` without the NUL).
const IP_TEXT: usize = 45;

/// A client's address, as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    text: [u8; IP_TEXT],
    len: u8,
    v6: bool,
    prior: PriorHops,
    origin: Origin,
}

impl ClientAddr {
    /// The address of a client; an IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4
    /// client) is written as the IPv4 address, as before.
    #[must_use]
    pub fn new(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let mut text = [0u8; IP_TEXT];
        let mut rest = &mut text[..];
        // the longest address is 45 characters, so this cannot run out of room
        let len = match write!(rest, "{ip}") {
            Ok(()) => IP_TEXT - rest.len(),
            Err(_) => 0,
        };
        let origin = Origin { client: SocketAddr::new(ip, 0), destination: SocketAddr::new(ip, 0) };
        Self { text, len: u8::try_from(len).unwrap_or(0), v6: ip.is_ipv6(), prior: PriorHops::Keep, origin }
    }

    /// The client of a connection (the PROXY protocol's, or the peer), and what becomes of the
    /// forwarding fields it sends: kept from a trusted proxy, else replaced.
    #[must_use]
    pub fn of(origin: Origin, prior: PriorHops) -> Self {
        Self { prior, origin, ..Self::new(origin.client.ip()) }
    }

    /// What becomes of the request's own `X-Forwarded-For` and `Forwarded` fields.
    #[must_use]
    pub fn prior(&self) -> PriorHops {
        self.prior
    }

    /// The connection's client and the address it connected to (a PROXY protocol header for the
    /// backend is written from them).
    #[must_use]
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The address as `X-Forwarded-For` lists it (`192.0.2.1`, `2001:db8::1`).
    #[must_use]
    pub fn ip(&self) -> &[u8] {
        self.text.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Whether it is an IPv6 address (RFC 7239 quotes and brackets those).
    #[must_use]
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }
}

/// The scheme the client used, for `X-Forwarded-Proto` and `proto=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// Plain HTTP (the only one until TLS).
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Proto {
    /// The scheme's name.
    #[must_use]
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Http => b"http",
            Self::Https => b"https",
        }
    }
}

/// What becomes of the `X-Forwarded-For` and `Forwarded` fields a request arrives with.
///
/// The trusted-proxies rule (issue 16): a peer in `--trusted-proxies` has its fields kept and
/// sticky appends the peer ([`Self::Keep`], issue 13 item 1); any other peer's are dropped
/// ([`Self::Discard`]), so that a client cannot choose the address a backend sees first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PriorHops {
    /// Keep them: every X-Forwarded-For line joined in order, then the peer; Forwarded lines kept,
    /// then sticky's element.
    #[default]
    Keep,
    /// Drop them: the backend sees only the peer.
    Discard,
}

/// Writes sticky's RFC 7239 `Forwarded` element (`for=…;host="…";proto=…`), the one format of the
/// HTTP/1 rewrite and the HTTP/2 path.
pub fn write_element(client: &ClientAddr, host: Option<&[u8]>, proto: Proto, out: &mut impl BufMut) {
    // RFC 7239 §6: an IPv6 node is quoted and bracketed; a host is a quoted-string (a valid Host has no
    // quote or backslash, so it needs no escaping)
    out.put_slice(b"for=");
    if client.is_ipv6() {
        out.put_slice(b"\"[");
        out.put_slice(client.ip());
        out.put_slice(b"]\"");
    } else {
        out.put_slice(client.ip());
    }
    if let Some(h) = host {
        out.put_slice(b";host=\"");
        out.put_slice(h);
        out.put_u8(b'"');
    }
    out.put_slice(b";proto=");
    out.put_slice(proto.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_text_and_mapped_ipv4_unmapped() {
        let v4 = ClientAddr::new("192.0.2.7".parse().expect("an IPv4 literal must parse"));
        assert_eq!((v4.ip(), v4.is_ipv6()), (&b"192.0.2.7"[..], false));
        let v6 = ClientAddr::new("2001:db8::1".parse().expect("an IPv6 literal must parse"));
        assert_eq!((v6.ip(), v6.is_ipv6()), (&b"2001:db8::1"[..], true));
        let mapped = ClientAddr::new("::ffff:127.0.0.1".parse().expect("a mapped literal must parse"));
        assert_eq!((mapped.ip(), mapped.is_ipv6()), (&b"127.0.0.1"[..], false));
        let long =
            ClientAddr::new("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().expect("a long literal must parse"));
        assert_eq!(long.ip(), b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    }
}
