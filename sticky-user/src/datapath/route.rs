//! Where the kernel routes an address, and whether an interface forwards: the two facts the tc path
//! depends on and cannot check itself (one netlink `RTM_GETROUTE` request, one sysctl read).
//!
//! The tc program sees only the interfaces it is attached to. Replies from a backend arrive on the
//! interface that routes to that backend; if the program is not there, they are never translated
//! back and every connection hangs. And `bpf_fib_lookup` refuses (`FWD_DISABLED`) on an interface
//! without IPv4 forwarding, so the program would pass every new flow to the stack, which drops it.

use std::{io, net::IpAddr};

/// How the kernel would send a packet to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The output interface's name.
    pub iface: String,
    /// The destination is an address of this host (`RTN_LOCAL`).
    pub local: bool,
}

// rtnetlink constants the libc crate does not carry (linux/rtnetlink.h), and those it carries as
// c_int that the wire fields hold narrower (all small: 1, 2, 2).
#[expect(clippy::cast_possible_truncation, reason = "NLM_F_REQUEST is 1")]
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
#[expect(clippy::cast_possible_truncation, reason = "NLMSG_ERROR is 2")]
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET is 2")]
const AF_INET: u8 = libc::AF_INET as u8;
#[expect(clippy::cast_possible_truncation, reason = "AF_INET6 is 10")]
const AF_INET6: u8 = libc::AF_INET6 as u8;
const RTN_LOCAL: u8 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const NLMSG_HDR: usize = 16;
const RTMSG_LEN: usize = 12;

/// The route the kernel picks for `dst` in this thread's network namespace.
///
/// # Errors
/// The netlink socket fails, or the kernel has no route (`ENETUNREACH`).
pub fn lookup(dst: IpAddr) -> io::Result<Route> {
    let request = request(dst);
    let fd = netlink_socket()?;
    // SAFETY: request is a live buffer of the length passed; fd is a socket this function owns.
    #[expect(unsafe_code, reason = "send on a netlink socket: no std API")]
    let sent = unsafe { libc::send(fd.raw(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 1024];
    // SAFETY: reply is a live, writable buffer of the length passed.
    #[expect(unsafe_code, reason = "recv on a netlink socket: no std API")]
    let got = unsafe { libc::recv(fd.raw(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    parse(&reply[..got])
}

/// Whether IPv4 forwarding is on for `iface` (`net.ipv4.conf.<iface>.forwarding`); `None` when the
/// interface has no IPv4 configuration (no IPv4 packet arrives there).
///
/// # Errors
/// The sysctl exists but cannot be read.
pub fn forwarding(iface: &str) -> io::Result<Option<bool>> {
    forwarding_of(iface, false)
}

/// Whether `iface` forwards IPv6 (`net.ipv6.conf.<iface>.forwarding`, which `bpf_fib_lookup` checks
/// for IPv6 as the IPv4 one for IPv4); `None` when the interface has no IPv6 configuration.
///
/// # Errors
/// The sysctl exists but cannot be read.
pub fn forwarding6(iface: &str) -> io::Result<Option<bool>> {
    forwarding_of(iface, true)
}

fn forwarding_of(iface: &str, v6: bool) -> io::Result<Option<bool>> {
    let family = if v6 { "ipv6" } else { "ipv4" };
    match std::fs::read_to_string(format!("/proc/sys/net/{family}/conf/{iface}/forwarding")) {
        Ok(text) => Ok(Some(text.trim() == "1")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `RTM_GETROUTE` for one destination: netlink header, `rtmsg`, one `RTA_DST` attribute.
fn request(dst: IpAddr) -> Vec<u8> {
    let (family, bits, octets): (u8, u8, Vec<u8>) = match dst {
        IpAddr::V4(a) => (AF_INET, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, 128, a.octets().to_vec()),
    };
    let rta_len = 4 + octets.len();
    let len = NLMSG_HDR + RTMSG_LEN + rta_len;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).expect("short message").to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&libc::RTM_GETROUTE.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32)
    m.extend_from_slice(&[family, bits, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&u16::try_from(rta_len).expect("short attribute").to_ne_bytes()); // rta_len
    m.extend_from_slice(&RTA_DST.to_ne_bytes());
    m.extend_from_slice(&octets);
    m
}

/// The interface and type of the first `RTM_NEWROUTE` in `reply`, or the kernel's error.
fn parse(reply: &[u8]) -> io::Result<Route> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed rtnetlink reply");
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    let len = u32_at(reply, 0).ok_or_else(bad)? as usize;
    let kind = u16_at(reply, 4).ok_or_else(bad)?;
    let msg = reply.get(..len).ok_or_else(bad)?;
    if kind == NLMSG_ERROR {
        let errno = i32::from_ne_bytes(u32_at(msg, NLMSG_HDR).ok_or_else(bad)?.to_ne_bytes());
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != libc::RTM_NEWROUTE {
        return Err(bad());
    }
    let rtm_type = *msg.get(NLMSG_HDR + 7).ok_or_else(bad)?;
    let mut at = NLMSG_HDR + RTMSG_LEN;
    let mut oif = None;
    while let (Some(rta_len), Some(rta_type)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let rta_len = usize::from(rta_len);
        if rta_len < 4 {
            return Err(bad());
        }
        if rta_type == RTA_OIF {
            oif = u32_at(msg, at + 4);
        }
        at += rta_len.div_ceil(4) * 4;
    }
    let oif = oif.ok_or_else(bad)?;
    Ok(Route { iface: if_name(oif)?, local: rtm_type == RTN_LOCAL })
}

fn if_name(index: u32) -> io::Result<String> {
    let mut name = [0u8; libc::IF_NAMESIZE];
    // SAFETY: name is a live buffer of IF_NAMESIZE bytes, as if_indextoname requires.
    #[expect(unsafe_code, reason = "if_indextoname: no std API")]
    let ptr = unsafe { libc::if_indextoname(index, name.as_mut_ptr().cast()) };
    if ptr.is_null() {
        return Err(io::Error::last_os_error());
    }
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// A netlink socket closed on drop.
struct Netlink(std::os::fd::OwnedFd);

impl Netlink {
    fn raw(&self) -> libc::c_int {
        use std::os::fd::AsRawFd as _;
        self.0.as_raw_fd()
    }
}

fn netlink_socket() -> io::Result<Netlink> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: socket takes plain integers.
    #[expect(unsafe_code, reason = "socket(AF_NETLINK): no std API")]
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    #[expect(unsafe_code, reason = "taking ownership of the new descriptor")]
    Ok(Netlink(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_routes_through_lo_as_local() {
        let route = lookup(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).expect("every namespace routes 127.0.0.1");
        assert_eq!(route, Route { iface: "lo".to_owned(), local: true });
        // ::1 too, where the namespace has IPv6 (it may be disabled in a container).
        if let Ok(route) = lookup(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)) {
            assert_eq!(route, Route { iface: "lo".to_owned(), local: true });
        }
    }

    #[test]
    fn a_reply_error_carries_the_errno() {
        let mut reply = vec![0u8; NLMSG_HDR + 4];
        reply[..4].copy_from_slice(&20u32.to_ne_bytes());
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        reply[NLMSG_HDR..].copy_from_slice(&(-libc::ENETUNREACH).to_ne_bytes());
        assert_eq!(parse(&reply).unwrap_err().raw_os_error(), Some(libc::ENETUNREACH));
    }

    #[test]
    fn a_truncated_reply_is_refused() {
        assert_eq!(parse(&[1, 2, 3]).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
