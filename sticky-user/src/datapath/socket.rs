//! Socket facts and waits the L7 splice needs, as safe functions: the socket cookie, how many bytes a
//! socket's TCP has taken, a kick that runs the verdict on bytes queued before the join, and an
//! epoll set that wakes only on FIN, RST and close (never on data).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    time::Duration,
};

/// The size of `T` as a socket option length.
fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// The socket cookie of `fd` (`SO_COOKIE`, Linux >= 4.12): the key of the splice maps.
///
/// # Errors
/// Not a socket.
pub fn cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut value = 0u64;
    let mut len = socklen::<u64>();
    // SAFETY: value and len are live locals of the sizes the kernel is told.
    #[expect(unsafe_code, reason = "getsockopt(SO_COOKIE) has no safe wrapper in std")]
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE, (&raw mut value).cast(), &raw mut len)
    };
    if rc == 0 { Ok(value) } else { Err(io::Error::last_os_error()) }
}

fn bytes_acked(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: tcp_info is plain integers; all-zero is a valid value.
    #[expect(unsafe_code, reason = "zeroed plain-old-data struct for getsockopt")]
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = socklen::<libc::tcp_info>();
    // SAFETY: info and len are live locals of the sizes the kernel is told.
    #[expect(unsafe_code, reason = "getsockopt(TCP_INFO) has no safe wrapper in std")]
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &raw mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // tcpi_bytes_acked came with Linux 4.1; an older kernel's shorter struct leaves it 0
    Ok(info.tcpi_bytes_acked)
}

fn ioctl_int(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u64> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCINQ/SIOCOUTQ write one int to the pointer, which is a live local.
    #[expect(unsafe_code, reason = "ioctl(SIOCINQ/SIOCOUTQ) has no safe wrapper in std")]
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut value) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Which side of the true count [`written`] must err on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Never below the true count (the baseline taken at the join).
    Upper,
    /// Never above it (the check before a FIN is forwarded).
    Lower,
}

/// Bytes this TCP socket has taken from its writers since it connected: acknowledged by the peer
/// (`tcpi_bytes_acked`) plus still queued (`SIOCOUTQ`: sent but unacknowledged, or not sent yet),
/// i.e. `write_seq` minus the initial sequence number.
///
/// The two numbers are read one after the other while ACKs may move bytes from one to the other, so
/// the order decides the error: queued first then acked can only count a byte twice ([`Bound::Upper`]),
/// acked first then queued can only miss one ([`Bound::Lower`]). Only differences are used, so the
/// kernel's treatment of the SYN does not matter.
///
/// # Errors
/// Not a connected TCP socket.
pub fn written(fd: BorrowedFd<'_>, bound: Bound) -> io::Result<u64> {
    Ok(match bound {
        Bound::Upper => {
            let queued = ioctl_int(fd, libc::TIOCOUTQ)?;
            bytes_acked(fd)? + queued
        }
        Bound::Lower => {
            let acked = bytes_acked(fd)?;
            acked + ioctl_int(fd, libc::TIOCOUTQ)?
        }
    })
}

/// Bytes waiting on the socket's own receive side (`SIOCINQ`). For a socket in a sockmap this is
/// what the verdict left there (no peer); the call takes the socket lock, so it also waits for a
/// receive in progress (and its verdict) to finish.
///
/// # Errors
/// Not a connected TCP socket.
pub fn queued_in(fd: BorrowedFd<'_>) -> io::Result<u64> {
    ioctl_int(fd, libc::FIONREAD)
}

