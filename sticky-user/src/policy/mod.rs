//! Which backend serves a request: keep the pinned one, re-pin, pick for a new session, or refuse.
//!
//! New sessions are spread by **smooth weighted round robin** over the backends that are available and
//! active. Why round robin and not least-loaded: what a sticky session costs a backend is the session
//! itself (its memory, its future requests), not the one request in flight when it is created. Counting
//! requests in flight at pin time measures a moment, and every LB instance and worker would count only
//! its own share. Round robin spreads *sessions* evenly (exactly, over any window of sum(weights) new
//! sessions), needs one shared counter and no per-request bookkeeping, is deterministic to test, and
//! weights cover backends of unequal size. Backends out of health are skipped; draining backends take
//! new sessions only when no active one is available (a one-replica service during a rolling update
//! stays up rather than answering 503).
//!
//! Load bounds (issue 18) are opt-in: a backend at the service's in-flight limit is passed over for
//! new sessions while another is below it ([`View::saturated`]), and with shedding its pinned sessions
//! move to the least-loaded backend ([`least_loaded`], re-pin reason `overloaded`). Hash affinity
//! (header, client address, the application's cookie) decides in [`hash`].
//!
//! tcp mode's decisions live beside it: [`maglev`] (the Maglev lookup table of a backend set, identical
//! on every instance) and [`affinity`] (whether a client's remembered backend is still trusted), shared
//! by the kernel path's map sync and the user-space fallback.
//!
//! Pure: the caller passes a [`View`] of the backends' current state and the round-robin cursor.

pub mod affinity;
pub mod hash;
pub mod health;
pub mod maglev;

use crate::cookie::Fault;

/// Why a session left its backend. A label of the `sticky_repins_total` metric and of the re-pin log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepinReason {
    /// The cookie did not verify (forged, tampered, truncated, oversized, other key or version).
    InvalidCookie,
    /// The cookie is older than the service's Max-Age.
    Expired,
    /// The cookie is valid but its backend is not in the service any more.
    BackendGone,
    /// The pinned backend is out of health (passive pause or failed active checks).
    Unhealthy,
    /// Connecting to the pinned backend failed just now (refused, unreachable or timed out).
    ConnectFailed,
    /// The session was not seen for longer than the service's idle timeout.
    IdleTimeout,
    /// The session is older than the service's absolute timeout (re-balanced, e.g. after a scale-out).
    AbsoluteTimeout,
    /// The pinned backend (or a hashed key's home) is saturated: over the service's in-flight limit
    /// with shedding on, or over the balance factor's bound.
    Overloaded,
}

impl RepinReason {
    /// Every reason, for metrics.
    pub const ALL: [RepinReason; 8] = [
        Self::InvalidCookie,
        Self::Expired,
        Self::BackendGone,
        Self::Unhealthy,
        Self::ConnectFailed,
        Self::IdleTimeout,
        Self::AbsoluteTimeout,
        Self::Overloaded,
    ];

    /// The metric label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCookie => "invalid_cookie",
            Self::Expired => "expired",
            Self::BackendGone => "backend_gone",
            Self::Unhealthy => "unhealthy",
            Self::ConnectFailed => "connect_failed",
            Self::IdleTimeout => "idle_timeout",
            Self::AbsoluteTimeout => "absolute_timeout",
            Self::Overloaded => "overloaded",
        }
    }

    /// The reason for a cookie that did not verify.
    #[must_use]
    pub fn from_fault(fault: Fault) -> Self {
        match fault {
            Fault::Expired => Self::Expired,
            Fault::Idle => Self::IdleTimeout,
            Fault::Lifetime => Self::AbsoluteTimeout,
            Fault::Malformed | Fault::Version { .. } | Fault::Signature => Self::InvalidCookie,
        }
    }
}

/// What the request's cookie says, after verification and lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// No sticky cookie.
    Absent,
    /// A cookie that did not verify: treated as absent, but counted as a re-pin.
    Invalid(Fault),
    /// A valid cookie naming a backend that the service no longer has.
    Gone,
    /// A valid cookie naming the backend at this index.
    Backend(usize),
}

/// The outcome for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send to the pinned backend; no new cookie.
    Keep(usize),
    /// Send to this backend and set a new cookie; `repin` says why an earlier pin was left, if any.
    Pin {
        /// Index of the chosen backend.
        backend: usize,
        /// None for a new session.
        repin: Option<RepinReason>,
    },
    /// Answer 503.
    Reject(Reject),
}

/// Why a request gets 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No backend of the service is available.
    NoBackend,
    /// Strict service: the pinned backend is unavailable for this reason, and strict forbids a re-pin.
    Strict(RepinReason),
}

