//! tcp-mode services from Swarm labels (`sticky.mode=tcp`): one listener per service on its
//! `sticky.listen.port`, its backend set replaced live as tasks come and go.
//!
//! Each service is served by the user-space path ([`super::fallback`]: the same affinity and Maglev
//! decisions as the kernel path, from [`crate::policy`]). Why not the kernel path here: it matches
//! packets on one VIP address per service, and a Swarm task receives a service's clients on several
//! addresses (its overlay addresses, docker_gwbridge for published ports, the ingress network), which
//! the kernel path does not cover yet; sticky says so in one line at start.
//!
//! A task that leaves the set keeps its open connections (their relay tasks hold both sockets) and
//! gets no new ones; a service that disappears stops accepting, its open connections go on.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use super::{TcpFlags, fallback};
use crate::{datapath::sync::ServiceSpec, discovery::reconcile::TcpService, model::ServiceId};

/// One served tcp service.
struct Served {
    port: u16,
    timeout: Duration,
    backends: Vec<SocketAddrV4>,
    balancer: Arc<fallback::Balancer>,
    accept: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        // stop accepting; connections being relayed run on their own tasks and go on
        self.accept.abort();
    }
}

/// Serves the tcp services published into `services` until the channel closes.
pub async fn run(mut services: watch::Receiver<Arc<Vec<TcpService>>>, flags: TcpFlags) {
    let mut served: HashMap<ServiceId, Served> = HashMap::new();
    // (service, port) whose bind failure was logged, so that a retry on every update stays quiet
    let mut bind_failed: HashMap<ServiceId, u16> = HashMap::new();
    let mut announced = false;
    loop {
        let current = services.borrow_and_update().clone();
        if !announced && !current.is_empty() {
            tracing::info!(
                "tcp services from Swarm labels are served in user space (same affinity and Maglev decisions as the kernel path)"
            );
            announced = true;
        }
        served.retain(|id, s| {
            let keep = current.iter().any(|t| &t.id == id);
            if !keep {
                tracing::info!(service = %id, port = s.port, "tcp service gone; no new connections (open ones go on)");
            }
            keep
        });
        bind_failed.retain(|id, _| current.iter().any(|t| &t.id == id));
        for svc in current.iter() {
            let timeout = svc.affinity_timeout.unwrap_or(flags.affinity_timeout);
            if let Some(s) = served.get_mut(&svc.id)
                && s.port == svc.listen_port
                && s.timeout == timeout
            {
                if s.backends != svc.backends {
                    s.balancer.set_backends(&svc.backends);
                    tracing::info!(service = %svc.name, backends = ?svc.backends, "tcp service backends changed");
                    s.backends.clone_from(&svc.backends);
                }
                continue;
            }
            served.remove(&svc.id);
            match serve(svc, timeout, flags.max_affinity).await {
                Ok(s) => {
                    bind_failed.remove(&svc.id);
                    tracing::info!(
                        service = %svc.name, port = svc.listen_port, backends = ?svc.backends, affinity_timeout = ?timeout,
                        "tcp service listening"
                    );
                    served.insert(svc.id.clone(), s);
                }
                Err(e) => {
                    if bind_failed.insert(svc.id.clone(), svc.listen_port) != Some(svc.listen_port) {
                        tracing::error!(service = %svc.name, port = svc.listen_port, error = %e, "cannot listen for tcp service; retrying on the next change");
                    }
                }
            }
        }
        if services.changed().await.is_err() {
            return;
        }
    }
}

/// Binds the service's port on every address and starts accepting.
async fn serve(svc: &TcpService, timeout: Duration, max_affinity: u32) -> std::io::Result<Served> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, svc.listen_port);
    let listener = TcpListener::bind(addr).await?;
    let spec = ServiceSpec { vip: addr, backends: svc.backends.clone(), affinity_timeout: timeout };
    let balancer = Arc::new(fallback::Balancer::new(&spec, max_affinity));
    let accept = tokio::spawn(accept_loop(listener, balancer.clone()));
    Ok(Served { port: svc.listen_port, timeout, backends: svc.backends.clone(), balancer, accept })
}

async fn accept_loop(listener: TcpListener, balancer: Arc<fallback::Balancer>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(fallback::relay(balancer.clone(), stream, peer));
            }
            Err(e) => {
                // one connection's failure (or a passing fd shortage) never ends the accept loop
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
