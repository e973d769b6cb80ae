//! The message cache: which ids were seen (bounded, with a time-to-live) and the recent
//! messages kept to answer GRAFT requests (bounded by count, bytes and age).
//!
//! Every message gets a sequence number on arrival: its place in the queue of remembered ids
//! and, while it is stored, in the FIFO ring of stored messages. One hash table serves both:
//! it holds only sequence numbers and finds them by the fingerprint the queue keeps. A
//! message therefore costs one table insert on arrival and one removal when its id finally
//! expires; payloads leave the ring earlier, by their own limits.
//!
//! Remembered ids are kept compact: the expiry queue holds a 16-byte keyed fingerprint of the
//! id ([`Fingerprinter`]), not the id, with the arrival time as 32-bit milliseconds (20
//! bytes), and the table a 4-byte sequence number (its hash is the fingerprint's first half,
//! already a keyed hash): about 26–30 bytes per remembered id with the table's spare room,
//! where a map from fingerprint to sequence number took about 54. The stored messages keep
//! their whole ids (IHAVE needs them).
//!
//! The store's byte bound counts what a stored message really holds: its payload (an
//! exact-size copy, with the origin's key and signature in the same allocation) plus
//! [`STORED_MESSAGE_OVERHEAD`] for its slot. Every message that leaves the store is counted
//! by why it left ([`StoreEvictions`]).

use bytes::Bytes;
use core::time::Duration;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use hashbrown::HashTable;

use crate::idhash::{Fingerprint, Fingerprinter};
use crate::origin::{OriginSignature, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::peer::{ConnId, MessageId, PeerId};
use crate::time::Instant;
use crate::topic::TopicId;

/// Ids the cache has room for before it first grows (it doubles with traffic up to
/// `seen_capacity`): an idle node holds a few KiB, not the ~120 KiB 1024 ids took.
const INITIAL_IDS: usize = 128;
/// Stored messages the ring has room for before it first grows.
const INITIAL_STORED: usize = 32;
/// Bytes of a stored origin signature: the key, then the signature.
const AUTH_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;

/// One remembered id in arrival order: its fingerprint and when it arrived (milliseconds
/// since the cache's epoch, modulo 2³²: ages are taken with wrapping arithmetic, exact while
/// below 24 days; the seen time-to-live is capped there).
#[derive(Debug, Clone, Copy)]
struct SeenEntry {
    key: Fingerprint,
    at_ms: u32,
}

/// Longest seen time-to-live the 32-bit arrival times can measure.
const MAX_SEEN_TTL_MS: u32 = u32::MAX / 2;

/// Bytes each stored message counts against `store_bytes` besides its payload (and its
/// signature, when signed): its slot in the ring and the allocator's header of its payload
/// copy.
pub const STORED_MESSAGE_OVERHEAD: usize = core::mem::size_of::<Slot>() + 16;

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
    /// The payload (in the store: an exact-size copy owned by the store, see
    /// [`MessageCache::insert`]).
    pub payload: Bytes,
    /// The connection it first arrived on (none for this node's own broadcasts): the parent
    /// in the gossip tree for this message, used by the tree optimisation.
    pub from: Option<ConnId>,
    /// When this node first received (or broadcast) it; it is stored until `store_ttl`
    /// after this.
    pub received_at: Instant,
}

/// One stored message, compact: the signature (when any) and the payload share one
/// exact-size allocation.
#[derive(Debug)]
struct Slot {
    id: MessageId,
    topic: TopicId,
    origin: PeerId,
    nonce: u64,
    received_at: Instant,
    from: Option<ConnId>,
    hops: u8,
    /// The first [`AUTH_LEN`] bytes of `data` are the origin's key and signature.
    signed: bool,
    /// False when the payload was larger than the whole byte budget: only the arrival is
    /// kept (for the tree optimisation), not the message.
    kept: bool,
    /// Key ‖ signature (when `signed`), then the payload.
    data: Bytes,
}

