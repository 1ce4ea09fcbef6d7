//! The one admin listener (`--admin ADDR`), for every part that runs: Prometheus metrics, and for
//! the http proxy the backends as JSON and draining.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /` | the dashboard ([`dashboard`]: a page, its script and style, embedded) |
//! | `GET /metrics` | Prometheus/OpenMetrics text (see [`metrics`]) |
//! | `GET /api/backends` | JSON: every http service and backend with health, drain state and counters, and every tcp service's backends ([`report`]) |
//! | `GET /api/overview` | JSON: the same, the proxy's connections and tcp mode's state (what the dashboard polls) |
//! | `POST /api/services/{service}/backends/{backend}/drain` | mark draining: no new sessions, pinned ones still served |
//! | `POST /api/services/{service}/backends/{backend}/activate` | take new sessions again |
//! | `GET /api/explain?service=S&cookie=VALUE` | JSON: which backend that request would reach now, and why ([`explain`]) |
//! | `GET /api/explain?service=S&client=IP` | JSON: tcp mode: which backend a new connection of that client would reach (affinity, Maglev slot); an http service with client-ip affinity: where that client's requests go |
//! | `GET /api/explain?service=S&key=VALUE` | JSON: an http service with header or learn affinity: where a request with that header (or application cookie) value goes |
//! | `GET /healthz` | `ok` (the balancer itself is up) |
//!
//! `{service}` is a service name or id, `{backend}` a backend id (as listed by `/api/backends`) or,
//! for Swarm task ids, a prefix of at least 12 characters (what `docker service ps` prints); tcp
//! services' backends are drained the same way ([`crate::tcp::Control`]).
//!
//! Writes must be `Content-Type: application/json` (the body is ignored) and, if they carry an
//! `Origin`, come from the admin's own origin: a web page on another site can make a browser send a
//! *simple* cross-origin POST (text/plain, a form) without asking, but a JSON one needs a CORS
//! preflight, which this listener never grants. Who may write at all is [`access`]'s: over TCP only
//! with `--admin-token-file`'s bearer token, never with `--admin-read-only`; every write is logged.
//! The unix socket ([`socket`], `--admin-socket PATH`) is the deployed way in: no network at all,
//! and only the file's owner may connect.

pub mod access;
pub mod dashboard;
pub mod explain;
pub mod metrics;
pub mod report;
pub mod socket;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};

use crate::state::Routing;

pub use self::report::{BackendReport, Report, ServiceReport, report};

/// What the admin listener serves.
#[derive(Debug, Default)]
pub struct Admin {
    /// `/metrics`: every part's families ([`metrics::registry`]).
    pub registry: Registry,
    /// The http proxy's routing state, for `/api/backends` and draining (none in tcp mode).
    pub routing: Option<Arc<Routing>>,
    /// Who may write ([`access`]); the JSON documents say how writes stand for each caller.
    pub access: access::Access,
    /// What the JSON documents read beyond the routing table.
    pub view: report::Sources,
}

/// Serves the admin API on `listener` until dropped.
///
/// # Errors
/// Only an accept error that will not recover.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = crate::net::accept(&listener).await?;
        // the address the client reached: its own Host names it (the Host check)
        let local = stream.local_addr().map_or(peer.ip(), |a| a.ip());
        serve_connection(stream, access::Caller::Tcp(peer), Some(local), admin.clone());
    }
}

/// Serves one admin connection (TCP, reached at `local`, or unix socket) on a task of its own.
fn serve_connection<S>(stream: S, caller: access::Caller, local: Option<std::net::IpAddr>, admin: Arc<Admin>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let who = caller.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let admin = admin.clone();
            let caller = caller.clone();
            async move {
                if let Some(local) = local
                    && req.uri().path() != "/healthz"
                    && let Err((status, why)) = admin.access.check_host(local, req.headers())
                {
                    tracing::info!(%caller, method = %req.method(), path = %req.uri().path(), "admin request refused: Host names another site");
                    return Ok::<_, Infallible>(text(status, why));
                }
                Ok::<_, Infallible>(handle(admin, &req, &caller).await)
            }
        });
        if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
            tracing::debug!(caller = %who, error = %e, "admin connection ended with an error");
        }
    });
}

/// Binds `addr` and serves the admin API on a task of the current runtime; returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub async fn spawn(addr: SocketAddr, admin: Arc<Admin>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = serve(listener, admin).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    Ok(local)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn handle(admin: Arc<Admin>, req: &Request<Incoming>, caller: &access::Caller) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if req.method() == Method::POST {
        if let Err((status, why)) = write_allowed(req).and_then(|()| admin.access.check(caller, req.headers())) {
            tracing::info!(%caller, method = %req.method(), %path, status = status.as_u16(), why = why.trim_end(), "admin write refused");
            let mut r = text(status, why);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"sticky admin\""),
                );
            }
            return r;
        }
        let answer = route(admin, req, &segments, caller).await;
        tracing::info!(%caller, method = %req.method(), %path, status = answer.status().as_u16(), "admin write");
        return answer;
    }
    route(admin, req, &segments, caller).await
}

