//! Moving one exchange's bytes by their framing, with an inactivity timeout on every read and write
//! (issue 13 item 2): the request body to the backend while its response head is awaited (a backend
//! may answer before the body is through: an early 401, 413 or redirect, or `100 Continue`), then the
//! response body to the client. Nothing is buffered whole: a read buffer's worth at a time, validated
//! by [`Body`] as it passes.

use std::{
    future::poll_fn,
    io,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf as _, BytesMut};
use tokio::{net::TcpStream, time::Instant};

use super::{
    buffers::Buf,
    h1::{Body, BodyError, Exchange, Limits, Parsed, ResponseError, ResponseHead},
    io::ClientIo,
};
use crate::{config::Timeouts, stats::Timeout};

/// Why an exchange stopped, and whose fault it was.
#[derive(Debug)]
pub enum Fault {
    /// The client closed or failed mid-exchange.
    Client(Option<io::Error>),
    /// The client's body is not framed as its head said (400).
    ClientBody(BodyError),
    /// The backend closed or failed; `answered` is whether any byte of a response had arrived.
    Backend {
        /// The socket error, none for an early close.
        error: Option<io::Error>,
        /// Any response byte had arrived.
        answered: bool,
    },
    /// The backend's response head is malformed (502).
    Response(ResponseError),
    /// The backend's response body is not framed as its head said.
    ResponseBody(BodyError),
    /// A timer fired.
    Timeout(Timeout),
}

/// The request body's progress while it is relayed.
#[derive(Debug)]
pub struct RequestBody {
    /// The body's framing state.
    pub body: Body,
    /// Bytes at the front of the client buffer that belong to the body and are due to the backend.
    pub to_send: usize,
}

impl RequestBody {
    /// Whether all of the body went to the backend.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.to_send == 0 && self.body.is_done()
    }
}

/// Both sockets and buffers of one exchange.
#[derive(Debug)]
pub struct Sides<'a> {
    /// The client.
    pub client: &'a ClientIo,
    /// Bytes read from the client: the rest of the request body, then maybe the next request.
    pub cbuf: &'a mut Buf,
    /// The backend.
    pub up: &'a TcpStream,
    /// Bytes read from the backend.
    pub ubuf: &'a mut Buf,
    /// The timeouts.
    pub timeouts: Timeouts,
}

enum Event {
    UpRead(usize),
    UpWrote(usize),
    ClientRead(usize),
}