impl Slot {
    /// What this slot counts against `store_bytes`.
    fn cost(&self) -> usize {
        self.data.len() + STORED_MESSAGE_OVERHEAD
    }
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
    /// Bytes stored at most: payloads, signatures and [`STORED_MESSAGE_OVERHEAD`] each.
    pub store_bytes: usize,
    /// How long a message is stored.
    pub store_ttl: Duration,
    /// How long a message is held at least (unless `store_ttl` is shorter), even past
    /// `store_bytes`: the GRAFTs its IHAVEs invite must find it (see `graft_miss_grace`).
    pub store_hold: Duration,
    /// Bytes stored at most while messages younger than `store_hold` go past `store_bytes`
    /// (at least `store_bytes`); a message alone larger than this is not stored.
    pub store_bytes_held: usize,
}

/// Messages that left (or never entered) the GRAFT store, by why (counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEvictions {
    /// Held for the whole `store_ttl`, then dropped: the normal way out.
    pub expired: u64,
    /// Dropped before `store_ttl` to make room within `store_bytes` (at least `store_hold`
    /// after arrival), or within `store_bytes_held` (earlier).
    pub over_bytes: u64,
    /// Dropped before `store_ttl` to make room within `store_capacity`.
    pub over_count: u64,
    /// Never stored: the message alone was larger than `store_bytes_held`.
    pub too_large: u64,
}

/// Seen ids and stored messages.
#[derive(Debug)]
pub struct MessageCache {
    /// Sequence numbers (modulo 2³²) of the remembered ids, found by the fingerprint their
    /// `seen_order` entry holds; the same number locates the store slot (a slot is found only
    /// while its whole id matches). Like an `IdMap`, it is only looked up, inserted into,
    /// removed from and shrunk — never iterated — so its layout cannot reach any output.
    ids: HashTable<u32>,
    /// Seen ids in arrival order, with their arrival time; `seen_order.front()` has sequence
    /// `seen_base`.
    seen_order: VecDeque<SeenEntry>,
    seen_base: u64,
    fingerprints: Fingerprinter,
    /// `limits.seen_ttl` in milliseconds (at most [`MAX_SEEN_TTL_MS`]).
    seen_ttl_ms: u32,
    /// Stored messages in arrival order; `store.front()` has sequence `store_base`.
    store: VecDeque<Slot>,
    store_base: u64,
    next_seq: u64,
    stored_bytes: usize,
    evictions: StoreEvictions,
    limits: CacheLimits,
}

impl MessageCache {
    /// An empty cache with the default hash key (for tests; a node uses [`MessageCache::keyed`]).
    #[cfg(test)]
    pub fn new(limits: CacheLimits) -> Self {
        Self::keyed(limits, [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344])
    }

    /// An empty cache whose id map is keyed by `key` (peers choose ids; see [`crate::idhash`]).
    pub fn keyed(limits: CacheLimits, key: [u64; 2]) -> Self {
        // Start small and grow with traffic: thousands of simulated nodes (and idle daemons)
        // should not pay for the full capacity up front.
        MessageCache {
            ids: HashTable::with_capacity(limits.seen_capacity.min(INITIAL_IDS)),
            seen_order: VecDeque::with_capacity(limits.seen_capacity.min(INITIAL_IDS)),
            seen_base: 0,
            fingerprints: Fingerprinter::new(key),
            seen_ttl_ms: u32::try_from(limits.seen_ttl.as_millis())
                .unwrap_or(u32::MAX)
                .min(MAX_SEEN_TTL_MS),
            store: VecDeque::with_capacity(limits.store_capacity.min(INITIAL_STORED)),
            store_base: 0,
            next_seq: 0,
            stored_bytes: 0,
            evictions: StoreEvictions::default(),
            limits,
        }
    }

