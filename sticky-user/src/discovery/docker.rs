//! The Docker Engine API edge of Swarm discovery: services, tasks with their network addresses,
//! and the event stream. Plain data out; what to do with it lives in [`super::swarm`].
//!
//! bollard does the typed calls (services, events). Tasks come from the raw `/tasks` JSON, because
//! bollard's `Task` model has no `NetworksAttachments`, which is where a task's addresses are.
//! sticky speaks API 1.41 (Docker 20.10, the oldest engine Swarm users still run) to every daemon.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    Docker,
    models::EventMessage,
    query_parameters::{EventsOptions, ListServicesOptions},
};
use futures_util::{Stream, StreamExt as _};
use http_body_util::{BodyExt as _, Empty, Limited};
use serde::Deserialize;

/// The API version sticky asks for.
pub const API_VERSION: &str = "1.41";
/// How long one API call may take before discovery treats the daemon as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/tasks` answer accepted (a cluster with tens of thousands of tasks fits).
const MAX_TASKS_BODY: usize = 64 << 20;

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// `DOCKER_HOST` is not a unix socket.
    #[error("DOCKER_HOST={host}: sticky supports unix sockets only (mount /var/run/docker.sock)")]
    Host {
        /// The host as given.
        host: String,
    },
    /// A bollard call (services, events) failed.
    #[error("docker API")]
    Api(#[from] bollard::errors::Error),
    /// The raw `/tasks` call could not be made (socket, HTTP exchange, body).
    #[error("docker API {path}: the request failed")]
    Raw {
        /// The API path asked for.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The daemon answered the raw `/tasks` call with an error status.
    #[error("docker API {path}: {status}: {body}")]
    Status {
        /// The API path asked for.
        path: String,
        /// The HTTP status.
        status: http::StatusCode,
        /// The daemon's message.
        body: String,
    },
    /// The `/tasks` answer is not the JSON Docker sends.
    #[error("docker API /tasks: unexpected JSON")]
    Json(#[from] serde_json::Error),
    /// A call took longer than [`CALL_TIMEOUT`].
    #[error("docker API: no answer within {0:?}")]
    Timeout(Duration),
}

/// How a service's tasks are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointMode {
    /// A virtual IP in front of the tasks (sticky ignores it: the VIP balances round robin).
    Vip,
    /// DNS round robin; tasks only.
    Dnsrr,
}

/// A Swarm service, as discovery needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Service ID.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Service labels (not container labels).
    pub labels: BTreeMap<String, String>,
    /// Endpoint mode.
    pub endpoint_mode: EndpointMode,
    /// IDs of the networks the service's tasks are attached to.
    pub network_ids: Vec<String>,
    /// Whether the task template defines a health check (then only healthy tasks are `running`).
    pub has_healthcheck: bool,
}

/// One task of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Task ID (stable for the task's life; a replacement gets a new one).
    pub id: String,
    /// Service ID.
    pub service_id: String,
    /// Replica slot (replicated services); a rolling update's replacement takes the same slot.
    pub slot: Option<u64>,
    /// Node the task runs on (global services: one task per node).
    pub node_id: Option<String>,
    /// Observed state: `running`, `starting`, `shutdown`, ... (`running` means healthy when the
    /// service has a health check: Swarm holds a task in `starting` until its check passes).
    pub state: String,
    /// What the orchestrator wants: `running`, or `shutdown` once it is being replaced or removed.
    pub desired_state: String,
    /// The task's container (full id), once it has one.
    pub container_id: Option<String>,
    /// Addresses by network name (the ingress network, the routing mesh's own, left out).
    pub addresses: Vec<(String, IpAddr)>,
    /// Network ID to name, for the same attachments.
    pub network_names: HashMap<String, String>,
}

/// A connection to the daemon.
#[derive(Clone, Debug)]
pub struct Api {
    docker: Docker,
    socket: PathBuf,
}