/// Runs the verdict over bytes that were queued on the socket before it joined the splice maps.
///
/// Data that arrived before the join sits on the receive queue, and the verdict only runs on the
/// next "data ready", which may never come (the client waits for an answer). For a socket with a
/// stream verdict, `recvmsg` first hands such leftover bytes to the verdict (`tcp_bpf`'s
/// `tcp_bpf_recvmsg_parser`, Linux >= 6.4; the same re-check that covers bytes received before
/// `accept`). `MSG_PEEK | MSG_DONTWAIT` consumes nothing and never blocks: the bytes are redirected
/// by the verdict, and what the call itself returns (normally `EAGAIN`) does not matter.
pub fn kick(fd: BorrowedFd<'_>) {
    let mut byte = 0u8;
    // SAFETY: one byte of a live local; MSG_PEEK leaves the queue as it is.
    #[expect(unsafe_code, reason = "recv(MSG_PEEK) has no safe wrapper in std for a borrowed fd")]
    let _ = unsafe { libc::recv(fd.as_raw_fd(), (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
}

/// An epoll set that reports FIN (`EPOLLRDHUP`), errors (`EPOLLERR`: RST) and full close
/// (`EPOLLHUP`) of its sockets, and nothing else.
///
/// Why not tokio: a socket in a sockmap still wakes its pollers for every skb the verdict redirects
/// (`sk_psock_verdict_data_ready` calls the saved `sk_data_ready`, Linux >= 6.4), and tokio always asks
/// for `EPOLLIN`. Those wake-ups carry the `EPOLLIN` key, so an entry whose interest lacks `EPOLLIN`
/// filters them out in `ep_poll_callback`; a FIN (`sk_state_change`, no key) and an error
/// (`EPOLLERR` key) still get through. So the set costs nothing per byte spliced.
#[derive(Debug)]
pub struct CloseWatch {
    epoll: OwnedFd,
}

/// What [`CloseWatch::wait`] reports for one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closing {
    /// The token the socket was added with.
    pub token: u64,
    /// The peer sent FIN (or the socket is fully closed).
    pub eof: bool,
    /// The socket has an error (RST).
    pub error: bool,
    /// Both directions are shut (after an error, or after FIN both ways).
    pub hangup: bool,
}

impl CloseWatch {
    /// A new, empty set.
    ///
    /// # Errors
    /// The process is out of file descriptors.
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory arguments.
        #[expect(unsafe_code, reason = "epoll has no safe wrapper in std")]
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        #[expect(unsafe_code, reason = "taking ownership of a fresh fd")]
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { epoll })
    }

    /// Watches `fd` under `token` (edge-triggered: each FIN, error or close is reported once). A
    /// socket that already has one of them is reported by the next [`CloseWatch::wait`].
    ///
    /// # Errors
    /// The kernel refuses (the fd is already in the set, or closed).
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events: (libc::EPOLLRDHUP | libc::EPOLLET).cast_unsigned(), u64: token };
        // SAFETY: event is a live local; both fds are open for the duration of the call.
        #[expect(unsafe_code, reason = "epoll has no safe wrapper in std")]
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &raw mut event) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Stops watching `fd` (closing it has the same effect).
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in add; a stale fd only makes the kernel return an error, which is ignored.
        #[expect(unsafe_code, reason = "epoll has no safe wrapper in std")]
        let _ = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd.as_raw_fd(), &raw mut event) };
    }

    /// Blocks until a watched socket reports, or `timeout` passes (`None`: no limit), and appends
    /// what was reported to `out` (at most 64 per call).
    ///
    /// # Errors
    /// The epoll fd is broken (a bug); `EINTR` is not an error (nothing is appended).
    pub fn wait(&self, timeout: Option<Duration>, out: &mut Vec<Closing>) -> io::Result<()> {
        const MAX: usize = 64;
        #[expect(clippy::cast_possible_truncation, clippy::cast_possible_wrap, reason = "MAX is 64")]
        const MAX_EVENTS: i32 = MAX as i32;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis().max(1)).unwrap_or(i32::MAX));
        // SAFETY: events is a live local array of MAX entries, and the kernel is told MAX.
        #[expect(unsafe_code, reason = "epoll has no safe wrapper in std")]
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), MAX_EVENTS, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        for e in events.iter().take(usize::try_from(n).unwrap_or(0)) {
            let bits = e.events;
            out.push(Closing {
                token: e.u64,
                eof: bits & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0,
                error: bits & libc::EPOLLERR as u32 != 0,
                hangup: bits & libc::EPOLLHUP as u32 != 0,
            });
        }
        Ok(())
    }
}