    /// True when `id` was seen and not yet forgotten.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.seq_of(&self.fingerprints.of(&id.0)).is_some()
    }

    /// The sequence number of the remembered id with fingerprint `key`.
    fn seq_of(&self, key: &Fingerprint) -> Option<u32> {
        let (order, base) = (&self.seen_order, self.seen_base);
        self.ids
            .find(table_hash(key), |&seq| {
                seen_key(order, base, seq).is_some_and(|k| k == *key)
            })
            .copied()
    }

    /// Forgets the oldest remembered id.
    fn pop_seen(&mut self) {
        let Some(old) = self.seen_order.pop_front() else {
            return;
        };
        let seq = self.seen_base as u32;
        self.seen_base += 1;
        if let Ok(entry) = self.ids.find_entry(table_hash(&old.key), |&s| s == seq) {
            entry.remove();
        }
    }

    /// `now` as the 32-bit milliseconds the expiry queue keeps (see [`SeenEntry`]).
    fn ms(now: Instant) -> u32 {
        (now.as_nanos() / 1_000_000) as u32
    }

    /// Records a first receipt and stores the message. Returns false (and stores nothing)
    /// when the id was already seen.
    ///
    /// The store keeps its own exact-size copy of the payload (with the signature, when
    /// any, in the same allocation): a received payload is a slice of the driver's receive
    /// block, and holding the slice for `store_ttl` would pin the whole block, so the
    /// resident memory would exceed `store_bytes`. With the copy, `store_bytes` bounds the
    /// memory the store holds (one copy per new message; the delivery and the forwards stay
    /// slices of the block, released as soon as they are written). Older messages are
    /// dropped first to make room; a message larger than the whole budget is not stored
    /// (its arrival is still recorded).
    pub fn insert(&mut self, now: Instant, id: MessageId, message: StoredMessage) -> bool {
        let seq = self.next_seq;
        let key = self.fingerprints.of(&id.0);
        if self.seq_of(&key).is_some() {
            return false;
        }
        self.next_seq += 1;
        if self.seen_order.len() >= self.limits.seen_capacity {
            self.pop_seen();
        }
        // The queue's back gets `seq`: its front keeps `seen_base`.
        self.seen_order.push_back(SeenEntry {
            key,
            at_ms: Self::ms(now),
        });
        let (order, base) = (&self.seen_order, self.seen_base);
        self.ids.insert_unique(table_hash(&key), seq as u32, |&s| {
            seen_key(order, base, s).map_or(0, |k| table_hash(&k))
        });
        let auth_len = if message.auth.is_some() { AUTH_LEN } else { 0 };
        let cost = auth_len + message.payload.len() + STORED_MESSAGE_OVERHEAD;
        let kept = cost <= self.held_bytes_max();
        let data = if kept {
            let mut data = Vec::with_capacity(auth_len + message.payload.len());
            if let Some(auth) = &message.auth {
                data.extend_from_slice(&auth.key);
                data.extend_from_slice(&auth.signature);
            }
            data.extend_from_slice(&message.payload);
            Bytes::from(data)
        } else {
            self.evictions.too_large += 1;
            Bytes::new()
        };
        let slot = Slot {
            id,
            topic: message.topic,
            origin: message.origin,
            nonce: message.nonce,
            received_at: message.received_at,
            from: message.from,
            hops: message.hops,
            signed: kept && message.auth.is_some(),
            kept,
            data,
        };
        loop {
            let over_count = self.store.len() >= self.limits.store_capacity;
            let over_bytes = self.stored_bytes + slot.cost() > self.limits.store_bytes;
            if !(over_count || over_bytes) {
                break;
            }
            // Messages younger than `store_hold` stay past `store_bytes` (the oldest is at
            // the front: when it is young, all are), up to `store_bytes_held`.
            let front_young = self
                .store
                .front()
                .is_some_and(|s| now < s.received_at + self.limits.store_hold);
            if !over_count
                && front_young
                && self.stored_bytes + slot.cost() <= self.held_bytes_max()
            {
                break;
            }
            if !self.pop_stored() {
                break;
            }
            if over_count {
                self.evictions.over_count += 1;
            } else {
                self.evictions.over_bytes += 1;
            }
        }
        self.stored_bytes += slot.cost();
        self.store.push_back(slot);
        true
    }

    fn held_bytes_max(&self) -> usize {
        self.limits.store_bytes_held.max(self.limits.store_bytes)
    }

    fn pop_stored(&mut self) -> bool {
        match self.store.pop_front() {
            Some(slot) => {
                self.stored_bytes -= slot.cost();
                self.store_base += 1;
                true
            }
            None => false,
        }
    }

    fn slot(&self, id: &MessageId) -> Option<&Slot> {
        let seq = self.seq_of(&self.fingerprints.of(&id.0))?;
        // Sequence numbers modulo 2³²: an index past the ring is a message no longer
        // stored; the whole id settles the rest.
        let index = seq.wrapping_sub(self.store_base as u32);
        let slot = self.store.get(usize::try_from(index).ok()?)?;
        (slot.id == *id).then_some(slot)
    }

    /// The connection the message `id` first came over, if it is still stored and came from
    /// a peer.
    pub fn first_from(&self, id: &MessageId) -> Option<ConnId> {
        self.slot(id).and_then(|s| s.from)
    }

    /// True when the message `id` is still held (a GRAFT for it can be answered).
    pub fn holds(&self, id: &MessageId) -> bool {
        self.slot(id).is_some_and(|s| s.kept)
    }

    /// The stored message for `id`, if still held (the payload shares the store's copy).
    pub fn get(&self, id: &MessageId) -> Option<StoredMessage> {
        let slot = self.slot(id).filter(|s| s.kept)?;
        let (auth, payload) = if slot.signed {
            let mut key = [0u8; PUBLIC_KEY_LEN];
            let mut signature = [0u8; SIGNATURE_LEN];
            key.copy_from_slice(slot.data.get(..PUBLIC_KEY_LEN)?);
            signature.copy_from_slice(slot.data.get(PUBLIC_KEY_LEN..AUTH_LEN)?);
            let auth = OriginSignature { key, signature };
            (Some(auth), slot.data.slice(AUTH_LEN..))
        } else {
            (None, slot.data.clone())
        };
        Some(StoredMessage {
            topic: slot.topic,
            origin: slot.origin,
            nonce: slot.nonce,
            hops: slot.hops,
            auth,
            payload,
            from: slot.from,
            received_at: slot.received_at,
        })
    }

    /// The store's copy of the payload of `id` when it is the newest message stored (just
    /// inserted) and was kept: forwards and deliveries share it instead of the received slice,
    /// which would pin the driver's whole receive block while they wait.
    pub fn newest_payload(&self, id: &MessageId) -> Option<Bytes> {
        let slot = self.store.back().filter(|s| s.kept && s.id == *id)?;
        Some(if slot.signed {
            slot.data.slice(AUTH_LEN..)
        } else {
            slot.data.clone()
        })
    }

    /// How a message still in the store arrived, even when it was too large to keep:
    /// `(hops, from, received_at)` as in [`StoredMessage`].
    pub fn arrival(&self, id: &MessageId) -> Option<(u8, Option<ConnId>, Instant)> {
        let slot = self.slot(id)?;
        Some((slot.hops, slot.from, slot.received_at))
    }

    /// Forgets expired ids and drops expired messages.
    pub fn expire(&mut self, now: Instant) {
        let now_ms = Self::ms(now);
        let ttl = self.seen_ttl_ms;
        while self
            .seen_order
            .front()
            .is_some_and(|e| now_ms.wrapping_sub(e.at_ms) >= ttl)
        {
            self.pop_seen();
        }
        // Give back what a burst made the queue grow to.
        if self.seen_order.capacity() > 4 * INITIAL_IDS
            && self.seen_order.len() < self.seen_order.capacity() / 4
        {
            self.seen_order.shrink_to(self.seen_order.len() * 2);
        }
        if self.ids.capacity() > 4 * INITIAL_IDS && self.ids.len() < self.ids.capacity() / 4 {
            let (order, base) = (&self.seen_order, self.seen_base);
            self.ids.shrink_to(self.ids.len() * 2, |&s| {
                seen_key(order, base, s).map_or(0, |k| table_hash(&k))
            });
        }
        let ttl = self.limits.store_ttl;
        while self
            .store
            .front()
            .is_some_and(|s| s.received_at + ttl <= now)
        {
            self.pop_stored();
            self.evictions.expired += 1;
        }
        // What a burst held past `store_bytes` goes once it is older than `store_hold`.
        let hold = self.limits.store_hold;
        while self.stored_bytes > self.limits.store_bytes
            && self
                .store
                .front()
                .is_some_and(|s| s.received_at + hold <= now)
        {
            self.pop_stored();
            self.evictions.over_bytes += 1;
        }
        // Give back what a burst made the ring grow to, once it is mostly empty again.
        if self.store.capacity() > 4 * INITIAL_STORED
            && self.store.len() < self.store.capacity() / 4
        {
            self.store.shrink_to(self.store.len() * 2);
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

    /// Bytes the stored messages count against `store_bytes` (payloads, signatures and
    /// [`STORED_MESSAGE_OVERHEAD`] each).
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// Messages that left the store (or were never stored), by why.
    pub fn evictions(&self) -> StoreEvictions {
        self.evictions
    }

    /// The most recent stored messages of `topic`, newest first: `(id, hops)`, at most `n`.
    pub fn recent(&self, topic: TopicId, n: usize) -> impl Iterator<Item = (MessageId, u8)> + '_ {
        self.store
            .iter()
            .rev()
            .filter(move |s| s.kept && s.topic == topic)
            .take(n)
            .map(|s| (s.id, s.hops))
    }
}

