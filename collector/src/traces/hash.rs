//! A fast keyed hash for the pipeline's per-span lookups (trace ids, span-metric label sets).
//!
//! std's SipHash costs more than everything else a span does here. Trace ids come from
//! propagated headers, so they can be chosen by whoever calls an instrumented service: the
//! hash keeps a per-process random seed, mixed in by 64x64->128-bit "folded" multiplies (the
//! construction of the foldhash and wyhash crates), so colliding ids cannot be precomputed.
//! It is not a cryptographic MAC; it only has to make flooding one bucket impractical.

use std::hash::{BuildHasher, Hasher};

/// `x * y` as 128 bits, high half XOR low half.
#[inline(always)]
fn fold_mul(x: u64, y: u64) -> u64 {
    let p = (x as u128).wrapping_mul(y as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`FoldHasher`]s sharing one random seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FoldState {
    seed: [u64; 2],
}

impl FoldState {
    /// A state with a random seed (from std's per-process random keys).
    pub(crate) fn new() -> FoldState {
        let r = std::hash::RandomState::new();
        FoldState {
            seed: [r.hash_one(0x5eed_u64) | 1, r.hash_one(0xfeed_u64) | 1],
        }
    }
}

impl Default for FoldState {
    fn default() -> Self {
        FoldState::new()
    }
}

impl BuildHasher for FoldState {
    type Hasher = FoldHasher;
    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            acc: self.seed[0],
            seed: self.seed[1],
        }
    }
}

/// The hasher of [`FoldState`].
#[derive(Clone, Debug)]
pub(crate) struct FoldHasher {
    acc: u64,
    seed: u64,
}

impl FoldHasher {
    #[inline(always)]
    fn mix(&mut self, a: u64, b: u64) {
        self.acc = fold_mul(a ^ self.acc, b ^ self.seed);
    }
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let a = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
            let b = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
            self.mix(a, b);
        }
        let rest = chunks.remainder();
        let mut buf = [0u8; 16];
        buf[..rest.len()].copy_from_slice(rest);
        let a = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(buf[8..].try_into().expect("8 bytes"));
        // The length keeps "ab" + "c" apart from "a" + "bc".
        self.mix(a ^ (bytes.len() as u64).rotate_left(32), b);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i), 0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i, 0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.seed.rotate_left(23) ^ 0x243f_6a88_85a3_08d3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn spreads_structured_ids_and_depends_on_the_seed() {
        let s = FoldState::new();
        // Ids differing in one byte, or only in their high half, hash apart.
        let mut seen = HashSet::new();
        for i in 0..10_000u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            assert!(seen.insert(s.hash_one(id)));
            assert!(seen.insert(s.hash_one(("svc", i.to_string(), 2u8))));
        }
        // Low bits (what a table indexes by) are spread too.
        let buckets: HashSet<u64> = (0..1024u64).map(|i| s.hash_one(i) & 1023).collect();
        assert!(buckets.len() > 500, "{}", buckets.len());
        assert_ne!(s.hash_one("x"), FoldState::new().hash_one("x"));
        assert_ne!(s.hash_one(("ab", "c")), s.hash_one(("a", "bc")));
    }
}
