//! Plumtree's tree maintenance: which duplicate makes a link lazy, and the optimisation step
//! that swaps an eager link for a lazy one offering a path shorter by `optimization_threshold`
//! hops. Both keep the eager/lazy roles symmetric (every change is told to the peer with
//! PRUNE or GRAFT), so the eager graph tends to one tree shared by every sender.

use core::time::Duration;

use super::{Node, SessionKey};
use crate::peer::{ConnId, MessageId};
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::{self, Kind};

/// An announcement older than this, relative to our own receipt, says nothing about the
/// current tree (a catch-up IHAVE of a new session, say) and never triggers a swap.
const OPTIMIZATION_WINDOW: Duration = Duration::from_secs(1);

impl Node {
    /// Session `key` gave us a message of `topic` first: the link is a tree edge for it.
    pub(super) fn note_first_copy(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        if let Some(link) = self.link_mut(topic, key) {
            link.dup_streak = 0;
            link.first_copy_at = Some(now);
        }
    }

    /// Session `key` pushed us a duplicate: decide whether the link is redundant, and if so
    /// make it lazy on both sides (PRUNE).
    ///
    /// - A peer we treat as lazy still has us as eager (the link is one-sided): prune at once.
    /// - An eager peer that has not given us a first copy within `graft_timeout` is pruned at
    ///   once, as in textbook Plumtree: with broadcasts that do not overlap, the first
    ///   duplicate marks a link that closes a cycle, whoever the sender, so the eager graph
    ///   becomes one tree after one broadcast.
    /// - An eager peer that did give us a first copy that recently is pruned only after
    ///   `prune_after_duplicates` duplicates in a row: when broadcasts overlap, two nodes of
    ///   one cycle could otherwise prune two different links of it for messages going
    ///   opposite ways and split the tree (repaired only by GRAFT, after `graft_timeout`).
    /// - Our last eager peer is never pruned.
    pub(super) fn prune_if_redundant(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        let limit = self.config.prune_after_duplicates;
        let window = self.config.graft_timeout;
        let (eager, streak, busy) = match self.link_mut(topic, key) {
            Some(link) => {
                link.dup_streak = link.dup_streak.saturating_add(1);
                let busy = link.first_copy_at.is_some_and(|t| now - t < window);
                (link.eager, link.dup_streak, busy)
            }
            None => return,
        };
        let eager_links = self.tree(topic).map_or(0, |t| t.eager.len());
        let prune = if !eager {
            true
        } else {
            eager_links > 1 && (!busy || streak >= limit)
        };
        if prune {
            self.prune(topic, key);
        }
    }

    /// Makes `key` lazy in `topic` and tells it with PRUNE.
    pub(super) fn prune(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        if let Some(link) = self.link_mut(topic, key) {
            link.dup_streak = 0;
            link.pruned_at = Some(now);
        }
        self.make_lazy(topic, key);
        self.stats.prunes_sent += 1;
        let kind = wire::kind_in_topic(Kind::Prune, topic);
        let body: &[u8] = if topic.is_default() { &[] } else { &topic.0 };
        self.send_frame(key, kind, &[body]);
    }

    /// True while this node's part of `topic`'s tree is settled: it has eager peers there and
    /// none of its running sessions ended within `tree_settle` (a lost lazy peer also hints
    /// at failures nearby, whose subtrees need fast repair).
    fn tree_settled(&self, topic: &TopicId) -> bool {
        let now = self.now;
        self.tree(topic).is_some_and(|t| !t.eager.is_empty())
            && self
                .session_lost_at
                .is_none_or(|t| now - t >= self.config.tree_settle)
    }

    /// [`Node::tree_settled`] for the topic a missing id was announced in.
    fn settled_for(&self, id: &MessageId) -> bool {
        self.missing
            .get(id)
            .is_some_and(|m| self.tree_settled(&m.topic))
    }

