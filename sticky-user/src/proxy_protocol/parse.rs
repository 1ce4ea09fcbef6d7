//! Reading a PROXY protocol header (v1 text and v2 binary, haproxy.org's proxy-protocol.txt) from the
//! first bytes of a connection: the client's and the original destination's addresses, and the
//! header's length (the bytes to consume). Pure: bytes in, a verdict out; never reads past the header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (12 bytes).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 header, CRLF included (the specification's 107 bytes).
pub const V1_MAX: usize = 107;
/// Longest v2 header sticky accepts (16 bytes of fixed part + addresses + TLVs). The specification
/// allows 64 KiB of TLVs; balancers send a few hundred bytes at most, and this bounds what one
/// connection can make sticky hold before it is served.
pub const V2_MAX: usize = 4096;
/// Bytes sticky needs to tell whether a header follows at all (a v2 signature, or `PROXY `).
pub const MIN_PEEK: usize = 16;

/// What a complete header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// The proxied connection: the client (`source`) and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// Where the client connected (the balancer in front's listener).
        destination: SocketAddr,
    },
    /// A connection of the balancer itself (v2 `LOCAL`, e.g. its health check), v1 `UNKNOWN`, or an
    /// address family sticky does not relay (unix sockets): the connection's own addresses stand.
    Local,
}

/// The outcome of looking at the first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete header of `len` bytes.
    Complete {
        /// What it says.
        addresses: Addresses,
        /// Its length: the connection's own bytes start after it.
        len: usize,
    },
    /// The bytes so far are the start of a header: read more.
    Incomplete,
}

/// Why the bytes are not a header sticky accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The connection does not start with a PROXY header at all.
    #[error("no PROXY protocol header")]
    Missing,
    /// It starts like one but breaks the grammar.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Looks at a connection's first bytes.
///
/// # Errors
/// [`HeaderError::Missing`] if `buf` cannot be the start of a header, [`HeaderError::Malformed`] if it
/// breaks the v1 or v2 grammar or is longer than sticky accepts.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if starts(buf, V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(Parsed::Incomplete);
        }
        return v2(buf);
    }
    if starts(buf, V1_PREFIX) {
        if buf.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete);
        }
        return v1(buf);
    }
    Err(HeaderError::Missing)
}

/// Whether `buf` and `prefix` agree on their common length (an empty `buf` agrees with anything).
fn starts(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf.get(..n) == prefix.get(..n)
}

fn v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let Some(cr) = window.iter().position(|b| *b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(HeaderError::Malformed("v1: a bare LF"));
        }
        return if buf.len() >= V1_MAX {
            Err(HeaderError::Malformed("v1: longer than 107 bytes"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    match buf.get(cr + 1) {
        None => return Ok(Parsed::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(HeaderError::Malformed("v1: CR without LF")),
    }
    let len = cr + 2;
    if len > V1_MAX {
        return Err(HeaderError::Malformed("v1: longer than 107 bytes"));
    }
    let line = std::str::from_utf8(buf.get(V1_PREFIX.len()..cr).unwrap_or_default())
        .map_err(|_| HeaderError::Malformed("v1: not ASCII"))?;
    let mut words = line.split(' ');
    let family = words.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // the rest may be anything (the receiver must ignore it)
        return Ok(Parsed::Complete { addresses: Addresses::Local, len });
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(HeaderError::Malformed("v1: family is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (words.next(), words.next(), words.next(), words.next(), words.next())
    else {
        return Err(HeaderError::Malformed("v1: not four fields after the family"));
    };
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        let ip = if v6 { s.parse::<Ipv6Addr>().map(IpAddr::V6) } else { s.parse::<Ipv4Addr>().map(IpAddr::V4) };
        ip.map_err(|_| HeaderError::Malformed("v1: an address does not match its family"))
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        // decimal without a leading zero (the specification's grammar), 0..=65535
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        s.parse::<u16>().ok().filter(|_| ok).ok_or(HeaderError::Malformed("v1: a port is not 0..=65535"))
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(Parsed::Complete { addresses: Addresses::Proxied { source, destination }, len })
}

fn v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(&[ver_cmd, family, hi, lo]) = buf.get(12..16) else {
        return Ok(Parsed::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(HeaderError::Malformed("v2: version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(HeaderError::Malformed("v2: command is not LOCAL or PROXY")),
    };
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX {
        return Err(HeaderError::Malformed("v2: longer than sticky accepts (4096 bytes)"));
    }
    let Some(body) = buf.get(16..len) else {
        return Ok(Parsed::Incomplete);
    };
    if local {
        return Ok(Parsed::Complete { addresses: Addresses::Local, len });
    }
    let addresses = match family {
        // TCP over IPv4 / IPv6
        0x11 => {
            let a = body.get(..12).ok_or(HeaderError::Malformed("v2: IPv4 addresses cut short"))?;
            let ip = |i: usize| -> IpAddr { Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]).into() };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Addresses::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        0x21 => {
            let a = body.get(..36).ok_or(HeaderError::Malformed("v2: IPv6 addresses cut short"))?;
            let ip = |i: usize| -> IpAddr {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                Ipv6Addr::from(o).into()
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Addresses::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        // AF_UNSPEC (the receiver must use the connection's addresses) and unix stream sockets (no IP
        // to speak of)
        0x00 | 0x31 => Addresses::Local,
        _ => return Err(HeaderError::Malformed("v2: not a stream (TCP or unix) family")),
    };
    Ok(Parsed::Complete { addresses, len })
}
