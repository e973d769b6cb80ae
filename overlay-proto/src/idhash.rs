//! A keyed, deterministic hasher for the node's hash maps (message ids, driver handles).
//!
//! Message ids reach the node from peers (IHAVE, GRAFT, GOSSIP), so a peer chooses them. An
//! unkeyed hash would let it pick ids that all land in one bucket and turn every lookup into a
//! linear scan. The hasher therefore mixes every input word with a 128-bit key through a folded
//! 64×64→128-bit multiply (the construction of wyhash and foldhash): without the key, colliding
//! ids cannot be chosen. The node draws the key from its seeded RNG, so runs stay reproducible
//! (same seed ⇒ same key ⇒ same output), while a daemon seeded from the OS gets a secret key.
//! Iteration order of maps using it never influences the node's output.

use core::hash::{BuildHasher, Hasher};
use std::collections::HashMap;

/// Key used by [`IdState::default`] (tools and tests that do not face peers).
const DEFAULT_KEY: [u64; 2] = [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344];
/// Odd constant that spreads the final state.
const FINAL_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// The high and low halves of a 128-bit product, folded together.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`IdHasher`]s with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdState {
    key: [u64; 2],
}

impl IdState {
    /// A hasher family keyed by `key` (draw it from a seeded RNG).
    pub fn with_key(key: [u64; 2]) -> Self {
        IdState { key }
    }
}

impl Default for IdState {
    fn default() -> Self {
        IdState { key: DEFAULT_KEY }
    }
}

impl BuildHasher for IdState {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: self.key[0],
            key: self.key,
        }
    }
}

/// Mixes every written word with the key; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct IdHasher {
    state: u64,
    key: [u64; 2],
}

impl IdHasher {
    #[inline]
    fn mix(&mut self, a: u64, b: u64) {
        self.state = folded_multiply(self.state ^ a ^ self.key[0], b ^ self.key[1]);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        folded_multiply(self.state ^ self.key[1], FINAL_MUL)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for chunk in &mut chunks {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&chunk[..8]);
            b.copy_from_slice(&chunk[8..]);
            self.mix(u64::from_le_bytes(a), u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 16];
            word[..rest.len()].copy_from_slice(rest);
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&word[..8]);
            b.copy_from_slice(&word[8..]);
            // The length keeps "abc" and "abc\0" apart.
            self.mix(
                u64::from_le_bytes(a),
                u64::from_le_bytes(b) ^ rest.len() as u64,
            );
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n, FINAL_MUL);
    }

    fn write_usize(&mut self, _len: usize) {
        // Slice length prefixes carry no entropy for fixed-size ids.
    }
}

/// A `HashMap` with [`IdHasher`]. Used for lookups only: the core never iterates an `IdMap`
/// (nothing it outputs depends on hash order; ordered state lives in `BTreeMap`s and queues).
pub type IdMap<K, V> = HashMap<K, V, IdState>;

/// An empty [`IdMap`] with room for `capacity` entries and the default key (for maps whose
/// keys peers do not choose).
pub fn id_map_with_capacity<K, V>(capacity: usize) -> IdMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, IdState::default())
}

/// An empty [`IdMap`] with room for `capacity` entries, keyed by `key`.
pub fn keyed_id_map<K, V>(capacity: usize, key: [u64; 2]) -> IdMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, IdState::with_key(key))
}

/// A 128-bit keyed fingerprint of a message id: what the seen-id set stores instead of the
/// 32-byte id (half the bytes per remembered id).
///
/// Two 64-bit hashes of the whole id under two keys drawn from the node's seeded key. Ids are
/// BLAKE3 outputs of content, and without the keys a peer cannot search for two ids with one
/// fingerprint (which would make the node take a new message for one it saw); by chance
/// two of `n` remembered ids share one with probability about n² / 2¹²⁹.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprinter {
    high: IdState,
    low: IdState,
}

/// A [`Fingerprinter`] output: four words (align 4, so a map entry with a `u32` is 20 bytes).
pub type Fingerprint = [u32; 4];

impl Fingerprinter {
    /// Fingerprints keyed by `key` (the node's seeded hash key); the two halves use keys
    /// derived from it.
    pub fn new(key: [u64; 2]) -> Self {
        let derive = |k: u64, salt: u64| folded_multiply(k ^ salt, FINAL_MUL) ^ salt;
        Fingerprinter {
            high: IdState::with_key([
                derive(key[0], 0x6A09_E667_F3BC_C908),
                derive(key[1], 0xBB67_AE85_84CA_A73B),
            ]),
            low: IdState::with_key([
                derive(key[1], 0x3C6E_F372_FE94_F82B),
                derive(key[0], 0xA54F_F53A_5F1D_36F1),
            ]),
        }
    }

    /// The fingerprint of `id`.
    #[inline]
    pub fn of(&self, id: &[u8; 32]) -> Fingerprint {
        let high = self.high.hash_one(id);
        let low = self.low.hash_one(id);
        [
            (high >> 32) as u32,
            high as u32,
            (low >> 32) as u32,
            low as u32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_with(state: IdState, bytes: &[u8; 32]) -> u64 {
        state.hash_one(bytes)
    }

    #[test]
    fn every_byte_of_an_id_changes_the_hash() {
        let state = IdState::with_key([1, 2]);
        let base = [7u8; 32];
        let h0 = hash_with(state, &base);
        for i in 0..32 {
            let mut id = base;
            id[i] ^= 1;
            assert_ne!(hash_with(state, &id), h0, "byte {i} ignored");
        }
    }

    #[test]
    fn the_key_changes_every_hash() {
        let a = IdState::with_key([1, 2]);
        let b = IdState::with_key([3, 4]);
        let mut same = 0;
        for i in 0..256u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            if hash_with(a, &id) == hash_with(b, &id) {
                same += 1;
            }
        }
        assert_eq!(same, 0);
    }

    #[test]
    fn fingerprints_differ_for_close_ids_and_follow_the_key() {
        let f = Fingerprinter::new([5, 6]);
        let g = Fingerprinter::new([5, 7]);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..4096u32 {
            for at in [0usize, 16, 28] {
                let mut id = [0u8; 32];
                id[at..at + 4].copy_from_slice(&i.to_le_bytes());
                seen.insert(f.of(&id));
                assert_ne!(f.of(&id), g.of(&id));
            }
        }
        // 3 × 4096 ids, the zero id three times.
        assert_eq!(seen.len(), 3 * 4096 - 2);
        // Both halves carry the whole id: flipping any byte changes each.
        let base = [9u8; 32];
        let fp = f.of(&base);
        for i in 0..32 {
            let mut id = base;
            id[i] ^= 0x80;
            let other = f.of(&id);
            assert!(fp[..2] != other[..2] && fp[2..] != other[2..], "byte {i}");
        }
    }

    #[test]
    fn ids_differing_only_in_their_tail_spread_over_buckets() {
        // The old unkeyed hasher read only the first 16 bytes: such ids all collided.
        let state = IdState::with_key([0xDEAD, 0xBEEF]);
        let mut buckets = std::collections::BTreeSet::new();
        for i in 0..1024u32 {
            let mut id = [0u8; 32];
            id[28..].copy_from_slice(&i.to_le_bytes());
            buckets.insert(hash_with(state, &id) & 1023);
        }
        assert!(buckets.len() > 500, "only {} buckets used", buckets.len());
    }
}
