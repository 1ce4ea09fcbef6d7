//! One client connection, one task, its requests in order: read a head into a pooled buffer, route,
//! pin, forward ([`super::forward`]), loop. Pipelined requests are each routed and pinned by their
//! own head.
//!
//! Between requests the connection holds nothing but its socket: the read buffer, the parsed heads
//! and the upstream connection went back to the worker's pools ([`super::buffers`],
//! [`super::upstream`]), the request's own state lives in a box allocated while it runs, and the
//! idle deadline and the stop signal are watched for all idle connections of the worker at once
//! ([`super::idle`]), so the task's future stays small ([`IDLE_TASK_BYTES`] bounds it, a test
//! measures it).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    sync::watch,
    time::{Duration, Instant},
};

use super::{
    buffers::{Buf, ScratchLease},
    conn::Proxy,
    forward::{self, Outcome, Request, Tunnel},
    h1::{ClientAddr, Limits, Parsed, PriorHops, Proto, RequestFraming, RequestHead},
    handoff, idle,
    io::ClientIo,
    relay,
    rescue::ProxyError,
    respond,
    wave::FirstWave,
};
use crate::{
    access_log::{self, Pick},
    model::Rule,
    proxy_protocol::Origin,
    splice,
    state::{Routing, ServiceRoute},
    stats::{ClientError, Timeout},
};

/// Upper bound of the connection's future ([`Connection`], `size_of_val`), idle or not: a request's
/// state is boxed apart. The bound is where tokio's task allocation changes size: a task is the future
/// plus 104 bytes (header 32, scheduler and id 16, stage tag 8, trailer 48, tokio 1.54), aligned to
/// 128, so a future of up to 152 bytes makes a 256-byte task and one byte more a 384-byte one. That
/// step cost far more than 128 bytes of RSS per idle connection: measured with 2000 idle connections
/// (release build, one pinned request each, `MIMALLOC_PURGE_DELAY=0`), 1.82 KiB each with the 248-byte
/// future (its client address kept as text and two socket addresses, its first wave a `Vec`), 0.72 KiB
/// once it fit again (mimalloc serves 128-aligned 384-byte blocks far less densely). The test fails
/// if it grows past this.
pub const IDLE_TASK_BYTES: usize = 152;

/// How long a connection closed after an error keeps reading (and discarding) what the client still
/// sends, so that the answer is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// What the connection does after a request.
enum Next {
    /// Wait for the next request; `Some` holds bytes of it already read.
    Again(Option<Buf>),
    /// Close.
    Close,
    /// Close after reading what the client still sends for a moment (an error answer is on its way).
    Linger,
    /// The backend switched protocols: relay or splice both sockets.
    Tunnel(Tunnel),
    /// The first request goes to the kernel splice.
    Splice(handoff::Splice),
}

/// Serves one client connection (plain, or TLS after its handshake) until it closes, fails, idles
/// out, or `stop` turns true between requests. `TCP_NODELAY` is already set ([`crate::net::accept`]).
#[must_use = "the connection is served only once the future is spawned or awaited"]
pub fn serve(
    proxy: Arc<Proxy>,
    stream: ClientIo,
    addr: ClientAddr,
    stop: watch::Receiver<bool>,
    hold: Hold,
) -> Connection {
    // the kernel splice takes plain connections only (no kTLS here: TLS stays in user space)
    let splice_first =
        proxy.splicer.is_some() && matches!(stream, ClientIo::Plain(_)) && splices_pinned(&proxy.routing);
    let wait = !stream.buffered();
    Connection {
        proxy,
        stop,
        addr,
        splice_first,
        owed: true,
        wave: FirstWave::default(),
        state: State::Idle { stream, parked: None, wait },
        _hold: hold,
    }
}

/// The forwarding facts of a connection from `origin`'s client (built by the accept loop and moved
/// into [`serve`]): its fields are kept from a trusted proxy only (issue 16), anyone else's are
/// replaced.
#[must_use]
pub fn client_addr(proxy: &Proxy, origin: Origin) -> ClientAddr {
    let trusted = proxy.clients.trusted_proxies.contains(origin.client.ip());
    ClientAddr::of(origin, if trusted { PriorHops::Keep } else { PriorHops::Discard })
}

/// How long a connection that has not sent its first request yet is waited for once the stop came:
/// it was accepted before the stop, so its request may still be on the way (or in a TLS handshake
/// that just ended), and closing it unread would fail that request in a handover between two
/// instances (`--listen-from`), where the next one would have served it.
const FIRST_REQUEST_AFTER_STOP: Duration = Duration::from_secs(1);

