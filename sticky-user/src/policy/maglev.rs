//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a prime-sized lookup table filled from
//! each backend's own permutation of the slots, so every backend owns M/N slots (±1), and a backend
//! leaving moves its own slots and only a few others.
//!
//! The table is a pure function of the backend *set*: backends are sorted by their identity (address
//! and port) before the fill, and each backend's preference list is a keyed pseudo-random permutation
//! of the slots whose key is a fixed, seedless hash of that identity
//! ([`sticky_common::hash::hash_bytes`]), never `RandomState`. Two balancers with the same set build
//! the same table, byte for byte, on any build. Clients map to slots with
//! [`sticky_common::hash::maglev_slot`], the same function the kernel program runs.
//!
//! Why not the paper's `offset + j * skip` lists: two backends whose skips are equal, opposite or in a
//! small ratio (for 64 backends, one set in eight has an equal pair) walk the same cycle of slots, so
//! their claims interleave and removing a third backend reshuffles them: up to 28% of the survivors'
//! slots moved (`{.0, .27, .105}` share skip 7907). A Feistel permutation per backend has no such
//! algebra between backends; ARCHITECTURE.md has the measured disruption of both.

use std::net::{IpAddr, SocketAddr};

use sticky_common::{
    Ip6,
    hash::{MAGLEV_SIZE, hash_bytes, maglev_slot, maglev_slot6, mix64},
};

/// A Maglev lookup table over a set of backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    /// The backends, sorted and without duplicates; slots hold indices into it.
    backends: Vec<SocketAddr>,
    /// `slots[i]` is the index (into `backends`) of slot `i`'s owner; empty when there is no backend.
    slots: Vec<u32>,
}

impl Maglev {
    /// The table of `backends` (order and duplicates do not matter) with [`MAGLEV_SIZE`] slots.
    #[must_use]
    pub fn build(backends: &[SocketAddr]) -> Self {
        Self::with_size(backends, MAGLEV_SIZE)
    }

    /// The table with `size` slots.
    ///
    /// # Panics
    /// `size` is below 2 (Maglev needs a prime size; the caller's constant is one).
    #[must_use]
    pub fn with_size(backends: &[SocketAddr], size: u32) -> Self {
        assert!(size >= 2, "a Maglev table needs a prime size of at least 2");
        let mut sorted = backends.to_vec();
        // SocketAddr's order: IPv4 before IPv6, then address, then port (for IPv4: the numeric order).
        sorted.sort_unstable();
        sorted.dedup();
        let slots = if sorted.is_empty() { Vec::new() } else { populate(&sorted, size) };
        Self { backends: sorted, slots }
    }

    /// The backend of a client address, or `None` if the set is empty.
    #[must_use]
    pub fn pick(&self, client: IpAddr) -> Option<SocketAddr> {
        self.pick_index(client).map(|i| self.backends[i as usize])
    }

    /// The index (into [`Maglev::backends`]) of the backend of a client address.
    #[must_use]
    pub fn pick_index(&self, client: IpAddr) -> Option<u32> {
        self.slots.get(client_slot(client) as usize).copied()
    }

    /// The backends, sorted by address and port.
    #[must_use]
    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// Every slot's owner, as an index into [`Maglev::backends`]; empty when there is no backend.
    #[must_use]
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }
}

/// The Maglev slot of a client, as the kernel computes it for its family: [`maglev_slot`] over the
/// IPv4 address, [`maglev_slot6`] over all 128 bits of an IPv6 one.
#[must_use]
pub fn client_slot(client: IpAddr) -> u32 {
    match client {
        IpAddr::V4(v4) => maglev_slot(u32::from(v4)),
        IpAddr::V6(v6) => maglev_slot6(Ip6::from_octets(v6.octets()).host_words()),
    }
}

/// Rounds of the Feistel network; four make a pseudo-random permutation (Luby-Rackoff).
const ROUNDS: usize = 4;

/// One backend's preference list over the slots `0..size`: `slot(j)` is its `j`-th choice. A
/// balanced Feistel network over the smallest even number of bits that covers `size`, keyed by the
/// backend's identity, walked until it lands below `size` (cycle walking keeps it a permutation).
struct Preference {
    keys: [u64; ROUNDS],
    half_bits: u32,
    size: u64,
}

impl Preference {
    fn new(backend: SocketAddr, size: u32) -> Self {
        // The identity: address then port bytes (6 for IPv4, as ever: the tables must not change; 18 for IPv6).
        let mut id = [0u8; 18];
        let len = match backend.ip() {
            IpAddr::V4(v4) => {
                id[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                id[..16].copy_from_slice(&v6.octets());
                16
            }
        };
        id[len..len + 2].copy_from_slice(&backend.port().to_be_bytes());
        Self::seeded(hash_bytes(&id[..len + 2], 0), size)
    }

    /// The preference list of a member whose identity hashes to `seed`.
    fn seeded(seed: u64, size: u32) -> Self {
        let keys = std::array::from_fn(|round| mix64(seed ^ (round as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        // size >= 2, so bits >= 1 and half_bits >= 1.
        let bits = u32::BITS - (size - 1).leading_zeros();
        Self { keys, half_bits: bits.div_ceil(2), size: u64::from(size) }
    }

    /// The `j`-th preferred slot (`j < size`).
    fn slot(&self, j: u64) -> u64 {
        let mut x = self.encrypt(j);
        // The cycle through `j` comes back below `size` at the latest at `j` itself.
        while x >= self.size {
            x = self.encrypt(x);
        }
        x
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            (left, right) = (right, left ^ (mix64(right ^ key) & mask));
        }
        (left << self.half_bits) | right
    }
}

/// Maglev's population: backends take turns claiming their next preferred free slot until every
/// slot is owned. Terminates because each preference list visits every slot.
fn populate(backends: &[SocketAddr], size: u32) -> Vec<u32> {
    populate_prefs(&backends.iter().map(|b| Preference::new(*b, size)).collect::<Vec<_>>(), size)
}

/// Maglev's population over members whose identities hash to `seeds` (one each, in the order the
/// slots name them): the http mode's hash affinity ([`super::hash`]), keyed by task identity.
///
/// # Panics
/// `size` is below 2.
#[must_use]
pub fn populate_seeds(seeds: &[u64], size: u32) -> Vec<u32> {
    assert!(size >= 2, "a Maglev table needs a prime size of at least 2");
    if seeds.is_empty() {
        return Vec::new();
    }
    populate_prefs(&seeds.iter().map(|&s| Preference::seeded(s, size)).collect::<Vec<_>>(), size)
}

fn populate_prefs(prefs: &[Preference], size: u32) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let mut next = vec![0u64; prefs.len()];
    let mut slots = vec![EMPTY; size as usize];
    let mut filled = 0u32;
    'fill: loop {
        for (i, pref) in prefs.iter().enumerate() {
            let mut slot = pref.slot(next[i]);
            #[expect(clippy::cast_possible_truncation, reason = "a slot is below size, a u32")]
            while slots[slot as usize] != EMPTY {
                next[i] += 1;
                slot = pref.slot(next[i]);
            }
            #[expect(clippy::cast_possible_truncation, reason = "a slot is below size, a u32")]
            let slot = slot as usize;
            slots[slot] = u32::try_from(i).expect("fewer than 2^32 backends");
            next[i] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    slots
}

#[cfg(test)]
mod tests;
