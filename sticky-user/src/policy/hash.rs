//! Hash affinity for http services (issue 18): a request's key (a header's value, the client's
//! address, the application's session cookie) picks its backend through a Maglev table over the
//! service's backends, so every sticky instance that sees the same backends sends the key to the
//! same one, with no cookie and no shared state.
//!
//! The table is built from the backends' *identities* (task ids, static names), never their
//! addresses or list order, with [`super::maglev`]'s per-member permutations: adding or removing a
//! backend moves about 1/N of the keys, and only those of the backend that left when one leaves.
//!
//! A key's *home* is its slot's owner. The home serves while it is available (draining or not: a
//! hashed client is a pinned session); otherwise, or when bounded loads say it is too busy, the key
//! walks the ring from its slot to the next usable owner, which spreads one backend's keys over the
//! others in Maglev's proportions rather than piling them on one neighbour.
//!
//! The key is hashed, never parsed: a header value cannot name a backend, and without the backends'
//! identities (internal task ids) no one can compute which value lands where.

use sticky_common::hash::hash_bytes;

use super::{Decision, Reject, RepinReason, View};

/// Table sizes (primes), the first one at least 100 times the backend count is used (Maglev's
/// guidance for an even spread), the last for more backends.
const SIZES: [u32; 4] = [1021, 4093, 16381, 65521];

/// A Maglev table over a service's backends, by index into the service's backend list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    slots: Vec<u32>,
    seed: u64,
}

impl Ring {
    /// The table of backends with these identities (in the service's order; their slots name these
    /// indices); `service` separates the keys of different services.
    #[must_use]
    pub fn build<'a>(service: &[u8], ids: impl IntoIterator<Item = &'a [u8]>) -> Self {
        // Maglev's members take turns in a fixed order: sorted by identity, so that the service's list
        // order (which discovery does not fix) cannot change the table
        let mut members: Vec<(&[u8], u32)> =
            ids.into_iter().enumerate().map(|(i, id)| (id, u32::try_from(i).unwrap_or(u32::MAX))).collect();
        members.sort_unstable();
        let seeds: Vec<u64> = members.iter().map(|(id, _)| hash_bytes(id, 0x5e55_1011)).collect();
        let wanted = seeds.len().saturating_mul(100);
        let size = SIZES.iter().copied().find(|&s| s as usize >= wanted).unwrap_or(SIZES[SIZES.len() - 1]);
        let slots = super::maglev::populate_seeds(&seeds, size)
            .into_iter()
            .map(|m| members.get(m as usize).map_or(u32::MAX, |&(_, i)| i))
            .collect();
        Self { slots, seed: hash_bytes(service, 0xaff1) }
    }

    /// The key of a request's affinity value (a header value, address octets, a cookie value).
    #[must_use]
    pub fn key(&self, value: &[u8]) -> u64 {
        hash_bytes(value, self.seed)
    }

    /// The backend whose slot `key` falls in (its home), if the table has any backend.
    #[must_use]
    pub fn home(&self, key: u64) -> Option<usize> {
        self.slot(key).and_then(|s| self.slots.get(s)).map(|&i| i as usize)
    }

    fn slot(&self, key: u64) -> Option<usize> {
        let len = u64::try_from(self.slots.len()).ok().filter(|&l| l > 0)?;
        usize::try_from(key % len).ok()
    }

    /// The slots' owners from `key`'s slot on, once around the table.
    fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.slot(key).unwrap_or(0);
        let (tail, head) = self.slots.split_at(start.min(self.slots.len()));
        head.iter().chain(tail).map(|&i| i as usize)
    }

    /// Number of slots (0 without backends).
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table has no backend.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The in-flight bound of bounded loads: `factor` percent of the average in-flight requests over the
/// usable backends, counting the request being placed, rounded up (so never below 1).
#[must_use]
pub fn bound(view: &impl View, factor: u32, usable: impl Fn(usize) -> bool) -> u64 {
    let (mut total, mut n) = (1u64, 0u64);
    for i in (0..view.count()).filter(|&i| usable(i)) {
        total += u64::from(view.inflight(i));
        n += 1;
    }
    (total * u64::from(factor)).div_ceil(100 * n.max(1))
}

/// Decides for a request whose affinity key is `key`: its home while that is usable and not over the
/// load bounds; else the next usable owner along the ring (re-pin reason: why the home was left).
/// `strict` refuses instead of moving off an unavailable home; `factor` is the balance factor
/// (percent, bounded loads); a saturated home is left only if the view sheds.
#[must_use]
pub fn decide(
    ring: &Ring,
    key: u64,
    strict: bool,
    view: &impl View,
    factor: Option<u32>,
    exclude: &[usize],
) -> Decision {
    let usable = |i: usize| i < view.count() && view.available(i) && !exclude.contains(&i);
    let Some(home) = ring.home(key) else { return Decision::Reject(Reject::NoBackend) };
    let bound = factor.map(|f| bound(view, f, usable));
    let light = |i: usize| !view.saturated(i) && bound.is_none_or(|b| u64::from(view.inflight(i)) < b);
    let reason = if usable(home) {
        let over_bound = bound.is_some_and(|b| u64::from(view.inflight(home)) >= b);
        let shed = view.saturated(home) && view.shed();
        if strict || !(over_bound || shed) {
            return Decision::Keep(home);
        }
        RepinReason::Overloaded
    } else {
        let reason = if exclude.contains(&home) { RepinReason::ConnectFailed } else { RepinReason::Unhealthy };
        if strict {
            return Decision::Reject(Reject::Strict(reason));
        }
        reason
    };
    // the next owners along the ring: light and active first, then active, then draining
    let tiers: [&dyn Fn(usize) -> bool; 3] = [&|i| !view.draining(i) && light(i), &|i| !view.draining(i), &|_| true];
    for tier in tiers {
        if let Some(backend) = ring.walk(key).find(|&i| i != home && usable(i) && tier(i)) {
            return Decision::Pin { backend, repin: Some(reason) };
        }
    }
    if usable(home) {
        // over its bound, but nothing else can take the request
        return Decision::Keep(home);
    }
    Decision::Reject(Reject::NoBackend)
}

#[cfg(test)]
mod tests;
