//! One HTTP/2 stream, the HTTP/1 path's phases in the same order: route, (redirect), pin by the
//! stream's own cookie through the connection's first wave, forward to the decided backend over a
//! pooled or new upstream connection (deciding again without a backend whose connect fails), answer
//! with sticky's `Set-Cookie`; sticky's own errors through [`super::grpc`]. The same counters as the
//! HTTP/1 path move (sessions, pinned requests, re-pins, responses by class, local answers, connect
//! errors, unrouted requests, timeouts).

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, Version, header::LOCATION, uri::PathAndQuery};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::Notify;

use super::{
    grpc,
    headers::{self, ToBackend, ToClient},
    pool::{self, Sender},
    settings::MAX_CANCELLED_STREAMS,
};
use crate::{
    access_log::{Note, Pending, Pick},
    model::{BackendProtocol, Rule},
    policy::Decision,
    proxy::{
        conn::Proxy,
        forward,
        h1::{ClientAddr, Proto},
        pin::{self, PinState},
        rescue::ProxyError,
        respond,
        upstream::ConnectError,
        wave::FirstWave,
    },
    state::ServiceRoute,
    stats::Timeout,
};

/// The body of an answer: the backend's, streamed, or sticky's own.
pub type AnswerBody = Either<Incoming, Full<Bytes>>;

/// Attempts per stream (each on another backend after a failed connect, or a fresh connection after
/// a stale pooled one), as on the HTTP/1 path.
const MAX_ATTEMPTS: usize = 4;

/// What the streams of one HTTP/2 connection share.
#[derive(Debug)]
pub struct Conn {
    /// What every connection reads.
    pub proxy: Arc<Proxy>,
    /// The client's address, for the forwarding fields.
    pub peer: ClientAddr,
    /// The scheme the client used.
    pub proto: Proto,
    /// The connection's first wave (one backend, one cookie for its cookie-less streams).
    pub wave: Mutex<FirstWave>,
    /// Streams answered (or failed by sticky) so far.
    pub finished: AtomicU64,
    /// Streams the client cancelled before their answer.
    pub cancelled: AtomicU32,
    /// Woken when the client cancels more streams than [`MAX_CANCELLED_STREAMS`] beyond those it let
    /// finish: the connection closes (the accepted-stream half of rapid reset).
    pub abuse: Notify,
}

impl Conn {
    /// The shared state of a new connection.
    #[must_use]
    pub fn new(proxy: Arc<Proxy>, peer: ClientAddr, proto: Proto) -> Self {
        Self {
            proxy,
            peer,
            proto,
            wave: Mutex::new(FirstWave::default()),
            finished: AtomicU64::new(0),
            cancelled: AtomicU32::new(0),
            abuse: Notify::new(),
        }
    }
}

/// Counts a stream as cancelled if it is dropped before its answer (hyper drops the future of a
/// stream the client reset).
struct Cancel<'a> {
    conn: &'a Conn,
    done: bool,
}

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        if self.done {
            self.conn.finished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let cancelled = self.conn.cancelled.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let finished = self.conn.finished.load(Ordering::Relaxed);
        if cancelled > MAX_CANCELLED_STREAMS && u64::from(cancelled) > finished {
            self.conn.abuse.notify_one();
        }
    }
}

/// Serves one stream; never fails (every error is an answer).
///
/// # Errors
/// None: the `Result` is hyper's service signature.
pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response<AnswerBody>, Infallible> {
    let mut cancel = Cancel { conn: &conn, done: false };
    let answer = serve(&conn, req).await;
    cancel.done = true;
    Ok(answer)
}

