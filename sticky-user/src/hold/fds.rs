//! Descriptors over a unix stream socket (`SCM_RIGHTS`): one message of bytes with descriptors
//! attached, and its receipt. The only unsafe code of the holder: one syscall per site.

use std::{
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
};

use super::protocol::MAX_SOCKETS;

/// Room for the control message of [`MAX_SOCKETS`] descriptors (`CMSG_SPACE`), rounded up to whole
/// `u64`s so the buffer is aligned for `cmsghdr`.
const CONTROL_WORDS: usize = (MAX_SOCKETS * size_of::<RawFd>() + 2 * size_of::<libc::cmsghdr>()) / 8 + 1;

/// Sends `bytes` with `fds` attached, in one `sendmsg` (a short write of the bytes is an error:
/// the messages are far smaller than a unix socket's buffer).
///
/// # Errors
/// More than [`MAX_SOCKETS`] descriptors, or the send fails.
pub fn send(stream: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_SOCKETS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let raw: Vec<RawFd> = fds.iter().map(BorrowedFd::as_raw_fd).collect();
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    // SAFETY: an all-zero msghdr is a valid empty header; the fields are set below.
    #[expect(unsafe_code, reason = "zeroed plain-old-data struct for sendmsg")]
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        let data_len = u32::try_from(raw.len() * size_of::<RawFd>()).unwrap_or(u32::MAX);
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
        #[expect(unsafe_code, reason = "libc's CMSG_* size macros are unsafe fns")]
        let (space, len) = unsafe { (libc::CMSG_SPACE(data_len), libc::CMSG_LEN(data_len)) };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as usize;
        // SAFETY: msg_control points at `control`, which is aligned and at least `space` bytes
        // (CONTROL_WORDS covers MAX_SOCKETS descriptors); the header and data are written inside it.
        #[expect(unsafe_code, reason = "filling the SCM_RIGHTS control message through libc's CMSG_* accessors")]
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&raw const msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = len as usize;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                raw.len() * size_of::<RawFd>(),
            );
        }
    }
    // SAFETY: msg points at live buffers (bytes, iov, control) for the duration of the call.
    #[expect(unsafe_code, reason = "sendmsg with SCM_RIGHTS has no safe wrapper in std")]
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
    match usize::try_from(sent) {
        Err(_) => Err(io::Error::last_os_error()),
        Ok(n) if n < bytes.len() => Err(io::Error::new(io::ErrorKind::WriteZero, "short write of a holder message")),
        Ok(_) => Ok(()),
    }
}

/// Receives bytes into `buf` and the descriptors attached to them (close-on-exec). Returns the
/// number of bytes (0: the peer closed).
///
/// # Errors
/// The receive fails, or the control data was cut (more descriptors than [`MAX_SOCKETS`]: those
/// received are closed).
pub fn recv(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is a valid empty header; the fields are set below.
    #[expect(unsafe_code, reason = "zeroed plain-old-data struct for recvmsg")]
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg points at live buffers (buf, iov, control) for the duration of the call.
    #[expect(unsafe_code, reason = "recvmsg with SCM_RIGHTS has no safe wrapper in std")]
    let received = unsafe { libc::recvmsg(stream.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    let n = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR/NXTHDR walk within them,
    // and every SCM_RIGHTS payload is an array of descriptors now owned by this process.
    #[expect(unsafe_code, reason = "reading the SCM_RIGHTS control messages through libc's CMSG_* accessors")]
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&raw const msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header);
                let bytes = (*header).cmsg_len - (data as usize - header as usize);
                for i in 0..bytes / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i * size_of::<RawFd>()).cast::<RawFd>().read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&raw const msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "more descriptors than a holder message carries"));
    }
    Ok((n, fds))
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        os::{fd::AsFd as _, unix::net::UnixStream},
    };

    #[test]
    fn descriptors_cross_a_socket_pair_and_stay_usable() {
        let (a, b) = UnixStream::pair().expect("a socket pair");
        let (mut p1, p2) = UnixStream::pair().expect("the payload pair");
        super::send(&a, b"hello\n", &[p2.as_fd()]).expect("send");
        drop(p2);
        let mut buf = [0u8; 64];
        let (n, fds) = super::recv(&b, &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hello\n");
        assert_eq!(fds.len(), 1, "one descriptor arrives");
        let mut passed = UnixStream::from(fds.into_iter().next().expect("one"));
        p1.write_all(b"x").expect("write through the original end");
        let mut byte = [0u8; 1];
        passed.read_exact(&mut byte).expect("the passed end reads it");
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn a_message_without_descriptors_is_plain_bytes() {
        let (a, b) = UnixStream::pair().expect("a socket pair");
        super::send(&a, b"no fds\n", &[]).expect("send");
        let mut buf = [0u8; 64];
        let (n, fds) = super::recv(&b, &mut buf).expect("recv");
        assert_eq!((&buf[..n], fds.len()), (&b"no fds\n"[..], 0));
        drop(a);
        assert_eq!(super::recv(&b, &mut buf).expect("eof").0, 0, "a closed peer reads as 0 bytes");
    }
}