    /// When the graft timers next need attention: the earliest deadline, or now when put-off
    /// grafts wait and the tree is no longer settled.
    pub(super) fn missing_due_at(&self) -> Option<Instant> {
        let first = self.missing_timers.front().map(|(at, _)| *at);
        let deferred = match self.deferred_grafts.front() {
            Some((_, id)) if !self.settled_for(id) => Some(self.now),
            other => other.map(|(at, _)| *at),
        };
        match (first, deferred) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Missing ids whose graft timer ran out, in deadline order.
    ///
    /// An id announced `graft_timeout` ago that was never grafted is put off until
    /// `graft_timeout_settled` after its announcement while the tree is settled: then the
    /// message is nearly always on its way eagerly too, and an early GRAFT only brings a
    /// duplicate (and reshapes the tree for one sender). Once the tree is not settled (a
    /// session ended), every put-off id is due at once: after a failure the nodes next
    /// to it graft fast, and their subtrees then get the message eagerly from them.
    pub(super) fn due_missing(&mut self) -> Vec<MessageId> {
        let now = self.now;
        let extra = self
            .config
            .graft_timeout_settled
            .saturating_sub(self.config.graft_timeout);
        let mut due = Vec::new();
        while let Some((deadline, id)) = self.missing_timers.front().copied() {
            if deadline > now {
                break;
            }
            self.missing_timers.pop_front();
            let defer = !extra.is_zero()
                && self.settled_for(&id)
                && !self.cache.contains(&id)
                && self
                    .missing
                    .get(&id)
                    .is_some_and(|m| m.grafted.is_none() && !m.deferred);
            match self.missing.get_mut(&id) {
                Some(m) if defer => {
                    m.deferred = true;
                    self.deferred_grafts.push_back((deadline + extra, id));
                }
                _ => due.push(id),
            }
        }
        while let Some((deadline, id)) = self.deferred_grafts.front().copied() {
            if deadline > now && self.settled_for(&id) {
                break;
            }
            self.deferred_grafts.pop_front();
            due.push(id);
        }
        due
    }

    /// Remembers the announcement of a missing id with the fewest hops.
    pub(super) fn note_offer(&mut self, id: &MessageId, hops: u8, key: SessionKey, conn: ConnId) {
        if let Some(entry) = self.missing.get_mut(id) {
            if entry.best_offer.is_none_or(|(best, _, _)| hops < best) {
                entry.best_offer = Some((hops, key, conn));
            }
        }
    }

    /// The best announcement of a missing id, taken before the entry is removed.
    pub(super) fn best_offer(&self, id: &MessageId) -> Option<(u8, SessionKey, ConnId)> {
        self.missing.get(id).and_then(|m| m.best_offer)
    }

    /// Plumtree's optimisation step. We hold a message that reached us in `hops` hops over
    /// connection `from` at `received_at`; session `shortcut` announced it with `offered`
    /// hops, so through it the message would have taken `offered + 1`. When that is shorter
    /// by at least `optimization_threshold`, the links swap roles: `shortcut` becomes eager
    /// (an empty GRAFT tells it to push to us) and the old parent lazy (PRUNE).
    ///
    /// Only links whose role has been stable for `optimization_hold` take part, so the swap
    /// cannot be undone by the next message. The old parent's side of the tree keeps the
    /// origin, and the shortcut had the message in fewer hops than we did, so (on the
    /// shortcut's eager path) it is not below us: the eager graph stays one tree.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn consider_shortcut(
        &mut self,
        topic: &TopicId,
        shortcut: SessionKey,
        id: &MessageId,
        offered: u8,
        hops: u8,
        from: Option<ConnId>,
        received_at: Instant,
    ) {
        let threshold = self.config.optimization_threshold;
        let now = self.now;
        if threshold == 0
            || u16::from(offered) + 1 + u16::from(threshold) > u16::from(hops)
            || now - received_at > OPTIMIZATION_WINDOW
        {
            return;
        }
        let Some(parent) = from.and_then(|c| self.by_conn.get(&c).copied()) else {
            return;
        };
        if parent == shortcut {
            return;
        }
        let hold = self.config.optimization_hold;
        let (Some(p), Some(q)) = (self.link(topic, parent), self.link(topic, shortcut)) else {
            return;
        };
        let settled =
            p.eager && !q.eager && now - p.role_since >= hold && now - q.role_since >= hold;
        if !settled || !self.may_be_eager(shortcut) {
            return;
        }
        // The hop claim is the announcer's word: it must prove it first (claims.rs).
        let _proposed = self.propose_swap(topic, shortcut, parent, *id, offered, received_at);
    }

    /// A swap whose hop claim was proven (claims.rs): the old parent becomes lazy (PRUNE).
    /// The shortcut was made eager, and told, when the claim was put to the test.
    pub(super) fn complete_swap(
        &mut self,
        topic: &TopicId,
        _shortcut: SessionKey,
        parent: SessionKey,
        _seen_at: Instant,
    ) {
        self.prune(topic, parent);
        self.stats.tree_swaps += 1;
    }
}