async fn serve(conn: &Conn, req: Request<Incoming>) -> Response<AnswerBody> {
    let proxy = &*conn.proxy;
    let grpc = grpc::is_grpc(req.headers());
    let authority = authority(&req);
    if req.method() == http::Method::CONNECT {
        // no tunnels over HTTP/2 (RFC 8441 WebSockets are not offered either)
        let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(b"405 Method Not Allowed: CONNECT\n"))));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    if req.headers().len() > proxy.settings.limits.max_headers {
        proxy.stats.client_error(crate::stats::ClientError::Head);
        let e =
            ProxyError::BadRequest(crate::proxy::h1::RequestError::Head(crate::proxy::h1::HeadError::TooManyFields {
                max: proxy.settings.limits.max_headers,
            }));
        return own(&e, grpc);
    }
    let Some(service) = route(proxy, authority.as_deref(), req.uri().path()) else {
        proxy.stats.unrouted();
        return logged_locally(conn, &req, ("-", Pick::NoRoute), own(&ProxyError::NoRoute, grpc));
    };
    if service.spec.tls.redirect
        && conn.proto == Proto::Http
        && let Some(port) = proxy.https_port
        && let Some(answer) = redirect(authority.as_deref(), req.uri(), port)
    {
        service.live.stats.local_response(308);
        return logged_locally(conn, &req, (&service.spec.name, Pick::Redirect), answer);
    }
    let mut pin = {
        let cookies = req.headers().get_all(http::header::COOKIE);
        conn.wave.lock().unwrap_or_else(PoisonError::into_inner).pin(
            proxy,
            &service,
            cookies.iter().map(http::HeaderValue::as_bytes),
        )
    };
    let key = place_by_key(proxy, &service, &mut pin, req.headers(), &conn.peer);
    let log = Pending::start(req.method().as_str().as_bytes(), req.uri().path().as_bytes());
    let bytes_in = log.as_ref().and_then(|_| content_length(req.headers()));
    let answer = forward(conn, &service, (&mut pin, key), req, authority.as_deref(), grpc).await;
    if let Some(log) = log {
        // the body is streamed after this: its length is the head's Content-Length, if it says one
        let note =
            Note { status: Some(answer.status().as_u16()), bytes_in, bytes_out: content_length(answer.headers()) };
        log.finish(&service, &conn.peer.ip(), "h2", pin.decision, note);
    }
    answer
}

/// `answer`, sticky's own to `req` (a 404 without a route, a 308 to HTTPS), after its access log line
/// as `(service, pick)` (service `-`: none matched).
fn logged_locally(
    conn: &Conn,
    req: &Request<Incoming>,
    (service, pick): (&str, Pick),
    answer: Response<AnswerBody>,
) -> Response<AnswerBody> {
    if let Some(log) = Pending::start(req.method().as_str().as_bytes(), req.uri().path().as_bytes()) {
        let note = Note {
            status: Some(answer.status().as_u16()),
            bytes_in: content_length(req.headers()),
            bytes_out: hyper::body::Body::size_hint(answer.body()).exact(),
        };
        log.finish_local(service, &conn.peer.ip(), "h2", pick, note);
    }
    answer
}

/// A head's `Content-Length`, if it has one that parses.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Hash affinity (issue 18), as the HTTP/1 engine's `forward::place_by_key`: a request carrying its
/// service's key is placed by it; returns the key.
fn place_by_key(
    proxy: &Proxy,
    service: &ServiceRoute,
    pin: &mut PinState,
    headers: &http::HeaderMap,
    peer: &crate::proxy::h1::ClientAddr,
) -> Option<u64> {
    let first = |name: &str| headers.get(name).map(http::HeaderValue::as_bytes);
    let last = |name: &str| headers.get_all(name).iter().next_back().map(http::HeaderValue::as_bytes);
    let cookies = headers.get_all(http::header::COOKIE).iter().map(http::HeaderValue::as_bytes);
    let key = pin::affinity_key(service, pin.pinned, first, last, cookies, peer)?;
    pin.decision = pin::decide_keyed(proxy, service, key, &[]);
    Some(key)
}

/// sticky's own answer to a request no service took.
fn own(e: &ProxyError, grpc: bool) -> Response<AnswerBody> {
    tracing::debug!(error = %e, "h2 request answered by sticky");
    grpc::answer(e, grpc).map(Either::Right)
}

