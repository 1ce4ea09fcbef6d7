//! Asking a holder for listening sockets: one connection, one request, one response with the
//! descriptors, each checked to be a listening TCP socket bound to the address it is named by.
//! Blocking (a few syscalls, bounded by [`TIMEOUT`]); [`fetch_waiting`] retries while no holder
//! answers yet, for a bounded time, with one log line per state.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    os::{fd::OwnedFd, unix::net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use super::{
    HoldError, fds,
    protocol::{MAX_LINE, Request, Response},
};

/// How long one exchange with the holder may take (connect aside).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts while no holder answers.
const RETRY: Duration = Duration::from_millis(250);

/// Asks the holder at `path` for `request`'s sockets: (address, listener) in the order answered.
///
/// # Errors
/// No holder there ([`HoldError::Absent`]), the exchange fails, the holder refuses, or a descriptor
/// is not the listening socket it is named as.
pub fn fetch(path: &Path, request: &Request) -> Result<Vec<(SocketAddr, TcpListener)>, HoldError> {
    let stream = UnixStream::connect(path).map_err(|source| HoldError::Absent { path: path.to_owned(), source })?;
    let io = |action, source| HoldError::Exchange { path: path.to_owned(), action, source };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| io("set a timeout", e))?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| io("set a timeout", e))?;
    fds::send(&stream, request.encode().as_bytes(), &[]).map_err(|e| io("send the request", e))?;
    let (line, received) = read_line(&stream).map_err(|e| io("read the response", e))?;
    let response = Response::parse(&line).map_err(|source| HoldError::Protocol { path: path.to_owned(), source })?;
    let addrs = match response {
        Response::Ok(addrs) => addrs,
        Response::Err(message) => return Err(HoldError::Refused { path: path.to_owned(), message }),
    };
    if addrs.len() != received.len() {
        return Err(HoldError::Mismatch {
            path: path.to_owned(),
            what: format!("{} addresses named, {} descriptors received", addrs.len(), received.len()),
        });
    }
    if let Request::Get(want) = request
        && *want != addrs
    {
        return Err(HoldError::Mismatch { path: path.to_owned(), what: format!("asked for {want:?}, got {addrs:?}") });
    }
    addrs.into_iter().zip(received).map(|(addr, fd)| check(path, addr, fd).map(|l| (addr, l))).collect()
}

/// [`fetch`] for `addrs`, retried every 250 ms while no holder answers at `path` (it starts
/// beside sticky), for at most `wait`; one line when it starts waiting, one when it got them.
///
/// # Errors
/// Still no holder after `wait`, or any other [`fetch`] error at once.
pub fn fetch_waiting(path: &Path, addrs: &[SocketAddr], wait: Duration) -> Result<Vec<TcpListener>, HoldError> {
    let started = Instant::now();
    let request = Request::Get(addrs.to_vec());
    let mut said = false;
    loop {
        match fetch(path, &request) {
            Ok(sockets) => {
                tracing::info!(
                    holder = %path.display(), sockets = ?addrs, waited = ?started.elapsed(),
                    "listening sockets taken from the holder"
                );
                return Ok(sockets.into_iter().map(|(_, l)| l).collect());
            }
            Err(e @ HoldError::Absent { .. }) if started.elapsed() < wait => {
                if !said {
                    tracing::warn!(
                        error = %crate::telemetry::chain(&e), wait = ?wait,
                        "no listener holder answers yet (`sticky hold` starts beside sticky); retrying"
                    );
                    said = true;
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

/// One response line and the descriptors that came with it.
fn read_line(stream: &UnixStream) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut line = Vec::new();
    let mut received = Vec::new();
    let mut buf = [0u8; MAX_LINE];
    while !line.ends_with(b"\n") {
        let (n, fds) = fds::recv(stream, &mut buf)?;
        received.extend(fds);
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the holder closed before a whole line"));
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response line too long"));
        }
    }
    let line = String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
    Ok((line, received))
}

/// The descriptor as a listener, if it is a listening TCP socket bound to `addr`.
fn check(path: &Path, addr: SocketAddr, fd: OwnedFd) -> Result<TcpListener, HoldError> {
    let socket = socket2::Socket::from(fd);
    let bound = socket.local_addr().ok().and_then(|a| a.as_socket());
    let listening = socket.is_listener().unwrap_or(false);
    if bound != Some(addr) || !listening {
        return Err(HoldError::Mismatch {
            path: path.to_owned(),
            what: format!("the descriptor named {addr} is bound to {bound:?}, listening: {listening}"),
        });
    }
    Ok(socket.into())
}
