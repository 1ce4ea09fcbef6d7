//! Address ranges (`10.0.0.0/8`, `2001:db8::/32`, a bare address) and lists of them: who may send a
//! PROXY protocol header (`--proxy-protocol-from`) and whose forwarding fields are kept
//! (`--trusted-proxies`). Pure: parsing and matching only.

use std::{fmt, net::IpAddr, str::FromStr};

/// One address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    prefix: u8,
}

/// Why a range does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an address.
    #[error("{0:?} is not an IP address or ADDRESS/PREFIX range")]
    Address(String),
    /// A prefix longer than the address or not a number.
    #[error("{0:?}: the prefix must be 0..=32 for IPv4, 0..=128 for IPv6")]
    Prefix(String),
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as the IPv4 address.
#[must_use]
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(ip)) << 96, self.prefix) == u128::from(u32::from(net)) << 96
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask(u128::from(ip), self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

/// `bits` with all but the first `prefix` bits cleared.
fn mask(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => bits,
        p => bits & !(u128::MAX >> p),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let addr = unmap(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| CidrError::Prefix(s.to_owned()))?,
        };
        let addr = match addr {
            IpAddr::V4(v4) => {
                let bits = mask(u128::from(u32::from(v4)) << 96, prefix) >> 96;
                IpAddr::V4(u32::try_from(bits).unwrap_or(0).into())
            }
            IpAddr::V6(v6) => IpAddr::V6(mask(u128::from(v6), prefix).into()),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A list of ranges; empty matches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<Cidr>);

impl Cidrs {
    /// Parses a comma-separated list (`10.0.0.0/8, 127.0.0.1`); blanks between commas are ignored.
    ///
    /// # Errors
    /// The first entry that is not a range.
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>().map(Self)
    }

    /// Whether any range holds `ip`.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The real client behind a chain of trusted proxies: walking `X-Forwarded-For` from the right (the
/// hop nearest sticky), the first address that is not a trusted proxy; `peer` itself if it is not
/// trusted; the leftmost address if every hop is trusted. An entry that is not an address stops the
/// walk there (what lies left of it cannot be trusted): `None`.
#[must_use]
pub fn real_client<'a>(
    peer: IpAddr,
    chain: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &Cidrs,
) -> Option<IpAddr> {
    if !trusted.contains(peer) {
        return Some(unmap(peer));
    }
    let mut last = unmap(peer);
    for hop in chain.rev() {
        let ip = hop.trim().parse::<IpAddr>().ok()?;
        last = unmap(ip);
        if !trusted.contains(ip) {
            return Some(last);
        }
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a test address must parse")
    }

    #[test]
    fn ranges_match_their_addresses_only() {
        let l = Cidrs::parse("10.0.0.0/8, 127.0.0.1,2001:db8::/32").expect("the list must parse");
        assert!(l.contains(ip("10.255.1.2")));
        assert!(l.contains(ip("127.0.0.1")));
        assert!(l.contains(ip("::ffff:127.0.0.1")), "a mapped address counts as its IPv4 address");
        assert!(!l.contains(ip("127.0.0.2")));
        assert!(l.contains(ip("2001:db8:ffff::1")));
        assert!(!l.contains(ip("2001:db9::1")));
        assert!(!l.contains(ip("11.0.0.1")));
        assert!(Cidrs::default().is_empty() && !Cidrs::default().contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_ranges_are_refused_with_the_entry() {
        assert_eq!(Cidrs::parse("10.0.0.0/33"), Err(CidrError::Prefix("10.0.0.0/33".into())));
        assert_eq!(Cidrs::parse("example.com"), Err(CidrError::Address("example.com".into())));
        assert_eq!(Cidrs::parse("::1/129"), Err(CidrError::Prefix("::1/129".into())));
        assert_eq!("10.1.2.3/8".parse::<Cidr>().map(|c| c.to_string()), Ok("10.0.0.0/8".into()));
    }

    #[test]
    fn the_real_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted = Cidrs::parse("10.0.0.0/8").expect("the list must parse");
        let chain = ["6.6.6.6", "203.0.113.9", "10.0.0.2"];
        assert_eq!(real_client(ip("10.0.0.1"), chain.iter().copied(), &trusted), Some(ip("203.0.113.9")));
        assert_eq!(real_client(ip("198.51.100.1"), chain.iter().copied(), &trusted), Some(ip("198.51.100.1")));
        assert_eq!(real_client(ip("10.0.0.1"), ["junk", "10.0.0.3"].iter().copied(), &trusted), None);
        assert_eq!(real_client(ip("10.0.0.1"), ["10.0.0.3"].iter().copied(), &trusted), Some(ip("10.0.0.3")));
    }

    proptest! {
        #[test]
        fn a_range_holds_exactly_the_addresses_sharing_its_prefix(a: u32, b: u32, prefix in 0u8..=32) {
            let c: Cidr = format!("{}/{prefix}", std::net::Ipv4Addr::from(a)).parse().expect("a range must parse");
            let same = prefix == 0 || (a ^ b) >> (32 - u32::from(prefix)) == 0;
            prop_assert_eq!(c.contains(IpAddr::V4(b.into())), same);
            prop_assert!(c.contains(IpAddr::V4(a.into())));
        }

        #[test]
        fn v6_ranges_hold_the_addresses_sharing_their_prefix(a: u128, b: u128, prefix in 0u8..=128) {
            let c: Cidr = format!("{}/{prefix}", std::net::Ipv6Addr::from(a)).parse().expect("a range must parse");
            let same = prefix == 0 || (a ^ b) >> (128 - u32::from(prefix)) == 0;
            let bv = std::net::Ipv6Addr::from(b);
            // a mapped address is matched as IPv4, never against a v6 range
            prop_assume!(bv.to_ipv4_mapped().is_none() && std::net::Ipv6Addr::from(a).to_ipv4_mapped().is_none());
            prop_assert_eq!(c.contains(IpAddr::V6(bv)), same);
        }
    }
}
