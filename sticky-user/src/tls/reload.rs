//! Hot reload: the SNI table rebuilt from its sources when a file changes (polled) or on demand (the
//! daemon's SIGHUP), keeping the last good certificate of a file that no longer loads, with one log
//! line. Connections under way are untouched: they hold the certificate they started with.
//!
//! Why polling and not inotify: the ACME directory is meant to be a volume shared by the Swarm's
//! managers (NFS and the like), where inotify does not see another host's writes; and Swarm secrets
//! and Kubernetes-style mounts swap symlinks that inotify reports on other paths. A poll is a `stat`
//! per file (a few microseconds each) every interval.
//!
//! A file that changed is loaded once it has looked the same at two polls in a row, so a certificate
//! and key written one after the other are not caught half-way (which would log a mismatch). The
//! first load, and a reload on demand, read at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::tls::{
    cert::{self, CertError, Loaded},
    resolver::{Resolver, Table},
    source::{self, Pair, Source, SourceError},
};

/// The default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// Why the first load fails.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// An explicit pair does not load: sticky must not start without a certificate it was given.
    #[error("certificate {} with key {}", pair.cert.display(), pair.key.display())]
    Pair {
        /// The pair.
        pair: Pair,
        /// Why.
        #[source]
        source: Box<CertError>,
    },
    /// A configured directory cannot be listed.
    #[error(transparent)]
    Dir(#[from] SourceError),
}

/// What one check did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Pairs (by certificate file) loaded or replaced.
    pub loaded: Vec<PathBuf>,
    /// Pairs that failed to load (their previous certificate, if any, stays in force).
    pub failed: Vec<PathBuf>,
    /// Pairs gone from their directory, and so from the table.
    pub removed: Vec<PathBuf>,
    /// Whether a new table was published.
    pub published: bool,
}

/// Keeps a [`Resolver`]'s table in step with its sources.
#[derive(Debug)]
pub struct Reloader {
    inner: Arc<Inner>,
}

/// Asks a running [`Reloader`] to reload now; cheap to clone, for the SIGHUP handler and ACME.
#[derive(Clone, Debug)]
pub struct Handle {
    notify: Arc<Notify>,
}

impl Handle {
    /// Requests a reload of every source, read at once. Requests made while one runs are merged into
    /// one more run.
    pub fn reload(&self) {
        self.notify.notify_one();
    }
}

