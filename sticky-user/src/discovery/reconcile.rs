//! Swarm services, tasks and labels -> the catalog sticky balances, http and tcp services (pure).
//!
//! One function, [`reconcile`], from one listing of the Docker API to one complete view. For each
//! service that opts in by labels ([`crate::labels::parse`]):
//! - **network**: the label's (`sticky.network`, `traefik.docker.network`), else the one network the
//!   service shares with sticky's own task ([`Placement`]), else (sticky not a task of this Swarm)
//!   the service's only network; anything else is a [`Problem`] naming the networks to choose from;
//! - **port**: the label's, else a problem;
//! - **backends**: the service's tasks whose observed state is `running`, at their address on that
//!   network (never the VIP). A task whose desired state is no longer `running` (scale-down, rolling
//!   update, removal) while it still runs is [`AdminState::Draining`]. Swarm holds the tasks of a
//!   service with a Docker healthcheck in `starting` until the check passes, so "running" already
//!   means "healthy" there;
//! - **identity** ([`BackendId`]): the task id, or with `sticky.cookie.identity=slot` the replica slot
//!   (`slot-N`; `node-ID` for global services). Two tasks of one slot during an update: the one
//!   that should run wins, so sessions move to the replacement as soon as it runs.
//!
//! - **options**: validated as `sticky run` validates its flags and file ([`ServiceSpec::validate`]).
//!
//! A service whose labels do not parse or validate, or that lacks a network or port, is left out
//! with a [`Problem`]; the others are unaffected. Output is sorted, so equal inputs give equal outputs and
//! the caller can publish only on change.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use super::docker::{ServiceInfo, TaskInfo};
use crate::{
    labels::{self, Dialect, Identity, LabelError, LabeledService, Mode},
    model::{
        AdminState, Backend, BackendId, BackoffSpec, Catalog, CookieSpec, HealthCheckSpec, HttpService, ServiceId,
        ServiceSpec, SpecError, SpliceSpec, TcpMember, TcpService, TlsSpec,
    },
};

/// An opted-in service that is not balanced, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Swarm service id.
    pub service_id: String,
    /// Swarm service name.
    pub service: String,
    /// What is wrong, and what to do.
    pub reason: LeftOut,
}

/// Why an opted-in service is left out; each message says what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeftOut {
    /// A label sticky acts on has an unusable value.
    #[error("labels: {0}")]
    Labels(LabelError),
    /// The network its labels name is not one of the service's.
    #[error("network {wanted} (from its labels) is not one of the service's networks ({attached})")]
    UnknownNetwork {
        /// The network named.
        wanted: String,
        /// The service's networks, comma-separated (`none`).
        attached: String,
    },
    /// The network its labels name is not one of sticky's.
    #[error("sticky is not attached to network {network}: add it to sticky's service (stack file networks)")]
    NotOnNetwork {
        /// The network named.
        network: String,
    },
    /// It shares no network with sticky's own task.
    #[error("shares no network with sticky: attach sticky to one of the service's networks ({attached})")]
    NoSharedNetwork {
        /// The service's networks, comma-separated (`none`).
        attached: String,
    },
    /// It has no network at all (sticky runs outside the Swarm).
    #[error("has no network: attach it to an overlay network that sticky is attached to")]
    NoNetwork,
    /// It shares several networks with sticky and no label picks one.
    #[error("shares several networks with sticky ({shared}): choose one with sticky.network or traefik.docker.network")]
    SeveralNetworks {
        /// The shared networks, comma-separated.
        shared: String,
    },
    /// No label gives the tasks' port.
    #[error("no port: set sticky.port (or traefik.port, traefik.http.services.<s>.loadbalancer.server.port)")]
    NoPort,
    /// A Traefik rule that strips the path prefix, which sticky does not do.
    #[error("PathPrefixStrip/PathStrip rules are not supported: the backend would get unstripped paths")]
    StripPrefix,
    /// An option fails the validation `sticky run` applies to its flags and file.
    #[error("{0}")]
    Options(SpecError),
    /// Another tcp service already listens on its port.
    #[error("sticky.listen.port {port} is already taken by tcp service {other}")]
    TcpPortTaken {
        /// The port.
        port: u16,
        /// The service that has it.
        other: String,
    },
}

/// Where sticky itself runs, as far as its networks are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A task of this Swarm attached to these networks (ids).
    Task(BTreeSet<String>),
    /// Not a task of this Swarm (on the host, or a plain container): networks unknown.
    Elsewhere,
}

/// Everything one listing says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The http and tcp services and their backends.
    pub catalog: Catalog,
    /// Opted-in services that are left out, and why.
    pub problems: Vec<Problem>,
    /// (service id, service name, label) for each label in sticky's or Traefik's namespace that
    /// sticky does not act on.
    pub ignored: Vec<(String, String, String)>,
    /// What the cookie of each balanced http service names, by service id (with its name): a change
    /// invalidates every cookie issued before, which discovery warns about.
    pub identities: BTreeMap<String, (String, Identity)>,
}

