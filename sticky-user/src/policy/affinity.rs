//! Client affinity decisions: a remembered backend is trusted only while its entry is fresh and the
//! backend is still alive (Cilium's rule), with the freshness test the kernel uses
//! ([`sticky_common::affinity::is_fresh`]). [`Table`] is the fallback's bounded affinity map.

use std::{collections::HashMap, hash::Hash, net::IpAddr};

use sticky_common::AffinityValue;

/// Where a new connection goes, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice<B> {
    /// The client's remembered backend (fresh entry, backend alive).
    Affinity(B),
    /// A fresh pick from the consistent-hash table (no entry, a stale one, or a backend that left).
    Pick(B),
    /// No backend at all.
    None,
}

/// Decides a new connection's backend: the remembered one if `entry` (backend, last used, ns) is
/// fresh at `now_ns` under `timeout_ns` and `alive(backend)`, else `pick`.
pub fn choose<B: Copy>(
    entry: Option<(B, u64)>,
    now_ns: u64,
    timeout_ns: u64,
    alive: impl Fn(&B) -> bool,
    pick: Option<B>,
) -> Choice<B> {
    if let Some((backend, last_used_ns)) = entry {
        let probe = AffinityValue { backend: 0, pad: 0, last_used_ns };
        if sticky_common::affinity::is_fresh(&probe, now_ns, timeout_ns) && alive(&backend) {
            return Choice::Affinity(backend);
        }
    }
    pick.map_or(Choice::None, Choice::Pick)
}

/// A bounded client -> (backend, last used) table: the user-space twin of the kernel's `AFFINITY`.
///
/// When full, an insert first drops entries older than the timeout, then the least recently used
/// one: like the kernel's LRU, a full table forgets the oldest clients, never fails.
#[derive(Debug)]
pub struct Table<B> {
    entries: HashMap<IpAddr, (B, u64)>,
    max: usize,
}

impl<B: Copy + Eq + Hash> Table<B> {
    /// An empty table holding at most `max` clients (at least 1).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self { entries: HashMap::new(), max: max.max(1) }
    }

    /// The client's entry: (backend, last used ns).
    #[must_use]
    pub fn get(&self, client: IpAddr) -> Option<(B, u64)> {
        self.entries.get(&client).copied()
    }

    /// Records that `client` used `backend` at `now_ns`.
    pub fn record(&mut self, client: IpAddr, backend: B, now_ns: u64, timeout_ns: u64) {
        if self.entries.len() >= self.max && !self.entries.contains_key(&client) {
            self.entries.retain(|_, (_, t)| now_ns.wrapping_sub(*t) < timeout_ns);
            if self.entries.len() >= self.max
                && let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, t))| *t).map(|(c, _)| *c)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(client, (backend, now_ns));
    }

    /// Number of clients remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::{Choice, Table, choose};
    use std::net::{IpAddr, Ipv4Addr};

    const S: u64 = 1_000_000_000;

    #[test]
    fn fresh_entry_to_live_backend_wins() {
        assert_eq!(choose(Some((1, 10 * S)), 20 * S, 30 * S, |_| true, Some(2)), Choice::Affinity(1));
    }

    #[test]
    fn stale_entry_falls_back_to_the_pick() {
        assert_eq!(choose(Some((1, 10 * S)), 40 * S, 30 * S, |_| true, Some(2)), Choice::Pick(2));
        // exactly at the timeout the entry is no longer trusted
        assert_eq!(choose(Some((1, 10 * S)), 40 * S, 30 * S, |_| true, Some(2)), Choice::Pick(2));
        assert_eq!(choose(Some((1, 10 * S)), 40 * S - 1, 30 * S, |_| true, Some(2)), Choice::Affinity(1));
    }

    #[test]
    fn entry_to_removed_backend_repicks() {
        assert_eq!(choose(Some((1, 10 * S)), 11 * S, 30 * S, |b| *b != 1, Some(2)), Choice::Pick(2));
        assert_eq!(choose::<u32>(None, 11 * S, 30 * S, |_| true, None), Choice::None);
    }

    #[test]
    fn full_table_forgets_stale_then_oldest_clients() {
        let mut t = Table::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let c = "2001:db8::3".parse::<IpAddr>().expect("address");
        t.record(a, 1u32, S, 100 * S);
        t.record(b, 2, 2 * S, 100 * S);
        t.record(c, 3, 3 * S, 100 * S);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(a), None, "the least recently used client goes first");
        assert_eq!(t.get(c), Some((3, 3 * S)));
        t.record(b, 2, 4 * S, 100 * S);
        assert_eq!(t.len(), 2, "updating a present client never evicts");
    }
}