impl Api {
    /// Connects to `host` (`unix:///var/run/docker.sock` or a path). Nothing is sent yet: the
    /// daemon may be down, and calls fail until it is up.
    ///
    /// # Errors
    /// `host` is not a unix socket.
    pub fn new(host: &str) -> Result<Self, DockerError> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if !path.starts_with('/') {
            return Err(DockerError::Host { host: host.to_owned() });
        }
        let version = bollard::ClientVersion { major_version: 1, minor_version: 41 };
        let docker = Docker::connect_with_unix(path, CALL_TIMEOUT.as_secs(), &version)?;
        Ok(Self { docker, socket: PathBuf::from(path) })
    }

    /// The daemon's socket path.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every service.
    ///
    /// # Errors
    /// The daemon is unreachable, not a Swarm manager, or answers with an error.
    pub async fn services(&self) -> Result<Vec<ServiceInfo>, DockerError> {
        let list = timeout(self.docker.list_services(None::<ListServicesOptions>)).await??;
        Ok(list.into_iter().filter_map(service_info).collect())
    }

    /// Every task (all services), with addresses.
    ///
    /// # Errors
    /// The daemon is unreachable or answers with an error.
    pub async fn tasks(&self) -> Result<Vec<TaskInfo>, DockerError> {
        let body = timeout(self.get_raw(&format!("/v{API_VERSION}/tasks"))).await??;
        parse_tasks(&body)
    }

    /// The event stream, filtered to what changes backends: service, container and network events.
    pub fn events(&self) -> impl Stream<Item = Result<EventMessage, DockerError>> + use<> {
        let mut filters = HashMap::new();
        filters.insert("type".to_owned(), vec!["service".to_owned(), "container".to_owned(), "network".to_owned()]);
        let options = EventsOptions { filters: Some(filters), ..EventsOptions::default() };
        self.docker.events(Some(options)).map(|e| e.map_err(DockerError::from))
    }

    async fn get_raw(&self, path: &str) -> Result<bytes::Bytes, DockerError> {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| DockerError::Raw { path: path.to_owned(), source };
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| err(e.into()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| err(e.into()))?;
        let driver = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", "docker")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| err(e.into()))?;
        let resp = sender.send_request(req).await.map_err(|e| err(e.into()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_TASKS_BODY).collect().await.map_err(err)?.to_bytes();
        driver.abort();
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).trim().to_owned();
            return Err(DockerError::Status { path: path.to_owned(), status, body });
        }
        Ok(body)
    }
}

async fn timeout<F: std::future::Future>(f: F) -> Result<F::Output, DockerError> {
    tokio::time::timeout(CALL_TIMEOUT, f).await.map_err(|_| DockerError::Timeout(CALL_TIMEOUT))
}

fn service_info(s: bollard::models::Service) -> Option<ServiceInfo> {
    let spec = s.spec?;
    let endpoint_mode = match spec.endpoint_spec.as_ref().and_then(|e| e.mode) {
        Some(bollard::models::EndpointSpecModeEnum::DNSRR) => EndpointMode::Dnsrr,
        _ => EndpointMode::Vip,
    };
    let template = spec.task_template.as_ref();
    let mut network_ids: Vec<String> = template
        .and_then(|t| t.networks.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.networks.iter().flatten())
        .filter_map(|n| n.target.clone())
        .collect();
    network_ids.sort();
    network_ids.dedup();
    let has_healthcheck = template
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.health_check.as_ref())
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| t.first().is_some_and(|c| c != "NONE"));
    Some(ServiceInfo {
        id: s.id?,
        name: spec.name.unwrap_or_default(),
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        endpoint_mode,
        network_ids,
        has_healthcheck,
    })
}

/// The fields of `/tasks` discovery reads (Docker's names).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    node_id: Option<String>,
    #[serde(default)]
    desired_state: String,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    networks_attachments: Vec<RawAttachment>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    container_status: Option<RawContainerStatus>,
}