/// What a connection keeps until it ends besides its socket: its place in the count of open
/// connections, and its permit (`--max-connections`).
#[derive(Debug, Default)]
pub struct Hold {
    /// Counts the connection as open.
    pub active: Option<crate::stats::OwnedActiveGuard>,
    /// The connection's permit.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// One client connection, as a future written out by hand: an `async fn` keeps its arguments twice
/// and the state of every await side by side, and the idle state is what every idle connection pays
/// for. Idle, it holds the socket, the client's address and a slot in the worker's idle set; a
/// request's state (and the socket, meanwhile) lives in a box while the request runs.
pub struct Connection {
    proxy: Arc<Proxy>,
    stop: watch::Receiver<bool>,
    addr: ClientAddr,
    splice_first: bool,
    /// No request started yet: a stop waits [`FIRST_REQUEST_AFTER_STOP`] for it instead of closing.
    owed: bool,
    /// The connection's first wave (cookie-less requests follow its first pick; [`super::wave`]).
    wave: FirstWave,
    state: State,
    _hold: Hold,
}

/// A request under way: it gives the socket and the first wave back with the bytes of the next
/// request read with it, or `None` once the connection is over (closed, or ended by [`finish`]).
type Busy = Pin<Box<dyn Future<Output = Option<(ClientIo, Option<Buf>, FirstWave)>> + Send>>;

enum State {
    /// Waiting for the next request's first bytes: only the socket's readiness and a slot in the
    /// worker's idle set are held (the set's one sweeper ends the wait at the deadline or on stop). A
    /// buffer is taken once readiness says so and given back at once if the read finds nothing (a
    /// stale readiness). Over TLS, bytes rustls already decrypted are taken first (`wait` false);
    /// else the socket's readiness is awaited likewise, and the read goes through rustls (a partial
    /// record gives nothing yet).
    Idle { stream: ClientIo, parked: Option<idle::Parked>, wait: bool },
    /// A request under way.
    Busy(Busy),
    /// sticky is stopping and the connection's first request has not come: it gets
    /// [`FIRST_REQUEST_AFTER_STOP`] (boxed whole: a rare state must not size every idle connection).
    Owed(Box<Owed>),
    /// Over.
    Done,
}

/// The socket of a connection whose first request is owed after the stop, and until when.
struct Owed {
    stream: ClientIo,
    until: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Idle { .. } => "idle",
            State::Busy(_) => "busy",
            State::Owed(_) => "owed",
            State::Done => "done",
        };
        f.debug_struct("Connection").field("state", &state).finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the request whose first bytes are in `buf`; the idle timeout's `deadline` covers its head.
    fn start(&mut self, stream: ClientIo, buf: Buf, deadline: Instant) {
        let stopping = *self.stop.borrow();
        let first = std::mem::take(&mut self.splice_first);
        self.owed = false;
        let (proxy, addr, mut wave) = (self.proxy.clone(), self.addr, std::mem::take(&mut self.wave));
        self.state = State::Busy(Box::pin(async move {
            let next = request(&proxy, &stream, &addr, &mut wave, buf, deadline, stopping, first).await;
            match next {
                Next::Again(buf) => Some((stream, buf, wave)),
                Next::Close if matches!(stream, ClientIo::Plain(_)) => None,
                // boxed: one-off endings must not size every request's state
                end => {
                    Box::pin(finish(&proxy, stream, end)).await;
                    None
                }
            }
        }));
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(()),
                State::Busy(request) => {
                    let Poll::Ready(after) = request.as_mut().poll(cx) else { return Poll::Pending };
                    match after {
                        Some((stream, Some(buf), wave)) if !*this.stop.borrow() => {
                            this.wave = wave;
                            this.start(stream, buf, Instant::now() + this.proxy.settings.timeouts.idle);
                        }
                        Some((stream, None, wave)) => {
                            this.wave = wave;
                            let wait = !stream.buffered();
                            this.state = State::Idle { stream, parked: None, wait };
                        }
                        Some((_, Some(_), _)) | None => this.state = State::Done,
                    }
                }
                State::Owed(owed) => {
                    let Owed { stream, until } = &mut **owed;
                    if until.as_mut().poll(cx).is_ready() {
                        this.state = State::Done;
                        continue;
                    }
                    match stream.poll_read_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(_)) => this.state = State::Done,
                        Poll::Ready(Ok(())) => {
                            let mut buf = Buf::take();
                            match stream.try_read_buf(&mut buf) {
                                Ok(0) => this.state = State::Done,
                                Ok(_) => {
                                    let deadline = until.deadline();
                                    if let State::Owed(owed) = std::mem::replace(&mut this.state, State::Done) {
                                        this.start(owed.stream, buf, deadline);
                                    }
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(_) => this.state = State::Done,
                            }
                        }
                    }
                }
                State::Idle { stream, parked, wait } => {
                    let (proxy, stop) = (&this.proxy, &this.stop);
                    let parked = parked
                        .get_or_insert_with(|| idle::Parked::new(Instant::now() + proxy.settings.timeouts.idle, stop));
                    if *wait {
                        if let Poll::Ready(end) = parked.poll_end(cx) {
                            if end == idle::End::Expired {
                                proxy.stats.timeout(Timeout::Idle);
                            }
                            let owed = this.owed && end == idle::End::Stopping;
                            match std::mem::replace(&mut this.state, State::Done) {
                                State::Idle { stream, parked, .. } if owed => {
                                    let deadline = parked.map_or_else(Instant::now, |p| p.deadline());
                                    let until = deadline.min(Instant::now() + FIRST_REQUEST_AFTER_STOP);
                                    let until = Box::pin(tokio::time::sleep_until(until));
                                    this.state = State::Owed(Box::new(Owed { stream, until }));
                                }
                                _ => {}
                            }
                            continue;
                        }
                        match stream.poll_read_ready(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(_)) => {
                                this.state = State::Done;
                                continue;
                            }
                            Poll::Ready(Ok(())) => {}
                        }
                    }
                    *wait = true;
                    let mut buf = Buf::take();
                    match stream.try_read_buf(&mut buf) {
                        Ok(0) => this.state = State::Done,
                        Ok(_) => {
                            let deadline = parked.deadline();
                            if let State::Idle { stream, .. } = std::mem::replace(&mut this.state, State::Done) {
                                this.start(stream, buf, deadline);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => this.state = State::Done,
                    }
                }
            }
        }
    }
}

