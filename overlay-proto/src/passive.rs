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
    /// Configured or discovered (never evicted) rather than learned by shuffle.
    pub seed: bool,
    /// Consecutive failed dials or sessions.
    pub failures: u32,
    /// Earliest time of the next dial (the Backoff state while in the future).
    pub next_attempt: Instant,
    /// `peer` was proven by a TLS connection we dialed to this address: hints (HELLO
    /// `listen`, SHUFFLE entries) never replace it.
    pub pinned: bool,
}

/// Known addresses, bounded (seeds excepted).
#[derive(Debug)]
pub struct PassiveView {
    peers: BTreeMap<SocketAddr, KnownPeer>,
    capacity: usize,
}

impl PassiveView {
    /// An empty view holding at most `capacity` learned (non-seed) peers.
    pub fn new(capacity: usize) -> Self {
        PassiveView {
            peers: BTreeMap::new(),
            capacity,
        }
    }

    /// Adds or refreshes an address. `evict_pick` chooses which learned entry to drop when
    /// full (an index into the learned entries). Returns true when the address is new.
    pub fn insert(
        &mut self,
        addr: SocketAddr,
        peer: Option<PeerId>,
        seed: bool,
        now: Instant,
        evict_pick: impl FnOnce(usize) -> usize,
    ) -> bool {
        if let Some(existing) = self.peers.get_mut(&addr) {
            existing.seed |= seed;
            if peer.is_some() && !existing.pinned {
                existing.peer = peer;
            }
            return false;
        }
        if !seed && self.capacity == 0 {
            return false;
        }
        if !seed {
            let learned = self.peers.values().filter(|p| !p.seed).count();
            if learned >= self.capacity {
                let pick = evict_pick(learned) % learned.max(1);
                let victim = self.peers.iter().filter(|(_, p)| !p.seed).nth(pick);
                if let Some(victim) = victim.map(|(a, _)| *a) {
                    self.peers.remove(&victim);
                }
            }
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
        true
    }

    /// The entry for `addr`.
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
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_entries_are_bounded_but_seeds_are_kept() {
        let mut v = PassiveView::new(2);
        let t = Instant::ZERO;
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert!(v.insert(a(1), None, true, t, |_| 0));
        assert!(v.insert(a(2), None, false, t, |_| 0));
        assert!(v.insert(a(3), None, false, t, |_| 0));
        assert!(v.insert(a(4), None, false, t, |_| 0));
        assert_eq!(v.len(), 3);
        assert!(v.iter().any(|(addr, p)| *addr == a(1) && p.seed));
        assert!(!v.insert(a(4), Some(PeerId([1; 32])), false, t, |_| 0));
        assert_eq!(v.get_mut(&a(4)).and_then(|p| p.peer), Some(PeerId([1; 32])));
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