/// The table hash of a remembered id: the first half of its fingerprint (itself a keyed
/// hash of the id, see [`Fingerprinter`]).
fn table_hash(key: &Fingerprint) -> u64 {
    (u64::from(key[0]) << 32) | u64::from(key[1])
}

/// The fingerprint of the remembered id with sequence number `seq` (modulo 2³²), in a queue
/// whose front has sequence `base`.
fn seen_key(order: &VecDeque<SeenEntry>, base: u64, seq: u32) -> Option<Fingerprint> {
    let index = usize::try_from(seq.wrapping_sub(base as u32)).ok()?;
    order.get(index).map(|e| e.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room for `n` unsigned messages of `len` bytes.
    fn budget(n: usize, len: usize) -> usize {
        n * (len + STORED_MESSAGE_OVERHEAD)
    }

    fn limits() -> CacheLimits {
        CacheLimits {
            seen_capacity: 3,
            seen_ttl: Duration::from_secs(10),
            store_capacity: 2,
            store_bytes: budget(2, 100),
            store_ttl: Duration::from_secs(1),
            store_hold: Duration::ZERO,
            store_bytes_held: 0,
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
        assert_eq!(
            (c.seen_len(), c.stored_len(), c.stored_bytes()),
            (3, 2, budget(2, 10))
        );
        let recent: Vec<_> = c.recent(TopicId::DEFAULT, 5).map(|(i, _)| i).collect();
        assert_eq!(recent, vec![id(4), id(3)]);
        assert_eq!(
            c.evictions(),
            StoreEvictions {
                over_count: 2,
                ..StoreEvictions::default()
            }
        );
    }

    #[test]
    fn byte_budget_and_ttls() {
        let mut c = MessageCache::new(CacheLimits {
            store_bytes: budget(1, 100),
            ..limits()
        });
        let t = Instant::ZERO;
        assert!(c.insert(t, id(1), msg(60)));
        assert!(c.insert(t, id(2), msg(60)));
        assert_eq!(
            c.stored_bytes(),
            budget(1, 60),
            "byte budget evicts the older message"
        );
        assert!(c.insert(t, id(3), msg(1000)));
        assert!(
            c.get(&id(3)).is_none(),
            "a payload over the whole budget is not kept"
        );
        assert!(c.arrival(&id(3)).is_some(), "its arrival is");
        assert!(c.contains(&id(3)));
        assert!(
            c.recent(TopicId::DEFAULT, 5).all(|(i, _)| i != id(3)),
            "what is not kept is not announced"
        );
        assert!(
            c.get(&id(2)).is_none(),
            "even the record of an arrival counts"
        );
        c.expire(t + Duration::from_secs(1));
        assert_eq!(c.stored_len(), 0);
        assert_eq!(c.stored_bytes(), 0);
        assert_eq!(c.seen_len(), 3);
        assert_eq!(
            c.evictions(),
            StoreEvictions {
                expired: 1,
                over_bytes: 2,
                over_count: 0,
                too_large: 1,
            }
        );
        c.expire(t + Duration::from_secs(10));
        assert_eq!(c.seen_len(), 0);
        assert!(!c.contains(&id(2)));
    }

    #[test]
    fn the_byte_bound_holds_and_counts_signatures() {
        let limits = CacheLimits {
            seen_capacity: 1 << 12,
            seen_ttl: Duration::from_secs(100),
            store_capacity: 1 << 12,
            store_bytes: 64 * 1024,
            store_ttl: Duration::from_secs(100),
            store_hold: Duration::ZERO,
            store_bytes_held: 0,
        };
        let mut c = MessageCache::new(limits);
        let auth = OriginSignature {
            key: [3; PUBLIC_KEY_LEN],
            signature: [4; SIGNATURE_LEN],
        };
        for n in 0..1000u32 {
            let mut m = msg(1 + (n as usize * 37) % 1500);
            if n % 2 == 0 {
                m.auth = Some(auth);
            }
            let mut raw = [0u8; 32];
            raw[..4].copy_from_slice(&n.to_le_bytes());
            assert!(c.insert(Instant::ZERO, MessageId(raw), m));
            assert!(c.stored_bytes() <= limits.store_bytes);
            let held: usize = c.store.iter().map(|s| s.data.len()).sum();
            assert_eq!(
                c.stored_bytes(),
                held + c.stored_len() * STORED_MESSAGE_OVERHEAD
            );
        }
        let e = c.evictions();
        assert_eq!(e.over_bytes as usize + c.stored_len(), 1000);
        assert_eq!((e.expired, e.over_count, e.too_large), (0, 0, 0));
        // The newest message round-trips, signature included.
        let mut raw = [0u8; 32];
        raw[..4].copy_from_slice(&998u32.to_le_bytes());
        let got = c.get(&MessageId(raw)).unwrap();
        assert_eq!(got.auth, Some(auth));
        assert_eq!(got.payload.len(), 1 + (998 * 37) % 1500);
        raw[..4].copy_from_slice(&999u32.to_le_bytes());
        assert_eq!(c.get(&MessageId(raw)).unwrap().auth, None);
    }

    #[test]
    fn young_messages_stay_past_store_bytes_up_to_the_held_ceiling() {
        let hold = Duration::from_millis(500);
        let mut c = MessageCache::new(CacheLimits {
            store_capacity: 100,
            seen_capacity: 100,
            store_hold: hold,
            store_bytes_held: budget(4, 100),
            ..limits()
        });
        let t = Instant::ZERO;
        for n in 1..=4 {
            assert!(c.insert(t, id(n), msg(100)));
        }
        assert_eq!(c.stored_len(), 4, "all younger than store_hold");
        assert!(c.holds(&id(1)));
        // Past the held ceiling the oldest goes even when young.
        assert!(c.insert(t, id(5), msg(100)));
        assert_eq!(c.stored_len(), 4);
        assert!(!c.holds(&id(1)) && c.contains(&id(1)));
        // Once older than store_hold, the excess over store_bytes goes.
        c.expire(t + hold);
        assert_eq!((c.stored_len(), c.stored_bytes()), (2, budget(2, 100)));
        assert!(c.holds(&id(5)) && c.holds(&id(4)) && !c.holds(&id(3)));
        assert_eq!(c.evictions().over_bytes, 3);
        // Old messages make room as before.
        assert!(c.insert(t + hold, id(6), msg(100)));
        assert_eq!(c.stored_len(), 2);
        assert!(!c.holds(&id(4)));
    }

    #[test]
    fn a_remembered_id_takes_a_twenty_byte_record_and_a_sequence_number() {
        // Its expiry entry and its table entry, besides the table's control byte and unused
        // capacity (it was a 40-byte map entry and a 40-byte expiry record, then a 20-byte
        // map entry and a 20-byte expiry record).
        assert_eq!(core::mem::size_of::<SeenEntry>(), 20);
        let c = MessageCache::new(limits());
        let _: &HashTable<u32> = &c.ids;
    }

    #[test]
    fn the_seen_table_agrees_with_a_plain_fifo_of_ids() {
        // A small pool of ids inserted in a scrambled order, with expiries: whatever the
        // table's resizes and the queue's pops, an id is seen exactly while the plain model
        // (the newest `seen_capacity` arrivals younger than `seen_ttl`) holds it, and a
        // stored message is found by its id.
        let limits = CacheLimits {
            seen_capacity: 200,
            seen_ttl: Duration::from_millis(700),
            store_capacity: 50,
            store_bytes: budget(50, 8),
            ..limits()
        };
        let mut c = MessageCache::new(limits);
        let mut model: VecDeque<(u8, u64)> = VecDeque::new();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut now_ms = 0u64;
        for step in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            now_ms += state % 3;
            let now = Instant::from_nanos(now_ms * 1_000_000);
            if step % 97 == 0 {
                c.expire(now);
                model.retain(|&(_, at)| now_ms - at < 700);
            }
            let k = (state >> 20) as u8;
            let seen = model.iter().any(|&(m, _)| m == k);
            assert_eq!(c.contains(&id(k)), seen, "step {step}, id {k}");
            assert_eq!(c.insert(now, id(k), msg(8)), !seen, "step {step}, id {k}");
            if !seen {
                if model.len() == 200 {
                    model.pop_front();
                }
                model.push_back((k, now_ms));
                assert!(c.holds(&id(k)), "just stored");
            }
            assert_eq!(c.seen_len(), model.len());
        }
    }

    #[test]
    fn seen_ids_expire_across_the_32_bit_millisecond_wrap() {
        let mut c = MessageCache::new(limits());
        // 3 s before the 32-bit millisecond clock wraps; the seen ttl is 10 s.
        let t = Instant::from_nanos((u64::from(u32::MAX) - 3_000) * 1_000_000);
        assert!(c.insert(t, id(1), msg(1)));
        c.expire(t + Duration::from_secs(9));
        assert!(c.contains(&id(1)), "9 s old, across the wrap");
        assert!(!c.insert(t + Duration::from_secs(9), id(1), msg(1)));
        c.expire(t + Duration::from_secs(10));
        assert!(!c.contains(&id(1)));
        assert_eq!(c.seen_len(), 0);
    }

    #[test]
    fn a_stored_message_costs_little_beyond_its_payload() {
        // The slot is compact: no inline signature, no copy of the expiry.
        assert_eq!(STORED_MESSAGE_OVERHEAD, 184);
    }

    #[test]
    fn stored_payloads_do_not_pin_the_receive_block() {
        let mut cache = MessageCache::new(limits());
        let block = Bytes::from(vec![7u8; 4096]);
        let mut m = msg(0);
        m.payload = block.slice(100..150);
        assert!(cache.insert(Instant::ZERO, id(1), m));
        let stored = cache.get(&id(1)).unwrap().payload;
        assert_eq!(&stored[..], &block[100..150]);
        assert!(
            !block.as_ptr_range().contains(&stored.as_ptr()),
            "the store kept a slice of the block"
        );
        assert_eq!(cache.stored_bytes, 50 + STORED_MESSAGE_OVERHEAD);
    }
}
