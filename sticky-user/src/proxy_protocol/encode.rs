//! Writing a PROXY protocol v2 header for a backend: the client's address and the address it
//! connected to, so that the backend sees the real client (`sticky.proxyprotocol=v2`). Pure.

use std::net::{IpAddr, SocketAddr};

use super::parse::V2_SIGNATURE;

/// Longest header written: 16 bytes of fixed part and two IPv6 addresses with their ports.
pub const V2_LEN_MAX: usize = 16 + 36;

/// A v2 `PROXY` header for a TCP connection from `source` to `destination`, at most [`V2_LEN_MAX`]
/// bytes. IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 peers) are written as
/// IPv4; when one side is IPv4 and the other IPv6, both are written as IPv6 (the v4 one mapped).
#[must_use]
pub fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let src = crate::cidr::unmap(source.ip());
    let dst = crate::cidr::unmap(destination.ip());
    let mut out = Vec::with_capacity(V2_LEN_MAX);
    out.extend_from_slice(V2_SIGNATURE);
    // version 2, command PROXY
    out.push(0x21);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}
