//! `sticky whoami`: a tiny HTTP app for the demo, the tests and the Swarm image. Every request gets
//! `200 I'm NAME\n`, like the jwilder/whoami image of the classic Traefik sticky-session tutorial.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves `I'm {name}\n` on `listener` until the task is dropped.
///
/// A connection's error ends that connection only; the accept loop keeps going.
///
/// # Errors
/// Only if accepting fails in a way that will not recover (the listener is closed).
pub async fn serve(listener: TcpListener, name: String) -> std::io::Result<()> {
    let body = Bytes::from(format!("I'm {name}\n"));
    let name: Arc<str> = name.into();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                let name = name.clone();
                async move { Ok::<_, Infallible>(respond(&req, &name, body)) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn respond(_req: &Request<Incoming>, name: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    if let Ok(v) = http::HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-whoami", v);
    }
    resp
}

/// Accept errors that concern one connection or a passing resource shortage, not the listener.
pub fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error().is_some_and(|c| c == 23 || c == 24) // ENFILE, EMFILE
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

/// Binds `addr` and serves; for callers that have an address rather than a listener.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind_and_serve(addr: SocketAddr, name: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, %name, "whoami listening");
    serve(listener, name).await
}
