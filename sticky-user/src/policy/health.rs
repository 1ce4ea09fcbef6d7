//! One backend's health as a pure state machine: passive (connect failures, with back-off) and active
//! (HTTP checks with fall/rise thresholds). Time comes in as an argument; nothing here sleeps.
//!
//! A backend is *available* when neither half holds it out:
//! - passive: after a failed connect it is out until `now + backoff`, the back-off doubling with each
//!   failure in a row (from `min` to `max`). When the pause is over it is available again on probation:
//!   the next connect decides (success resets, failure doubles the pause). So a dead backend costs one
//!   failed connect per pause, never a failed request (the proxy re-pins on connect failure).
//!   A backend that joined less than [`STARTING_WINDOW`] ago pauses from [`STARTING_MIN_PAUSE`]
//!   instead of `min`: a Swarm task is listed as running a moment before its process listens, and a
//!   refused first connect must not keep it out for a whole `min` (1 s by default).
//! - active (only if a check path is set): `fall` failed checks in a row take it out, `rise` passed
//!   checks bring it back. A new backend starts out until its first check passes, so no traffic reaches
//!   a task before it answers its check. A passed check also ends a passive pause: the backend accepted
//!   a connection and answered.

use std::time::{Duration, Instant};

use crate::model::{BackoffSpec, HealthCheckSpec};

/// How long after joining a backend counts as starting (see the module docs).
pub const STARTING_WINDOW: Duration = Duration::from_secs(5);
/// The shortest pause of a starting backend's failed connect (doubling per failure like `min`).
pub const STARTING_MIN_PAUSE: Duration = Duration::from_millis(100);

