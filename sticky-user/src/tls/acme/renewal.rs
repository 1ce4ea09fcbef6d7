//! When to order a certificate: none yet, or 2/3 of its lifetime gone, with exponential back-off after
//! failures (pure; time is passed in as seconds since the UNIX epoch).
//!
//! 2/3 of the lifetime is the point Let's Encrypt recommends (day 60 of 90; day 4 of a 6-day
//! certificate), leaving a third for retries. The back-off starts at 5 minutes and doubles per failure
//! in a row, capped at 6 hours: the first hour sees at most 4 attempts, under Let's Encrypt's limit of
//! 5 failed validations per name per hour, and a lasting failure still gets 4 attempts a day.

use std::time::Duration;

use crate::tls::cert::Validity;

/// Back-off after failed orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { first: Duration::from_secs(5 * 60), max: Duration::from_secs(6 * 3600) }
    }
}

impl Backoff {
    /// The pause after `failures` failures in a row (at least 1): `first * 2^(failures-1)`, capped.
    #[must_use]
    pub fn pause(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Failed orders in a row for one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failures {
    /// How many in a row (at least 1).
    pub count: u32,
    /// When the last one ended.
    pub last: i64,
}

/// What to do about one certificate now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Order now: a first issuance (`renewal: false`) or a renewal.
    Order {
        /// Whether a current certificate is being replaced.
        renewal: bool,
    },
    /// Nothing until this second.
    Wait {
        /// When to look again.
        until: i64,
    },
}

/// The second at which a certificate valid over `validity` is due for renewal: 2/3 of its lifetime.
/// A lifetime that is empty or negative is due at once.
#[must_use]
pub fn renew_at(validity: Validity) -> i64 {
    let lifetime = validity.not_after.saturating_sub(validity.not_before).max(0);
    validity.not_before.saturating_add(lifetime / 3 * 2 + lifetime % 3 * 2 / 3)
}

/// What to do at `now` for a certificate whose current one (with the wanted names) is `current`, after
/// `failures`.
#[must_use]
pub fn plan(now: i64, current: Option<Validity>, failures: Option<Failures>, backoff: &Backoff) -> Plan {
    let due = current.map_or(now, renew_at);
    let retry = failures.map_or(i64::MIN, |f| {
        f.last.saturating_add(i64::try_from(backoff.pause(f.count).as_secs()).unwrap_or(i64::MAX))
    });
    let at = due.max(retry);
    if now >= at { Plan::Order { renewal: current.is_some() } } else { Plan::Wait { until: at } }
}

#[cfg(test)]
mod tests;
