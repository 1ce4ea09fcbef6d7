//! A minimal admin listener for tcp mode: `GET /metrics` only. The HTTP engineer's admin server will
//! serve the same text (from [`super::metrics`]) next to its own routes; this one exists so tcp mode
//! can be observed on its own.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::L4Error;

/// Binds `addr` and serves `render()` at `/metrics` from a background task.
///
/// # Errors
/// The address cannot be bound.
pub async fn spawn(addr: SocketAddr, render: impl Fn() -> String + Send + Sync + 'static) -> Result<(), L4Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| L4Error::Bind { addr, source })?;
    tracing::info!(%addr, "admin: GET /metrics");
    let render = Arc::new(render);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let render = Arc::clone(&render);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let render = Arc::clone(&render);
                    async move {
                        let response = if req.uri().path() == "/metrics" {
                            // Counting map entries is a burst of syscalls: keep it off the runtime's workers.
                            let body = tokio::task::spawn_blocking(move || render()).await.unwrap_or_default();
                            let mut r = Response::new(Full::new(Bytes::from(body)));
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            r
                        } else {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(())
}
