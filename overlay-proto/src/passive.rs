//! The passive list: peers we know how to reach but are not connected to, with reconnect
//! backoff. Ordered by address so iteration is deterministic.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use crate::peer::PeerId;
use crate::time::Instant;

/// A known peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// Its identity, once learned.
    pub peer: Option<PeerId>,
    /// Configured, discovered or dialed by the operator rather than learned from peers:
    /// preferred over learned entries when the list is full.
    pub seed: bool,
    /// Consecutive failed dials or sessions.
    pub failures: u32,
    /// Earliest time of the next dial (the Backoff state while in the future).
    pub next_attempt: Instant,
    /// `peer` was proven by a TLS connection we dialed to this address: hints (HELLO
    /// `listen`, SHUFFLE entries) never replace it.
    pub pinned: bool,
}

/// What [`PassiveView::insert`] did with an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry (another may have been evicted to make room).
    Added,
    /// The address was known: its entry was refreshed.
    Updated,
    /// The list is full of entries the new one may not replace: not kept.
    Dropped,
}

/// Known addresses, at most `capacity` of them in all.
///
/// When the list is full, a new learned address replaces a random learned entry; a new seed
/// replaces a random learned entry, or else the seed with the most failures (a dead address
/// left behind by discovery); anything else is dropped, so no input can grow the list past
/// its capacity.
#[derive(Debug)]
pub struct PassiveView {
    peers: BTreeMap<SocketAddr, KnownPeer>,
    capacity: usize,
}

impl PassiveView {
    /// An empty view holding at most `capacity` peers.
    pub fn new(capacity: usize) -> Self {
        PassiveView {
            peers: BTreeMap::new(),
            capacity,
        }
    }

    /// Adds or refreshes an address. `evict_pick` chooses which learned entry to drop when
    /// full (an index into the learned entries).
    pub fn insert(
        &mut self,
        addr: SocketAddr,
        peer: Option<PeerId>,
        seed: bool,
        now: Instant,
        evict_pick: impl FnOnce(usize) -> usize,
    ) -> Inserted {
        if let Some(existing) = self.peers.get_mut(&addr) {
            existing.seed |= seed;
            if peer.is_some() && !existing.pinned {
                existing.peer = peer;
            }
            return Inserted::Updated;
        }
        if self.peers.len() >= self.capacity {
            let Some(victim) = self.victim(seed, evict_pick) else {
                return Inserted::Dropped;
            };
            self.peers.remove(&victim);
        }
        self.peers.insert(
            addr,
            KnownPeer {
                peer,
                seed,
                failures: 0,
                next_attempt: now,
                pinned: false,
            },
        );
        Inserted::Added
    }

    /// The entry a new one replaces in a full list, if it may replace any.
    fn victim(&self, seed: bool, evict_pick: impl FnOnce(usize) -> usize) -> Option<SocketAddr> {
        let learned = self.peers.values().filter(|p| !p.seed).count();
        if learned > 0 {
            let pick = evict_pick(learned) % learned;
            return self
                .peers
                .iter()
                .filter(|(_, p)| !p.seed)
                .nth(pick)
                .map(|(a, _)| *a);
        }
        if !seed {
            return None;
        }
        // Only seeds: the one failing most (first by address on a tie), if any failed.
        self.peers
            .iter()
            .filter(|(_, p)| p.failures > 0)
            .fold(None::<(&SocketAddr, u32)>, |best, (a, p)| match best {
                Some((_, f)) if f >= p.failures => best,
                _ => Some((a, p.failures)),
            })
            .map(|(a, _)| *a)
    }