/// sticky's own answer to a request of `service`, counted.
fn local(service: &ServiceRoute, e: &ProxyError, grpc: bool) -> Response<AnswerBody> {
    tracing::debug!(service = %service.spec.name, error = %e, "request failed");
    service.live.stats.local_response(e.status().as_u16());
    grpc::answer(e, grpc).map(Either::Right)
}

/// The request's authority: `:authority`, else `Host`.
fn authority(req: &Request<Incoming>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
}

/// The service whose rule matches the authority and path.
fn route(proxy: &Proxy, host: Option<&str>, path: &str) -> Option<Arc<ServiceRoute>> {
    let table = proxy.routing.table();
    if let [only] = table.services.as_slice()
        && only.spec.rule == Rule::Always
    {
        return Some(only.clone());
    }
    table.route(host, path).cloned()
}

fn redirect(authority: Option<&str>, uri: &Uri, port: u16) -> Option<Response<AnswerBody>> {
    let target = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let location = respond::https_location(authority.map(str::as_bytes), target.as_bytes(), port)?;
    let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    r.headers_mut().insert(LOCATION, http::HeaderValue::from_bytes(&location).ok()?);
    Some(r)
}

/// Sends the stream to the backend `pin` decided on and returns its answer, or sticky's.
async fn forward(
    conn: &Conn,
    service: &ServiceRoute,
    (pin, key): (&mut PinState, Option<u64>),
    req: Request<Incoming>,
    authority: Option<&str>,
    grpc: bool,
) -> Response<AnswerBody> {
    let proxy = &*conn.proxy;
    let h2c = service.spec.backend_protocol == BackendProtocol::H2c;
    let cookie_name = service.spec.cookie.enabled.then_some(service.spec.cookie.name.as_bytes());
    let (mut parts, body) = req.into_parts();
    headers::to_backend(
        &mut parts.headers,
        &ToBackend {
            client: &conn.peer,
            proto: conn.proto,
            // a client's own forwarding fields are kept from a trusted proxy only (issue 16)
            prior: conn.peer.prior(),
            cookie: cookie_name,
            authority,
            h2c,
        },
    );
    let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str).to_owned();
    parts.version = if h2c { Version::HTTP_2 } else { Version::HTTP_11 };
    let mut req = Some(Request::from_parts(parts, body));
    let mut exclude: Vec<usize> = Vec::new();
    let mut last_connect: Option<(String, ConnectError)> = None;
    for _ in 0..MAX_ATTEMPTS {
        let index = match pin.decision {
            Decision::Keep(i) | Decision::Pin { backend: i, .. } => i,
            Decision::Reject(r) => return local(service, &forward::reject(service, r, last_connect.take()), grpc),
        };
        let Some(backend) = service.backends.get(index) else { break };
        let (mut sender, reused) = if let Some(s) = pool::take(backend.addr, h2c) {
            (s, true)
        } else {
            let Some(tcp) = forward::connect(proxy, service, index, &mut exclude, &mut last_connect).await else {
                pin.decision = pin::redecide(proxy, service, pin, key, &exclude);
                continue;
            };
            match pool::handshake(tcp, h2c).await {
                Ok(Sender::H2(s)) => {
                    // the streams of every client to this backend share the new connection at once
                    pool::put(backend.addr, Sender::H2(s.clone()));
                    (Sender::H2(s), false)
                }
                Ok(s) => (s, false),
                Err(e) => {
                    let e = ProxyError::Upstream { backend: backend.id.to_string(), source: std::io::Error::other(e) };
                    return local(service, &e, grpc);
                }
            }
        };
        let Some(mut request) = req.take() else { break };
        *request.uri_mut() = upstream_uri(&path, backend.addr, authority, h2c);
        let sent: Sending = match &mut sender {
            Sender::H1(s) => Box::pin(s.try_send_request(request)),
            Sender::H2(s) => Box::pin(s.try_send_request(request)),
        };
        // in flight until the response head (the body streams on without it)
        let _inflight = backend.live.busy();
        let open = backend.live.stats.open();
        let finished = finish(conn, service, (pin, key.is_some()), index, (backend.addr, sender), sent, grpc).await;
        drop(open);
        match finished {
            Ok(r) => return r,
            Err(mut back) if reused => match back.take_message() {
                // a pooled connection closed before the request went out: again on a fresh one
                Some(r) => {
                    tracing::debug!(backend = %backend.id, "pooled upstream connection was closed; retrying");
                    req = Some(r);
                }
                None => return upstream_failed(service, backend, back.into_error(), grpc),
            },
            Err(back) => return upstream_failed(service, backend, back.into_error(), grpc),
        }
    }
    local(service, &forward::exhausted(service, last_connect), grpc)
}

