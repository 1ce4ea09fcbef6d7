//! Fixed, seedless hashes that the kernel and user space compute identically: which Maglev slot a
//! client falls in, which SNAT ports a flow tries, and the stable identity hashes of the Maglev build.
//!
//! Why not a crate: the same code must run in the eBPF program (`no_std`, no loops over unbounded data,
//! no 128-bit arithmetic) and in the daemon, and its output must never change between builds or
//! instances (several balancers agree only if they hash alike). Murmur3's finalizers are a few
//! multiply/xor-shift steps with good avalanche, and FNV-1a covers byte strings in user space.

/// Maglev lookup-table size per service: a prime (Maglev's permutations need it), about 5000 times
/// a typical backend count, so each backend's share is within 1/M of the ideal.
pub const MAGLEV_SIZE: u32 = 16381;

/// Murmur3's 32-bit finalizer: every input bit affects every output bit.
#[must_use]
#[inline(always)]
pub const fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Murmur3's 64-bit finalizer.
#[must_use]
pub const fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// FNV-1a over `bytes`, finished with [`mix64`]; `seed` separates independent hash functions.
#[must_use]
pub const fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    mix64(h)
}

/// The Maglev slot of a client: every connection of one client address lands in the same slot, on
/// every balancer instance. `client_addr` is the address as a number (`u32::from(Ipv4Addr)`).
#[must_use]
#[inline(always)]
pub const fn maglev_slot(client_addr: u32) -> u32 {
    mix32(client_addr ^ 0x5171_c4e1) % MAGLEV_SIZE
}

/// An IPv6 address's four words (host order, most significant first, [`crate::Ip6::host_words`])
/// folded into one well-mixed word: a chain of [`mix32`], so every bit of the address counts.
#[must_use]
#[inline(always)]
pub const fn fold6(words: [u32; 4], seed: u32) -> u32 {
    mix32(mix32(mix32(mix32(words[0] ^ seed) ^ words[1]) ^ words[2]) ^ words[3])
}

/// The Maglev slot of an IPv6 client (the whole 128-bit address): as [`maglev_slot`] for IPv4.
#[must_use]
#[inline(always)]
pub const fn maglev_slot6(client: [u32; 4]) -> u32 {
    fold6(client, 0x5171_c4e1) % MAGLEV_SIZE
}

/// The first SNAT-port candidate of an IPv6 flow: as [`nat_port_start`], over folded addresses.
#[must_use]
#[inline(always)]
pub const fn nat_port_start6(client: [u32; 4], client_port: u16, vip: [u32; 4], vip_port: u16) -> u32 {
    mix32(fold6(client, 0x9e37_79b9) ^ fold6(vip, 0) ^ (((client_port as u32) << 16) | vip_port as u32))
}

/// The first SNAT-port candidate of a flow (an offset into the range, before the modulo); the
/// `i`-th candidate is `min + (start + i) % range_len`. Deterministic, so a lost entry can be
/// found again by walking the same candidates. Arguments are the client-side tuple as numbers.
#[must_use]
#[inline(always)]
pub const fn nat_port_start(client_addr: u32, client_port: u16, vip: u32, vip_port: u16) -> u32 {
    mix32(mix32(client_addr ^ 0x9e37_79b9) ^ vip ^ (((client_port as u32) << 16) | vip_port as u32))
}

/// The `i`-th SNAT-port candidate in `min..=max` (`None` if the range is empty).
#[must_use]
#[inline(always)]
pub const fn nat_port(start: u32, i: u32, min: u16, max: u16) -> Option<u16> {
    if max < min {
        return None;
    }
    let len = (max - min) as u32 + 1;
    #[expect(clippy::cast_possible_truncation, reason = "the remainder is below len, at most 65536 - min")]
    let offset = (start.wrapping_add(i) % len) as u16;
    Some(min + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_across_builds() {
        // Golden values: changing them breaks agreement between balancers of different versions.
        assert_eq!(mix32(0), 0);
        assert_eq!(mix32(1), 0x514e_28b7);
        assert_eq!(maglev_slot(0xc000_0202), maglev_slot(0xc000_0202));
        assert_eq!(hash_bytes(b"198.51.100.10:8000", 0), hash_bytes(b"198.51.100.10:8000", 0));
        assert_ne!(hash_bytes(b"198.51.100.10:8000", 0), hash_bytes(b"198.51.100.10:8000", 1));
        // IPv6: fixed values, and every word of the address moves the slot.
        let a = [0x2001_0db8, 0, 0, 1];
        assert_eq!(fold6([0; 4], 0), 0);
        assert_eq!(maglev_slot6(a), maglev_slot6(a));
        assert!(maglev_slot6(a) < MAGLEV_SIZE);
        let moved = (0..4).filter(|&i| {
            let mut b = a;
            b[i] ^= 1;
            fold6(b, 7) != fold6(a, 7)
        });
        assert_eq!(moved.count(), 4);
    }

    #[test]
    fn nat_ports_stay_in_range_and_cover_it() {
        let start = nat_port_start(0xc000_0202, 40000, 0xcb00_710a, 80);
        let mut seen = [false; 8];
        for i in 0..8 {
            let p = nat_port(start, i, 61000, 61007).unwrap();
            assert!((61000..=61007).contains(&p));
            seen[usize::from(p - 61000)] = true;
        }
        assert!(seen.iter().all(|s| *s), "8 candidates over a range of 8 visit every port");
        assert_eq!(nat_port(start, 0, 5, 4), None);
        assert_eq!(nat_port(start, 3, 0, u16::MAX).map(|_| ()), Some(()));
    }
}
