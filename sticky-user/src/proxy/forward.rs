//! The forward phase: the request to its backend on an idle upstream connection or a new one. A
//! failed connect pauses the backend and the decision is made again without it (nothing was sent,
//! so any method is safe to retry); a reused connection found closed before the request was written
//! is replaced the same way. Upgrades are handed to [`super::upgrade`] once the backend agreed.

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{
    conn::ConnCtx,
    headers,
    pin::{self, PinState},
    rescue::ProxyError,
    upgrade,
    upstream::{self, ConnectError, Upstream},
};
use crate::{
    policy::{Decision, Reject},
    state::ServiceRoute,
};

/// Connect attempts per request (each on another backend, or a fresh connection after a stale one).
const MAX_ATTEMPTS: usize = 4;

/// The backend's answer to a forwarded request.
#[derive(Debug)]
pub struct Forwarded {
    /// Index of the backend that answered.
    pub index: usize,
    /// Its response head (the body still streaming).
    pub response: Response<Incoming>,
    /// The connection was upgraded (101 to an upgrade request) and handed over.
    pub upgraded: bool,
}

/// Sends `req` to the backend `pin` decided on (deciding again without any backend that refuses
/// the connection) and returns its response head.
///
/// # Errors
/// No backend available, every connect failed, or the backend failed or timed out after the
/// request was sent.
pub async fn forward(
    ctx: &ConnCtx,
    service: &ServiceRoute,
    pin: &mut PinState,
    mut req: Request<Incoming>,
) -> Result<Forwarded, ProxyError> {
    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::prepare_request(&mut parts, &ctx.client, upgrade);
    let mut req = Some(Request::from_parts(parts, body));
    let mut exclude: Vec<usize> = Vec::new();
    let mut last_connect: Option<(String, ConnectError)> = None;
    for _ in 0..MAX_ATTEMPTS {
        let index = match pin.decision {
            Decision::Keep(i) | Decision::Pin { backend: i, .. } => i,
            Decision::Reject(r) => return Err(reject(service, r, last_connect)),
        };
        let Some(backend) = service.backends.get(index) else { break };
        let Some(mut up) = connection(ctx, service, index, &mut exclude, &mut last_connect).await else {
            // the connect failed and paused the backend: decide again without it
            pin.decision = pin::decide(ctx, service, pin.pinned, &exclude);
            continue;
        };
        let Some(mut request) = req.take() else { break };
        if !request.headers().contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&backend.addr.to_string()) {
                request.headers_mut().insert(header::HOST, v);
            }
        }
        let sent = tokio::time::timeout(ctx.settings().timeouts.response, up.try_send_request(request)).await;
        match sent {
            Ok(Ok(mut response)) => {
                let upgraded = upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS;
                if upgraded {
                    if let Some(client) = client_upgrade {
                        let splicer = ctx.proxy.splicer.clone().filter(|_| service.spec.splice.upgrades);
                        upgrade::spawn(client, hyper::upgrade::on(&mut response), &backend.live, splicer);
                    }
                } else if !upgrade {
                    ctx.put_upstream(backend.addr, up);
                }
                return Ok(Forwarded { index, response, upgraded });
            }
            Ok(Err(mut e)) => match e.take_message() {
                // the connection closed before the request was written (a reused connection the
                // backend had just closed): nothing was sent, try again on a fresh one
                Some(back) => {
                    tracing::debug!(backend = %backend.id, error = %e.error(), "reused upstream connection was closed; retrying");
                    req = Some(back);
                }
                None => {
                    return Err(ProxyError::Upstream { backend: backend.id.to_string(), source: e.into_error() });
                }
            },
            // dropping the send future closed that upstream connection; it is not reused
            Err(_) => return Err(ProxyError::ResponseTimeout { backend: backend.id.to_string() }),
        }
    }
    Err(match last_connect {
        Some((backend, e)) => ProxyError::Connect {
            service: service.spec.name.clone(),
            backend,
            timed_out: e.timed_out,
            source: e.source,
        },
        None => ProxyError::NoBackend { service: service.spec.name.clone() },
    })
}

/// A ready upstream connection to backend `index`, or `None` after a failed connect (recorded in
/// `exclude`, the backend's health and `last`).
async fn connection(
    ctx: &ConnCtx,
    service: &ServiceRoute,
    index: usize,
    exclude: &mut Vec<usize>,
    last: &mut Option<(String, ConnectError)>,
) -> Option<Upstream> {
    let backend = service.backends.get(index)?;
    // an idle connection: wait until it can take a request (it may still be finishing a response body)
    while let Some(mut up) = ctx.take_upstream(backend.addr) {
        if up.ready().await.is_ok() {
            return Some(up);
        }
    }
    let clock = &ctx.proxy.routing.clock;
    match upstream::connect(backend.addr, ctx.settings().timeouts.connect).await {
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

fn reject(service: &ServiceRoute, r: Reject, last_connect: Option<(String, ConnectError)>) -> ProxyError {
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