#[derive(Debug)]
struct Inner {
    sources: Vec<Source>,
    resolver: Arc<Resolver>,
    state: Mutex<State>,
    notify: Arc<Notify>,
    generation: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<Pair, Entry>,
    /// Pairs each directory source listed last time (kept when it cannot be listed).
    listed: BTreeMap<PathBuf, Vec<Pair>>,
    /// Problems logged last time, so each is logged once while it lasts.
    problems: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Entry {
    loaded: Option<Arc<Loaded>>,
    /// The files' stamp when `loaded` was read.
    loaded_stamp: Option<Stamp>,
    /// The stamp seen at the previous check.
    seen: Option<Stamp>,
    /// The failure logged last, so a file that stays bad is logged once.
    failed: Option<Failed>,
}

#[derive(Debug, PartialEq, Eq)]
enum Failed {
    /// A file could not be `stat`ed (missing, no permission).
    Unreadable,
    /// The files with this stamp did not load.
    Load(Stamp),
}

/// What a `stat` says of both files: a change of any of it is a change of the pair.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp([FileStamp; 2]);

#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Reloader {
    /// Loads every source once and publishes the table.
    ///
    /// # Errors
    /// An explicit pair does not load, or a directory cannot be listed: a configuration error that
    /// must stop the daemon. Pairs found in directories only log what is wrong.
    pub fn start(sources: Vec<Source>, resolver: Arc<Resolver>) -> Result<Self, ReloadError> {
        for s in &sources {
            if let Source::Pair(pair) = s {
                cert::load(pair).map_err(|e| ReloadError::Pair { pair: pair.clone(), source: Box::new(e) })?;
            } else if let Source::Dir(dir) = s {
                source::scan(dir)?;
            }
        }
        let inner = Inner {
            sources,
            resolver,
            state: Mutex::default(),
            notify: Arc::new(Notify::new()),
            generation: watch::Sender::new(0),
        };
        inner.check(Mode::Now);
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A handle to request reloads (SIGHUP, a new ACME certificate).
    #[must_use]
    pub fn handle(&self) -> Handle {
        Handle { notify: self.inner.notify.clone() }
    }

    /// A counter raised after each published table (for tests and metrics to wait on).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// One poll: loads what changed and settled (see the module docs). Blocking file I/O.
    #[expect(
        clippy::must_use_candidate,
        reason = "called for its effect, the table loaded and published; the report is there for a caller that logs or checks it"
    )]
    pub fn check(&self) -> Report {
        self.inner.check(Mode::Poll)
    }

    /// Reloads everything at once, as on a [`Handle::reload`]. Blocking file I/O.
    #[expect(
        clippy::must_use_candidate,
        reason = "called for its effect, the table loaded and published; the report is there for a caller that logs or checks it"
    )]
    pub fn reload_now(&self) -> Report {
        self.inner.check(Mode::Now)
    }

    /// Polls every `every` and reloads on request, forever; file I/O runs on the blocking pool.
    ///
    /// # Cancel safety
    /// Dropping the future stops reloading; the table in force stays.
    pub async fn run(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let mode = tokio::select! {
                _ = tick.tick() => Mode::Poll,
                () = self.inner.notify.notified() => Mode::Now,
            };
            let inner = self.inner.clone();
            match tokio::task::spawn_blocking(move || inner.check(mode)).await {
                Ok(report) if mode == Mode::Now => info!(
                    loaded = report.loaded.len(),
                    failed = report.failed.len(),
                    certificates = self.inner.resolver.table().certs().len(),
                    "tls: certificates reloaded on request"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "tls: the certificate reload task failed"),
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Load changes once settled.
    Poll,
    /// Load everything now.
    Now,
}

impl Inner {
    fn check(&self, mode: Mode) -> Report {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        let mut report = Report::default();

        let (order, problems) = self.list(state);
        for problem in problems.difference(&state.problems) {
            warn!(problem = %problem, "tls: certificate directory");
        }
        state.problems = problems;

        let before = state.entries.len();
        state.entries.retain(|pair, _| {
            let keep = order.contains(pair);
            if !keep {
                info!(cert = %pair.cert.display(), "tls: certificate removed (its files are gone)");
                report.removed.push(pair.cert.clone());
            }
            keep
        });
        let mut changed = state.entries.len() != before;

        for pair in &order {
            let entry = state.entries.entry(pair.clone()).or_default();
            changed |= Self::check_pair(pair, entry, mode, &mut report);
        }

        if changed {
            let certs = order.iter().filter_map(|p| state.entries.get(p).and_then(|e| e.loaded.clone())).collect();
            self.resolver.publish(Table::new(certs));
            self.generation.send_modify(|g| *g += 1);
            report.published = true;
        }
        report
    }

    /// The pairs of every source in source order (duplicates dropped), and the problems found.
    fn list(&self, state: &mut State) -> (Vec<Pair>, BTreeSet<String>) {
        let mut order: Vec<Pair> = Vec::new();
        let mut problems = BTreeSet::new();
        for s in &self.sources {
            match s {
                Source::Pair(pair) => order.push(pair.clone()),
                Source::Dir(dir) => match source::scan(dir) {
                    Ok(scan) => {
                        problems.extend(scan.problems);
                        order.extend(scan.pairs.iter().cloned());
                        state.listed.insert(dir.clone(), scan.pairs);
                    }
                    Err(e) => {
                        // an NFS hiccup must not unload a directory's certificates: keep its last listing
                        problems.insert(format!("{e}: keeping the certificates listed before"));
                        order.extend(state.listed.get(dir).into_iter().flatten().cloned());
                    }
                },
            }
        }
        let mut seen = BTreeSet::new();
        order.retain(|p| seen.insert(p.clone()));
        (order, problems)
    }

    /// Loads one pair if due; returns whether its certificate changed.
    fn check_pair(pair: &Pair, entry: &mut Entry, mode: Mode, report: &mut Report) -> bool {
        let stamp = match (stamp(&pair.cert), stamp(&pair.key)) {
            (Ok(c), Ok(k)) => Stamp([c, k]),
            (Err(e), _) | (_, Err(e)) => {
                entry.seen = None;
                if mode == Mode::Now || entry.failed != Some(Failed::Unreadable) {
                    log_failure(pair, entry, &e);
                    entry.failed = Some(Failed::Unreadable);
                    report.failed.push(pair.cert.clone());
                }
                return false;
            }
        };
        let settled = entry.seen.as_ref() == Some(&stamp);
        entry.seen = Some(stamp.clone());
        if mode == Mode::Poll {
            let unchanged = entry.loaded_stamp.as_ref() == Some(&stamp);
            let failure_logged = entry.failed.as_ref().is_some_and(|f| *f == Failed::Load(stamp.clone()));
            // anything new or changed waits until it looks the same at two polls (module docs)
            if unchanged || failure_logged || !settled {
                return false;
            }
        }
        match cert::load(pair) {
            Ok(loaded) => {
                let same = entry.loaded.as_ref().is_some_and(|old| old.key.cert == loaded.key.cert);
                if !same {
                    info!(
                        cert = %pair.cert.display(),
                        names = ?loaded.names,
                        not_after = loaded.validity.not_after,
                        "tls: certificate loaded"
                    );
                    report.loaded.push(pair.cert.clone());
                }
                entry.loaded = Some(Arc::new(loaded));
                entry.loaded_stamp = Some(stamp);
                entry.failed = None;
                !same
            }
            Err(e) => {
                log_failure(pair, entry, &e);
                entry.failed = Some(Failed::Load(stamp));
                report.failed.push(pair.cert.clone());
                false
            }
        }
    }
}

fn log_failure(pair: &Pair, entry: &Entry, error: &dyn std::error::Error) {
    let error = crate::telemetry::chain(error);
    if entry.loaded.is_some() {
        warn!(cert = %pair.cert.display(), error = %error, "tls: certificate not reloaded, the one loaded before stays in force");
    } else {
        warn!(cert = %pair.cert.display(), error = %error, "tls: certificate not loaded");
    }
}

fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    let m = std::fs::metadata(path)?;
    Ok(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

#[cfg(test)]
mod tests;
