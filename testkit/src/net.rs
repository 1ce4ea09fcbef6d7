//! TCP endpoints of tests: a loopback port that was free a moment ago, and connects bounded in time,
//! optionally from a chosen source address (L4 affinity follows the client's address).

use std::{
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

/// How long [`can_connect`] waits: a listener in the same machine answers far sooner.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A connect that failed, naming both ends.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket could not be bound to the source address, or the connect failed or timed out.
    #[error("failed to connect to {addr} from {}", from.map_or_else(|| "any address".to_owned(), |f| f.to_string()))]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// From which source address, if one was chosen.
        from: Option<IpAddr>,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// A port that was free a moment ago on 127.0.0.1 (the kernel's pick, released before use: a caller
/// that binds it may still lose a race and should retry with another).
///
/// # Panics
/// Binding port 0 on loopback fails (no loopback interface).
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding port 0 on loopback must work")
}

/// A port that can be bound on every address now and lies below the kernel's ephemeral range, for a
/// listener another process binds later (a Swarm stack's holder on the host network): a port from
/// [`free_port`] is ephemeral, and an outgoing connection may take it in between (a load loop's,
/// dockerd's), which makes that bind fail. Tries random ports in 20000..32000.
///
/// # Panics
/// No port of that range can be bound (after 200 tries).
#[must_use]
pub fn free_listen_port() -> u16 {
    for _ in 0..200 {
        let port = 20_000 + rand_below(12_000);
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A number below `n` from the clock and the process id (tests need spread, not quality).
fn rand_below(n: u16) -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mixed = nanos.wrapping_mul(2_654_435_761) ^ std::process::id().wrapping_mul(40_503);
    u16::try_from(mixed % u32::from(n)).unwrap_or(0)
}

/// Connects to `addr` within `timeout`, from `from` (any port) if given, from the calling thread's
/// network namespace.
///
/// # Errors
/// The bind or the connect fails, or the connect takes longer than `timeout`.
pub fn connect(addr: SocketAddr, from: Option<IpAddr>, timeout: Duration) -> Result<TcpStream, NetError> {
    let fail = |source| NetError::Connect { addr, from, source };
    let Some(from) = from else {
        return TcpStream::connect_timeout(&addr, timeout).map_err(fail);
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(fail)?;
    socket.bind(&SocketAddr::new(from, 0).into()).map_err(fail)?;
    socket.connect_timeout(&addr.into(), timeout).map_err(fail)?;
    Ok(socket.into())
}

/// Whether a TCP connect to `addr` succeeds within [`PROBE_TIMEOUT`] (from the calling thread's namespace).
#[must_use]
pub fn can_connect(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok()
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
        time::Duration,
    };

    use super::{can_connect, connect, free_port};

    #[test]
    fn a_connect_from_a_chosen_address_arrives_from_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding loopback must work");
        let addr = listener.local_addr().expect("a bound listener must have an address");
        // All of 127.0.0.0/8 is on lo: a second loopback address needs no set-up.
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let _client = connect(addr, Some(from), Duration::from_secs(5)).expect("the connect must work");
        let (_, peer) = listener.accept().expect("the listener must accept");
        assert_eq!(peer.ip(), from, "the server must see the chosen source address");
    }

    #[test]
    fn a_refused_connect_names_its_target() {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(!can_connect(addr), "nothing listens on a port just released");
        let err = connect(addr, None, Duration::from_secs(5)).expect_err("a connect to a closed port must fail");
        assert!(err.to_string().contains(&addr.to_string()), "the message must name the target: {err}");
    }
}
