//! Active health checks: `GET <path>` on every backend of services that configure one, each at its
//! interval, fed into the backend's health state machine ([`crate::policy::health`]).
//!
//! One task for all services; each check runs on a task of its own with the service's timeout, on a
//! fresh connection (a check must see what a new session would see).

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{
    model::{BackendId, ServiceId},
    state::Routing,
};

/// How often the scheduler looks for due checks; bounds how late a check can start.
const TICK: Duration = Duration::from_millis(100);

/// Runs the checks until dropped.
///
/// # Cancel safety
/// Cancel safe; checks in flight finish on their own tasks.
pub async fn run(routing: Arc<Routing>) {
    let mut last: HashMap<(ServiceId, BackendId), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let table = routing.table_full();
        let now = Instant::now();
        let mut present = HashSet::new();
        for service in &table.services {
            let Some(path) = service.spec.health.path.clone() else { continue };
            let spec = service.spec.health.clone();
            for b in &service.backends {
                let key = (service.spec.id.clone(), b.id.clone());
                present.insert(key.clone());
                if last.get(&key).is_some_and(|t| now.duration_since(*t) < spec.interval) {
                    continue;
                }
                last.insert(key, now);
                let (routing, spec, path, live, addr) =
                    (routing.clone(), spec.clone(), path.clone(), b.live.clone(), b.addr);
                let (service_name, backend) = (service.spec.name.clone(), b.id.clone());
                tokio::spawn(async move {
                    let outcome = tokio::time::timeout(spec.timeout, probe(addr, &path)).await;
                    let (passed, why) = match outcome {
                        Ok(Ok(status)) if status < 400 => (true, format!("status {status}")),
                        Ok(Ok(status)) => (false, format!("status {status}")),
                        Ok(Err(e)) => (false, e.to_string()),
                        Err(_) => (false, format!("no answer within {:?}", spec.timeout)),
                    };
                    if live.checked(&routing.clock, passed, &spec) {
                        let state = if passed { "in" } else { "out" };
                        tracing::info!(service = %service_name, backend = %backend, %addr, check = %why, "active health check: backend {state}");
                    } else if !passed {
                        tracing::debug!(service = %service_name, backend = %backend, check = %why, "active health check failed");
                    }
                });
            }
        }
        last.retain(|k, _| present.contains(k));
    }
}

/// One check: the status of `GET path` on a new connection. The connection lives inside this future,
/// so a check dropped at its timeout closes its socket (a silent backend cannot pile up connections).
async fn probe(addr: SocketAddr, path: &str) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let req = Request::get(path)
        .header(header::HOST, HeaderValue::from_str(&addr.to_string())?)
        .header(header::USER_AGENT, "sticky-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::new())?;
    let send = sender.send_request(req);
    tokio::pin!(send);
    tokio::select! {
        biased;
        resp = &mut send => Ok(resp?.status().as_u16()),
        // the connection ended (the backend closes after answering, as asked): the response, if any,
        // has been handed over already
        _ = conn => Ok(send.await?.status().as_u16()),
    }
}