/// A request on its way to the backend.
type Sending = std::pin::Pin<Box<dyn Future<Output = Result<Response<Incoming>, SendError>> + Send>>;

/// hyper's error, with the request when it was not sent.
type SendError = hyper::client::conn::TrySendError<Request<Incoming>>;

fn upstream_failed(
    service: &ServiceRoute,
    backend: &crate::state::BackendRoute,
    e: hyper::Error,
    grpc: bool,
) -> Response<AnswerBody> {
    let e = ProxyError::Upstream { backend: backend.id.to_string(), source: std::io::Error::other(e) };
    local(service, &e, grpc)
}

/// The request target for the backend: origin-form for HTTP/1.1 (`Host` carries the authority), an
/// absolute URI for h2c (`:scheme` and `:authority`; the client's authority, else the backend's address).
fn upstream_uri(path: &str, addr: std::net::SocketAddr, authority: Option<&str>, h2c: bool) -> Uri {
    if !h2c {
        return Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
    }
    let authority = authority.map_or_else(|| addr.to_string(), str::to_owned);
    Uri::try_from(format!("http://{authority}{path}")).unwrap_or_else(|_| Uri::from_static("/"))
}

/// Awaits the backend's response head within the response timeout and rewrites it for the client;
/// `Err` gives hyper's error back (with the request when it was not sent).
async fn finish(
    conn: &Conn,
    service: &ServiceRoute,
    (pin, hashed): (&PinState, bool),
    index: usize,
    putback: (std::net::SocketAddr, Sender),
    sent: Sending,
    grpc: bool,
) -> Result<Response<AnswerBody>, SendError> {
    let proxy = &*conn.proxy;
    let Some(backend) = service.backends.get(index) else {
        return Ok(own(&ProxyError::NoBackend { service: service.spec.name.clone() }, grpc));
    };
    let Ok(response) = tokio::time::timeout(proxy.settings.timeouts.response, sent).await else {
        proxy.stats.timeout(Timeout::Response);
        return Ok(local(service, &ProxyError::ResponseTimeout { backend: backend.id.to_string() }, grpc));
    };
    let response = response?;
    pool::put(putback.0, putback.1);
    let tls = conn.proto == Proto::Https;
    let set_cookies = response.headers().get_all(http::header::SET_COOKIE);
    let learned = pin::sets_learned_cookie(service, set_cookies.iter().map(http::HeaderValue::as_bytes));
    let line = pin::answered_by(service, pin, index, tls, hashed, learned);
    let line = conn.wave.lock().unwrap_or_else(PoisonError::into_inner).set_cookie(service, pin, index, line);
    let (mut parts, body) = response.into_parts();
    let hsts = service.hsts.as_deref().filter(|_| tls);
    let cookie = service.spec.cookie.enabled.then_some(service.spec.cookie.name.as_bytes());
    let dropped = headers::to_client(&mut parts.headers, &ToClient { cookie, set_cookie: line.as_deref(), hsts });
    proxy.stats.set_cookie_dropped(dropped);
    backend.live.stats.response(parts.status.as_u16());
    parts.version = Version::HTTP_2;
    Ok(Response::from_parts(parts, Either::Left(body)))
}
