//! The message cache: which ids were seen (bounded, with a time-to-live) and the recent
//! messages kept to answer GRAFT requests (bounded by count, bytes and age).
//!
//! One hash map serves both: it maps an id to the sequence number of its slot in a FIFO ring
//! of stored messages. A message therefore costs one map insert on arrival and one map
//! removal when its id finally expires; payloads leave the ring earlier, by their own limits.

use bytes::Bytes;
use core::time::Duration;
use std::collections::VecDeque;

use crate::idhash::{keyed_id_map, IdMap};
use crate::origin::OriginSignature;
use crate::peer::{ConnId, MessageId, PeerId};
use crate::time::Instant;
use crate::topic::TopicId;

/// Ids the cache has room for before it first grows (it doubles with traffic up to
/// `seen_capacity`): an idle node holds a few KiB, not the ~120 KiB 1024 ids took.
const INITIAL_IDS: usize = 128;
/// Stored messages the ring has room for before it first grows.
const INITIAL_STORED: usize = 32;

/// A message kept to answer GRAFT.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The topic it was broadcast in.
    pub topic: TopicId,
    /// The broadcaster.
    pub origin: PeerId,
    /// Origin's nonce.
    pub nonce: u64,
    /// Hops at which this node received it (0 for its own broadcasts).
    pub hops: u8,
    /// The origin's key and signature, relayed unchanged in GRAFT answers.
    pub auth: Option<OriginSignature>,
    /// The payload: an exact-size copy owned by the store (see [`MessageCache::insert`]).
    pub payload: Bytes,
    /// The connection it first arrived on (none for this node's own broadcasts): the parent
    /// in the gossip tree for this message, used by the tree optimisation.
    pub from: Option<ConnId>,
    /// When this node first received (or broadcast) it.
    pub received_at: Instant,
}

#[derive(Debug)]
struct Slot {
    id: MessageId,
    expires: Instant,
    message: StoredMessage,
}

/// Limits of a [`MessageCache`].
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Ids remembered at most.
    pub seen_capacity: usize,
    /// How long an id is remembered.
    pub seen_ttl: Duration,
    /// Messages stored at most.
    pub store_capacity: usize,
    /// Payload bytes stored at most.
    pub store_bytes: usize,
    /// How long a message is stored.
    pub store_ttl: Duration,
}

/// Seen ids and stored messages.
#[derive(Debug)]
pub struct MessageCache {
    /// id → sequence number of its store slot.
    ids: IdMap<MessageId, u64>,
    /// Seen ids in arrival order, with their expiry.
    seen_order: VecDeque<(Instant, MessageId)>,
    /// Stored messages in arrival order; `store.front()` has sequence `store_base`.
    store: VecDeque<Slot>,
    store_base: u64,
    next_seq: u64,
    stored_bytes: usize,
    limits: CacheLimits,
}

impl MessageCache {
    /// An empty cache with the default hash key (for tools; a node uses [`MessageCache::keyed`]).
    pub fn new(limits: CacheLimits) -> Self {
        Self::keyed(limits, [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344])
    }

    /// An empty cache whose id map is keyed by `key` (peers choose ids; see [`crate::idhash`]).
    pub fn keyed(limits: CacheLimits, key: [u64; 2]) -> Self {
        // Start small and grow with traffic: thousands of simulated nodes (and idle daemons)
        // should not pay for the full capacity up front.
        MessageCache {
            ids: keyed_id_map(limits.seen_capacity.min(INITIAL_IDS), key),
            seen_order: VecDeque::with_capacity(limits.seen_capacity.min(INITIAL_IDS)),
            store: VecDeque::with_capacity(limits.store_capacity.min(INITIAL_STORED)),
            store_base: 0,
            next_seq: 0,
            stored_bytes: 0,
            limits,
        }
    }

