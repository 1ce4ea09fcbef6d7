//! The forward phase of one request: the rewritten head (and the body bytes read with it) to the
//! backend the pin decided on, over an idle pooled connection or a new one; a failed connect pauses
//! the backend and the decision is made again without it (nothing was sent, so any method is safe to
//! retry); a pooled connection found closed before any response byte is replaced the same way when
//! the whole request is still in hand. Then the request body and the response head ([`super::relay`]),
//! interim heads passed on, the final head rewritten with the pin's `Set-Cookie`, the response body,
//! and the upstream connection back to the pool if it can carry another request. A WebSocket 101 ends
//! the exchange as a [`Tunnel`].

use bytes::{Buf as _, Bytes};
use tokio::{net::TcpStream, time::Instant};

use super::io::ClientIo;
use crate::access_log;

use super::{
    buffers::{Buf, Scratch},
    conn::{Proxy, Settings},
    h1::{
        Body, ClientAddr, Exchange, Limits, Proto, RequestFraming, RequestHead, RequestRewrite, ResponseKind,
        ResponseRewrite, write_request, write_response,
    },
    named,
    pin::{self, PinState},
    relay::{self, Fault, RequestBody, Sides, WriteError},
    rescue::ProxyError,
    respond,
    upstream::{self, ConnectError},
    wave::FirstWave,
};
use crate::{
    policy::{Decision, Reject},
    state::ServiceRoute,
    stats::{ClientError, Timeout},
};

/// Attempts per request (each on another backend after a failed connect, or a fresh connection
/// after a stale pooled one).
const MAX_ATTEMPTS: usize = 4;

/// One request in hand: its connection's parts and its parsed head.
#[derive(Debug)]
pub struct Request<'a> {
    /// What every connection reads.
    pub proxy: &'a Proxy,
    /// The client connection (plain or TLS).
    pub client: &'a ClientIo,
    /// The client's address, for the forwarding fields.
    pub peer: &'a ClientAddr,
    /// The client's bytes: the head parsed into `scratch.req` at the start, then its body.
    pub cbuf: &'a mut Buf,
    /// The parsed request head and room for the response head.
    pub scratch: &'a mut Scratch,
    /// sticky is shutting down: this is the connection's last request.
    pub stopping: bool,
    /// The connection's first wave: the cookie a cookie-less request of it gets.
    pub wave: &'a mut FirstWave,
}

/// What the client connection does after the request.
#[derive(Debug)]
pub enum Outcome {
    /// Answered; the connection may carry the next request.
    Next,
    /// Close the connection.
    Close,
    /// The backend switched protocols: both sockets become a tunnel.
    Tunnel(Tunnel),
}

/// An upgraded connection's backend side.
#[derive(Debug)]
pub struct Tunnel {
    /// The backend socket.
    pub upstream: TcpStream,
    /// Bytes the client sent past its request head (for the backend).
    pub client_early: Bytes,
    /// Bytes the backend sent past its 101 (for the client).
    pub upstream_early: Bytes,
    /// The service lets the kernel splice upgraded connections.
    pub splice: bool,
}

/// Forwards the request to the backend `pin` decided on (deciding again without any backend that
/// refuses the connection) and relays the answer; errors are answered here. With the access log on,
/// the request's line is sent once its answer is complete.
pub async fn forward(r: Request<'_>, service: &ServiceRoute, pin: &mut PinState) -> Outcome {
    let log = access_log::Pending::start(r.scratch.req.method_bytes(r.cbuf), r.scratch.req.path(r.cbuf));
    let peer = r.peer;
    let mut note = access_log::Note::default();
    let outcome = exchange(r, service, pin, &mut note).await;
    if let Some(log) = log {
        log.finish(service, &peer.ip(), "http/1.1", pin.decision, note);
    }
    outcome
}