/// Ends a connection after its last request: a TLS `close_notify`, a linger after an error answer, a
/// tunnel, or the kernel splice.
async fn finish(proxy: &Arc<Proxy>, stream: ClientIo, end: Next) {
    match end {
        Next::Again(_) | Next::Close => {
            if matches!(stream, ClientIo::Tls(_)) {
                close_notify(stream).await;
            }
        }
        Next::Linger => linger(stream).await,
        Next::Tunnel(t) => tunnel(proxy, stream, t),
        Next::Splice(s) => {
            if let ClientIo::Plain(tcp) = stream {
                handoff::run(proxy, tcp, s).await;
            }
        }
    }
}

/// Whether any service splices pinned keep-alive connections (then first requests are looked at).
fn splices_pinned(routing: &Routing) -> bool {
    routing.table().services.iter().any(|s| s.spec.splice.pinned)
}

/// Reads, routes, pins and forwards one request (a cookie-less one with the connection's first `wave`).
#[expect(clippy::too_many_arguments, reason = "the connection's parts, passed down once per request")]
async fn request(
    proxy: &Proxy,
    stream: &ClientIo,
    peer: &ClientAddr,
    wave: &mut FirstWave,
    mut cbuf: Buf,
    deadline: Instant,
    stopping: bool,
    splice_first: bool,
) -> Next {
    let mut scratch = ScratchLease::take();
    let limits = Limits::from(proxy.settings.limits);
    // the head: the idle timeout covers its wait and its bytes (a slow head is closed like an idle one)
    loop {
        if !cbuf.is_empty() {
            match scratch.req.parse(&cbuf, limits) {
                Ok(Parsed::Complete { .. }) => break,
                Ok(Parsed::Incomplete) => {}
                Err(e) => {
                    proxy.stats.client_error(ClientError::Head);
                    tracing::debug!(error = %e, "request head refused");
                    forward::write_answer(proxy, stream, &ProxyError::BadRequest(e), true).await;
                    return Next::Linger;
                }
            }
        }
        cbuf.room();
        match tokio::time::timeout_at(deadline, relay::read_buf(stream, &mut cbuf)).await {
            Err(_) => {
                proxy.stats.timeout(Timeout::Idle);
                return Next::Close;
            }
            Ok(Ok(0) | Err(_)) => return Next::Close,
            Ok(Ok(_)) => {}
        }
    }
    let req = &scratch.req;
    if let Some(outcome) = plain_answer(proxy, stream, req, &cbuf, stopping).await {
        return after(outcome, cbuf);
    }
    let Some(service) = route(proxy, req, &cbuf) else {
        proxy.stats.unrouted();
        let close = !req.keep_alive() || stopping || req.framing() != RequestFraming::None;
        let mut out = Buf::take();
        respond::error(&ProxyError::NoRoute, close, &mut *out);
        let outcome = local_answer(proxy, stream, peer, (req, &cbuf), ("-", Pick::NoRoute, 404), &out, close).await;
        return after(outcome, cbuf);
    };
    if service.spec.tls.redirect
        && stream.proto() == Proto::Http
        && let Some(port) = proxy.https_port
        && let Some(location) = respond::https_location(req.authority(&cbuf), req.target(&cbuf), port)
    {
        // a body is not read: the connection closes after the redirect if one was sent
        let close = !req.keep_alive() || stopping || req.framing() != RequestFraming::None;
        let mut out = Buf::take();
        respond::redirect(&location, close, &mut *out);
        service.live.stats.local_response(308);
        let local = (&*service.spec.name, Pick::Redirect, 308);
        return after(local_answer(proxy, stream, peer, (req, &cbuf), local, &out, close).await, cbuf);
    }
    if splice_first
        && let Some(index) = handoff::spliceable(proxy, &service, req, &cbuf)
        && let Some(s) = handoff::prepare(proxy, &service, index, req, &cbuf, peer).await
    {
        return Next::Splice(s);
    }
    let mut pin = wave.pin(proxy, &service, req.cookies(&cbuf));
    let r = Request { proxy, client: stream, peer, cbuf: &mut cbuf, scratch: &mut scratch, stopping, wave };
    let outcome = forward::forward(r, &service, &mut pin).await;
    after(outcome, cbuf)
}

