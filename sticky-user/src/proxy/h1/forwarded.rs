//! The forwarding facts of one client connection: the client's address (written as `X-Forwarded-For`
//! and RFC 7239's `for=` want it when a request is forwarded), the address it connected to, and
//! whether the forwarding fields of earlier hops are kept. Kept compact, as numbers (an idle
//! keep-alive connection carries it: issue 12); the text is made per request on the stack, no
//! allocation.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Deref,
};

use crate::proxy_protocol::Origin;

use bytes::BufMut;

/// Longest text of an IP address (`INET6_ADDRSTRLEN` without the NUL).
const IP_TEXT: usize = 45;

/// An address and port, as few bytes as they take (a `SocketAddr` is 32: the IPv6 flow label and
/// scope, which no forwarding field or PROXY header carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl Packed {
    fn of(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&a.ip().octets());
                Self { ip, port: a.port(), v6: false }
            }
            SocketAddr::V6(a) => Self { ip: a.ip().octets(), port: a.port(), v6: true },
        }
    }

    fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]))
        }
    }

    fn addr(self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }
}

/// The client of a connection and where it connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client; an IPv4-mapped IPv6 address is kept as the IPv4 address (the fields' text).
    client: Packed,
    destination: Packed,
    prior: PriorHops,
}

impl ClientAddr {
    /// The address of a client; an IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4
    /// client) is written as the IPv4 address, as before.
    #[must_use]
    pub fn new(ip: IpAddr) -> Self {
        let at = SocketAddr::new(ip, 0);
        Self::of(Origin { client: at, destination: at }, PriorHops::Keep)
    }

    /// The client of a connection (the PROXY protocol's, or the peer), and what becomes of the
    /// forwarding fields it sends: kept from a trusted proxy, else replaced.
    #[must_use]
    pub fn of(origin: Origin, prior: PriorHops) -> Self {
        let mut client = origin.client;
        if let SocketAddr::V6(v6) = client
            && let Some(v4) = v6.ip().to_ipv4_mapped()
        {
            client = SocketAddr::new(IpAddr::V4(v4), v6.port());
        }
        Self { client: Packed::of(client), destination: Packed::of(origin.destination), prior }
    }

    /// What becomes of the request's own `X-Forwarded-For` and `Forwarded` fields.
    #[must_use]
    pub fn prior(&self) -> PriorHops {
        self.prior
    }

    /// The connection's client and the address it connected to (a PROXY protocol header for the
    /// backend is written from them); an IPv4-mapped client address as its IPv4 address.
    #[must_use]
    pub fn origin(&self) -> Origin {
        Origin { client: self.client.addr(), destination: self.destination.addr() }
    }

    /// The address as `X-Forwarded-For` lists it (`192.0.2.1`, `2001:db8::1`).
    #[must_use]
    pub fn ip(&self) -> IpText {
        let mut text = IpText { text: [0u8; IP_TEXT], len: 0 };
        if self.client.v6 {
            let mut rest = &mut text.text[..];
            // the longest address is 45 characters, so this cannot run out of room
            if write!(rest, "{}", self.client.ip()).is_ok() {
                text.len = u8::try_from(IP_TEXT - rest.len()).unwrap_or(0);
            }
        } else {
            // IPv4 by hand: std's Display goes through the formatter machinery, this is per request
            let mut len = 0;
            for (i, &octet) in self.client.ip[..4].iter().enumerate() {
                if i > 0 {
                    text.text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text.text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text.text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text.text[len] = b'0' + octet % 10;
                len += 1;
            }
            text.len = u8::try_from(len).unwrap_or(0);
        }
        text
    }

    /// Whether it is an IPv6 address (RFC 7239 quotes and brackets those).
    #[must_use]
    pub fn is_ipv6(&self) -> bool {
        self.client.v6
    }
}

/// An IP address as text, on the stack ([`ClientAddr::ip`]).
#[derive(Clone, Copy, Debug)]
pub struct IpText {
    text: [u8; IP_TEXT],
    len: u8,
}

impl Deref for IpText {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.text.get(..usize::from(self.len)).unwrap_or_default()
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
        out.put_slice(&client.ip());
        out.put_slice(b"]\"");
    } else {
        out.put_slice(&client.ip());
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
        assert_eq!((&*v4.ip(), v4.is_ipv6()), (&b"192.0.2.7"[..], false));
        let v6 = ClientAddr::new("2001:db8::1".parse().expect("an IPv6 literal must parse"));
        assert_eq!((&*v6.ip(), v6.is_ipv6()), (&b"2001:db8::1"[..], true));
        let mapped = ClientAddr::new("::ffff:127.0.0.1".parse().expect("a mapped literal must parse"));
        assert_eq!((&*mapped.ip(), mapped.is_ipv6()), (&b"127.0.0.1"[..], false));
        let long =
            ClientAddr::new("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().expect("a long literal must parse"));
        assert_eq!(&*long.ip(), b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        for v4 in ["0.0.0.0", "10.0.0.1", "100.20.3.255", "255.255.255.255", "9.99.199.200"] {
            let a = ClientAddr::new(v4.parse().expect("an IPv4 literal must parse"));
            assert_eq!(&*a.ip(), v4.as_bytes(), "IPv4 written by hand as std writes it");
        }
        assert!(std::mem::size_of::<ClientAddr>() <= 48, "{} bytes", std::mem::size_of::<ClientAddr>());
    }

    #[test]
    fn the_origin_comes_back_with_its_ports() {
        let origin = Origin {
            client: "[2001:db8::7]:40000".parse().expect("a v6 socket address must parse"),
            destination: "192.0.2.1:443".parse().expect("a v4 socket address must parse"),
        };
        let a = ClientAddr::of(origin, PriorHops::Discard);
        assert_eq!((a.origin(), a.prior()), (origin, PriorHops::Discard));
        let mapped = Origin {
            client: "[::ffff:192.0.2.9]:5000".parse().expect("a mapped socket address must parse"),
            destination: "192.0.2.1:80".parse().expect("a v4 socket address must parse"),
        };
        let expected = Origin { client: "192.0.2.9:5000".parse().expect("a v4 socket address must parse"), ..mapped };
        assert_eq!(ClientAddr::of(mapped, PriorHops::Keep).origin(), expected);
    }
}
