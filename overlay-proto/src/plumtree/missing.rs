//! Plumtree's repair state: the ids announced (IHAVE) that this node has not received yet,
//! their announcers and GRAFT timers.
//!
//! [`MissingIds`] is one table for every topic of the node, like the message store: an id
//! binds its topic, and the table's ceiling and each peer's share of it are the node's. It
//! owns the entries, the GRAFT timers (in deadline order) and the GRAFTs put off while the
//! tree is settled; it knows nothing of sessions or scores. The node tells it what arrived
//! (an announcement, the message itself, a GRAFT_MISS) and asks it which ids are due and
//! whom to ask next; the liveness of an announcer, the rank of its announcements and
//! whether a topic's tree is settled are the node's answers, passed in as functions.

use core::time::Duration;
use std::collections::VecDeque;

use super::Neighbor;
use crate::idhash::{keyed_id_map, IdMap};
use crate::peer::{ConnId, MessageId};
use crate::time::Instant;
use crate::topic::TopicId;

/// An id announced by IHAVE that we have not received yet.
#[derive(Debug, Default)]
pub(crate) struct Missing {
    /// The topic it was announced in.
    pub(crate) topic: TopicId,
    /// Neighbours that announced it and were not asked yet (key, conn to detect reuse, when
    /// their IHAVE arrived), at most `max_announcers`, best rank first.
    announcers: Vec<(Neighbor, ConnId, Instant)>,
    /// The neighbour whose announcement created the entry (it counts toward that peer's
    /// share of the table).
    pub(crate) owner: Option<(Neighbor, ConnId)>,
    /// The announcer we sent GRAFT to and still wait for.
    pub(crate) grafted: Option<(Neighbor, ConnId)>,
    /// When the IHAVE of `grafted` arrived (a GRAFT_MISS sooner than `graft_miss_grace`
    /// after it is a broken promise).
    pub(crate) grafted_announced_at: Instant,
    /// When the GRAFT to `grafted` was sent.
    grafted_at: Instant,
    /// When the GRAFT timer of this id runs out (a timer queued earlier, before a
    /// GRAFT_MISS made us ask the next announcer at once, is stale).
    due_at: Instant,
    /// The first GRAFT was put off (the tree was settled when `graft_timeout` ran out).
    deferred: bool,
    /// The announcement with the fewest hops so far (hops, neighbour, conn): when the
    /// message then arrives eagerly over a longer path, the tree optimisation may swap the
    /// links.
    pub(crate) best_offer: Option<(u8, Neighbor, ConnId)>,
    /// When `best_offer` arrived (how early it came, compared with the copy).
    pub(crate) best_offer_at: Instant,
    /// When the first announcement arrived (how late the tree brings announced messages
    /// sets how long GRAFTs are put off).
    pub(crate) announced_at: Instant,
}

/// Whom to GRAFT next for a missing id ([`MissingIds::ask_next`]).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextAsk {
    /// The announcer asked before (if any): it did not deliver.
    pub(crate) asked: Option<(Neighbor, ConnId)>,
    /// When `asked` was sent its GRAFT.
    pub(crate) asked_at: Instant,
    /// The announcer to ask now; `None` when none is left (the entry is then done).
    pub(crate) chosen: Option<Neighbor>,
}

/// The missing ids of every topic of a node, their GRAFT timers and put-off GRAFTs.
#[derive(Debug)]
pub(crate) struct MissingIds {
    entries: IdMap<MessageId, Missing>,
    /// GRAFT timers in deadline order (an entry's `due_at` says whether one is stale).
    timers: VecDeque<(Instant, MessageId)>,
    /// Ids whose first GRAFT was put off because the tree was settled, with the time the
    /// topic's GRAFT hold ends.
    deferred: VecDeque<(Instant, MessageId)>,
}

impl MissingIds {
    /// An empty table whose map hashes ids with `hash_key`.
    pub(crate) fn new(hash_key: [u64; 2]) -> MissingIds {
        MissingIds {
            // Grows with traffic (nothing allocated before the first missing id): 1024 entries
            // up front were ~230 KiB per idle node, 16 were still ~7 KB.
            entries: keyed_id_map(0, hash_key),
            timers: VecDeque::new(),
            deferred: VecDeque::new(),
        }
    }

    /// Ids tracked.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `id`.
    pub(crate) fn get(&self, id: &MessageId) -> Option<&Missing> {
        self.entries.get(id)
    }