async fn route(
    admin: Arc<Admin>,
    req: &Request<Incoming>,
    segments: &[&str],
    caller: &access::Caller,
) -> Response<Full<Bytes>> {
    let writes = admin.access.writes(caller);
    match (req.method(), segments, &admin.routing) {
        (&Method::GET, ["metrics"], _) => {
            // counting kernel map entries is a burst of syscalls: keep it off the runtime's thread
            let encoded = tokio::task::spawn_blocking(move || {
                let mut out = String::new();
                prometheus_client::encoding::text::encode(&mut out, &admin.registry).map(|()| out)
            })
            .await;
            match encoded {
                Ok(Ok(out)) => {
                    let mut r = text(StatusCode::OK, out);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    );
                    r
                }
                _ => text(StatusCode::INTERNAL_SERVER_ERROR, "failed to encode metrics\n"),
            }
        }
        (&Method::GET, ["api", "backends"], routing) if routing.is_some() || admin.view.tcp.is_some() => {
            // tcp services in the kernel: their flows per backend are a walk over the maps, like a scrape
            let admin = admin.clone();
            let body = tokio::task::spawn_blocking(move || {
                serde_json::to_vec_pretty(&report(admin.routing.as_deref(), writes, &admin.view)).unwrap_or_default()
            })
            .await
            .unwrap_or_default();
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            r
        }
        (&Method::GET, ["api", "overview"], _) => dashboard::overview(admin, writes).await,
        (&Method::GET, [asset @ ("" | "dashboard.js" | "dashboard.css" | "favicon.svg")], _) => dashboard::asset(asset),
        (
            &Method::POST,
            ["api", "services", service, "backends", backend, action @ ("drain" | "activate")],
            routing,
        ) if routing.is_some() || admin.view.tcp.is_some() => {
            let drain = *action == "drain";
            // an http service first, else a tcp one (tcp mode's drain: tcp::Control)
            let http = routing.as_ref().map(|r| r.set_draining(service, backend, drain).map_err(|e| e.to_string()));
            let done = match (http, &admin.view.tcp) {
                (Some(Ok(())), _) => Ok(()),
                (http, Some(tcp)) => tcp.set_draining(service, backend, drain).map_err(|e| match http {
                    // the http error names the service when it exists there
                    Some(Err(h)) if !h.starts_with("no service") => h,
                    _ => e.to_string(),
                }),
                (Some(Err(e)), None) => Err(e),
                (None, None) => Err("no services".to_owned()),
            };
            match done {
                Ok(()) => text(
                    StatusCode::OK,
                    format!("{backend} of {service}: {}\n", if drain { "draining" } else { "active" }),
                ),
                Err(e) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
            }
        }
        (&Method::GET, ["api", "explain"], _) => {
            let query = req.uri().query();
            // client= names a tcp service's client, or the client of an http service with client-ip
            // affinity: a name the tcp services do not know is asked of the http ones
            let tcp = match &admin.view.tcp {
                Some(tcp) if explain::asks_client(query) => Some(explain::explain_tcp(tcp, query)),
                _ => None,
            };
            let answer = match (tcp, &admin.routing) {
                (Some(Ok(a)), _) => Ok(serde_json::to_vec_pretty(&a).unwrap_or_default()),
                (None | Some(Err(explain::ExplainError::Unknown(_))), Some(routing)) => {
                    explain::explain(routing, query).map(|a| serde_json::to_vec_pretty(&a).unwrap_or_default())
                }
                (Some(Err(e)), _) => Err(e),
                (None, None) => Err(explain::ExplainError::NoService),
            };
            match answer {
                Ok(body) => {
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                    r
                }
                Err(e @ explain::ExplainError::Unknown(_)) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        (&Method::GET, ["healthz"], _) => text(StatusCode::OK, "ok\n"),
        (_, ["api", ..], None) => text(StatusCode::NOT_FOUND, "no http services here (tcp mode); try /metrics\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /api/backends, /api/explain?service=S&cookie=V, /healthz\n",
        ),
    }
}

/// Whether a write may go ahead: JSON (never a CORS-simple request) and same-origin if a browser sent it.
fn write_allowed<B>(req: &Request<B>) -> Result<(), (StatusCode, &'static str)> {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.as_bytes();
        let host = headers.get(header::HOST).map(http::HeaderValue::as_bytes);
        let same = host.is_some_and(|h| {
            origin
                .strip_prefix(b"http://")
                .or_else(|| origin.strip_prefix(b"https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(h))
        });
        if !same {
            return Err((StatusCode::FORBIDDEN, "cross-origin admin writes are refused\n"));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "admin writes need Content-Type: application/json (e.g. curl -X POST -H 'Content-Type: application/json' URL)\n",
        ));
    }
    Ok(())
}