/// Health of one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    passive: Passive,
    active: Active,
    /// When the backend joined.
    joined: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Passive {
    Up,
    /// Out until `until`; `failures` in a row so far.
    Paused {
        until: Instant,
        failures: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Active {
    /// No active check configured.
    Off,
    /// Never checked yet: out until the first check passes.
    Pending,
    /// In; `failures` checks in a row have failed (fewer than `fall`).
    Up { failures: u32 },
    /// Out; `passes` checks in a row have passed (fewer than `rise`).
    Down { passes: u32 },
}

/// What the hot path needs to know, in a form that fits one atomic word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Available.
    Up,
    /// Out until this instant (passive pause), then available on probation.
    Until(Instant),
    /// Out until an event says otherwise (active check down).
    Down,
}

impl Health {
    /// A backend that joins at `now`. With active checks it stays out until its first check passes.
    #[must_use]
    pub fn new(active_checks: bool, now: Instant) -> Self {
        Self { passive: Passive::Up, active: if active_checks { Active::Pending } else { Active::Off }, joined: now }
    }

    /// Whether the backend takes traffic at `now`.
    #[must_use]
    pub fn is_available(&self, now: Instant) -> bool {
        match self.availability() {
            Availability::Up => true,
            Availability::Until(t) => now >= t,
            Availability::Down => false,
        }
    }

    /// The state as the hot path sees it.
    #[must_use]
    pub fn availability(&self) -> Availability {
        if matches!(self.active, Active::Down { .. } | Active::Pending) {
            return Availability::Down;
        }
        match self.passive {
            Passive::Up => Availability::Up,
            Passive::Paused { until, .. } => Availability::Until(until),
        }
    }

    /// A connect to the backend failed or timed out at `now`. Returns the pause it now sits out.
    pub fn connect_failed(&mut self, now: Instant, backoff: BackoffSpec) -> Duration {
        let failures = match self.passive {
            Passive::Up => 1,
            Passive::Paused { failures, .. } => failures.saturating_add(1),
        };
        let starting = now.saturating_duration_since(self.joined) < STARTING_WINDOW;
        let spec = if starting { BackoffSpec { min: backoff.min.min(STARTING_MIN_PAUSE), ..backoff } } else { backoff };
        let pause = backoff_for(failures, spec);
        self.passive = Passive::Paused { until: now + pause, failures };
        pause
    }

    /// A connect to the backend succeeded. Returns whether this ended a passive pause.
    pub fn connect_ok(&mut self) -> bool {
        let was_paused = matches!(self.passive, Passive::Paused { .. });
        self.passive = Passive::Up;
        was_paused
    }

    /// An active check ended: `passed` or not. Returns whether availability flipped (ignoring time).
    pub fn checked(&mut self, passed: bool, spec: &HealthCheckSpec) -> bool {
        let before = self.availability();
        let fall = spec.fall.max(1);
        let rise = spec.rise.max(1);
        self.active = match (&self.active, passed) {
            (Active::Off, _) => Active::Off,
            (Active::Pending | Active::Up { .. }, true) => Active::Up { failures: 0 },
            (Active::Pending, false) => Active::Pending,
            (Active::Up { failures }, false) if failures + 1 >= fall => Active::Down { passes: 0 },
            (Active::Up { failures }, false) => Active::Up { failures: failures + 1 },
            (Active::Down { passes }, true) if passes + 1 >= rise => Active::Up { failures: 0 },
            (Active::Down { passes }, true) => Active::Down { passes: passes + 1 },
            (Active::Down { .. }, false) => Active::Down { passes: 0 },
        };
        if passed {
            self.passive = Passive::Up;
        }
        (before == Availability::Down) != (self.availability() == Availability::Down)
    }
}

/// The pause after `failures` connect failures in a row: `min`, doubled per further failure, capped at `max`.
#[must_use]
pub fn backoff_for(failures: u32, spec: BackoffSpec) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    spec.min.saturating_mul(1u32 << doublings).min(spec.max.max(spec.min))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: BackoffSpec = BackoffSpec { min: Duration::from_secs(1), max: Duration::from_secs(8) };

    fn checks(fall: u32, rise: u32) -> HealthCheckSpec {
        HealthCheckSpec { path: Some("/health".into()), fall, rise, ..HealthCheckSpec::default() }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u64> = (1..=6).map(|n| backoff_for(n, BACKOFF).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(backoff_for(u32::MAX, BACKOFF), Duration::from_secs(8));
    }

    #[test]
    fn a_starting_backend_pauses_briefly_then_normally() {
        let joined = Instant::now();
        let mut h = Health::new(false, joined);
        // refused while its process starts: 100 ms, doubling
        assert_eq!(h.connect_failed(joined, BACKOFF), STARTING_MIN_PAUSE);
        assert!(h.is_available(joined + STARTING_MIN_PAUSE));
        assert_eq!(h.connect_failed(joined + STARTING_MIN_PAUSE, BACKOFF), STARTING_MIN_PAUSE * 2);
        assert!(h.connect_ok());
        // a failure once the window is over: the configured minimum
        assert_eq!(h.connect_failed(joined + STARTING_WINDOW, BACKOFF), Duration::from_secs(1));
        // a minimum below the starting pause is kept
        let short = BackoffSpec { min: Duration::from_millis(10), max: Duration::from_secs(1) };
        let mut h = Health::new(false, joined);
        assert_eq!(h.connect_failed(joined, short), Duration::from_millis(10));
    }

    #[test]
    fn connect_failures_pause_then_probe() {
        let joined = Instant::now();
        let t0 = joined + STARTING_WINDOW;
        let mut h = Health::new(false, joined);
        assert!(h.is_available(t0));
        assert_eq!(h.connect_failed(t0, BACKOFF), Duration::from_secs(1));
        assert!(!h.is_available(t0));
        assert!(!h.is_available(t0 + Duration::from_millis(999)));
        // the pause is over: available on probation
        let t1 = t0 + Duration::from_secs(1);
        assert!(h.is_available(t1));
        // the probe fails: a longer pause
        assert_eq!(h.connect_failed(t1, BACKOFF), Duration::from_secs(2));
        assert!(!h.is_available(t1 + Duration::from_millis(1999)));
        assert!(h.is_available(t1 + Duration::from_secs(2)));
        // the probe succeeds: back to normal, and the next failure starts from `min` again
        assert!(h.connect_ok());
        assert_eq!(h.availability(), Availability::Up);
        assert!(!h.connect_ok(), "a second success changes nothing");
        assert_eq!(h.connect_failed(t1, BACKOFF), Duration::from_secs(1));
    }

    #[test]
    fn new_backend_waits_for_its_first_check() {
        let t0 = Instant::now();
        let spec = checks(2, 3);
        let mut h = Health::new(true, Instant::now());
        assert!(!h.is_available(t0), "no traffic before the first check passes");
        assert!(!h.checked(false, &spec));
        assert!(!h.is_available(t0));
        assert!(h.checked(true, &spec), "the first pass admits it, whatever rise says");
        assert!(h.is_available(t0));
    }

    #[test]
    fn fall_and_rise_thresholds() {
        let t0 = Instant::now();
        let spec = checks(2, 3);
        let mut h = Health::new(true, Instant::now());
        h.checked(true, &spec);
        assert!(!h.checked(false, &spec), "one failure is below fall");
        assert!(h.is_available(t0));
        assert!(!h.checked(true, &spec), "a pass resets the failure count");
        assert!(!h.checked(false, &spec));
        assert!(h.checked(false, &spec), "two failures in a row take it out");
        assert_eq!(h.availability(), Availability::Down);
        assert!(!h.is_available(t0 + Duration::from_secs(3600)), "active down does not time out");
        assert!(!h.checked(true, &spec));
        assert!(!h.checked(false, &spec), "a failure resets the pass count");
        assert!(!h.checked(true, &spec));
        assert!(!h.checked(true, &spec));
        assert!(h.checked(true, &spec), "three passes in a row bring it back");
        assert!(h.is_available(t0));
    }

    #[test]
    fn a_passed_check_ends_a_passive_pause() {
        let t0 = Instant::now();
        let spec = checks(1, 1);
        let mut h = Health::new(true, Instant::now());
        h.checked(true, &spec);
        h.connect_failed(t0, BACKOFF);
        assert!(!h.is_available(t0));
        h.checked(true, &spec);
        assert!(h.is_available(t0));
    }

    #[test]
    fn checks_without_configuration_change_nothing() {
        let mut h = Health::new(false, Instant::now());
        assert!(!h.checked(false, &checks(1, 1)));
        assert_eq!(h.availability(), Availability::Up);
    }
}
