//! A deterministic hasher for keys that are already uniformly random (BLAKE3 ids, driver
//! handles). Iteration order of maps using it never influences the node's output.

use core::hash::{BuildHasherDefault, Hasher};
use std::collections::HashMap;

/// Folds written bytes into 64 bits; good for keys that are already hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // A final multiply spreads low-entropy keys (small integer handles) over the table.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(2) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }

    fn write_usize(&mut self, _len: usize) {
        // Slice length prefixes carry no entropy for fixed-size ids.
    }
}

/// A `HashMap` with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// An empty [`IdMap`] with room for `capacity` entries.
pub fn id_map_with_capacity<K, V>(capacity: usize) -> IdMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default())
}