#[derive(Deserialize, Default)]
struct RawContainerStatus {
    #[serde(rename = "ContainerID", default)]
    container_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttachment {
    network: RawNetwork,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetwork {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    spec: RawNetworkSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawNetworkSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    ingress: bool,
}

/// Parses a `/tasks` answer.
///
/// # Errors
/// The body is not the JSON Docker sends.
pub fn parse_tasks(body: &[u8]) -> Result<Vec<TaskInfo>, DockerError> {
    let raw: Vec<RawTask> = serde_json::from_slice(body)?;
    Ok(raw
        .into_iter()
        .map(|t| {
            let mut addresses = Vec::new();
            let mut network_names = HashMap::new();
            for a in t.networks_attachments.into_iter().filter(|a| !a.network.spec.ingress) {
                network_names.insert(a.network.id.clone(), a.network.spec.name.clone());
                for cidr in a.addresses {
                    // "10.0.1.3/24": the address before the prefix length.
                    if let Ok(ip) = cidr.split('/').next().unwrap_or_default().parse::<IpAddr>() {
                        addresses.push((a.network.spec.name.clone(), ip));
                    }
                }
            }
            TaskInfo {
                id: t.id,
                service_id: t.service_id,
                slot: t.slot.filter(|s| *s > 0),
                node_id: t.node_id.filter(|n| !n.is_empty()),
                state: t.status.state,
                desired_state: t.desired_state,
                container_id: t.status.container_status.and_then(|c| c.container_id).filter(|c| !c.is_empty()),
                addresses,
                network_names,
            }
        })
        .collect())
}

/// The id of the container this process runs in, if it runs in one (else `None`).
///
/// Docker bind-mounts `<data-root>/containers/<id>/hostname` onto `/etc/hostname`, whatever the
/// container's host name was set to; `/proc/self/mountinfo` shows that source path.
#[must_use]
pub fn own_container_id() -> Option<String> {
    container_id_in_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

/// The container id named by the `/etc/hostname` mount in a mountinfo text.
fn container_id_in_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        if mount_point != "/etc/hostname" {
            return None;
        }
        let id = root.strip_suffix("/hostname")?.rsplit('/').next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An excerpt of a real `/v1.41/tasks` answer (Docker 20.10.24), trimmed to the fields read.
    const TASKS: &str = r#"[
      {"ID":"6b6e7aw6wg1ksx1wahn65emjt","Version":{"Index":35},"ServiceID":"qzryl6dzkpv035a9u3893xrs7","Slot":3,
       "NodeID":"58o7xhq9kc6hocyjab2cq0mzp",
       "Status":{"Timestamp":"2026-11-23T20:17:15Z","State":"running","Message":"started",
                 "ContainerStatus":{"ContainerID":"3f73c2840a96","PID":32363}},
       "DesiredState":"running",
       "NetworksAttachments":[{"Network":{"ID":"gbnelzi8s6eg6xzbata1ib9v1","Spec":{"Name":"whoaminet","Driver":"overlay"}},
                               "Addresses":["10.0.1.2/24"]},
                              {"Network":{"ID":"ingressid","Spec":{"Name":"ingress","Ingress":true}},"Addresses":["10.0.0.7/24"]}]},
      {"ID":"rw1h3v9953sqwatj1t1qk64v1","ServiceID":"qzryl6dzkpv035a9u3893xrs7","Slot":1,
       "Status":{"State":"running"},"DesiredState":"shutdown",
       "NetworksAttachments":[{"Network":{"ID":"gbnelzi8s6eg6xzbata1ib9v1","Spec":{"Name":"whoaminet"}},"Addresses":["10.0.1.3/24"]}]},
      {"ID":"global1","ServiceID":"svc2","Status":{"State":"starting"},"DesiredState":"running"}
    ]"#;

    #[test]
    fn parses_addresses_states_and_slots() {
        let tasks = parse_tasks(TASKS.as_bytes()).unwrap();
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[0].slot, Some(3));
        assert_eq!(tasks[0].addresses, vec![("whoaminet".to_owned(), "10.0.1.2".parse().unwrap())]);
        assert_eq!(tasks[0].network_names["gbnelzi8s6eg6xzbata1ib9v1"], "whoaminet");
        assert!(!tasks[0].network_names.contains_key("ingressid"), "the routing mesh's network is left out");
        assert_eq!(tasks[0].container_id.as_deref(), Some("3f73c2840a96"));
        assert_eq!(tasks[1].container_id, None);
        assert_eq!((tasks[1].state.as_str(), tasks[1].desired_state.as_str()), ("running", "shutdown"));
        assert_eq!(tasks[2].slot, None);
        assert!(tasks[2].addresses.is_empty());
    }

    #[test]
    fn rejects_what_is_not_a_task_list() {
        assert!(parse_tasks(b"{\"message\":\"This node is not a swarm manager.\"}").is_err());
        assert!(parse_tasks(b"").is_err());
    }

    #[test]
    fn finds_the_own_container_in_mountinfo() {
        let id = "9a4c0e1f1b2d3c4e5f60718293a4b5c6d7e8f90112233445566778899aabbccd";
        let text = format!(
            "610 609 0:52 / / rw,relatime - overlay overlay rw\n\
             620 610 253:0 /tmp/sticky-swarm-1/data/containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_in_mountinfo(&text).as_deref(), Some(id));
        assert_eq!(container_id_in_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n"), None);
    }

    #[test]
    fn only_unix_sockets() {
        assert!(Api::new("tcp://127.0.0.1:2375").is_err());
        assert!(Api::new("relative.sock").is_err());
    }
}