#[expect(clippy::too_many_lines, reason = "one exchange in order; its steps read best in one place")]
async fn exchange(r: Request<'_>, service: &ServiceRoute, pin: &mut PinState, note: &mut access_log::Note) -> Outcome {
    let Request { proxy, client, peer, cbuf, scratch, stopping, wave } = r;
    let Settings { limits, timeouts } = proxy.settings;
    let head_limits = Limits::from(limits);
    let Scratch { req, resp } = scratch;
    let key = place_by_key(proxy, service, pin, req, cbuf, peer);
    let exchange = Exchange::of(req, cbuf);
    let client_minor = req.minor();
    let wants_keep = req.keep_alive() && !stopping;
    let cookie_name = service.spec.cookie.enabled.then_some(service.spec.cookie.name.as_bytes());
    let mut out = Buf::take();
    let rw = RequestRewrite { client: peer, proto: client.proto(), prior: peer.prior(), cookie: cookie_name };
    write_request(req, cbuf, &rw, &mut *out);
    let head_len = req.len();
    let mut body = Body::request(req.framing(), limits.max_header_size);
    let first = match body.feed(cbuf.get(head_len..).unwrap_or_default()) {
        Ok(p) => p.used,
        Err(e) => {
            note.status = Some(400);
            proxy.stats.client_error(ClientError::Body);
            return answer(proxy, service, client, &ProxyError::BadRequestBody(e), true).await;
        }
    };
    out.extend_from_slice(cbuf.get(head_len..head_len + first).unwrap_or_default());
    // the body's bytes: as framed by Content-Length, else (chunked) those read with the head
    let body_len = match req.framing() {
        RequestFraming::Length(n) => n,
        RequestFraming::None | RequestFraming::Chunked => as_u64(first),
    };
    note.bytes_in = Some(as_u64(head_len).saturating_add(body_len));
    cbuf.advance(head_len + first);
    let mut req_body = RequestBody { body, to_send: 0 };
    // the whole request is in `out`: it can be sent again on a fresh connection
    let replayable = req_body.is_done();
    let mut ubuf = Buf::take();
    let mut exclude: Vec<usize> = Vec::new();
    let mut last_connect: Option<(String, ConnectError)> = None;
    let mut error = None;
    let forwarded = Instant::now();
    for attempt in 0..MAX_ATTEMPTS {
        // one clock reading per attempt: the first is the forwarding instant itself
        let now = if attempt == 0 { forwarded } else { Instant::now() };
        let index = match pin.decision {
            Decision::Keep(i) | Decision::Pin { backend: i, .. } => i,
            Decision::Reject(r) => {
                error = Some(reject(service, r, last_connect.take()));
                break;
            }
        };
        let Some(backend) = service.backends.get(index) else { break };
        // a PROXY protocol header describes one client: such connections are reused for that client
        // connection only (named::)
        let header = service.spec.proxy_protocol.header(&peer.origin());
        let pooled = match header {
            None => upstream::take(backend.addr, now.into_std()),
            Some(_) => named::take(backend.addr, &peer.origin()),
        };
        let (up, reused) = if let Some(s) = pooled {
            (s, true)
        } else {
            let Some(s) = connect(proxy, service, index, &mut exclude, &mut last_connect).await else {
                // the connect failed and paused the backend: decide again without it
                pin.decision = pin::redecide(proxy, service, pin, key, &exclude);
                continue;
            };
            (s, false)
        };
        let _inflight = backend.live.busy();
        // counted open while this exchange holds it (the dashboard's per-backend connections)
        let _open = backend.live.stats.open();
        if let Some(h) = header.as_ref().filter(|_| !reused)
            && let Err(e) = relay::write_all(&up, h, timeouts.backend, Timeout::Backend).await
        {
            error = Some(write_error(proxy, backend, e));
            break;
        }
        match relay::write_all(&up, &out, timeouts.backend, Timeout::Backend).await {
            Ok(()) => {}
            Err(_) if reused => {
                tracing::debug!(backend = %backend.id, "pooled upstream connection was closed; retrying");
                continue;
            }
            Err(e) => {
                error = Some(write_error(proxy, backend, e));
                break;
            }
        }
        // the response timeout runs from the request's forwarding: on a pooled connection that is
        // this attempt's start (the write went straight into the socket), after a connect it is now
        let deadline = if reused { now } else { Instant::now() } + timeouts.response;
        let mut sides = Sides { client, cbuf, up: &up, ubuf: &mut ubuf, timeouts };
        let mut interim_seen = false;
        let head = loop {
            match sides.response_head(resp, &exchange, head_limits, &mut req_body, deadline).await {
                Ok(len) if resp.kind() == ResponseKind::Interim => {
                    interim_seen = true;
                    out.clear();
                    let rw = ResponseRewrite {
                        cookie: cookie_name,
                        set_cookie: None,
                        client_minor,
                        keep_alive: false,
                        extra: b"",
                    };
                    if let Ok(relay) = write_response(resp, sides.ubuf, &rw, &mut *out)
                        && relay.sent
                        && let Err(e) = relay::write_all(client, &out, timeouts.client, Timeout::Client).await
                    {
                        break Err(match e {
                            WriteError::Io(e) => Fault::Client(Some(e)),
                            WriteError::Stalled(k) => Fault::Timeout(k),
                        });
                    }
                    sides.ubuf.advance(len);
                }
                other => break other,
            }
        };
        let len = match head {
            Ok(len) => len,
            Err(Fault::Backend { answered: false, .. }) if reused && replayable && !interim_seen => {
                tracing::debug!(backend = %backend.id, "pooled upstream connection closed before answering; retrying");
                continue;
            }
            Err(fault) => match fault_error(proxy, backend, fault) {
                Some(e) => {
                    error = Some(e);
                    break;
                }
                None => return Outcome::Close,
            },
        };
        // the final head
        let tls = client.proto() == Proto::Https;
        let learned = pin::sets_learned_cookie(service, resp.set_cookies(sides.ubuf));
        let line = pin::answered_by(service, pin, index, tls, key.is_some(), learned);
        let set_cookie = wave.set_cookie(service, pin, index, line);
        let keep = wants_keep && req_body.is_done();
        let extra = service.hsts.as_deref().filter(|_| tls).unwrap_or_default();
        let rw = ResponseRewrite {
            cookie: cookie_name,
            set_cookie: set_cookie.as_deref(),
            client_minor,
            keep_alive: keep,
            extra,
        };
        out.clear();
        let relay = match write_response(resp, sides.ubuf, &rw, &mut *out) {
            Ok(relay) => relay,
            Err(e) => {
                tracing::warn!(service = %service.spec.name, error = %e, "response head could not be written");
                return Outcome::Close;
            }
        };
        proxy.stats.set_cookie_dropped(relay.dropped_set_cookies);
        backend.live.stats.response(resp.status());
        backend.live.stats.responded_after(forwarded.elapsed());
        let tunnel = resp.kind() == ResponseKind::Tunnel;
        let reusable = resp.reusable();
        let mut rbody = Body::response(resp, limits.max_header_size);
        sides.ubuf.advance(len);
        // a small body goes out with its head, in one write
        if !tunnel && !relay.dechunk && !sides.ubuf.is_empty() {
            let Ok(p) = rbody.feed(sides.ubuf) else { return Outcome::Close };
            out.extend_from_slice(sides.ubuf.get(..p.used).unwrap_or_default());
            sides.ubuf.advance(p.used);
        }
        note.status = Some(resp.status());
        if let Err(e) = relay::write_all(client, &out, timeouts.client, Timeout::Client).await {
            if let WriteError::Stalled(k) = e {
                proxy.stats.timeout(k);
            }
            return Outcome::Close;
        }
        note.bytes_out = Some(as_u64(out.len()));
        if tunnel {
            backend.live.stats.upgrade();
            return Outcome::Tunnel(Tunnel {
                upstream: up,
                client_early: cbuf.split().freeze(),
                upstream_early: ubuf.split().freeze(),
                splice: service.spec.splice.upgrades,
            });
        }
        let sent = sides.response_body(&mut rbody, relay.dechunk, &mut out).await;
        if let Ok(n) = sent {
            note.bytes_out = note.bytes_out.map(|h| h.saturating_add(n));
        }
        if let Err(fault) = sent {
            if let Fault::Timeout(k) = fault {
                proxy.stats.timeout(k);
            }
            tracing::debug!(service = %service.spec.name, backend = %backend.id, ?fault, "response body not relayed");
            return Outcome::Close;
        }
        if reusable && req_body.is_done() && ubuf.is_empty() {
            match header {
                None => upstream::put(backend.addr, up),
                Some(_) => named::put(backend.addr, peer.origin(), up),
            }
        }
        return if keep && !relay.close { Outcome::Next } else { Outcome::Close };
    }
    let error = error.unwrap_or_else(|| exhausted(service, last_connect));
    let close = !wants_keep || !req_body.is_done();
    note.status = Some(error.status().as_u16());
    answer(proxy, service, client, &error, close).await
}