/// Sticky's own networks: those of the task running in container `own_container` (a full id).
#[must_use]
pub fn placement(tasks: &[TaskInfo], own_container: Option<&str>) -> Placement {
    let Some(own) = own_container else { return Placement::Elsewhere };
    // any state: sticky's own task may still be `starting` in the manager's view at its first listing
    tasks
        .iter()
        .find(|t| t.container_id.as_deref() == Some(own))
        .map_or(Placement::Elsewhere, |t| Placement::Task(t.network_names.keys().cloned().collect()))
}

/// The catalog, problems and ignored labels of one listing. `affinity_timeout` is the affinity
/// lifetime of tcp services without a `sticky.affinity.timeout` label (`--affinity-timeout`).
#[must_use]
pub fn reconcile(services: &[ServiceInfo], tasks: &[TaskInfo], own: &Placement, affinity_timeout: Duration) -> Outcome {
    // network id -> name, from every task's attachments (services list networks by id only)
    let names: BTreeMap<&str, &str> =
        tasks.iter().flat_map(|t| t.network_names.iter().map(|(id, name)| (id.as_str(), name.as_str()))).collect();
    let mut sorted: Vec<&ServiceInfo> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let mut out = Outcome::default();
    let mut tcp_ports: BTreeMap<u16, String> = BTreeMap::new();
    for service in sorted {
        let problem =
            |reason: LeftOut| Problem { service_id: service.id.clone(), service: service.name.clone(), reason };
        let labeled = match labels::parse(&service.name, &service.labels) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                out.problems.push(problem(LeftOut::Labels(e)));
                continue;
            }
        };
        out.ignored.extend(labeled.ignored.iter().map(|l| (service.id.clone(), service.name.clone(), l.clone())));
        let network = match network(service, &labeled, own, &names) {
            Ok(n) => n,
            Err(reason) => {
                out.problems.push(problem(reason));
                continue;
            }
        };
        let Some(port) = labeled.port else {
            out.problems.push(problem(LeftOut::NoPort));
            continue;
        };
        let backends = backends(service, &labeled, tasks, &network, port);
        match labeled.mode {
            Mode::Http => match spec(service, &labeled) {
                Ok(spec) => {
                    out.identities.insert(service.id.clone(), (service.name.clone(), labeled.cookie.identity));
                    out.catalog.http.push(HttpService { spec, backends });
                }
                Err(reason) => out.problems.push(problem(reason)),
            },
            Mode::Tcp => {
                let listen_port = labeled.listen_port.unwrap_or(port);
                if let Some(other) = tcp_ports.get(&listen_port) {
                    out.problems.push(problem(LeftOut::TcpPortTaken { port: listen_port, other: other.clone() }));
                    continue;
                }
                tcp_ports.insert(listen_port, service.name.clone());
                // every task is a member (the admin API lists it), IPv4 and IPv6 alike: the
                // user-space relay connects to either family, and the kernel path keeps a VIP's
                // family. Draining ones are left out of the set: in tcp mode a backend that leaves
                // the set keeps its open connections and gets no new ones
                let members: Vec<TcpMember> = backends
                    .iter()
                    .map(|b| TcpMember { id: b.id.to_string(), addr: b.addr, draining: b.admin != AdminState::Active })
                    .collect();
                let mut addrs: Vec<SocketAddr> = members.iter().filter(|m| !m.draining).map(|m| m.addr).collect();
                addrs.sort_unstable();
                addrs.dedup();
                out.catalog.tcp.push(TcpService {
                    id: ServiceId(service.id.as_str().into()),
                    name: service.name.clone(),
                    vip: SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen_port)),
                    backends: addrs,
                    affinity_timeout: labeled.affinity_timeout.unwrap_or(affinity_timeout),
                    proxy_protocol: labeled.proxy_protocol.unwrap_or_default(),
                    members,
                    path: labeled.tcp_path.unwrap_or_default(),
                });
            }
        }
    }
    out
}