/// What the relay reads and writes through a shared reference: a backend socket, a client
/// connection (plain or TLS).
pub trait Io {
    /// Reads into `buf` once something is there.
    fn poll_read_buf(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
    /// Writes some of `bytes`.
    fn poll_write(&self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>>;
    /// Sends what the writes left buffered (TLS records); a socket has nothing to do.
    fn poll_flush(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Io for TcpStream {
    fn poll_read_buf(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        super::io::poll_read_drained(self, cx, buf)
    }

    fn poll_write(&self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_write(bytes) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }
}

impl Io for ClientIo {
    fn poll_read_buf(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        ClientIo::poll_read_buf(self, cx, buf)
    }

    fn poll_write(&self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        ClientIo::poll_write(self, cx, bytes)
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ClientIo::poll_flush(self, cx)
    }
}

fn poll_read_buf<S: Io + ?Sized>(s: &S, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    s.poll_read_buf(cx, buf)
}

/// Reads into `buf` (what tokio's `read_buf` does, through a shared reference).
///
/// # Errors
/// The socket failed.
pub async fn read_buf<S: Io + ?Sized>(s: &S, buf: &mut BytesMut) -> io::Result<usize> {
    poll_fn(|cx| s.poll_read_buf(cx, buf)).await
}

fn poll_write<S: Io + ?Sized>(s: &S, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
    s.poll_write(cx, bytes)
}

impl Sides<'_> {
    /// Waits for the next complete response head (interim or final) at the start of the backend
    /// buffer, relaying the request body meanwhile; returns the head's length. `deadline` is the
    /// response timeout's (504).
    ///
    /// # Errors
    /// Either side failed or stalled, or a body or head is malformed.
    pub async fn response_head(
        &mut self,
        resp: &mut ResponseHead,
        exchange: &Exchange,
        limits: Limits,
        req: &mut RequestBody,
        deadline: Instant,
    ) -> Result<usize, Fault> {
        loop {
            if !self.ubuf.is_empty() {
                match resp.parse(self.ubuf, limits, exchange).map_err(Fault::Response)? {
                    Parsed::Complete { len } => return Ok(len),
                    Parsed::Incomplete => {}
                }
            }
            if req.to_send == 0 && !req.body.is_done() && !self.cbuf.is_empty() {
                req.to_send = req.body.feed(self.cbuf).map_err(Fault::ClientBody)?.used;
            }
            let reading_client = req.to_send == 0 && !req.body.is_done();
            // the clock is read only while a body moves (a bodiless request needs the deadline alone)
            let activity = if req.to_send > 0 {
                Some((Instant::now() + self.timeouts.backend, Timeout::Backend))
            } else if reading_client {
                Some((Instant::now() + self.timeouts.client, Timeout::Client))
            } else {
                None
            };
            let (until, kind) = match activity {
                Some((at, kind)) if at < deadline => (at, kind),
                _ => (deadline, Timeout::Response),
            };
            self.ubuf.room();
            if reading_client {
                self.cbuf.room();
            }
            let (client, up, to_send) = (self.client, self.up, req.to_send);
            let (cbuf, ubuf) = (&mut *self.cbuf, &mut *self.ubuf);
            let event = poll_fn(|cx| {
                if let Poll::Ready(r) = poll_read_buf(up, cx, ubuf) {
                    return Poll::Ready(r.map(Event::UpRead).map_err(|e| (true, e)));
                }
                if to_send > 0 {
                    if let Poll::Ready(r) = poll_write(up, cx, cbuf.get(..to_send).unwrap_or_default()) {
                        return Poll::Ready(r.map(Event::UpWrote).map_err(|e| (true, e)));
                    }
                } else if reading_client {
                    if let Poll::Ready(r) = poll_read_buf(client, cx, cbuf) {
                        return Poll::Ready(r.map(Event::ClientRead).map_err(|e| (false, e)));
                    }
                }
                Poll::Pending
            });
            let event = tokio::time::timeout_at(until, event).await.map_err(|_| Fault::Timeout(kind))?;
            match event {
                Ok(Event::UpRead(0)) => return Err(Fault::Backend { error: None, answered: !self.ubuf.is_empty() }),
                Ok(Event::UpWrote(0)) => {
                    return Err(Fault::Backend { error: Some(io::ErrorKind::WriteZero.into()), answered: false });
                }
                Ok(Event::UpWrote(n)) => {
                    self.cbuf.advance(n);
                    req.to_send -= n;
                }
                Ok(Event::ClientRead(0)) => return Err(Fault::Client(None)),
                Ok(Event::UpRead(_) | Event::ClientRead(_)) => {}
                Err((true, e)) => return Err(Fault::Backend { error: Some(e), answered: !self.ubuf.is_empty() }),
                Err((false, e)) => return Err(Fault::Client(Some(e))),
            }
        }
    }

    /// Relays the response body (whatever of it is already in the backend buffer first) to the
    /// client; `dechunk` sends only a chunked body's data (an HTTP/1.0 client). What follows the body
    /// stays in the backend buffer.
    ///
    /// Returns the bytes written to the client (for the access log).
    ///
    /// # Errors
    /// Either side failed or stalled, or the body is not framed as its head said.
    pub async fn response_body(&mut self, body: &mut Body, dechunk: bool, out: &mut BytesMut) -> Result<u64, Fault> {
        let mut sent = 0u64;
        loop {
            if !self.ubuf.is_empty() && !body.is_done() {
                out.clear();
                let input: &[u8] = self.ubuf;
                let progress = if dechunk {
                    body.feed_data(input, |r| out.extend_from_slice(input.get(r).unwrap_or_default()))
                } else {
                    body.feed(input)
                }
                .map_err(Fault::ResponseBody)?;
                let data = if dechunk { &out[..] } else { input.get(..progress.used).unwrap_or_default() };
                write_all(self.client, data, self.timeouts.client, Timeout::Client).await.map_err(client_fault)?;
                sent = sent.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
                self.ubuf.advance(progress.used);
            }
            if body.is_done() {
                return Ok(sent);
            }
            self.ubuf.room();
            let (up, ubuf) = (self.up, &mut *self.ubuf);
            match within(self.timeouts.backend, |cx| poll_read_buf(up, cx, ubuf)).await {
                None => return Err(Fault::Timeout(Timeout::Backend)),
                Some(Ok(0)) => {
                    return body.finish().map(|()| sent).map_err(Fault::ResponseBody);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Fault::Backend { error: Some(e), answered: true }),
            }
        }
    }
}

/// Why a write stopped.
#[derive(Debug)]
pub enum WriteError {
    /// The socket failed.
    Io(io::Error),
    /// The peer took no byte for the timeout.
    Stalled(Timeout),
}

fn client_fault(e: WriteError) -> Fault {
    match e {
        WriteError::Io(e) => Fault::Client(Some(e)),
        WriteError::Stalled(kind) => Fault::Timeout(kind),
    }
}

/// Writes all of `bytes`; each write must make progress within `timeout` (an inactivity timeout, not
/// a deadline for the whole).
///
/// # Errors
/// The socket failed, or took nothing for `timeout`.
pub async fn write_all<S: Io + ?Sized>(
    s: &S,
    mut bytes: &[u8],
    timeout: Duration,
    kind: Timeout,
) -> Result<(), WriteError> {
    while !bytes.is_empty() {
        match within(timeout, |cx| poll_write(s, cx, bytes)).await {
            None => return Err(WriteError::Stalled(kind)),
            Some(Err(e)) => return Err(WriteError::Io(e)),
            Some(Ok(0)) => return Err(WriteError::Io(io::ErrorKind::WriteZero.into())),
            Some(Ok(n)) => bytes = bytes.get(n..).unwrap_or_default(),
        }
    }
    // a TLS stream may hold the last record until the socket takes it
    match within(timeout, |cx| s.poll_flush(cx)).await {
        None => Err(WriteError::Stalled(kind)),
        Some(Err(e)) => Err(WriteError::Io(e)),
        Some(Ok(())) => Ok(()),
    }
}

/// `poll` until it is ready, or `None` once it has been pending for `timeout`. The timer is armed
/// only when the first poll is pending: a write the socket takes at once (nearly all of them) reads
/// no clock and touches no timer, where `tokio::time::timeout` reads the clock on every call (four
/// reads a request, one of sticky's largest user-space costs in a profile of the pinned path).
async fn within<T>(timeout: Duration, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Option<T> {
    // pinned in the future's own state, as `tokio::time::timeout` keeps its timer: no allocation
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    poll_fn(|cx| {
        if let Poll::Ready(v) = poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep(timeout)));
        }
        match timer.as_mut().as_pin_mut().map(|t| t.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpListener,
    };

    use super::*;
    use crate::proxy::h1::{Method, RequestFraming};

    const TIMEOUTS: Timeouts = Timeouts {
        connect: Duration::from_secs(1),
        response: Duration::from_secs(5),
        idle: Duration::from_secs(5),
        client: Duration::from_millis(300),
        backend: Duration::from_millis(300),
        tunnel: Duration::from_secs(5),
        shutdown: Duration::from_secs(1),
    };
    const LIMITS: Limits = Limits { max_head: 8192, max_fields: 100 };

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().expect("address");
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    async fn read_until_close(mut s: TcpStream) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut v)).await;
        v
    }