/// ACME HTTP-01 answers on the plain listener, before routing (so before any redirect to HTTPS).
async fn plain_answer(
    proxy: &Proxy,
    stream: &ClientIo,
    req: &RequestHead,
    buf: &[u8],
    stopping: bool,
) -> Option<Outcome> {
    if stream.proto() != Proto::Http || proxy.challenges.is_empty() {
        return None;
    }
    let path = std::str::from_utf8(req.path(buf)).ok()?;
    let body = proxy.challenges.http01(path)?;
    let close = !req.keep_alive() || stopping || req.framing() != RequestFraming::None;
    let mut out = Buf::take();
    respond::local(http::StatusCode::OK, body.as_bytes(), close, &mut *out);
    tracing::info!(path, "answered an ACME HTTP-01 challenge");
    Some(written(proxy, stream, &out, close).await)
}

/// Writes one of sticky's own answers (already formatted) and says what the connection does next.
/// Writes `out`, sticky's own answer to `req` (a 404 without a route, a 308 to HTTPS), and logs the
/// request with its `(service, pick, status)` (service `-`: none matched).
async fn local_answer(
    proxy: &Proxy,
    stream: &ClientIo,
    peer: &ClientAddr,
    (req, cbuf): (&RequestHead, &[u8]),
    (service, pick, status): (&str, Pick, u16),
    out: &[u8],
    close: bool,
) -> Outcome {
    let log = access_log::Pending::start(req.method_bytes(cbuf), req.path(cbuf));
    let outcome = written(proxy, stream, out, close).await;
    if let Some(log) = log {
        let bytes = |n: usize| u64::try_from(n).ok();
        let note = access_log::Note { status: Some(status), bytes_in: bytes(req.len()), bytes_out: bytes(out.len()) };
        log.finish_local(service, &peer.ip(), "http/1.1", pick, note);
    }
    outcome
}

async fn written(proxy: &Proxy, stream: &ClientIo, out: &[u8], close: bool) -> Outcome {
    match relay::write_all(stream, out, proxy.settings.timeouts.client, Timeout::Client).await {
        Ok(()) if !close => Outcome::Next,
        Ok(()) => Outcome::Close,
        Err(e) => {
            if let relay::WriteError::Stalled(k) = e {
                proxy.stats.timeout(k);
            }
            Outcome::Close
        }
    }
}

fn after(outcome: Outcome, cbuf: Buf) -> Next {
    match outcome {
        // bytes of the next request stay with the connection; an empty buffer goes back to the pool
        Outcome::Next => Next::Again((!cbuf.is_empty()).then_some(cbuf)),
        Outcome::Close => Next::Close,
        Outcome::Tunnel(t) => Next::Tunnel(t),
    }
}

