//! What Swarm discovery last saw, for the dashboard: the Docker API's state and last contact, and
//! the services it left out (and why) or whose labels it ignored. Replaced whole at each listing
//! (bounded by the services listed), read by `/api/overview`; the logs stay the record of changes.

use std::{
    sync::Mutex,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::lock::lock;

/// Most problems and ignored labels kept (a Swarm with thousands of mislabelled services must not
/// grow the document without bound); the counts say how many there were.
pub const MAX_LISTED: usize = 100;

/// Discovery's state, shared with the admin API.
#[derive(Debug, Default)]
pub struct Status(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    up: Option<bool>,
    last_contact: Option<(SystemTime, Instant)>,
    last_error: Option<String>,
    problems: Vec<Problem>,
    problem_count: usize,
    ignored: Vec<IgnoredLabel>,
    ignored_count: usize,
}

/// A service discovery left out.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The service's name.
    pub service: String,
    /// Why (e.g. no port: neither `sticky.port` nor `traefik.port`).
    pub problem: String,
}

/// A label sticky did not understand and ignored.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IgnoredLabel {
    /// The service's name.
    pub service: String,
    /// The label's key.
    pub label: String,
}

/// The `discovery` part of `/api/overview`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StatusReport {
    /// `up` (the last listing worked), `down` (it failed: the last catalog stays) or `unknown`.
    pub docker_api: &'static str,
    /// Last successful listing, seconds since the UNIX epoch.
    pub last_contact_unix: Option<u64>,
    /// Seconds since then.
    pub last_contact_seconds_ago: Option<f64>,
    /// The last failure, while the API is down.
    pub last_error: Option<String>,
    /// Services left out, and why (at most [`MAX_LISTED`]).
    pub problems: Vec<Problem>,
    /// How many services were left out.
    pub problem_count: usize,
    /// Labels ignored (at most [`MAX_LISTED`]).
    pub ignored_labels: Vec<IgnoredLabel>,
    /// How many labels were ignored.
    pub ignored_count: usize,
}

impl Status {
    /// A listing worked: its problems and ignored labels (service name, text) replace the last ones.
    pub fn listed(&self, problems: Vec<(String, String)>, ignored: Vec<(String, String)>) {
        let mut s = lock(&self.0);
        s.up = Some(true);
        s.last_contact = Some((SystemTime::now(), Instant::now()));
        s.last_error = None;
        s.problem_count = problems.len();
        s.problems =
            problems.into_iter().take(MAX_LISTED).map(|(service, problem)| Problem { service, problem }).collect();
        s.ignored_count = ignored.len();
        s.ignored =
            ignored.into_iter().take(MAX_LISTED).map(|(service, label)| IgnoredLabel { service, label }).collect();
    }

    /// A listing failed with `error`: the last catalog, problems and contact time stay.
    pub fn failed(&self, error: String) {
        let mut s = lock(&self.0);
        s.up = Some(false);
        s.last_error = Some(error);
    }

    /// The report now.
    #[must_use]
    pub fn report(&self) -> StatusReport {
        let s = lock(&self.0);
        StatusReport {
            docker_api: match s.up {
                Some(true) => "up",
                Some(false) => "down",
                None => "unknown",
            },
            last_contact_unix: s
                .last_contact
                .and_then(|(at, _)| at.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            last_contact_seconds_ago: s.last_contact.map(|(_, at)| at.elapsed().as_secs_f64()),
            last_error: s.last_error.clone(),
            problems: s.problems.clone(),
            problem_count: s.problem_count,
            ignored_labels: s.ignored.clone(),
            ignored_count: s.ignored_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_contact_and_problems() {
        let status = Status::default();
        assert_eq!(status.report().docker_api, "unknown");
        status.listed(vec![("web".into(), "no port".into())], vec![("web".into(), "traefik.foo".into())]);
        let up = status.report();
        assert_eq!((up.docker_api, up.problem_count, up.ignored_count), ("up", 1, 1));
        assert!(up.last_contact_unix.is_some() && up.last_error.is_none());
        status.failed("connection refused".into());
        let down = status.report();
        assert_eq!(down.docker_api, "down");
        assert_eq!(down.last_error.as_deref(), Some("connection refused"));
        assert_eq!(down.last_contact_unix, up.last_contact_unix, "the last contact stays");
        assert_eq!(down.problems, up.problems);
    }

    #[test]
    fn the_lists_are_bounded_and_counted() {
        let status = Status::default();
        let many: Vec<(String, String)> = (0..MAX_LISTED + 5).map(|i| (format!("s{i}"), "no port".into())).collect();
        status.listed(many, Vec::new());
        let r = status.report();
        assert_eq!((r.problems.len(), r.problem_count), (MAX_LISTED, MAX_LISTED + 5));
    }
}