/// The network (id or name as the tasks report it, and its name) whose addresses are the backends.
fn network(
    service: &ServiceInfo,
    labeled: &LabeledService,
    own: &Placement,
    names: &BTreeMap<&str, &str>,
) -> Result<String, LeftOut> {
    let name_of = |id: &str| names.get(id).map_or_else(|| id.to_owned(), |n| (*n).to_owned());
    let attached: Vec<(String, String)> = service.network_ids.iter().map(|id| (id.clone(), name_of(id))).collect();
    let list = |nets: &[&(String, String)]| {
        if nets.is_empty() {
            "none".to_owned()
        } else {
            nets.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    let all: Vec<&(String, String)> = attached.iter().collect();
    if let Some(wanted) = &labeled.network {
        let found = attached.iter().find(|(id, name)| name == wanted || id == wanted);
        let Some((id, name)) = found else {
            return Err(LeftOut::UnknownNetwork { wanted: wanted.clone(), attached: list(&all) });
        };
        if let Placement::Task(mine) = own
            && !mine.contains(id)
        {
            return Err(LeftOut::NotOnNetwork { network: name.clone() });
        }
        return Ok(name.clone());
    }
    let candidates: Vec<&(String, String)> = match own {
        Placement::Task(mine) => attached.iter().filter(|(id, _)| mine.contains(id)).collect(),
        Placement::Elsewhere => attached.iter().collect(),
    };
    match (candidates.as_slice(), own) {
        ([(_, name)], _) => Ok(name.clone()),
        ([], Placement::Task(_)) => Err(LeftOut::NoSharedNetwork { attached: list(&all) }),
        ([], Placement::Elsewhere) => Err(LeftOut::NoNetwork),
        (several, _) => Err(LeftOut::SeveralNetworks { shared: list(several) }),
    }
}

/// The service's running tasks on `network`, by identity.
fn backends(
    service: &ServiceInfo,
    labeled: &LabeledService,
    tasks: &[TaskInfo],
    network: &str,
    port: u16,
) -> Vec<Backend> {
    let mut running: Vec<&TaskInfo> =
        tasks.iter().filter(|t| t.service_id == service.id && t.state == "running").collect();
    // the task that should run first, so that it wins its slot over a replaced one
    running.sort_by(|a, b| (a.desired_state != "running", &a.id).cmp(&(b.desired_state != "running", &b.id)));
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(running.len());
    for task in running {
        let Some(ip) = address(task, network) else { continue };
        let id = match labeled.cookie.identity {
            Identity::Task => task.id.clone(),
            Identity::Slot => match (task.slot, &task.node_id) {
                (Some(slot), _) => format!("slot-{slot}"),
                (None, Some(node)) => format!("node-{node}"),
                (None, None) => task.id.clone(),
            },
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        let admin = if task.desired_state == "running" { AdminState::Active } else { AdminState::Draining };
        out.push(Backend { id: BackendId(id.into()), addr: SocketAddr::new(ip, port), weight: 1, admin });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The task's address on `network` (IPv4 first).
fn address(task: &TaskInfo, network: &str) -> Option<IpAddr> {
    let mut on: Vec<IpAddr> = task.addresses.iter().filter(|(n, _)| n == network).map(|(_, ip)| *ip).collect();
    on.sort_by_key(IpAddr::is_ipv6);
    on.first().copied()
}

/// The http-mode service spec of the labels, validated like `sticky run`'s flags and file.
fn spec(service: &ServiceInfo, labeled: &LabeledService) -> Result<ServiceSpec, LeftOut> {
    if labeled.route.strip_prefix {
        return Err(LeftOut::StripPrefix);
    }
    let c = &labeled.cookie;
    let cookie_default = CookieSpec::default();
    let traefik = labeled.dialects.iter().any(|d| matches!(d, Dialect::TraefikV1 | Dialect::TraefikV2));
    let health_default = HealthCheckSpec::default();
    let rule = labeled.route.rule.clone();
    let spec = ServiceSpec {
        id: ServiceId(service.id.as_str().into()),
        name: service.name.clone(),
        priority: rule.default_priority(),
        rule,
        cookie: CookieSpec {
            name: c.name.clone().unwrap_or(cookie_default.name),
            path: c.path.clone().unwrap_or(cookie_default.path),
            domain: c.domain.clone(),
            secure: c.secure,
            http_only: c.http_only.unwrap_or(cookie_default.http_only),
            same_site: c.same_site,
            max_age: c.max_age,
            idle_timeout: c.idle_timeout,
            absolute_timeout: c.absolute_timeout,
            enabled: labeled.sticky,
            // on with Traefik labels (their clients hold Traefik cookies) or with a window set
            legacy_traefik: c.legacy.unwrap_or(traefik || c.legacy_until.is_some()),
            legacy_until: c.legacy_until,
            partitioned: c.partitioned.unwrap_or(false),
            extra: c.extra.clone(),
            affinity: crate::model::Affinity::from_parts(
                c.affinity,
                c.affinity_header.as_deref(),
                c.affinity_learn.as_deref(),
            )
            .map_err(LeftOut::Options)?,
            load: c.load,
        },
        strict: labeled.strict,
        health: HealthCheckSpec {
            path: labeled.health.path.clone(),
            interval: labeled.health.interval.unwrap_or(health_default.interval),
            timeout: labeled.health.timeout.unwrap_or(health_default.timeout),
            ..health_default
        },
        backoff: BackoffSpec::default(),
        splice: SpliceSpec::with(labeled.splice, labeled.splice_upgrades),
        tls: TlsSpec {
            enabled: labeled.tls.enabled,
            domains: labeled.tls.domains.clone(),
            cert_resolver: labeled.tls.cert_resolver.clone(),
            redirect: labeled.tls.redirect.unwrap_or(false),
            hsts: labeled.tls.hsts.map(|d| d.as_secs()),
        },
        backend_protocol: labeled.backend_protocol.unwrap_or_default(),
        proxy_protocol: labeled.proxy_protocol.unwrap_or_default(),
    };
    spec.validate().map_err(LeftOut::Options)?;
    Ok(spec)
}

#[cfg(test)]
mod tests;