/// The service whose rule matches the request's authority (the target's, else Host) and path.
fn route(proxy: &Proxy, req: &RequestHead, buf: &[u8]) -> Option<Arc<ServiceRoute>> {
    let table = proxy.routing.table();
    if let [only] = table.services.as_slice()
        && only.spec.rule == Rule::Always
    {
        return Some(only.clone());
    }
    // the codec checked both: an authority and a path are ASCII
    let host = req.authority(buf).and_then(|h| std::str::from_utf8(h).ok());
    let path = std::str::from_utf8(req.path(buf)).ok()?;
    table.route(host, path).cloned()
}

/// Hands an upgraded connection to the splice (or the user-space relay) on a task of its own: it
/// no longer counts as a client connection (shutdown does not wait for it, `--max-connections` does
/// not hold it).
fn tunnel(proxy: &Arc<Proxy>, client: ClientIo, t: Tunnel) {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let idle = proxy.settings.timeouts.tunnel;
        let ended = match client {
            ClientIo::Plain(client) => {
                let splicer = proxy.splicer.as_ref().filter(|_| t.splice);
                splice::hand_off(splicer, client, t.client_early, t.upstream, t.upstream_early, idle).await.map(|how| {
                    tracing::debug!(?how, "upgraded connection handed off");
                })
            }
            // TLS: relayed in user space (no kernel TLS record layer on this kernel)
            ClientIo::Tls(tls) => {
                let tls = (*tls).into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
                splice::relay_tls(tls, t.client_early, t.upstream, t.upstream_early, idle).await
            }
        };
        match ended {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => proxy.stats.timeout(Timeout::Tunnel),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
    });
}

/// Ends a TLS connection after its last response with a `close_notify` (a body delimited by the
/// close is then not mistaken for a truncated one), for at most [`LINGER`].
async fn close_notify(stream: ClientIo) {
    let _ = tokio::time::timeout(LINGER, stream.shutdown_write()).await;
}

/// Closes after an error answer: our side first, then what the client still sends is read and
/// dropped for a moment, so that its unread bytes do not turn the close into a reset that destroys
/// the answer before the client read it.
async fn linger(stream: ClientIo) {
    stream.shutdown_write().await;
    let mut sink = Buf::take();
    let mut seen = 0;
    let until = Instant::now() + LINGER;
    while seen < LINGER_BYTES {
        sink.clear();
        match tokio::time::timeout_at(until, relay::read_buf(&stream, &mut sink)).await {
            Ok(Ok(n)) if n > 0 => seen += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpStream;

    use super::*;
    use crate::{
        config::{Limits, Timeouts},
        proxy::conn::Settings,
        state::Routing,
        stats::ProxyStats,
    };

    #[test]
    fn an_idle_connection_task_stays_small() {
        let routing = Arc::new(Routing::new(crate::cookie::Keys::random()));
        let settings = Settings {
            limits: Limits { max_header_size: 8192, max_headers: 100, max_connections: 1, max_spliced: 1 },
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                response: Duration::from_secs(1),
                idle: Duration::from_secs(1),
                client: Duration::from_secs(1),
                backend: Duration::from_secs(1),
                tunnel: Duration::from_secs(1),
                shutdown: Duration::from_secs(1),
            },
        };
        let proxy = Arc::new(Proxy {
            routing,
            stats: Arc::new(ProxyStats::default()),
            splicer: None,
            settings,
            challenges: Arc::default(),
            https_port: None,
            h2: crate::config::Http2::default(),
            clients: crate::config::ClientTrust::default(),
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let _client = client.expect("connect");
            let (stream, peer) = accepted.expect("accept");
            let (_tx, rx) = watch::channel(false);
            let origin = crate::proxy_protocol::Origin { client: peer, destination: addr };
            let task = serve(proxy.clone(), ClientIo::Plain(stream), client_addr(&proxy, origin), rx, Hold::default());
            let size = std::mem::size_of_val(&task);
            eprintln!(
                "connection task future: {size} bytes (client address {}, first wave {}, state {}, socket {}, hold {}, \
                 stop {})",
                std::mem::size_of::<ClientAddr>(),
                std::mem::size_of::<FirstWave>(),
                std::mem::size_of::<State>(),
                std::mem::size_of::<ClientIo>(),
                std::mem::size_of::<Hold>(),
                std::mem::size_of::<watch::Receiver<bool>>(),
            );
            // A debug build lays two enum fields out 8 bytes wider each (the state and the socket: 48
            // and 40 bytes against 40 and 32 in release), 8 bytes more in all; CI tests debug builds,
            // so a growth of the release future shows here as a debug one past this bound.
            let bound = if cfg!(debug_assertions) { IDLE_TASK_BYTES + 8 } else { IDLE_TASK_BYTES };
            assert!(size <= bound, "the connection task is {size} bytes (bound {bound})");
        });
    }
}
