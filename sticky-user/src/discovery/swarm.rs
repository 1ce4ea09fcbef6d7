//! Swarm discovery: list services and tasks (Docker API), reconcile, publish on change; re-list on
//! every event and on a short timer, and ride out an unreachable or hung daemon.
//!
//! Docker emits no task events, so the event stream (service, container and network events) only
//! wakes the loop early: every wake-up re-lists everything, and a timer re-lists every
//! [`SwarmOptions::interval`] anyway (faster for a second after an event, when the task that caused
//! it turns `running`). What a listing means is [`super::reconcile`] (pure); this module is the I/O and
//! the memory between listings:
//! - the last published catalog (http and tcp services): published again only when it changes;
//! - services that vanished (`docker service rm`) while their tasks still run: kept, with those tasks
//!   draining, until the tasks stop;
//! - what was logged: each problem once while it lasts, each ignored label once, the API's state once
//!   per change.
//!
//! The daemon unreachable, failing or slower than [`super::docker::CALL_TIMEOUT`]: nothing is
//! published (the last catalog stays in force, never an empty one), and the listing is retried with
//! exponential back-off from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt as _;
use tokio::sync::Notify;

use super::{
    Discovery, DiscoveryError, Publisher,
    docker::{Api, DockerError, ServiceInfo, TaskInfo},
    reconcile::{self, Placement},
};
use crate::{
    labels::Identity,
    model::{AdminState, Catalog, CookieSpec},
    values::format_rfc3339,
};

/// First retry delay after a failed listing.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest retry delay while the daemon stays unreachable.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Re-list period for a second after an event (a started container's task turns `running` shortly
/// after its event).
const AFTER_EVENT: Duration = Duration::from_millis(100);
/// How long after an event the fast period lasts.
const AFTER_EVENT_WINDOW: Duration = Duration::from_secs(1);

/// Settings of Swarm discovery.
#[derive(Clone, Debug)]
pub struct SwarmOptions {
    /// Re-list period without events.
    pub interval: Duration,
    /// The container sticky runs in (full id), to find its own networks; none: not in a container.
    pub own_container: Option<String>,
    /// Affinity lifetime of tcp services without a `sticky.affinity.timeout` label.
    pub affinity_timeout: Duration,
    /// Where the dashboard reads the API's state and the services left out.
    pub status: Arc<super::status::Status>,
}

/// Swarm discovery over one daemon's API.
#[derive(Debug)]
pub struct SwarmDiscovery {
    api: Api,
    options: SwarmOptions,
}

impl SwarmDiscovery {
    /// Discovery through `api`.
    #[must_use]
    pub fn new(api: Api, options: SwarmOptions) -> Self {
        Self { api, options }
    }
}

