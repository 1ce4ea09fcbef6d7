//! The ACME loop of one instance: every instance serves the challenge answers found in the shared
//! directory; the one holding the lock orders, renews and backs off. One log line per issuance,
//! renewal, failure and change of role.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::tls::{
    acme::{
        issue::{Answers, Issuer, Request, blocking},
        renewal::{self, Backoff, Failures, Plan},
        storage::{Lease, Storage, StorageError},
    },
    cert::{self, CertError, Validity},
    challenge::Challenges,
    reload,
};

/// Seconds since the UNIX epoch, now. Injected so tests run the loop on paused tokio time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
#[must_use]
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// This instance's part in the shared directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not decided yet.
    Starting,
    /// Another instance holds the lock (`leader`: what it wrote in the lock file).
    Follower {
        /// The leader's name, if readable.
        leader: Option<String>,
    },
    /// This instance holds the lock and orders.
    Leader,
}

/// Timings and identity of the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// This instance's name in the lock file, for operators (default: host name and pid).
    pub holder: String,
    /// How often the challenge answers are read from the directory.
    pub sync_every: Duration,
    /// How long an order waits between publishing its answers and asking the CA to validate: more
    /// than `sync_every`, so every instance serves them by then.
    pub propagation: Duration,
    /// How often a follower tries to take the lock (when the leader stopped).
    pub lead_retry: Duration,
    /// The longest the leader sleeps without looking at its certificates again.
    pub recheck: Duration,
    /// Back-off after failed orders.
    pub backoff: Backoff,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            holder: default_holder(),
            sync_every: Duration::from_millis(500),
            propagation: Duration::from_secs(2),
            lead_retry: Duration::from_secs(10),
            recheck: Duration::from_secs(3600),
            backoff: Backoff::default(),
        }
    }
}

/// `HOST pid PID`: the container's host name (in Swarm, the task's) and the process id.
#[must_use]
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} pid {}", host.trim(), std::process::id())
}