/// The backends' state as the policy needs it.
pub trait View {
    /// Number of backends.
    fn count(&self) -> usize;
    /// Whether backend `i` is in health now.
    fn available(&self, i: usize) -> bool;
    /// Whether backend `i` takes no new sessions.
    fn draining(&self, i: usize) -> bool;
    /// Requests in flight to backend `i` (on this instance).
    fn inflight(&self, _i: usize) -> u32 {
        0
    }
    /// Whether backend `i` is at the service's in-flight limit: it takes no new session while another
    /// backend is below it.
    fn saturated(&self, _i: usize) -> bool {
        false
    }
    /// Whether a saturated backend's pinned sessions move to the least-loaded backend.
    fn shed(&self) -> bool {
        false
    }
}

/// Decides for a request whose cookie says `pinned`. `cursor` yields the next value of the service's
/// round-robin counter (called only when a new pick is needed, so a kept pin costs no shared write);
/// `exclude` lists backends that already failed this request.
#[must_use]
pub fn decide(
    pinned: Pinned,
    strict: bool,
    view: &impl View,
    schedule: &[u32],
    cursor: impl FnOnce() -> usize,
    exclude: &[usize],
) -> Decision {
    let repin = match pinned {
        Pinned::Absent => None,
        Pinned::Invalid(fault) => Some(RepinReason::from_fault(fault)),
        Pinned::Backend(i) if view.available(i) && !exclude.contains(&i) => {
            if !strict
                && view.saturated(i)
                && view.shed()
                && let Some(backend) = least_loaded(view, exclude, i)
            {
                return Decision::Pin { backend, repin: Some(RepinReason::Overloaded) };
            }
            return Decision::Keep(i);
        }
        Pinned::Backend(i) => {
            let reason = if exclude.contains(&i) { RepinReason::ConnectFailed } else { RepinReason::Unhealthy };
            if strict {
                return Decision::Reject(Reject::Strict(reason));
            }
            Some(reason)
        }
        Pinned::Gone if strict => return Decision::Reject(Reject::Strict(RepinReason::BackendGone)),
        Pinned::Gone => Some(RepinReason::BackendGone),
    };
    match pick(view, schedule, cursor(), exclude) {
        Some(backend) => Decision::Pin { backend, repin },
        None => Decision::Reject(Reject::NoBackend),
    }
}

/// The active, available, unsaturated backend with the fewest requests in flight, other than `not`
/// (the first of equals): where a saturated backend's pinned sessions go when it sheds them.
#[must_use]
pub fn least_loaded(view: &impl View, exclude: &[usize], not: usize) -> Option<usize> {
    (0..view.count())
        .filter(|&i| i != not && view.available(i) && !view.draining(i) && !view.saturated(i) && !exclude.contains(&i))
        .min_by_key(|&i| view.inflight(i))
}

/// Picks a backend for a new session: the `cursor`-th usable (available, not excluded) active backend
/// of `schedule`, counting only usable entries; failing any, the `cursor`-th usable draining one.
/// Saturated backends (at the service's in-flight limit) are passed over while an unsaturated one of
/// the same kind is usable.
///
/// Counting only usable entries is what spreads displaced sessions: while some backends are out or
/// draining, the others share the picks in their weights' proportion. (Taking the first usable entry
/// at `cursor` instead gives every skipped entry's turn to the one after it: with 3 of 5 backends out,
/// one survivor took 4 picks in 5.)
#[must_use]
pub fn pick(view: &impl View, schedule: &[u32], cursor: usize, exclude: &[usize]) -> Option<usize> {
    let usable = |i: usize| i < view.count() && view.available(i) && !exclude.contains(&i);
    let nth = |draining: bool, light: bool| {
        let candidates = || {
            schedule
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| usable(i) && view.draining(i) == draining && !(light && view.saturated(i)))
        };
        let count = candidates().count();
        (count > 0).then(|| candidates().nth(cursor % count)).flatten()
    };
    nth(false, true).or_else(|| nth(false, false)).or_else(|| nth(true, true)).or_else(|| nth(true, false))
}

/// The smooth weighted round-robin order of backends with these weights (nginx's algorithm, computed
/// once per routing table): `sum(weights)` entries, each backend `weight` times, interleaved.
///
/// Weights of 0 count as 1. The caller bounds the weights (config allows 1..=100 per backend).
#[must_use]
pub fn schedule(weights: &[u32]) -> Vec<u32> {
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w.max(1))).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some((best, _)) = current.iter().enumerate().max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i))) else {
            break;
        };
        current[best] -= total;
        out.push(u32::try_from(best).unwrap_or(u32::MAX));
    }
    out
}

#[cfg(test)]
mod tests;
