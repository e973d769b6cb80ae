//! Bounded cache of message ids already received, with a time-to-live.

use std::collections::VecDeque;

use crate::idhash::{id_map_with_capacity, IdMap};
use crate::peer::MessageId;
use crate::time::Instant;
use core::time::Duration;

/// Remembers message ids for `ttl`, at most `capacity` of them (oldest evicted first).
#[derive(Debug)]
pub struct SeenCache {
    ids: IdMap<MessageId, ()>,
    order: VecDeque<(Instant, MessageId)>,
    capacity: usize,
    ttl: Duration,
}

impl SeenCache {
    /// An empty cache.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        SeenCache {
            ids: id_map_with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            ttl,
        }
    }

    /// True when `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains_key(id)
    }

    /// Remembers `id`; returns false when it was already known.
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        if self.ids.contains_key(&id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id, ());
        self.order.push_back((now + self.ttl, id));
        true
    }

    /// Forgets ids whose time-to-live has passed.
    pub fn expire(&mut self, now: Instant) {
        while let Some((deadline, id)) = self.order.front().copied() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The most recent ids, newest first, at most `n`.
    pub fn recent(&self, n: usize) -> impl Iterator<Item = &MessageId> {
        self.order.iter().rev().take(n).map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_capacity_and_ttl() {
        let mut c = SeenCache::new(2, Duration::from_secs(1));
        let t0 = Instant::ZERO;
        assert!(c.insert(t0, MessageId([1; 32])));
        assert!(!c.insert(t0, MessageId([1; 32])));
        assert!(c.insert(t0, MessageId([2; 32])));
        assert!(c.insert(t0, MessageId([3; 32])));
        assert_eq!(c.len(), 2);
        assert!(!c.contains(&MessageId([1; 32])));
        c.expire(t0 + Duration::from_secs(1));
        assert!(c.is_empty());
    }
}
