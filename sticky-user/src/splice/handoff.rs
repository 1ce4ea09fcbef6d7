//! Handing a connection pair over for good: the bytes each side has not seen yet are written, then
//! the pair is spliced in the kernel, or relayed in user space when there is no splice or the
//! kernel refuses it.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
    time::Instant,
};

use super::Splicer;

/// How a handed-off connection went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// The kernel carries it; the watcher closes it when it ends.
    Spliced,
    /// Relayed in user space until it ended (no eBPF, or the splice was refused).
    Relayed,
}

/// Hands a client connection and its upstream connection over for good: `client_early` (bytes read
/// from the client that the upstream has not seen) and `upstream_early` are written first, then the
/// pair is spliced in the kernel if `splicer` is given and accepts it, else relayed here until it
/// ends.
///
/// # Errors
/// Writing the early bytes or the relay failed.
pub async fn hand_off(
    splicer: Option<&Arc<Splicer>>,
    mut client: TcpStream,
    client_early: Bytes,
    mut upstream: TcpStream,
    upstream_early: Bytes,
    idle: Duration,
) -> io::Result<Handoff> {
    // Written before the join: the kernel's bytes then follow them on each socket.
    if !client_early.is_empty() {
        upstream.write_all(&client_early).await?;
    }
    if !upstream_early.is_empty() {
        client.write_all(&upstream_early).await?;
    }
    let Some(splicer) = splicer else {
        relay(client, upstream, idle).await?;
        return Ok(Handoff::Relayed);
    };
    // into_std takes the sockets out of tokio's epoll: a spliced socket must not wake this thread
    let (client, upstream) = (client.into_std()?, upstream.into_std()?);
    match splicer.join(client, upstream) {
        Ok(()) => Ok(Handoff::Spliced),
        Err((e, [client, upstream])) => {
            tracing::debug!(error = %e, "splice refused; relaying in user space");
            relay(TcpStream::from_std(client)?, TcpStream::from_std(upstream)?, idle).await?;
            Ok(Handoff::Relayed)
        }
    }
}

/// An upgraded connection over TLS, relayed in user space for good: `client_early` goes to the
/// upstream and `upstream_early` to the client (encrypted), then [`relay`]. There is no kernel TLS
/// record layer on this kernel, so no splice.
///
/// # Errors
/// Writing the early bytes or the relay failed.
pub async fn relay_tls(
    mut client: tokio_rustls::server::TlsStream<TcpStream>,
    client_early: Bytes,
    mut upstream: TcpStream,
    upstream_early: Bytes,
    idle: Duration,
) -> io::Result<()> {
    if !client_early.is_empty() {
        upstream.write_all(&client_early).await?;
    }
    if !upstream_early.is_empty() {
        client.write_all(&upstream_early).await?;
        client.flush().await?;
    }
    relay(client, upstream, idle).await
}

/// The user-space copy loop: bytes both ways until both directions are closed (a FIN is passed on as
/// a FIN), or until no byte moved either way for `idle` (then an error of kind `TimedOut`).
///
/// # Errors
/// Either socket fails, or the pair was idle too long.
pub async fn relay<C>(mut client: C, mut upstream: TcpStream, idle: Duration) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut c = Touch { stream: &mut client, last: &last, start };
    let mut u = Touch { stream: &mut upstream, last: &last, start };
    let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
    tokio::pin!(copy);
    let quiet_until = || start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
    loop {
        tokio::select! {
            r = &mut copy => return r.map(|_| ()),
            () = tokio::time::sleep_until(quiet_until()) => {
                if quiet_until() <= Instant::now() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "relayed connection idle"));
                }
            }
        }
    }
}

/// A stream that notes when it last read a byte (milliseconds since `start`).
struct Touch<'a, S> {
    stream: &'a mut S,
    last: &'a AtomicU64,
    start: Instant,
}

impl<S: AsyncRead + Unpin> AsyncRead for Touch<'_, S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Touch<'_, S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_shutdown(cx)
    }
}
