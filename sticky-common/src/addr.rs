//! The IPv6 address as the kernel maps hold it: four 32-bit words, each in network byte order (the
//! 16 bytes as on the wire).
//!
//! Why words and not `[u8; 16]`: the eBPF side compares and copies addresses, and four word
//! compares are what the verifier sees cheapest; and why not `u128`: BPF has no 128-bit arithmetic
//! and `u128`'s 16-byte alignment would put padding into the map keys.

/// An IPv6 address in network byte order, as four words (`u32::from_ne_bytes` of each 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Eq)]
pub struct Ip6(pub [u32; 4]);

impl PartialEq for Ip6 {
    /// Word by word with an early exit, written out: a derived array comparison may become a
    /// `memcmp` call, which BPF lacks, and the early exit keeps two words live at a time (the eBPF
    /// program's IPv6 path otherwise spills the other six over its 512-byte stack frame).
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.0, &other.0);
        a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
    }
}

impl core::hash::Hash for Ip6 {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Ip6 {
    /// The address of the 16 bytes `octets` (as `Ipv6Addr::octets` gives them).
    #[must_use]
    #[inline(always)]
    pub const fn from_octets(o: [u8; 16]) -> Self {
        Self([
            u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
            u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
            u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
            u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
        ])
    }

    /// The 16 bytes, as on the wire.
    #[must_use]
    pub const fn octets(&self) -> [u8; 16] {
        let w = [self.0[0].to_ne_bytes(), self.0[1].to_ne_bytes(), self.0[2].to_ne_bytes(), self.0[3].to_ne_bytes()];
        [
            w[0][0], w[0][1], w[0][2], w[0][3], w[1][0], w[1][1], w[1][2], w[1][3], w[2][0], w[2][1], w[2][2], w[2][3],
            w[3][0], w[3][1], w[3][2], w[3][3],
        ]
    }

    /// The four words as numbers (host byte order), most significant first: what the hashes take.
    #[must_use]
    #[inline(always)]
    pub const fn host_words(&self) -> [u32; 4] {
        [u32::from_be(self.0[0]), u32::from_be(self.0[1]), u32::from_be(self.0[2]), u32::from_be(self.0[3])]
    }

    /// Whether this is `::` (all zero).
    #[must_use]
    #[inline(always)]
    pub const fn is_unspecified(&self) -> bool {
        (self.0[0] | self.0[1] | self.0[2] | self.0[3]) == 0
    }
}

const _: () = assert!(size_of::<Ip6>() == 16);
