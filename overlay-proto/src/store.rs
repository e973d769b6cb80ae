//! Messages kept for a while so GRAFT requests can be answered.

use bytes::Bytes;
use core::time::Duration;
use std::collections::VecDeque;

use crate::idhash::{id_map_with_capacity, IdMap};
use crate::peer::{MessageId, PeerId};
use crate::time::Instant;

/// A stored gossip message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The broadcaster.
    pub origin: PeerId,
    /// Origin's nonce.
    pub nonce: u64,
    /// Hops at which this node received it (0 for its own broadcasts).
    pub hops: u8,
    /// The payload (shared with the receive buffer, not copied).
    pub payload: Bytes,
}

/// Bounded by message count, payload bytes and age; oldest evicted first.
#[derive(Debug)]
pub struct MessageStore {
    messages: IdMap<MessageId, StoredMessage>,
    order: VecDeque<(Instant, MessageId)>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    ttl: Duration,
}

impl MessageStore {
    /// An empty store.
    pub fn new(max_messages: usize, max_bytes: usize, ttl: Duration) -> Self {
        MessageStore {
            messages: id_map_with_capacity(max_messages.min(1 << 14)),
            order: VecDeque::with_capacity(max_messages.min(1 << 14)),
            bytes: 0,
            max_messages,
            max_bytes,
            ttl,
        }
    }

    /// Keeps `msg` under `id`, evicting the oldest entries as needed. A message larger than
    /// the whole byte budget is not kept.
    pub fn insert(&mut self, now: Instant, id: MessageId, msg: StoredMessage) {
        let len = msg.payload.len();
        if len > self.max_bytes || self.messages.contains_key(&id) {
            return;
        }
        while self.order.len() >= self.max_messages || self.bytes + len > self.max_bytes {
            if !self.evict_oldest() {
                break;
            }
        }
        self.bytes += len;
        self.messages.insert(id, msg);
        self.order.push_back((now + self.ttl, id));
    }

    fn evict_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, id)) => {
                if let Some(old) = self.messages.remove(&id) {
                    self.bytes -= old.payload.len();
                }
                true
            }
            None => false,
        }
    }

    /// The message stored under `id`.
    pub fn get(&self, id: &MessageId) -> Option<&StoredMessage> {
        self.messages.get(id)
    }

    /// Drops messages older than the time-to-live.
    pub fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(deadline, _)| *deadline <= now) {
            self.evict_oldest();
        }
    }

    /// Number of messages held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: usize) -> StoredMessage {
        StoredMessage { origin: PeerId([0; 32]), nonce: 0, hops: 0, payload: vec![0; len].into() }
    }

    #[test]
    fn bounded_by_bytes_count_and_age() {
        let mut s = MessageStore::new(3, 100, Duration::from_secs(1));
        let t = Instant::ZERO;
        s.insert(t, MessageId([1; 32]), msg(60));
        s.insert(t, MessageId([2; 32]), msg(60));
        assert_eq!((s.len(), s.bytes()), (1, 60));
        assert!(s.get(&MessageId([1; 32])).is_none());
        s.insert(t, MessageId([3; 32]), msg(10));
        s.insert(t, MessageId([4; 32]), msg(10));
        s.insert(t, MessageId([5; 32]), msg(10));
        assert_eq!(s.len(), 3);
        s.insert(t, MessageId([6; 32]), msg(1000));
        assert_eq!(s.len(), 3);
        s.expire(t + Duration::from_secs(1));
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }
}
