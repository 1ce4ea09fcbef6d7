//! Readiness polling: wait for a condition explicitly, bounded in time, instead of sleeping for a
//! guessed duration that a busy machine overruns.

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

/// How often [`until`] checks: short enough not to slow tests down, long enough not to spin.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` every [`INTERVAL`] until it returns true, at most `timeout`; returns whether it did.
/// `check` runs at least once, and once more at the deadline.
pub fn until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    match try_until(timeout, INTERVAL, || Ok::<bool, Infallible>(check())) {
        Ok(done) => done,
        Err(never) => match never {},
    }
}

/// Polls `check` every `interval` until it returns `Ok(true)`, at most `timeout`: `Ok(true)` if it did,
/// `Ok(false)` at the deadline.
///
/// # Errors
/// The first error `check` returns, at once (a process that died will not become ready).
pub fn try_until<E>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{try_until, until};

    #[test]
    fn returns_true_once_the_condition_holds() {
        let mut calls = 0;
        let done = try_until(Duration::from_secs(60), Duration::ZERO, || {
            calls += 1;
            Ok::<_, ()>(calls == 3)
        });
        assert_eq!(done, Ok(true), "the third check must end the wait");
        assert_eq!(calls, 3, "no check must run after the condition held");
    }

    #[test]
    fn a_zero_timeout_still_checks_once_and_reports_false() {
        let mut calls = 0;
        let done = until(Duration::ZERO, || {
            calls += 1;
            false
        });
        assert!(!done, "a condition that never holds must time out");
        assert_eq!(calls, 1, "the condition must be checked before giving up");
    }

    #[test]
    fn the_first_error_ends_the_wait() {
        let mut calls = 0;
        let done = try_until(Duration::from_secs(60), Duration::ZERO, || {
            calls += 1;
            if calls == 2 { Err("exited") } else { Ok(false) }
        });
        assert_eq!(done, Err("exited"), "the error must come back as it is");
        assert_eq!(calls, 2, "no check must run after an error");
    }
}