    /// The entry for `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<&KnownPeer> {
        self.peers.get(addr)
    }

    /// The entry for `addr`, to change.
    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut KnownPeer> {
        self.peers.get_mut(addr)
    }

    /// Records that a TLS connection we dialed to `addr` proved `peer`.
    pub fn pin(&mut self, addr: &SocketAddr, peer: PeerId) {
        if let Some(known) = self.peers.get_mut(addr) {
            known.peer = Some(peer);
            known.pinned = true;
        }
    }

    /// The address `peer` is pinned to, if any.
    pub fn pinned_addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.peers
            .iter()
            .find(|(_, k)| k.pinned && k.peer.as_ref() == Some(peer))
            .map(|(a, _)| *a)
    }

    /// True when `addr` is pinned to a peer other than `peer`.
    pub fn pinned_to_other(&self, addr: &SocketAddr, peer: &PeerId) -> bool {
        self.peers
            .get(addr)
            .is_some_and(|k| k.pinned && k.peer.as_ref() != Some(peer))
    }

    /// Forgets `addr`.
    pub fn remove(&mut self, addr: &SocketAddr) {
        self.peers.remove(addr);
    }

    /// All entries, by address.
    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &KnownPeer)> {
        self.peers.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn learned_entries_make_room_and_seeds_are_kept() {
        let mut v = PassiveView::new(3);
        let t = Instant::ZERO;
        assert_eq!(v.insert(a(1), None, true, t, |_| 0), Inserted::Added);
        assert_eq!(v.insert(a(2), None, false, t, |_| 0), Inserted::Added);
        assert_eq!(v.insert(a(3), None, false, t, |_| 0), Inserted::Added);
        // Full: a learned entry replaces the picked learned one (index 1 of [2, 3]).
        assert_eq!(v.insert(a(4), None, false, t, |_| 1), Inserted::Added);
        assert_eq!(v.len(), 3);
        let kept: Vec<u16> = v.iter().map(|(addr, _)| addr.port()).collect();
        assert_eq!(kept, [1, 2, 4]);
        assert!(v.iter().any(|(addr, p)| *addr == a(1) && p.seed));
        assert_eq!(
            v.insert(a(4), Some(PeerId([1; 32])), false, t, |_| 0),
            Inserted::Updated
        );
        assert_eq!(v.get_mut(&a(4)).and_then(|p| p.peer), Some(PeerId([1; 32])));
        // A seed also replaces a learned entry.
        assert_eq!(v.insert(a(5), None, true, t, |_| 0), Inserted::Added);
        let kept: Vec<u16> = v.iter().map(|(addr, _)| addr.port()).collect();
        assert_eq!(kept, [1, 4, 5]);
    }

    #[test]
    fn a_list_full_of_seeds_drops_learned_entries_and_replaces_failing_seeds_only() {
        let mut v = PassiveView::new(3);
        let t = Instant::ZERO;
        for port in 1..=3 {
            assert_eq!(v.insert(a(port), None, true, t, |_| 0), Inserted::Added);
        }
        assert_eq!(v.insert(a(9), None, false, t, |_| 0), Inserted::Dropped);
        // No seed failed: a new seed is dropped too.
        assert_eq!(v.insert(a(4), None, true, t, |_| 0), Inserted::Dropped);
        assert_eq!(v.len(), 3);
        // The seed failing most makes room (ties go to the lowest address).
        for (port, failures) in [(1, 2), (2, 5), (3, 5)] {
            if let Some(k) = v.get_mut(&a(port)) {
                k.failures = failures;
            }
        }
        assert_eq!(v.insert(a(4), None, true, t, |_| 0), Inserted::Added);
        let kept: Vec<u16> = v.iter().map(|(addr, _)| addr.port()).collect();
        assert_eq!(kept, [1, 3, 4]);
    }

    #[test]
    fn a_zero_capacity_list_keeps_nothing() {
        let mut v = PassiveView::new(0);
        assert_eq!(
            v.insert(a(1), None, true, Instant::ZERO, |_| 0),
            Inserted::Dropped
        );
        assert!(v.is_empty());
    }

    #[test]
    fn hints_never_replace_a_pinned_identity() {
        let mut v = PassiveView::new(8);
        let t = Instant::ZERO;
        let addr = SocketAddr::from(([10, 0, 0, 1], 9415));
        let (honest, liar) = (PeerId([1; 32]), PeerId([2; 32]));
        v.insert(addr, None, false, t, |_| 0);
        v.pin(&addr, honest);
        v.insert(addr, Some(liar), false, t, |_| 0);
        assert_eq!(v.get_mut(&addr).and_then(|p| p.peer), Some(honest));
        assert!(v.pinned_to_other(&addr, &liar));
        assert!(!v.pinned_to_other(&addr, &honest));
        assert_eq!(v.pinned_addr_of(&honest), Some(addr));
    }
}
