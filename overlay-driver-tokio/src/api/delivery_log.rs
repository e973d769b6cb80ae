//! The delivery feed: every message the core delivers gets a sequence number, goes to the live
//! subscribers, and is kept in a bounded ring so a subscriber that reconnects can resume from
//! its last [`Cursor`] (the SSE stream's `id:` / `Last-Event-ID`).
//!
//! Pure translation of the core's `Action::Deliver`: the log numbers deliveries in the order
//! the core produced them and keeps the newest that fit its bounds; it decides nothing about
//! the protocol. Numbers restart with the process (amnesia: nothing is written to disk), so a
//! cursor carries the run's random `epoch` too: a cursor of an earlier run resumes from the
//! start of this one.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use overlay_proto::Delivery;

use crate::feed;

/// A delivered message and its place in this run's delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    /// Where the message is in the run's delivery order (from 1).
    pub cursor: Cursor,
    /// The message.
    pub delivery: Delivery,
}

/// A position in a node's delivery order: the run's `epoch` and a sequence number. Its text
/// form, `<epoch as 8 hex digits>-<seq>` (e.g. `5f3a9c01-42`), is the SSE event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The node run this position belongs to (random per start).
    pub epoch: u32,
    /// The sequence number of the delivery (1 is the run's first).
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

/// Why a cursor's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not `<8 hex digits>-<decimal>`.
    #[error("not an event id of this node (`<8 hex digits>-<sequence number>`)")]
    Malformed,
    /// This run never issued that sequence number.
    #[error("event id {0} was never issued by this node")]
    Ahead(Cursor),
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Cursor, CursorError> {
        let (epoch, seq) = s.trim().split_once('-').ok_or(CursorError::Malformed)?;
        let hex_ok = epoch.len() == 8 && epoch.bytes().all(|b| b.is_ascii_hexdigit());
        let dec_ok = !seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit());
        if !hex_ok || !dec_ok {
            return Err(CursorError::Malformed);
        }
        Ok(Cursor {
            epoch: u32::from_str_radix(epoch, 16).map_err(|_| CursorError::Malformed)?,
            seq: seq.parse().map_err(|_| CursorError::Malformed)?,
        })
    }
}

/// What a resuming subscriber missed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Messages after the cursor that are no longer kept (the `lagged` count).
    pub missed: u64,
    /// Messages after the cursor still kept, oldest first.
    pub messages: Vec<Sequenced>,
}

impl Replay {
    /// Payload bytes of the replayed messages.
    pub fn bytes(&self) -> usize {
        self.messages.iter().map(|m| m.delivery.payload.len()).sum()
    }
}

/// Bounds of the replay ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBounds {
    /// Messages kept at most (0: none kept; every resume reports what it missed).
    pub events: usize,
    /// Payload bytes kept at most.
    pub bytes: usize,
}

impl ReplayBounds {
    /// Nothing kept: resuming subscribers only learn how many messages they missed. The
    /// library's default ([`crate::OverlayBuilder::replay`]), so nodes that never serve
    /// resuming clients neither copy nor keep payloads.
    pub const NONE: ReplayBounds = ReplayBounds {
        events: 0,
        bytes: 0,
    };
}

impl Default for ReplayBounds {
    /// The daemon's defaults (`[http] sse_replay_events = 1024`, `sse_replay_bytes` = 4 MiB).
    fn default() -> Self {
        ReplayBounds {
            events: 1024,
            bytes: 4 << 20,
        }
    }
}

struct Ring {
    /// The next sequence number to give.
    next_seq: u64,
    /// False until the first subscriber that can resume ([`DeliveryLog::subscribe_resumable`],
    /// [`DeliveryLog::resume`]) when the log was made with [`DeliveryLog::keeping_on_demand`]:
    /// until then nothing is copied or kept.
    keeping: bool,
    kept: VecDeque<Arc<Sequenced>>,
    kept_bytes: usize,
}

/// The delivery feed of one node: numbering, live fan-out and the replay ring.
pub struct DeliveryLog {
    epoch: u32,
    bounds: ReplayBounds,
    ring: Mutex<Ring>,
    /// Live subscribers get each delivery behind an `Arc`: a slot of the feed is a pointer,
    /// not the whole delivery (the feed holds only what its readers have yet to read).
    live: feed::Sender<Arc<Sequenced>>,
}