    #[tokio::test]
    async fn the_request_body_flows_while_the_response_head_is_awaited_and_the_response_is_relayed() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (client, mut client_peer) = pair(&l).await;
        let client = ClientIo::Plain(client);
        let (up, mut backend) = pair(&l).await;
        let (mut cbuf, mut ubuf) = (Buf::take(), Buf::take());
        let mut sides = Sides { client: &client, cbuf: &mut cbuf, up: &up, ubuf: &mut ubuf, timeouts: TIMEOUTS };
        let mut req = RequestBody { body: Body::request(RequestFraming::Chunked, 1024), to_send: 0 };
        client_peer.write_all(b"5\r\nhello\r\n0\r\n\r\nGET /next").await.expect("write");
        let backend_side = tokio::spawn(async move {
            let mut got = vec![0u8; 64];
            let mut n = 0;
            while !got[..n].ends_with(b"0\r\n\r\n") {
                n += backend.read(&mut got[n..]).await.expect("backend reads");
            }
            backend.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwor").await.expect("write");
            tokio::time::sleep(Duration::from_millis(50)).await;
            backend.write_all(b"ld").await.expect("write");
            got.truncate(n);
            (got, backend)
        });
        let mut resp = ResponseHead::default();
        let deadline = Instant::now() + TIMEOUTS.response;
        let len = sides
            .response_head(&mut resp, &Exchange::new(Method::Post, None), LIMITS, &mut req, deadline)
            .await
            .expect("a head");
        assert!(req.is_done(), "the whole body went to the backend");
        assert_eq!(&sides.cbuf[..], b"GET /next", "the next request stays in the client buffer");
        sides.ubuf.advance(len);
        let mut body = Body::response(&resp, 1024);
        sides.response_body(&mut body, false, &mut BytesMut::new()).await.expect("the body is relayed");
        let (got, _backend) = backend_side.await.expect("backend task");
        assert_eq!(got, b"5\r\nhello\r\n0\r\n\r\n");
        drop(client);
        assert_eq!(read_until_close(client_peer).await, b"world");
    }

    #[tokio::test]
    async fn a_client_that_stalls_its_body_or_sends_a_bad_chunk_is_stopped() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (client, mut client_peer) = pair(&l).await;
        let client = ClientIo::Plain(client);
        let (up, _backend) = pair(&l).await;
        let (mut cbuf, mut ubuf) = (Buf::take(), Buf::take());
        let mut sides = Sides { client: &client, cbuf: &mut cbuf, up: &up, ubuf: &mut ubuf, timeouts: TIMEOUTS };
        let mut resp = ResponseHead::default();
        let exchange = Exchange::new(Method::Post, None);
        let deadline = Instant::now() + TIMEOUTS.response;
        let mut stalled = RequestBody { body: Body::request(RequestFraming::Length(10), 1024), to_send: 0 };
        let r = sides.response_head(&mut resp, &exchange, LIMITS, &mut stalled, deadline).await;
        assert!(matches!(r, Err(Fault::Timeout(Timeout::Client))), "{r:?}");
        client_peer.write_all(b"zz\r\n").await.expect("write");
        let mut bad = RequestBody { body: Body::request(RequestFraming::Chunked, 1024), to_send: 0 };
        let r = sides.response_head(&mut resp, &exchange, LIMITS, &mut bad, deadline).await;
        assert!(matches!(r, Err(Fault::ClientBody(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_silent_backend_is_a_response_timeout_and_a_short_body_a_backend_fault() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (client, _client_peer) = pair(&l).await;
        let client = ClientIo::Plain(client);
        let (up, mut backend) = pair(&l).await;
        let (mut cbuf, mut ubuf) = (Buf::take(), Buf::take());
        let mut sides = Sides { client: &client, cbuf: &mut cbuf, up: &up, ubuf: &mut ubuf, timeouts: TIMEOUTS };
        let mut resp = ResponseHead::default();
        let exchange = Exchange::new(Method::Get, None);
        let mut none = RequestBody { body: Body::Done, to_send: 0 };
        let soon = Instant::now() + Duration::from_millis(100);
        let r = sides.response_head(&mut resp, &exchange, LIMITS, &mut none, soon).await;
        assert!(matches!(r, Err(Fault::Timeout(Timeout::Response))), "{r:?}");
        backend.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").await.expect("write");
        drop(backend);
        let later = Instant::now() + TIMEOUTS.response;
        let len = sides.response_head(&mut resp, &exchange, LIMITS, &mut none, later).await.expect("a head");
        sides.ubuf.advance(len);
        let mut body = Body::response(&resp, 1024);
        let r = sides.response_body(&mut body, false, &mut BytesMut::new()).await;
        assert!(matches!(r, Err(Fault::ResponseBody(BodyError::Truncated))), "{r:?}");
    }
}
