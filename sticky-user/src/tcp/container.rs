//! Where a Swarm tcp service's packets arrive in sticky's container when the kernel path serves
//! it (`sticky.tcp.path=kernel`).
//!
//! sticky's own service publishes the port in host mode (`ports: mode: host`): Docker sends each
//! connection to the container's address on `docker_gwbridge` (by its DNAT rule, or through
//! docker-proxy when the daemon runs without iptables), so the packets enter the container's
//! network namespace there, where the tc program sees them. That address is the VIP the kernel
//! matches; the backends' replies come back on the overlay interface, addressed to the SNAT
//! address (the container's overlay address), and leave translated through `docker_gwbridge`.
//! A container's default route is `docker_gwbridge`'s (overlays carry no default route), so the
//! address is the source the kernel picks for an address outside every overlay.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use crate::model::TcpService;

/// An address no overlay uses (TEST-NET-1, RFC 5737): its route is the default one.
const OUTSIDE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9);

/// The container's address on its default route's interface (`docker_gwbridge` in a Swarm task),
/// where host-mode published ports arrive. A UDP connect sends nothing.
///
/// # Errors
/// No default route (an internal-only network), or no IPv4 source address.
pub fn published_addr() -> std::io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(OUTSIDE)?;
    match socket.local_addr()? {
        std::net::SocketAddr::V4(a) if !a.ip().is_unspecified() => Ok(*a.ip()),
        _ => Err(std::io::Error::other("no IPv4 source address on the default route")),
    }
}

/// `service` as the kernel matches it: its listen port at the container's `addr`, with its IPv4
/// backends (the kernel's NAT keeps the family; a task's IPv6 address on a dual-stack overlay is not
/// reached from an IPv4 published port).
#[must_use]
pub fn at(service: &TcpService, addr: Ipv4Addr) -> TcpService {
    TcpService {
        vip: SocketAddr::V4(SocketAddrV4::new(addr, service.vip.port())),
        backends: service.backends.iter().copied().filter(SocketAddr::is_ipv4).collect(),
        ..service.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_matches_the_listen_port_at_the_container_address() {
        let s = TcpService::at(
            "0.0.0.0:15432".parse().unwrap(),
            vec!["10.0.1.3:5432".parse().unwrap()],
            std::time::Duration::ZERO,
        );
        let k = at(&s, Ipv4Addr::new(172, 18, 0, 3));
        assert_eq!(k.vip, "172.18.0.3:15432".parse().unwrap());
        assert_eq!(k.backends, s.backends);
    }
}