/// Why one order did not give a usable certificate.
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error(transparent)]
    Issue(Box<dyn std::error::Error + Send + Sync>),
    #[error("the issued certificate is unusable")]
    Unusable(#[source] CertError),
    #[error("the issued certificate names {got:?}, not the names ordered")]
    Names { got: Vec<String> },
    #[error("the issued certificate is already due for renewal (not after {not_after})")]
    Due { not_after: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One instance's ACME loop (see the `acme` module docs).
pub struct Manager<I> {
    issuer: I,
    storage: Storage,
    challenges: Arc<Challenges>,
    answers: Answers,
    reload: reload::Handle,
    settings: Settings,
    clock: Clock,
    requests: Arc<watch::Sender<Vec<Request>>>,
    role: watch::Sender<Role>,
}

impl<I: Issuer> Manager<I> {
    /// A loop ordering with `issuer` into `storage`, serving answers from `challenges` (the resolver's
    /// and the plain listener's), and asking `reload` to pick up new certificates at once (the
    /// reloader must have `storage.certs_dir()` among its sources).
    #[must_use]
    pub fn new(
        issuer: I,
        storage: Storage,
        challenges: Arc<Challenges>,
        reload: reload::Handle,
        settings: Settings,
        clock: Clock,
    ) -> Self {
        let answers = Answers::new(storage.clone(), challenges.clone(), settings.propagation);
        Self {
            issuer,
            storage,
            challenges,
            answers,
            reload,
            settings,
            clock,
            requests: Arc::new(watch::Sender::new(Vec::new())),
            role: watch::Sender::new(Role::Starting),
        }
    }

    /// Where to say which certificates to keep (from flags and labels); a change wakes the loop.
    #[must_use]
    pub fn requests(&self) -> Arc<watch::Sender<Vec<Request>>> {
        self.requests.clone()
    }

    /// This instance's role, as it changes.
    #[must_use]
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Runs forever: the challenge sync and the order loop.
    ///
    /// # Cancel safety
    /// Dropping the future releases the lock (another instance takes over) and stops serving new
    /// answers; an order under way is abandoned (its answers stay until the next leader's order).
    pub async fn run(self) {
        tokio::join!(self.sync_loop(), self.order_loop());
    }

    async fn sync_loop(&self) {
        let mut tick = tokio::time::interval(self.settings.sync_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            tick.tick().await;
            let storage = self.storage.clone();
            let error = match blocking(move || storage.read_challenges()).await {
                Ok(answers) => {
                    let errors = self.challenges.replace(&answers);
                    (!errors.is_empty()).then(|| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                }
                Err(e) => Some(e.to_string()),
            };
            // one line when the trouble starts or changes, one when it ends
            if error != last_error {
                if let Some(e) = &error {
                    warn!(error = %e, "acme: challenge answers in the shared directory cannot be served");
                } else {
                    info!("acme: challenge answers in the shared directory are served again");
                }
                last_error = error;
            }
        }
    }

    async fn order_loop(&self) {
        let mut lease: Option<Lease> = None;
        let mut failures: HashMap<Request, Failures> = HashMap::new();
        let mut requests = self.requests.subscribe();
        loop {
            if lease.is_none() {
                lease = self.try_lead().await;
            }
            let wait = if lease.is_some() {
                let list = requests.borrow_and_update().clone();
                failures.retain(|r, _| list.contains(r));
                let wake = self.order_due(&list, &mut failures).await;
                let secs = u64::try_from(wake.saturating_sub((self.clock)())).unwrap_or(0);
                Duration::from_secs(secs).min(self.settings.recheck)
            } else {
                self.settings.lead_retry
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // the sender lives in `self`: this only ever reports a change
                _ = requests.changed() => {}
            }
        }
    }

    async fn try_lead(&self) -> Option<Lease> {
        let storage = self.storage.clone();
        let holder = self.settings.holder.clone();
        match blocking(move || storage.try_lead(&holder).map(|lease| (lease, storage.leader()))).await {
            Ok((Some(lease), _)) => {
                self.set_role(Role::Leader);
                Some(lease)
            }
            Ok((None, leader)) => {
                self.set_role(Role::Follower { leader });
                None
            }
            Err(e) => {
                // as a follower: serve what the directory holds, try again later
                self.set_role(Role::Follower { leader: None });
                warn!(error = %e, "acme: cannot take the ordering lock");
                None
            }
        }
    }

    fn set_role(&self, role: Role) {
        let dir = self.storage.dir().display().to_string();
        self.role.send_if_modified(|current| {
            if *current == role {
                return false;
            }
            match &role {
                Role::Leader => info!(dir = %dir, "acme: this instance orders and renews the certificates"),
                Role::Follower { leader } => info!(
                    dir = %dir,
                    leader = leader.as_deref().unwrap_or("unknown"),
                    "acme: another instance orders the certificates; this one serves them and its challenge answers"
                ),
                Role::Starting => {}
            }
            *current = role;
            true
        });
    }

    /// Orders what is due; returns when to look again (seconds since the epoch).
    async fn order_due(&self, list: &[Request], failures: &mut HashMap<Request, Failures>) -> i64 {
        let now = (self.clock)();
        let recheck = i64::try_from(self.settings.recheck.as_secs()).unwrap_or(i64::MAX);
        let mut wake = now.saturating_add(recheck);
        for request in list {
            let current = self.current(request).await;
            let renewal = match renewal::plan(now, current, failures.get(request).copied(), &self.settings.backoff) {
                Plan::Wait { until } => {
                    wake = wake.min(until);
                    continue;
                }
                Plan::Order { renewal } => renewal,
            };
            match self.order(request).await {
                Ok(validity) => {
                    failures.remove(request);
                    self.reload.reload();
                    let what = if renewal { "acme: certificate renewed" } else { "acme: certificate issued" };
                    info!(names = ?request.names(), challenge = %request.challenge(), not_after = validity.not_after, "{what}");
                    wake = wake.min(renewal::renew_at(validity));
                }
                Err(e) => {
                    let failed_at = (self.clock)();
                    let f = failures.entry(request.clone()).or_insert(Failures { count: 0, last: failed_at });
                    f.count += 1;
                    f.last = failed_at;
                    let pause = self.settings.backoff.pause(f.count);
                    warn!(
                        names = ?request.names(),
                        challenge = %request.challenge(),
                        error = %crate::telemetry::chain(&e),
                        failures = f.count,
                        retry_in = ?pause,
                        "acme: certificate order failed"
                    );
                    wake = wake.min(failed_at.saturating_add(i64::try_from(pause.as_secs()).unwrap_or(i64::MAX)));
                }
            }
        }
        wake
    }

    /// The validity of the stored certificate for `request`, if it has exactly its names. Read from
    /// the directory every time: another leader may have renewed it.
    async fn current(&self, request: &Request) -> Option<Validity> {
        let pair = self.storage.pair(request.main());
        let loaded = blocking(move || cert::load(&pair)).await.ok()?;
        request.matches(&loaded.names).then_some(loaded.validity)
    }

    async fn order(&self, request: &Request) -> Result<Validity, OrderError> {
        let issued = self.issuer.issue(request, &self.answers).await.map_err(|e| OrderError::Issue(Box::new(e)))?;
        let pair = self.storage.pair(request.main());
        let loaded =
            cert::parse(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes(), &pair).map_err(OrderError::Unusable)?;
        if !request.matches(&loaded.names) {
            return Err(OrderError::Names { got: loaded.names });
        }
        // a certificate due at once would be ordered again at once, in a loop: refuse it
        if renewal::renew_at(loaded.validity) <= (self.clock)() {
            return Err(OrderError::Due { not_after: loaded.validity.not_after });
        }
        let storage = self.storage.clone();
        let main = request.main().to_owned();
        blocking(move || storage.write_certificate(&main, &issued.chain_pem, &issued.key_pem)).await?;
        Ok(loaded.validity)
    }
}

#[cfg(test)]
mod tests;
