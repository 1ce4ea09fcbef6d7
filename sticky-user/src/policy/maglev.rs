//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a prime-sized lookup table filled from
//! each backend's own permutation of the slots, so every backend owns M/N slots (±1), and a backend
//! leaving moves its own slots and only a few others.
//!
//! The table is a pure function of the backend *set*: backends are sorted by their identity (address
//! and port) before the fill, and the permutations come from a fixed, seedless hash of that identity
//! ([`sticky_common::hash::hash_bytes`]), never from `RandomState`. Two balancers with the same set build
//! the same table, byte for byte, on any build. Clients map to slots with
//! [`sticky_common::hash::maglev_slot`], the same function the kernel program runs.

use std::net::{Ipv4Addr, SocketAddrV4};

use sticky_common::hash::{MAGLEV_SIZE, hash_bytes, maglev_slot};

/// A Maglev lookup table over a set of backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    /// The backends, sorted and without duplicates; slots hold indices into it.
    backends: Vec<SocketAddrV4>,
    /// `slots[i]` is the index (into `backends`) of slot `i`'s owner; empty when there is no backend.
    slots: Vec<u32>,
}

impl Maglev {
    /// The table of `backends` (order and duplicates do not matter) with [`MAGLEV_SIZE`] slots.
    #[must_use]
    pub fn build(backends: &[SocketAddrV4]) -> Self {
        Self::with_size(backends, MAGLEV_SIZE)
    }

    /// The table with `size` slots.
    ///
    /// # Panics
    /// `size` is below 2 (Maglev needs a prime size; the caller's constant is one).
    #[must_use]
    pub fn with_size(backends: &[SocketAddrV4], size: u32) -> Self {
        assert!(size >= 2, "a Maglev table needs a prime size of at least 2");
        let mut sorted = backends.to_vec();
        sorted.sort_unstable_by_key(|b| (u32::from(*b.ip()), b.port()));
        sorted.dedup();
        let slots = if sorted.is_empty() { Vec::new() } else { populate(&sorted, size) };
        Self { backends: sorted, slots }
    }

    /// The backend of a client address, or `None` if the set is empty.
    #[must_use]
    pub fn pick(&self, client: Ipv4Addr) -> Option<SocketAddrV4> {
        self.pick_index(client).map(|i| self.backends[i as usize])
    }

    /// The index (into [`Maglev::backends`]) of the backend of a client address.
    #[must_use]
    pub fn pick_index(&self, client: Ipv4Addr) -> Option<u32> {
        self.slots.get(maglev_slot(u32::from(client)) as usize).copied()
    }

    /// The backends, sorted by address and port.
    #[must_use]
    pub fn backends(&self) -> &[SocketAddrV4] {
        &self.backends
    }

    /// Every slot's owner, as an index into [`Maglev::backends`]; empty when there is no backend.
    #[must_use]
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }
}

/// The permutation of one backend: where its preference list starts and how it steps.
fn permutation(backend: &SocketAddrV4, size: u32) -> (u64, u64) {
    let mut id = [0u8; 6];
    id[..4].copy_from_slice(&backend.ip().octets());
    id[4..].copy_from_slice(&backend.port().to_be_bytes());
    let size = u64::from(size);
    let offset = hash_bytes(&id, 0) % size;
    let skip = hash_bytes(&id, 1) % (size - 1) + 1;
    (offset, skip)
}

/// Maglev's population: backends take turns claiming their next preferred free slot until every
/// slot is owned. Terminates because `size` is prime, so each permutation visits every slot.
fn populate(backends: &[SocketAddrV4], size: u32) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let perms: Vec<(u64, u64)> = backends.iter().map(|b| permutation(b, size)).collect();
    let mut next = vec![0u64; backends.len()];
    let mut slots = vec![EMPTY; size as usize];
    let mut filled = 0u32;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut slot = (offset + next[i] * skip) % u64::from(size);
            while slots[slot as usize] != EMPTY {
                next[i] += 1;
                slot = (offset + next[i] * skip) % u64::from(size);
            }
            slots[slot as usize] = u32::try_from(i).expect("fewer than 2^32 backends");
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