/// Hash affinity (issue 18): a request that carries its service's affinity key (header, client
/// address, the app's cookie) is placed by it instead of by the cookie; returns the key, for the
/// decisions after a failed connect.
fn place_by_key(
    proxy: &Proxy,
    service: &ServiceRoute,
    pin: &mut PinState,
    req: &RequestHead,
    buf: &[u8],
    peer: &ClientAddr,
) -> Option<u64> {
    let head = req.head();
    let last = |name: &str| {
        head.fields()
            .iter()
            .rev()
            .find(|f| f.name.of(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value.of(buf))
    };
    let first = |name: &str| head.get(buf, name.as_bytes());
    let key = pin::affinity_key(service, pin.pinned, first, last, req.cookies(buf), peer)?;
    pin.decision = pin::decide_keyed(proxy, service, key, &[]);
    Some(key)
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// sticky's own answer to a request of `service`: counted, logged at debug, written.
pub async fn answer(proxy: &Proxy, service: &ServiceRoute, client: &ClientIo, e: &ProxyError, close: bool) -> Outcome {
    tracing::debug!(service = %service.spec.name, error = %e, "request failed");
    service.live.stats.local_response(e.status().as_u16());
    write_answer(proxy, client, e, close).await
}

/// Writes sticky's answer `e`; the connection closes after it if `close` or the error says so.
pub async fn write_answer(proxy: &Proxy, client: &ClientIo, e: &ProxyError, close: bool) -> Outcome {
    let close = close || e.closes();
    let mut out = Buf::take();
    respond::error(e, close, &mut *out);
    match relay::write_all(client, &out, proxy.settings.timeouts.client, Timeout::Client).await {
        Ok(()) if !close => Outcome::Next,
        Ok(()) => Outcome::Close,
        Err(e) => {
            if let WriteError::Stalled(k) = e {
                proxy.stats.timeout(k);
            }
            Outcome::Close
        }
    }
}

/// The answer to a failed request write, if any.
fn write_error(proxy: &Proxy, backend: &crate::state::BackendRoute, e: WriteError) -> ProxyError {
    match e {
        WriteError::Io(source) => ProxyError::Upstream { backend: backend.id.to_string(), source },
        WriteError::Stalled(k) => {
            proxy.stats.timeout(k);
            ProxyError::ResponseTimeout { backend: backend.id.to_string() }
        }
    }
}

/// The answer to a failed exchange before any response head went to the client; `None`: close
/// without one (the client left, or stalled).
fn fault_error(proxy: &Proxy, backend: &crate::state::BackendRoute, fault: Fault) -> Option<ProxyError> {
    let id = || backend.id.to_string();
    match fault {
        Fault::Client(_) => None,
        Fault::Timeout(k @ Timeout::Client) => {
            proxy.stats.timeout(k);
            None
        }
        Fault::Timeout(k) => {
            proxy.stats.timeout(k);
            Some(ProxyError::ResponseTimeout { backend: id() })
        }
        Fault::ClientBody(e) => {
            proxy.stats.client_error(ClientError::Body);
            Some(ProxyError::BadRequestBody(e))
        }
        Fault::Backend { error, .. } => Some(ProxyError::Upstream {
            backend: id(),
            source: error.unwrap_or_else(|| std::io::ErrorKind::UnexpectedEof.into()),
        }),
        Fault::Response(source) => Some(ProxyError::BadResponse { backend: id(), source }),
        Fault::ResponseBody(e) => Some(ProxyError::Upstream {
            backend: id(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
    }
}

/// A new connection to backend `index`, or `None` after a failed connect (recorded in `exclude`, the
/// backend's health and `last`); also the HTTP/2 path's connect.
pub async fn connect(
    proxy: &Proxy,
    service: &ServiceRoute,
    index: usize,
    exclude: &mut Vec<usize>,
    last: &mut Option<(String, ConnectError)>,
) -> Option<TcpStream> {
    let backend = service.backends.get(index)?;
    let clock = &proxy.routing.clock;
    match upstream::connect(backend.addr, proxy.settings.timeouts.connect).await {
        Ok(up) => {
            if backend.live.connect_ok(clock) {
                tracing::info!(service = %service.spec.name, backend = %backend.id, "backend is back: connect succeeded");
            }
            Some(up)
        }
        Err(e) => {
            let pause = backend.live.connect_failed(clock, service.spec.backoff);
            backend.live.stats.connect_error();
            tracing::warn!(
                service = %service.spec.name, backend = %backend.id, addr = %backend.addr, timed_out = e.timed_out,
                error = ?e.source.as_ref().map(ToString::to_string), pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                "connect to backend failed; backend paused"
            );
            exclude.push(index);
            *last = Some((backend.id.to_string(), e));
            None
        }
    }
}

/// The answer when every attempt ran out without a response: the last connect failure, or no backend;
/// also the HTTP/2 path's.
#[must_use]
pub fn exhausted(service: &ServiceRoute, last_connect: Option<(String, ConnectError)>) -> ProxyError {
    match last_connect {
        Some((backend, e)) => ProxyError::Connect {
            service: service.spec.name.clone(),
            backend,
            timed_out: e.timed_out,
            source: e.source,
        },
        None => ProxyError::NoBackend { service: service.spec.name.clone() },
    }
}

/// The answer to a policy's refusal (strict, or no backend), counted and logged; also the HTTP/2 path's.
#[must_use]
pub fn reject(service: &ServiceRoute, r: Reject, last_connect: Option<(String, ConnectError)>) -> ProxyError {
    match r {
        Reject::Strict(reason) => {
            service.live.stats.reject(true);
            tracing::info!(service = %service.spec.name, reason = reason.as_str(), "strict: pinned backend unavailable, answering 503");
            ProxyError::StrictUnavailable { service: service.spec.name.clone(), reason }
        }
        Reject::NoBackend => {
            service.live.stats.reject(false);
            match last_connect {
                // every candidate refused: say what the last one did
                Some((backend, e)) if e.timed_out => ProxyError::Connect {
                    service: service.spec.name.clone(),
                    backend,
                    timed_out: true,
                    source: e.source,
                },
                _ => ProxyError::NoBackend { service: service.spec.name.clone() },
            }
        }
    }
}