    /// Starts tracking `id`, announced in `topic` by `key` on `conn` with `hops` hops at
    /// `now`; its first GRAFT is due at `deadline`. The caller checked the table's ceiling
    /// and the announcer's share.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        id: MessageId,
        topic: TopicId,
        key: Neighbor,
        conn: ConnId,
        hops: u8,
        deadline: Instant,
    ) {
        self.entries.insert(
            id,
            Missing {
                topic,
                announcers: vec![(key, conn, now)],
                owner: Some((key, conn)),
                grafted: None,
                grafted_announced_at: now,
                grafted_at: now,
                due_at: deadline,
                deferred: false,
                best_offer: Some((hops, key, conn)),
                best_offer_at: now,
                announced_at: now,
            },
        );
        self.timers.push_back((deadline, id));
    }

    /// Forgets `id` (it arrived, or nobody is left to ask); returns the entry (the caller
    /// gives the owner's share back).
    pub(crate) fn remove(&mut self, id: &MessageId) -> Option<Missing> {
        self.entries.remove(id)
    }

    /// Remembers the announcement of `id` with the fewest hops.
    pub(crate) fn note_offer(
        &mut self,
        id: &MessageId,
        hops: u8,
        key: Neighbor,
        conn: ConnId,
        at: Instant,
    ) {
        if let Some(entry) = self.entries.get_mut(id) {
            if entry.best_offer.is_none_or(|(best, _, _)| hops < best) {
                entry.best_offer = Some((hops, key, conn));
                entry.best_offer_at = at;
            }
        }
    }

    /// Adds an announcer of `id` (its IHAVE arrived `at`), keeping the list in `rank` order
    /// (lower asks first; arrival order within a rank). A full list (`max` entries) makes
    /// room only for a better-ranked announcer, by dropping its worst and latest entry. An
    /// announcer already listed or already asked is not added again.
    pub(crate) fn add_announcer<R: Ord + Copy>(
        &mut self,
        id: &MessageId,
        key: Neighbor,
        conn: ConnId,
        at: Instant,
        max: usize,
        rank: impl Fn(Neighbor) -> R,
    ) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.announcers.iter().any(|(k, _, _)| *k == key)
            || entry.grafted.is_some_and(|(k, _)| k == key)
        {
            return;
        }
        let new_rank = rank(key);
        let mut ranks: Vec<R> = entry.announcers.iter().map(|(k, _, _)| rank(*k)).collect();
        if entry.announcers.len() >= max {
            // The worst-ranked entry, the latest among equals.
            let worst = ranks
                .iter()
                .enumerate()
                .max_by_key(|(i, r)| (**r, *i))
                .map(|(i, r)| (i, *r));
            match worst {
                Some((i, r)) if r > new_rank => {
                    entry.announcers.remove(i);
                    ranks.remove(i);
                }
                _ => return,
            }
        }
        let position = ranks
            .iter()
            .zip(entry.announcers.iter())
            .take_while(|(r, _)| **r <= new_rank)
            .count();
        let position = position.min(entry.announcers.len());
        entry.announcers.insert(position, (key, conn, at));
    }

    /// When the GRAFT timers next need attention: the earliest deadline, or `now` when
    /// put-off GRAFTs wait and their topic's tree is no longer `settled`.
    pub(crate) fn due_at(
        &self,
        now: Instant,
        settled: impl Fn(&TopicId) -> bool,
    ) -> Option<Instant> {
        let first = self.timers.front().map(|(at, _)| *at);
        let deferred = match self.deferred.front() {
            Some((_, id)) if !self.settled_for(id, &settled) => Some(now),
            other => other.map(|(at, _)| *at),
        };
        match (first, deferred) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn settled_for(&self, id: &MessageId, settled: &impl Fn(&TopicId) -> bool) -> bool {
        self.entries.get(id).is_some_and(|m| settled(&m.topic))
    }

    /// Ids whose GRAFT timer ran out by `now`, in deadline order (an id may appear twice:
    /// see [`MissingIds::is_stale`]).
    ///
    /// An id announced `graft_timeout` ago that was never grafted is put off by its topic's
    /// GRAFT `hold` while the topic's tree is `settled` (and the message is not `held`
    /// already): then the message is nearly always on its way eagerly too, and an early
    /// GRAFT only brings a duplicate (and reshapes the tree for one sender). Once the tree
    /// is not settled (a session ended), every put-off id is due at once: after a failure
    /// the nodes next to it graft fast, and their subtrees then get the message eagerly
    /// from them.
    #[must_use]
    pub(crate) fn due(
        &mut self,
        now: Instant,
        hold: impl Fn(&TopicId) -> Duration,
        settled: impl Fn(&TopicId) -> bool,
        held: impl Fn(&MessageId) -> bool,
    ) -> Vec<MessageId> {
        let mut due = Vec::new();
        while let Some((deadline, id)) = self.timers.front().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop_front();
            let extra = self
                .entries
                .get(&id)
                .map_or(Duration::ZERO, |m| hold(&m.topic));
            let defer = !extra.is_zero()
                && self.settled_for(&id, &settled)
                && !held(&id)
                && self
                    .entries
                    .get(&id)
                    .is_some_and(|m| m.grafted.is_none() && !m.deferred);
            match self.entries.get_mut(&id) {
                Some(m) if defer => {
                    m.deferred = true;
                    self.deferred.push_back((deadline + extra, id));
                }
                _ => due.push(id),
            }
        }
        while let Some((deadline, id)) = self.deferred.front().copied() {
            if deadline > now && self.settled_for(&id, &settled) {
                break;
            }
            self.deferred.pop_front();
            due.push(id);
        }
        due
    }

    /// True when `id`'s timer that just ran out is stale at `now` (a GRAFT_MISS made us ask
    /// the next announcer at once and a later timer runs).
    pub(crate) fn is_stale(&self, id: &MessageId, now: Instant) -> bool {
        self.entries.get(id).is_some_and(|m| m.due_at > now)
    }

    /// Chooses the announcer of `id` to GRAFT now: the best-ranked one still `live`, the
    /// earliest among equals (ranks change while an id waits: a peer breaks a promise for
    /// another id). The others that are not live are forgotten. With a choice, its timer
    /// runs until `retry`. `None` when `id` is not tracked.
    pub(crate) fn ask_next<R: Ord>(
        &mut self,
        id: &MessageId,
        now: Instant,
        retry: Instant,
        live: impl Fn(Neighbor, ConnId) -> bool,
        rank: impl Fn(Neighbor) -> R,
    ) -> Option<NextAsk> {
        let entry = self.entries.get_mut(id)?;
        let (asked, asked_at) = (entry.grafted, entry.grafted_at);
        let mut candidates = std::mem::take(&mut entry.announcers);
        candidates.retain(|(k, c, _)| live(*k, *c));
        let chosen = candidates
            .iter()
            .enumerate()
            .min_by_key(|(i, (k, _, _))| (rank(*k), *i))
            .map(|(i, _)| i)
            .map(|i| candidates.remove(i));
        entry.announcers = candidates;
        entry.grafted = chosen.map(|(k, c, _)| (k, c));
        if let Some((_, _, announced_at)) = chosen {
            entry.grafted_announced_at = announced_at;
            entry.grafted_at = now;
            entry.due_at = retry;
            self.timers.push_back((retry, *id));
        }
        Some(NextAsk {
            asked,
            asked_at,
            chosen: chosen.map(|(k, _, _)| k),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 32])
    }

    const T: TopicId = TopicId::DEFAULT;
    const TIMEOUT: Duration = Duration::from_millis(100);

    fn table() -> MissingIds {
        MissingIds::new([1, 2])
    }

    fn nothing_held(_: &MessageId) -> bool {
        false
    }

    #[test]
    fn a_graft_is_due_when_the_timer_runs_out_and_asks_the_announcer() {
        let mut m = table();
        m.insert(at(0), id(1), T, 4, ConnId(40), 2, at(0) + TIMEOUT);
        assert_eq!(m.due_at(at(0), |_| true), Some(at(100)));
        let no_hold = |_: &TopicId| Duration::ZERO;
        assert!(m.due(at(99), no_hold, |_| true, nothing_held).is_empty());
        assert_eq!(m.due(at(100), no_hold, |_| true, nothing_held), vec![id(1)]);
        let next = m
            .ask_next(&id(1), at(100), at(400), |_, _| true, |k| k)
            .unwrap();
        assert_eq!(
            next,
            NextAsk {
                asked: None,
                asked_at: at(0),
                chosen: Some(4)
            }
        );
        assert_eq!(m.get(&id(1)).unwrap().grafted, Some((4, ConnId(40))));
        // The retry timer: the grafted announcer did not deliver, nobody else is left.
        assert_eq!(m.due_at(at(100), |_| true), Some(at(400)));
        assert_eq!(m.due(at(400), no_hold, |_| true, nothing_held), vec![id(1)]);
        let next = m
            .ask_next(&id(1), at(400), at(700), |_, _| true, |k| k)
            .unwrap();
        assert_eq!(next.asked, Some((4, ConnId(40))));
        // When the GRAFT it did not answer was sent: blame needs word from it since.
        assert_eq!(next.asked_at, at(100));
        assert_eq!(next.chosen, None);
        assert!(m.remove(&id(1)).is_some());
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn announcers_are_asked_best_rank_first_and_dead_ones_are_skipped() {
        let mut m = table();
        m.insert(at(0), id(1), T, 5, ConnId(50), 3, at(100));
        // Rank = the key itself: lower asks first.
        m.add_announcer(&id(1), 3, ConnId(30), at(1), 8, |k| k);
        m.add_announcer(&id(1), 7, ConnId(70), at(2), 8, |k| k);
        m.add_announcer(&id(1), 3, ConnId(30), at(3), 8, |k| k);
        // Session 3 is gone: 5 is the best live announcer.
        let next = m
            .ask_next(&id(1), at(400), at(400), |k, _| k != 3, |k| k)
            .unwrap();
        assert_eq!(next.chosen, Some(5));
        // 5 is asked now, so it is not listed again.
        m.add_announcer(&id(1), 5, ConnId(50), at(4), 8, |k| k);
        let next = m
            .ask_next(&id(1), at(700), at(700), |_, _| true, |k| k)
            .unwrap();
        assert_eq!(next.chosen, Some(7));
    }

    #[test]
    fn a_full_announcer_list_makes_room_only_for_a_better_rank() {
        let mut m = table();
        m.insert(at(0), id(1), T, 5, ConnId(50), 3, at(100));
        m.add_announcer(&id(1), 6, ConnId(60), at(1), 2, |k| k);
        // Full (2): 9 ranks worse than everyone, 1 better than 6.
        m.add_announcer(&id(1), 9, ConnId(90), at(2), 2, |k| k);
        m.add_announcer(&id(1), 1, ConnId(10), at(3), 2, |k| k);
        let mut order = Vec::new();
        while let Some(k) = m
            .ask_next(&id(1), at(400), at(400), |_, _| true, |k| k)
            .and_then(|n| n.chosen)
        {
            order.push(k);
        }
        assert_eq!(order, vec![1, 5]);
    }

    #[test]
    fn the_fewest_hops_offer_is_kept() {
        let mut m = table();
        m.insert(at(0), id(1), T, 5, ConnId(50), 4, at(100));
        m.note_offer(&id(1), 6, 6, ConnId(60), at(10));
        m.note_offer(&id(1), 2, 7, ConnId(70), at(20));
        m.note_offer(&id(1), 2, 8, ConnId(80), at(30));
        let entry = m.get(&id(1)).unwrap();
        assert_eq!(entry.best_offer, Some((2, 7, ConnId(70))));
        // When the kept offer arrived (how early it was, against the copy).
        assert_eq!(entry.best_offer_at, at(20));
        assert_eq!(entry.announced_at, at(0));
    }

    #[test]
    fn a_settled_tree_puts_the_first_graft_off_by_its_hold() {
        let mut m = table();
        m.insert(at(0), id(1), T, 5, ConnId(50), 4, at(100));
        let hold = |_: &TopicId| Duration::from_millis(40);
        assert!(m.due(at(100), hold, |_| true, nothing_held).is_empty());
        assert_eq!(m.due_at(at(100), |_| true), Some(at(140)));
        assert_eq!(m.due(at(140), hold, |_| true, nothing_held), vec![id(1)]);
        // Put off once only: the retry is not held again.
        m.ask_next(&id(1), at(440), at(440), |_, _| true, |k| k);
        assert_eq!(m.due(at(440), hold, |_| true, nothing_held), vec![id(1)]);
    }

    #[test]
    fn a_put_off_graft_is_due_at_once_when_the_tree_is_no_longer_settled() {
        let mut m = table();
        m.insert(at(0), id(1), T, 5, ConnId(50), 4, at(100));
        let hold = |_: &TopicId| Duration::from_millis(40);
        assert!(m.due(at(100), hold, |_| true, nothing_held).is_empty());
        // A session ended: the tree is not settled.
        assert_eq!(m.due_at(at(110), |_| false), Some(at(110)));
        assert_eq!(m.due(at(110), hold, |_| false, nothing_held), vec![id(1)]);
        // Nor is a GRAFT put off when the tree is not settled or the message is here.
        m.insert(at(0), id(2), T, 5, ConnId(50), 4, at(200));
        assert_eq!(m.due(at(200), hold, |_| false, nothing_held), vec![id(2)]);
        m.insert(at(0), id(3), T, 5, ConnId(50), 4, at(300));
        assert_eq!(m.due(at(300), hold, |_| true, |i| *i == id(3)), vec![id(3)]);
    }

    #[test]
    fn a_timer_queued_before_an_earlier_ask_is_stale() {
        let mut m = table();
        m.insert(at(0), id(1), T, 5, ConnId(50), 4, at(100));
        m.add_announcer(&id(1), 6, ConnId(60), at(1), 8, |k| k);
        // A GRAFT_MISS at 50 ms: the next announcer is asked at once, until 350 ms.
        m.ask_next(&id(1), at(350), at(350), |_, _| true, |k| k);
        let due = m.due(at(100), |_| Duration::ZERO, |_| true, nothing_held);
        assert_eq!(due, vec![id(1)]);
        assert!(m.is_stale(&id(1), at(100)));
        assert!(!m.is_stale(&id(1), at(350)));
    }
}
