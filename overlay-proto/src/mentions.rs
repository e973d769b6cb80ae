//! How often SHUFFLE entries named each peer: a small count-min sketch.
//!
//! An eclipse attacker fills honest passive lists by flooding SHUFFLEs that name its own
//! peers over and over; an honest peer is named now and then. The link optimisation uses the
//! count to rank its candidates (the least named first) and the links it may give up (the most
//! named first, and never one named less than the candidate that replaces it). A count kept in
//! the passive list would be lost whenever a flood evicts the entry, so the counts live here:
//! a fixed 2 × 1024 one-byte counters (2 KiB per node) keyed by peer id, whatever churns.
//!
//! Each id maps to one counter per row through a keyed hash (the key is drawn from the node's
//! seeded generator, so a peer cannot choose ids that share an honest peer's counters); a
//! mention raises the id's smallest counters (conservative update), and its estimate is its
//! smallest counter: never below the true count, above it only when other ids share both
//! counters. Counters saturate at 255.

use core::hash::{BuildHasher, Hasher};

use crate::idhash::IdState;
use crate::peer::PeerId;

/// Counters per row (a power of two).
const WIDTH: usize = 1024;
/// Rows.
const DEPTH: usize = 2;

/// Mention counts of peer ids.
#[derive(Debug, Clone)]
pub(crate) struct MentionSketch {
    hasher: IdState,
    rows: Box<[[u8; WIDTH]; DEPTH]>,
}

impl MentionSketch {
    /// Empty counts, hashed with `key`.
    pub(crate) fn new(key: [u64; 2]) -> MentionSketch {
        MentionSketch {
            hasher: IdState::with_key(key),
            rows: Box::new([[0; WIDTH]; DEPTH]),
        }
    }

    /// The counter of `peer` in each row.
    fn slots(&self, peer: &PeerId) -> [usize; DEPTH] {
        let mut h = self.hasher.build_hasher();
        h.write(&peer.0);
        let x = h.finish();
        let mask = (WIDTH - 1) as u64;
        [(x & mask) as usize, ((x >> 32) & mask) as usize]
    }

    /// A SHUFFLE entry named `peer`.
    pub(crate) fn note(&mut self, peer: &PeerId) {
        let slots = self.slots(peer);
        let now = self.estimate(peer);
        for (row, slot) in self.rows.iter_mut().zip(slots) {
            if let Some(c) = row.get_mut(slot) {
                // Conservative update: only the counters at the minimum rise.
                if u32::from(*c) == now {
                    *c = c.saturating_add(1);
                }
            }
        }
    }

    /// How many SHUFFLE entries named `peer` (at least; more only on a double collision).
    pub(crate) fn estimate(&self, peer: &PeerId) -> u32 {
        self.rows
            .iter()
            .zip(self.slots(peer))
            .map(|(row, slot)| row.get(slot).copied().unwrap_or(0))
            .min()
            .map_or(0, u32::from)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;

    fn id(n: u16) -> PeerId {
        let mut b = [0u8; 32];
        b[..2].copy_from_slice(&n.to_be_bytes());
        PeerId(b)
    }

    #[test]
    fn counts_never_fall_below_the_truth_and_saturate() {
        let mut s = MentionSketch::new([1, 2]);
        for n in 0..200u16 {
            for _ in 0..(n % 7) {
                s.note(&id(n));
            }
        }
        for n in 0..200u16 {
            assert!(s.estimate(&id(n)) >= u32::from(n % 7));
        }
        // 200 flooded ids among 1000: most of the others still read 0.
        let clean = (1000..1800u16).filter(|n| s.estimate(&id(*n)) == 0).count();
        assert!(clean > 750, "{clean} of 800 unnamed ids read 0");
        for _ in 0..300 {
            s.note(&id(5));
        }
        assert_eq!(s.estimate(&id(5)), 255);
    }

    #[test]
    fn the_key_decides_where_an_id_counts() {
        let a = MentionSketch::new([1, 2]);
        let b = MentionSketch::new([3, 4]);
        let moved = (0..64u16)
            .filter(|n| a.slots(&id(*n)) != b.slots(&id(*n)))
            .count();
        assert!(moved > 60);
        assert_eq!(a.slots(&id(9)), MentionSketch::new([1, 2]).slots(&id(9)));
    }
}