impl Discovery for SwarmDiscovery {
    async fn run(self, publish: Publisher) -> Result<(), DiscoveryError> {
        let wake = Arc::new(Notify::new());
        let events = tokio::spawn(watch_events(self.api.clone(), wake.clone()));
        // the event watcher ends with this future (also when it is dropped)
        let _events = AbortOnDrop(events);
        let mut memory = ListingMemory::default();
        let mut api_state = ApiState::Unknown;
        let mut backoff = BACKOFF_MIN;
        let mut fast_until: Option<Instant> = None;
        tracing::info!(socket = %self.api.socket().display(), interval = ?self.options.interval, "Swarm discovery starting");
        loop {
            let wait = match list(&self.api).await {
                Ok((services, tasks)) => {
                    api_state.up(&memory);
                    let now = SystemTime::now();
                    backoff = BACKOFF_MIN;
                    let own = self.options.own_container.as_deref();
                    let catalog = memory.update(services, &tasks, own, self.options.affinity_timeout, now);
                    self.options.status.listed(memory.problem_list.clone(), memory.ignored_list.clone());
                    let first = memory.first_publish();
                    publish.send_if_modified(|current| {
                        let changed = **current != catalog;
                        if changed {
                            *current = Arc::new(catalog);
                        }
                        changed || first
                    });
                    match fast_until {
                        Some(t) if Instant::now() < t => AFTER_EVENT,
                        _ => self.options.interval,
                    }
                }
                Err(e) => {
                    api_state.down(&e, &memory);
                    self.options.status.failed(crate::telemetry::chain(&e));
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified(), if matches!(api_state, ApiState::Up) => {
                    fast_until = Some(Instant::now() + AFTER_EVENT_WINDOW);
                }
            }
        }
    }
}

/// Services, then tasks (a task listed after its service always has a known service).
async fn list(api: &Api) -> Result<(Vec<ServiceInfo>, Vec<TaskInfo>), DockerError> {
    let services = api.services().await?;
    let tasks = api.tasks().await?;
    Ok((services, tasks))
}

/// Follows the event stream and wakes the listing loop on each event; reconnects with back-off.
async fn watch_events(api: Api, wake: Arc<Notify>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut stream = std::pin::pin!(api.events());
        let mut connected = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(e) => {
                    if !connected {
                        connected = true;
                        backoff = BACKOFF_MIN;
                    }
                    tracing::trace!(kind = ?e.typ, action = ?e.action, "docker event");
                    wake.notify_one();
                }
                Err(e) => {
                    tracing::debug!(error = %crate::telemetry::chain(&e), "docker event stream ended; the timer keeps re-listing");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // events may have been missed meanwhile
        wake.notify_one();
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Docker API's state as last seen, for one log line per change.
#[derive(Debug)]
enum ApiState {
    Unknown,
    Up,
    Down { since: Instant },
}

impl ApiState {
    fn up(&mut self, memory: &ListingMemory) {
        match self {
            Self::Up => return,
            Self::Unknown => tracing::info!("Docker API reachable; following Swarm services"),
            Self::Down { since } => tracing::info!(
                after = ?since.elapsed(), services = memory.published_services,
                "Docker API reachable again; re-listed Swarm services"
            ),
        }
        *self = Self::Up;
    }

    fn down(&mut self, error: &DockerError, memory: &ListingMemory) {
        match self {
            Self::Down { .. } => return,
            Self::Unknown => tracing::warn!(
                error = %crate::telemetry::chain(error),
                "Docker API unreachable; nothing to balance until it answers (retrying with back-off)"
            ),
            Self::Up => tracing::warn!(
                error = %crate::telemetry::chain(error), services = memory.published_services,
                "Docker API unreachable or too slow; keeping the last known services and tasks (retrying with back-off)"
            ),
        }
        *self = Self::Down { since: Instant::now() };
    }
}

/// What discovery remembers between listings.
#[derive(Debug, Default)]
struct ListingMemory {
    /// Every service seen, by id, for services removed while their tasks still run.
    services: HashMap<String, ServiceInfo>,
    /// The problem last logged per service id.
    problems: HashMap<String, reconcile::LeftOut>,
    /// (service id, label) already logged as ignored.
    ignored: HashSet<(String, String)>,
    /// Services balanced in the last outcome, by id: (name, one line of state) for change lines.
    balanced: BTreeMap<String, (String, String)>,
    /// Whether sticky's own task was found last time (for one line on change).
    own_found: Option<bool>,
    /// What each http service's cookie named last time, by service id (a change is warned about).
    identities: HashMap<String, Identity>,
    /// Each http service's Traefik cookie window as last logged, by service id.
    legacy: HashMap<String, LegacyWindow>,
    published_services: usize,
    published_once: bool,
    /// The last listing's services left out: (name, why), for the dashboard.
    problem_list: Vec<(String, String)>,
    /// The last listing's ignored labels: (service name, label), for the dashboard.
    ignored_list: Vec<(String, String)>,
}

impl ListingMemory {
    /// Reconciles one listing at `now`, logs what changed, and returns the catalog to publish.
    ///
    /// A service's Traefik cookie window ([`CookieSpec::legacy_honoured`]) is decided here too: once
    /// `now` passes `sticky.cookie.legacy.until` the published spec has legacy off, so the end takes
    /// effect at the next listing (within `--docker-interval`).
    fn update(
        &mut self,
        services: Vec<ServiceInfo>,
        tasks: &[TaskInfo],
        own_container: Option<&str>,
        affinity_timeout: Duration,
        now: SystemTime,
    ) -> Catalog {
        let listed: HashSet<String> = services.iter().map(|s| s.id.clone()).collect();
        // a removed service stays while any of its tasks still runs (those tasks all drain)
        self.services
            .retain(|id, _| listed.contains(id) || tasks.iter().any(|t| &t.service_id == id && t.state == "running"));
        for s in services {
            self.services.insert(s.id.clone(), s);
        }
        let all: Vec<ServiceInfo> = self.services.values().cloned().collect();
        let own = reconcile::placement(tasks, own_container);
        let found = matches!(own, Placement::Task(_));
        if self.own_found != Some(found) {
            match (&own, own_container) {
                (Placement::Task(nets), _) => tracing::info!(
                    networks = nets.len(),
                    "found sticky's own task; services are reached on the networks they share with it"
                ),
                (Placement::Elsewhere, Some(id)) => {
                    tracing::warn!(container = %id, "sticky's container is not a task of this Swarm: each service needs sticky.network (or traefik.docker.network) or exactly one network");
                }
                (Placement::Elsewhere, None) => tracing::info!(
                    "sticky runs outside a container: each service needs sticky.network (or traefik.docker.network) or exactly one network"
                ),
            }
            self.own_found = Some(found);
        }
        let mut out = reconcile::reconcile(&all, tasks, &own, affinity_timeout);
        self.log_identity_changes(&out.identities);
        let mut legacy = HashMap::new();
        for s in &mut out.catalog.http {
            let window = LegacyWindow::of(&s.spec.cookie, now);
            let id = s.spec.id.0.to_string();
            if self.legacy.get(&id).copied().unwrap_or(LegacyWindow::Off) != window {
                window.log(&s.spec.name);
            }
            legacy.insert(id, window);
            s.spec.cookie.legacy_traefik = s.spec.cookie.legacy_honoured(now);
        }
        self.legacy = legacy;

        let mut now_problems = HashMap::new();
        self.problem_list = out.problems.iter().map(|p| (p.service.clone(), p.reason.to_string())).collect();
        self.ignored_list = out.ignored.iter().map(|(_, name, label)| (name.clone(), label.clone())).collect();
        for p in out.problems {
            if self.problems.get(&p.service_id) != Some(&p.reason) {
                tracing::error!(service = %p.service, problem = %p.reason, "service not balanced");
            }
            now_problems.insert(p.service_id, p.reason);
        }
        self.problems = now_problems;
        for (id, name, label) in out.ignored {
            if self.ignored.insert((id, label.clone())) {
                tracing::warn!(service = %name, label = %label, "label not understood by sticky; ignored");
            }
        }
        let mut balanced = BTreeMap::new();
        for s in &out.catalog.http {
            let draining = s.backends.iter().filter(|b| b.admin == AdminState::Draining).count();
            let line = format!(
                "http rule {} cookie {}{} tasks {} draining {}",
                s.spec.rule.to_traefik(),
                s.spec.cookie.name,
                if s.spec.cookie.enabled { "" } else { " (not sticky)" },
                s.backends.len(),
                draining
            );
            balanced.insert(s.spec.id.0.to_string(), (s.spec.name.clone(), line));
        }
        for t in &out.catalog.tcp {
            let line = format!("tcp port {} tasks {}", t.vip.port(), t.backends.len());
            balanced.insert(t.id.0.to_string(), (t.name.clone(), line));
        }
        for (id, (name, line)) in &balanced {
            if self.balanced.get(id).map(|(_, l)| l) != Some(line) {
                tracing::info!(service = %name, state = %line, "balancing");
            }
        }
        for (id, (name, _)) in &self.balanced {
            if !balanced.contains_key(id) {
                tracing::info!(service = %name, "no longer balancing");
            }
        }
        self.balanced = balanced;
        self.published_services = out.catalog.http.len() + out.catalog.tcp.len();
        out.catalog
    }

    /// One warning per http service whose cookie identity changed since the last listing.
    fn log_identity_changes(&mut self, now: &BTreeMap<String, (String, Identity)>) {
        for (id, (name, identity)) in now {
            if let Some(before) = self.identities.get(id)
                && before != identity
            {
                tracing::warn!(
                    service = %name, from = %before.as_str(), to = %identity.as_str(),
                    "sticky.cookie.identity changed: every cookie issued before names the old identity and is invalid now; each client is re-pinned once"
                );
            }
        }
        self.identities = now.iter().map(|(id, (_, identity))| (id.clone(), *identity)).collect();
    }

    /// True exactly once: the first catalog is published even if it is empty (the app waits for it).
    fn first_publish(&mut self) -> bool {
        !std::mem::replace(&mut self.published_once, true)
    }
}

/// A service's Traefik cookie migration window at one moment, for one log line per change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegacyWindow {
    /// Traefik values are not honoured (no Traefik labels, `sticky.cookie.legacy=false`, or no pinning).
    Off,
    /// Honoured, until the end if there is one.
    Open(Option<SystemTime>),
    /// The window ended then: Traefik values are ignored.
    Over(SystemTime),
}

impl LegacyWindow {
    fn of(cookie: &CookieSpec, now: SystemTime) -> Self {
        match (cookie.enabled && cookie.legacy_traefik, cookie.legacy_until) {
            (true, until) if cookie.legacy_honoured(now) => Self::Open(until),
            (true, Some(until)) => Self::Over(until),
            _ => Self::Off,
        }
    }

    fn log(self, service: &str) {
        match self {
            Self::Open(None) => tracing::warn!(
                service = %service,
                until = %"none",
                "legacy Traefik cookies honoured with no end: a request's http://IP:PORT value picks that task; end the migration with sticky.cookie.legacy.until=<RFC 3339 date> (or sticky.cookie.legacy=false)"
            ),
            Self::Open(Some(until)) => tracing::warn!(
                service = %service,
                until = %format_rfc3339(until),
                "legacy Traefik cookies honoured until the end of the migration window (sticky.cookie.legacy.until): until then a request's http://IP:PORT value picks that task"
            ),
            Self::Over(until) => tracing::info!(
                service = %service,
                until = %format_rfc3339(until),
                "legacy Traefik cookie window over: Traefik values are ignored from now on"
            ),
            Self::Off => tracing::info!(service = %service, "legacy Traefik cookies no longer honoured"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::discovery::docker::EndpointMode;

    const AFFINITY: Duration = Duration::from_secs(3 * 3600);
    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn service() -> ServiceInfo {
        ServiceInfo {
            id: "s1".into(),
            name: "web".into(),
            labels: BTreeMap::from([("sticky.port".to_owned(), "80".to_owned())]),
            endpoint_mode: EndpointMode::Dnsrr,
            network_ids: vec!["n1".into()],
            has_healthcheck: false,
        }
    }

    fn task(id: &str, state: &str, desired: &str) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            service_id: "s1".into(),
            slot: Some(1),
            node_id: None,
            state: state.into(),
            desired_state: desired.into(),
            container_id: None,
            addresses: vec![("net".into(), "10.0.1.3".parse().unwrap())],
            network_names: [("n1".to_owned(), "net".to_owned())].into(),
        }
    }

    #[test]
    fn a_removed_service_drains_until_its_tasks_stop() {
        let mut memory = ListingMemory::default();
        let catalog = memory.update(vec![service()], &[task("t1", "running", "running")], None, AFFINITY, NOW);
        assert_eq!(catalog.http[0].backends[0].admin, AdminState::Active);
        // `docker service rm`: the service is gone from the listing, its task still runs
        let catalog = memory.update(vec![], &[task("t1", "running", "remove")], None, AFFINITY, NOW);
        assert_eq!(catalog.http.len(), 1, "kept while its task runs");
        assert_eq!(catalog.http[0].backends[0].admin, AdminState::Draining);
        let catalog = memory.update(vec![], &[task("t1", "shutdown", "remove")], None, AFFINITY, NOW);
        assert!(catalog.http.is_empty(), "gone once its tasks stopped");
        assert!(memory.services.is_empty());
    }

    #[test]
    fn the_legacy_window_ends_at_its_date() {
        let mut memory = ListingMemory::default();
        let mut traefik = service();
        traefik.labels = BTreeMap::from([
            ("traefik.port".to_owned(), "80".to_owned()),
            ("traefik.backend.loadbalancer.stickiness".to_owned(), "true".to_owned()),
            ("sticky.cookie.legacy.until".to_owned(), "2027-03-31T18:00:00Z".to_owned()),
        ]);
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_806_516_000);
        let tasks = [task("t1", "running", "running")];
        let at = |memory: &mut ListingMemory, service: &ServiceInfo, now| {
            memory.update(vec![service.clone()], &tasks, None, AFFINITY, now)
        };
        let open = at(&mut memory, &traefik, until - Duration::from_secs(1));
        assert!(open.http[0].spec.cookie.legacy_traefik, "inside the window");
        assert_eq!(memory.legacy["s1"], LegacyWindow::Open(Some(until)));
        let over = at(&mut memory, &traefik, until);
        assert!(!over.http[0].spec.cookie.legacy_traefik, "from its end on, published with legacy off");
        assert_eq!(memory.legacy["s1"], LegacyWindow::Over(until));
        assert_ne!(open, over, "the change is published");
        // without a date: open for good (Traefik-compatible), and said so
        traefik.labels.remove("sticky.cookie.legacy.until");
        let forever = at(&mut memory, &traefik, until + Duration::from_secs(86_400 * 365));
        assert!(forever.http[0].spec.cookie.legacy_traefik);
        assert_eq!(memory.legacy["s1"], LegacyWindow::Open(None));
    }

    #[test]
    fn a_changed_cookie_identity_is_remembered() {
        let mut memory = ListingMemory::default();
        let tasks = [task("t1", "running", "running")];
        memory.update(vec![service()], &tasks, None, AFFINITY, NOW);
        assert_eq!(memory.identities["s1"], Identity::Task);
        let mut slot = service();
        slot.labels.insert("sticky.cookie.identity".into(), "slot".into());
        let catalog = memory.update(vec![slot], &tasks, None, AFFINITY, NOW);
        assert_eq!(memory.identities["s1"], Identity::Slot);
        assert_eq!(&*catalog.http[0].backends[0].id.0, "slot-1", "cookies now name the slot");
    }

    #[test]
    fn problems_are_remembered_until_they_change() {
        let mut memory = ListingMemory::default();
        let mut broken = service();
        broken.labels.insert("sticky.port".into(), "eighty".into());
        memory.update(vec![broken.clone()], &[], None, AFFINITY, NOW);
        assert!(memory.problems["s1"].to_string().contains("sticky.port"));
        memory.update(vec![broken], &[], None, AFFINITY, NOW);
        assert_eq!(memory.problems.len(), 1);
        memory.update(vec![service()], &[], None, AFFINITY, NOW);
        assert!(memory.problems.is_empty(), "fixed labels clear the problem");
        assert!(memory.first_publish() && !memory.first_publish());
    }
}
