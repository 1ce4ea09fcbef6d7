//! `sticky whoami`: a tiny HTTP app for the demo, the tests and the Swarm image. Every request gets
//! `200 I'm NAME\n`, like the jwilder/whoami image of the classic Traefik sticky-session tutorial.
//!
//! Three extras, all answering with `I'm NAME` first so that the answering backend is always visible:
//! - `GET /ws` with a WebSocket upgrade: echoes every text message as `I'm NAME: MESSAGE`.
//! - `/headers`: the body goes on with the request line and headers as received (to see what a proxy
//!   forwarded).
//! - `/set-cookie`: also sets the application cookie `app=NAME` (to see that a proxy leaves it alone).

use std::{
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, handshake::derive_accept_key, protocol::Role},
};

use crate::cli::WhoamiArgs;

/// Why `sticky whoami` stopped.
#[derive(Debug, thiserror::Error)]
pub enum WhoamiError {
    /// The address cannot be bound.
    #[error("whoami cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener broke.
    #[error("whoami on {addr} failed")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `sticky whoami`: binds `--listen` and serves until `stop` completes (see [`serve_until`]).
///
/// # Errors
/// The address cannot be bound, or the listener breaks.
pub async fn run(args: &WhoamiArgs, stop: impl Future<Output = ()>) -> Result<(), WhoamiError> {
    let name = args.name.clone().unwrap_or_else(default_name);
    let addr = args.listen;
    let listener = TcpListener::bind(addr).await.map_err(|source| WhoamiError::Bind { addr, source })?;
    tracing::info!(listen = %addr, %name, "whoami listening");
    serve_until(listener, name, stop, args.grace).await.map_err(|source| WhoamiError::Serve { addr, source })
}

/// Serves `I'm {name}\n` on `listener` until the task is dropped.
///
/// A connection's error ends that connection only; the accept loop keeps going.
///
/// # Errors
/// Only if accepting fails in a way that will not recover (the listener is closed).
pub async fn serve(listener: TcpListener, name: String) -> std::io::Result<()> {
    accept_loop(&listener, name, Arc::new(AtomicBool::new(false))).await
}

/// Serves like [`serve`] until `stop` completes, then shuts down the way a well-behaved Swarm task
/// does: the listener closes at once (new connections are refused, so a balancer moves those
/// clients elsewhere without an error), each open connection answers its next request with
/// `Connection: close` and then closes, and the function returns after `grace` (requests in flight
/// finish meanwhile: whoami answers at once).
///
/// Idle keep-alive connections are not closed early: a client may be sending on one at that very
/// moment, and a request lost that way is an error a balancer cannot retry safely.
///
/// # Errors
/// Accepting fails in a way that will not recover.
pub async fn serve_until(
    listener: TcpListener,
    name: String,
    stop: impl Future<Output = ()>,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let closing = Arc::new(AtomicBool::new(false));
    tokio::select! {
        r = accept_loop(&listener, name, closing.clone()) => return r,
        () = stop => {}
    }
    drop(listener);
    closing.store(true, Ordering::Relaxed);
    tracing::info!(?grace, "whoami stopping: listener closed, open connections close after their next response");
    tokio::time::sleep(grace).await;
    Ok(())
}

async fn accept_loop(listener: &TcpListener, name: String, closing: Arc<AtomicBool>) -> std::io::Result<()> {
    let body = Bytes::from(format!("I'm {name}\n"));
    let name: Arc<str> = name.into();
    loop {
        let (stream, peer) = crate::net::accept(listener).await?;
        let body = body.clone();
        let name = name.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                let name = name.clone();
                let closing = closing.clone();
                async move {
                    let mut resp = respond(req, &name, body);
                    if closing.load(Ordering::Relaxed) {
                        // hyper closes the connection after a response that says so
                        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades().await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn respond(req: Request<Incoming>, name: &Arc<str>, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = match req.uri().path() {
        "/ws" => {
            if let Some(resp) = websocket(req, name) {
                return resp;
            }
            let mut r = Response::new(Full::new(Bytes::from(format!("I'm {name}\n/ws needs a WebSocket upgrade\n"))));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        "/headers" => {
            let mut text = format!("I'm {name}\n{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                let _ = writeln!(text, "{k}: {}", String::from_utf8_lossy(v.as_bytes()));
            }
            Response::new(Full::new(Bytes::from(text)))
        }
        "/set-cookie" => {
            let mut r = Response::new(Full::new(body));
            if let Ok(v) = HeaderValue::from_str(&format!("app={name}; Path=/")) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        _ => Response::new(Full::new(body)),
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-whoami", v);
    }
    resp
}

/// Accepts a WebSocket handshake and spawns the echo loop; `None` if the request is not one.
fn websocket(mut req: Request<Incoming>, name: &Arc<str>) -> Option<Response<Full<Bytes>>> {
    let is_ws = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    if !is_ws {
        return None;
    }
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let echo_name = name.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::text(format!("I'm {echo_name}: {}", t.as_str())),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Ok(v) = HeaderValue::from_str(name) {
        h.insert("x-whoami", v);
    }
    Some(resp)
}

/// The default name: the host name (a container's short id inside Docker), else "whoami".
#[must_use]
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "whoami".to_owned())
}