    /// True when `id` was seen and not yet forgotten.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains_key(id)
    }

    /// Records a first receipt and stores the message. Returns false (and stores nothing)
    /// when the id was already seen.
    ///
    /// The store keeps its own exact-size copy of the payload: a received payload is a slice
    /// of the driver's receive block, and holding the slice for `store_ttl` would pin the
    /// whole block, so the resident memory would exceed `store_bytes`. With the copy,
    /// `store_bytes` bounds the payload memory the store holds (one copy per new message; the
    /// delivery and the forwards stay slices of the block, released as soon as they are
    /// written).
    pub fn insert(&mut self, now: Instant, id: MessageId, message: StoredMessage) -> bool {
        let seq = self.next_seq;
        match self.ids.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => return false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(seq);
            }
        }
        self.next_seq += 1;
        if self.seen_order.len() >= self.limits.seen_capacity {
            if let Some((_, old)) = self.seen_order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.seen_order.push_back((now + self.limits.seen_ttl, id));
        let len = message.payload.len();
        let message = if len > self.limits.store_bytes {
            StoredMessage {
                payload: Bytes::new(),
                ..message
            }
        } else {
            StoredMessage {
                payload: Bytes::copy_from_slice(&message.payload),
                ..message
            }
        };
        while self.store.len() >= self.limits.store_capacity
            || self.stored_bytes + message.payload.len() > self.limits.store_bytes
        {
            if !self.pop_stored() {
                break;
            }
        }
        self.stored_bytes += message.payload.len();
        self.store.push_back(Slot {
            id,
            expires: now + self.limits.store_ttl,
            message,
        });
        true
    }

    fn pop_stored(&mut self) -> bool {
        match self.store.pop_front() {
            Some(slot) => {
                self.stored_bytes -= slot.message.payload.len();
                self.store_base += 1;
                true
            }
            None => false,
        }
    }

    /// The stored message for `id`, if still held.
    pub fn get(&self, id: &MessageId) -> Option<&StoredMessage> {
        let seq = *self.ids.get(id)?;
        let index = seq.checked_sub(self.store_base)?;
        let slot = self.store.get(usize::try_from(index).ok()?)?;
        (slot.id == *id && !slot.message.payload.is_empty()).then_some(&slot.message)
    }

    /// How a message still in the store arrived, even when its payload was too large to
    /// keep: `(hops, from, received_at)` as in [`StoredMessage`].
    pub fn arrival(&self, id: &MessageId) -> Option<(u8, Option<ConnId>, Instant)> {
        let seq = *self.ids.get(id)?;
        let index = seq.checked_sub(self.store_base)?;
        let slot = self.store.get(usize::try_from(index).ok()?)?;
        let m = &slot.message;
        (slot.id == *id).then_some((m.hops, m.from, m.received_at))
    }

    /// Forgets expired ids and drops expired messages.
    pub fn expire(&mut self, now: Instant) {
        while self.seen_order.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, id)) = self.seen_order.pop_front() {
                self.ids.remove(&id);
            }
        }
        while self.store.front().is_some_and(|s| s.expires <= now) {
            self.pop_stored();
        }
    }

    /// Ids remembered.
    pub fn seen_len(&self) -> usize {
        self.seen_order.len()
    }

    /// Messages stored.
    pub fn stored_len(&self) -> usize {
        self.store.len()
    }

    /// Payload bytes stored.
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// The most recent stored messages of `topic`, newest first: `(id, hops)`, at most `n`.
    pub fn recent(&self, topic: TopicId, n: usize) -> impl Iterator<Item = (MessageId, u8)> + '_ {
        self.store
            .iter()
            .rev()
            .filter(move |s| s.message.topic == topic)
            .take(n)
            .map(|s| (s.id, s.message.hops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CacheLimits {
        CacheLimits {
            seen_capacity: 3,
            seen_ttl: Duration::from_secs(10),
            store_capacity: 2,
            store_bytes: 100,
            store_ttl: Duration::from_secs(1),
        }
    }

    fn msg(len: usize) -> StoredMessage {
        StoredMessage {
            topic: TopicId::DEFAULT,
            origin: PeerId([0; 32]),
            nonce: 0,
            hops: 1,
            auth: None,
            payload: vec![1; len].into(),
            from: None,
            received_at: Instant::ZERO,
        }
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 32])
    }

    #[test]
    fn dedups_and_bounds_ids_and_messages_separately() {
        let mut c = MessageCache::new(limits());
        let t = Instant::ZERO;
        assert!(c.insert(t, id(1), msg(10)));
        assert!(!c.insert(t, id(1), msg(10)));
        assert!(c.insert(t, id(2), msg(10)));
        assert!(c.insert(t, id(3), msg(10)));
        // Store holds the newest two; ids remember all three.
        assert!(c.get(&id(1)).is_none());
        assert!(c.get(&id(3)).is_some());
        assert!(c.contains(&id(1)));
        assert!(c.insert(t, id(4), msg(10)));
        assert!(!c.contains(&id(1)), "oldest id evicted past seen_capacity");
        assert_eq!((c.seen_len(), c.stored_len(), c.stored_bytes()), (3, 2, 20));
        let recent: Vec<_> = c.recent(TopicId::DEFAULT, 5).map(|(i, _)| i).collect();
        assert_eq!(recent, vec![id(4), id(3)]);
    }

    #[test]
    fn byte_budget_and_ttls() {
        let mut c = MessageCache::new(limits());
        let t = Instant::ZERO;
        assert!(c.insert(t, id(1), msg(60)));
        assert!(c.insert(t, id(2), msg(60)));
        assert_eq!(c.stored_bytes(), 60, "byte budget evicts the older payload");
        assert!(c.insert(t, id(3), msg(1000)));
        assert!(
            c.get(&id(3)).is_none(),
            "a payload over the whole budget is not kept"
        );
        assert!(c.contains(&id(3)));
        c.expire(t + Duration::from_secs(1));
        assert_eq!(c.stored_len(), 0);
        assert_eq!(c.seen_len(), 3);
        c.expire(t + Duration::from_secs(10));
        assert_eq!(c.seen_len(), 0);
        assert!(!c.contains(&id(2)));
    }

    #[test]
    fn stored_payloads_do_not_pin_the_receive_block() {
        let mut cache = MessageCache::new(limits());
        let block = Bytes::from(vec![7u8; 4096]);
        let mut m = msg(0);
        m.payload = block.slice(100..150);
        assert!(cache.insert(Instant::ZERO, id(1), m));
        let stored = &cache.get(&id(1)).unwrap().payload;
        assert_eq!(&stored[..], &block[100..150]);
        assert!(
            !block.as_ptr_range().contains(&stored.as_ptr()),
            "the store kept a slice of the block"
        );
        assert_eq!(cache.stored_bytes, 50);
    }
}