impl fmt::Debug for DeliveryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryLog")
            .field("epoch", &self.epoch)
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl DeliveryLog {
    /// A log for a run with this `epoch` that keeps deliveries for resuming from the start;
    /// live subscribers may fall `live_capacity` messages behind before they lose the oldest.
    pub fn new(epoch: u32, bounds: ReplayBounds, live_capacity: usize) -> DeliveryLog {
        Self::with_keeping(epoch, bounds, live_capacity, true)
    }

    /// Like [`DeliveryLog::new`], but the replay ring keeps nothing (and allocates nothing)
    /// until the first subscriber that can resume ([`DeliveryLog::subscribe_resumable`] or
    /// [`DeliveryLog::resume`]): a node nobody streams from with resumable cursors holds no
    /// copies. What was delivered before that counts as missed in a later resume.
    pub fn keeping_on_demand(
        epoch: u32,
        bounds: ReplayBounds,
        live_capacity: usize,
    ) -> DeliveryLog {
        Self::with_keeping(epoch, bounds, live_capacity, false)
    }

    fn with_keeping(
        epoch: u32,
        bounds: ReplayBounds,
        live_capacity: usize,
        keeping: bool,
    ) -> DeliveryLog {
        DeliveryLog {
            epoch,
            bounds,
            ring: Mutex::new(Ring {
                next_seq: 1,
                keeping,
                kept: VecDeque::new(),
                kept_bytes: 0,
            }),
            live: feed::channel(live_capacity),
        }
    }

    /// A random epoch for a new run (the OS's randomness; the clock if that fails).
    pub fn random_epoch() -> u32 {
        let mut b = [0u8; 4];
        if getrandom::fill(&mut b).is_ok() {
            return u32::from_le_bytes(b);
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
    }

    /// This run's epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The ring's bounds.
    pub fn bounds(&self) -> ReplayBounds {
        self.bounds
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // The ring stays consistent between statements: a panic elsewhere cannot leave it
        // half-updated.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers a delivery, keeps it (its payload copied out of any larger receive buffer, so
    /// the byte bound is the memory it pins) and sends it to the live subscribers.
    pub fn publish(&self, delivery: Delivery) -> Cursor {
        let mut ring = self.ring();
        let cursor = Cursor {
            epoch: self.epoch,
            seq: ring.next_seq,
        };
        ring.next_seq += 1;
        let size = delivery.payload.len();
        let keep = ring.keeping && self.bounds.events > 0 && size <= self.bounds.bytes;
        if !keep && self.live.receiver_count() == 0 {
            return cursor;
        }
        let delivery = if keep {
            Delivery {
                payload: Bytes::copy_from_slice(&delivery.payload),
                ..delivery
            }
        } else {
            delivery
        };
        let item = Arc::new(Sequenced { cursor, delivery });
        if keep {
            while ring.kept.len() >= self.bounds.events
                || ring.kept_bytes + size > self.bounds.bytes
            {
                let Some(old) = ring.kept.pop_front() else {
                    break;
                };
                ring.kept_bytes -= old.delivery.payload.len();
            }
            ring.kept_bytes += size;
            ring.kept.push_back(Arc::clone(&item));
        }
        // No subscriber is fine. Sent under the lock so a resume sees each message either in
        // its replay or on its live feed, never both, never neither.
        self.live.send(item);
        cursor
    }

    /// A live feed of what is published from now on.
    pub fn subscribe(&self) -> feed::Receiver<Arc<Sequenced>> {
        self.live.subscribe()
    }

    /// A live feed of what is published from now on, for a subscriber that may later
    /// [`DeliveryLog::resume`] from one of its cursors: the replay ring keeps deliveries
    /// from now on.
    pub fn subscribe_resumable(&self) -> feed::Receiver<Arc<Sequenced>> {
        let mut ring = self.ring();
        ring.keeping = true;
        self.live.subscribe()
    }

    /// A live feed plus what was published after `after` (`None`: from the start of this
    /// run): the messages still kept and the count of those no longer kept. A cursor of
    /// another run counts as the start of this one; one this run has not issued yet is
    /// refused. The replay ring keeps deliveries from now on.
    pub fn resume(
        &self,
        after: Option<Cursor>,
    ) -> Result<(feed::Receiver<Arc<Sequenced>>, Replay), CursorError> {
        let mut ring = self.ring();
        let last = ring.next_seq - 1;
        let after_seq = match after {
            Some(c) if c.epoch == self.epoch => {
                if c.seq > last {
                    return Err(CursorError::Ahead(c));
                }
                c.seq
            }
            _ => 0,
        };
        ring.keeping = true;
        let messages: Vec<Sequenced> = ring
            .kept
            .iter()
            .filter(|m| m.cursor.seq > after_seq)
            .map(|m| Sequenced::clone(m))
            .collect();
        // Everything after the cursor that is not replayed: evicted, or never kept (larger
        // than the byte bound, or delivered before anyone could resume).
        let missed = (last - after_seq).saturating_sub(messages.len() as u64);
        Ok((self.live.subscribe(), Replay { missed, messages }))
    }

    /// Live subscribers now.
    pub fn receiver_count(&self) -> usize {
        self.live.receiver_count()
    }

    /// Deliveries the replay ring holds now, and their payload bytes.
    pub fn kept(&self) -> (usize, usize) {
        let ring = self.ring();
        (ring.kept.len(), ring.kept_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::{MessageId, PeerId};

    fn delivery(n: u8, len: usize) -> Delivery {
        Delivery {
            topic: overlay_proto::TopicId::DEFAULT,
            id: MessageId([n; 32]),
            origin: PeerId([1; 32]),
            from: PeerId([2; 32]),
            hops: 1,
            payload: Bytes::from(vec![n; len]),
        }
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.messages.iter().map(|m| m.cursor.seq).collect()
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            epoch: 0x5f3a_9c01,
            seq: 42,
        };
        assert_eq!(c.to_string(), "5f3a9c01-42");
        assert_eq!("5f3a9c01-42".parse::<Cursor>(), Ok(c));
        for bad in [
            "",
            "42",
            "5f3a9c01-",
            "5f3a9c0-42",
            "5f3a9c01x-42",
            "zzzzzzzz-1",
            "5f3a9c01--1",
            "5f3a9c01-1.5",
            "5f3a9c01-99999999999999999999",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError::Malformed), "{bad}");
        }
    }

    #[test]
    fn resume_replays_what_was_missed_then_reports_what_was_dropped() {
        let log = DeliveryLog::new(
            7,
            ReplayBounds {
                events: 3,
                bytes: 1000,
            },
            16,
        );
        let cursors: Vec<Cursor> = (1..=5).map(|n| log.publish(delivery(n, 10))).collect();
        assert_eq!(cursors[4], Cursor { epoch: 7, seq: 5 });
        // Kept: 3, 4, 5.
        let (_, r) = log.resume(Some(cursors[2])).unwrap();
        assert_eq!((r.missed, seqs(&r)), (0, vec![4, 5]));
        let (_, r) = log.resume(Some(cursors[0])).unwrap();
        assert_eq!((r.missed, seqs(&r)), (1, vec![3, 4, 5]));
        let (_, r) = log.resume(None).unwrap();
        assert_eq!((r.missed, seqs(&r)), (2, vec![3, 4, 5]));
        // Up to date: nothing to replay.
        let (_, r) = log.resume(Some(cursors[4])).unwrap();
        assert_eq!(r, Replay::default());
        // Another run's cursor: from the start of this one.
        let (_, r) = log.resume(Some(Cursor { epoch: 8, seq: 1 })).unwrap();
        assert_eq!((r.missed, seqs(&r)), (2, vec![3, 4, 5]));
        // Never issued.
        let ahead = Cursor { epoch: 7, seq: 6 };
        assert_eq!(
            log.resume(Some(ahead)).map(|_| ()),
            Err(CursorError::Ahead(ahead))
        );
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_live_follows_the_replay() {
        let log = DeliveryLog::new(
            1,
            ReplayBounds {
                events: 100,
                bytes: 25,
            },
            16,
        );
        for n in 1..=4 {
            log.publish(delivery(n, 10));
        }
        let (mut live, r) = log.resume(None).unwrap();
        assert_eq!((r.missed, seqs(&r), r.bytes()), (2, vec![3, 4], 20));
        // Larger than the whole bound: delivered live, never kept.
        log.publish(delivery(5, 26));
        let got = live.try_recv().unwrap();
        assert_eq!(got.cursor.seq, 5);
        let (_, r) = log.resume(Some(Cursor { epoch: 1, seq: 4 })).unwrap();
        assert_eq!((r.missed, seqs(&r)), (1, vec![]));
    }

    #[test]
    fn a_disabled_ring_keeps_nothing_and_counts_everything_missed() {
        let log = DeliveryLog::new(
            1,
            ReplayBounds {
                events: 0,
                bytes: 1 << 20,
            },
            16,
        );
        for n in 1..=3 {
            log.publish(delivery(n, 10));
        }
        let (_, r) = log.resume(Some(Cursor { epoch: 1, seq: 1 })).unwrap();
        assert_eq!((r.missed, seqs(&r)), (2, vec![]));
    }

    #[test]
    fn an_on_demand_ring_keeps_nothing_until_a_resumable_subscriber() {
        let log = DeliveryLog::keeping_on_demand(1, ReplayBounds::default(), 16);
        log.publish(delivery(1, 10));
        let _plain = log.subscribe();
        log.publish(delivery(2, 10));
        assert_eq!(log.kept(), (0, 0), "a plain live subscriber needs no ring");
        let mut live = log.subscribe_resumable();
        log.publish(delivery(3, 10));
        assert_eq!(log.kept(), (1, 10));
        assert_eq!(live.try_recv().unwrap().cursor.seq, 3);
        let (_, r) = log.resume(None).unwrap();
        assert_eq!((r.missed, seqs(&r)), (2, vec![3]));
        // A resume arms it too.
        let log = DeliveryLog::keeping_on_demand(2, ReplayBounds::default(), 16);
        log.publish(delivery(1, 10));
        let (_, r) = log.resume(None).unwrap();
        assert_eq!((r.missed, seqs(&r)), (1, vec![]));
        log.publish(delivery(2, 10));
        let (_, r) = log.resume(Some(Cursor { epoch: 2, seq: 1 })).unwrap();
        assert_eq!((r.missed, seqs(&r)), (0, vec![2]));
    }
}
