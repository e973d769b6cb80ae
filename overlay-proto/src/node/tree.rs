//! Plumtree's tree maintenance: which duplicate makes a link lazy, how long a GRAFT is put
//! off, and the optimisation step that swaps an eager link for a lazy one whose announcements
//! were on average `optimization_threshold` hops shorter. Every change keeps the eager/lazy
//! roles symmetric (it is told to the peer with PRUNE or GRAFT), so the eager graph tends to
//! one tree shared by every sender of a topic.

use core::time::Duration;

use super::topics::ShortcutTally;
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

    /// A new message of `topic` was accepted (from a peer or from validation).
    pub(super) fn note_new_message(&mut self, topic: &TopicId) {
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.last_first_copy_at = now;
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
    /// - An eager peer that did give us a first copy that recently, or became eager that
    ///   recently (a GRAFT, a swap: the copy asked for may still come), is pruned only after
    ///   `prune_after_duplicates` duplicates in a row: when broadcasts overlap, two nodes of
    ///   one cycle could otherwise prune two different links of it for messages going
    ///   opposite ways and split the tree (repaired only by GRAFT, after `graft_timeout`).
    /// - An eager peer a tree optimisation replaced within `optimization_hold` is pruned at
    ///   once: the duplicate proves the other path.
    /// - Our last eager peer is never pruned.
    pub(super) fn prune_if_redundant(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        let limit = self.config.prune_after_duplicates;
        let window = self.config.graft_timeout;
        let hold = self.config.optimization_hold;
        let (eager, streak, busy, replaced) = match self.link_mut(topic, key) {
            Some(link) => {
                link.dup_streak = link.dup_streak.saturating_add(1);
                let busy = link.first_copy_at.is_some_and(|t| now - t < window)
                    || (link.eager && now - link.role_since < window);
                let replaced = link.replaced_at.is_some_and(|t| now - t < hold);
                (link.eager, link.dup_streak, busy, replaced)
            }
            None => return,
        };
        let eager_links = self.tree(topic).map_or(0, |t| t.eager.len());
        let prune = if !eager {
            true
        } else {
            eager_links > 1 && (replaced || !busy || streak >= limit)
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
            link.replaced_at = None;
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
    /// An id announced `graft_timeout` ago that was never grafted is put off by the topic's
    /// GRAFT hold ([`Node::graft_hold`]) while the tree is settled: then the message is
    /// nearly always on its way eagerly too, and an early GRAFT only brings a duplicate (and
    /// reshapes the tree for one sender). Once the tree is not settled (a
    /// session ended), every put-off id is due at once: after a failure the nodes next
    /// to it graft fast, and their subtrees then get the message eagerly from them.
    pub(super) fn due_missing(&mut self) -> Vec<MessageId> {
        let now = self.now;
        let mut due = Vec::new();
        while let Some((deadline, id)) = self.missing_timers.front().copied() {
            if deadline > now {
                break;
            }
            self.missing_timers.pop_front();
            let extra = self
                .missing
                .get(&id)
                .map_or(Duration::ZERO, |m| self.graft_hold(&m.topic));
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

    /// How much longer than `graft_timeout` the first GRAFT for an id announced in `topic`
    /// waits while the tree is settled: the recent largest lateness of the topic's eager
    /// copies behind announcements, at most `graft_timeout_settled − graft_timeout`. Where
    /// announcements never beat the tree (loopback, a LAN: IHAVEs wait for the lazy flush)
    /// nothing is put off and a broken tree is repaired after `graft_timeout`; where the
    /// shared tree trails the mesh by tens of milliseconds (a WAN), GRAFTs wait long enough
    /// for the eager copy instead of pulling a duplicate.
    fn graft_hold(&self, topic: &TopicId) -> Duration {
        let cap = self
            .config
            .graft_timeout_settled
            .saturating_sub(self.config.graft_timeout);
        self.tree(topic)
            .map_or(Duration::ZERO, |t| t.lateness.min(cap))
    }

    /// A message of `topic` we held as missing (announced at `announced_at`, GRAFT sent to
    /// `grafted` if any) arrived over session `parent`: unless it is the copy we asked for,
    /// note how late the tree brought it. The estimate is a decaying maximum: a larger
    /// lateness is taken at once, each sample otherwise forgets 1/16 of it.
    pub(super) fn note_announced_arrival(
        &mut self,
        topic: &TopicId,
        parent: SessionKey,
        grafted: Option<(SessionKey, ConnId)>,
        announced_at: Instant,
    ) {
        if grafted.is_some_and(|(k, _)| k == parent) {
            return;
        }
        let lateness = self.now - announced_at;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.lateness = lateness.max(tree.lateness * 15 / 16);
        }
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

    /// Plumtree's optimisation step, averaged over senders. We hold a message of `topic`
    /// that reached us in `hops` hops over connection `from`; session `shortcut` (lazy there)
    /// announced it with `offered` hops, so through it the message would have taken
    /// `offered + 1`. `seen_at` is when the evidence was complete (the message's arrival, or
    /// the announcement when it came first). The difference is added to the shortcut's tally
    /// against the eager link the message came by. Once `optimization_samples` messages are
    /// counted and the shortcut saved at least `optimization_threshold` hops on average, the
    /// links swap roles (see [`Node::swap_parent`]).
    ///
    /// Why the mean: the eager graph is one tree for every sender. Swapping the link to the
    /// part of the tree behind the old parent for one through the shortcut changes the
    /// distance between every node on our side and every node behind it by the shortcut's
    /// saving for that node; the messages that came over the old parent sample those nodes
    /// as senders, so a positive mean saving shortens the tree's paths on the whole (one
    /// message alone would reshape the tree for its sender, at the others' expense). A
    /// shortcut that is not behind the old parent only heard the message through us and
    /// shows a loss, so it is never chosen.
    ///
    /// The announcer's hop counts are its word: a swap first asks it to prove the latest one
    /// (claims.rs).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn consider_shortcut(
        &mut self,
        topic: &TopicId,
        shortcut: SessionKey,
        id: &MessageId,
        offered: u8,
        hops: u8,
        from: Option<ConnId>,
        seen_at: Instant,
    ) {
        let threshold = self.config.optimization_threshold;
        let needed = self.config.optimization_samples.max(1);
        let now = self.now;
        if threshold == 0 || now - seen_at > OPTIMIZATION_WINDOW {
            return;
        }
        let Some(parent_conn) = from else {
            return;
        };
        let Some(parent) = self.by_conn.get(&parent_conn).copied() else {
            return;
        };
        if parent == shortcut {
            return;
        }
        let parent_since = match self.link(topic, parent) {
            Some(p) if p.eager => p.role_since,
            _ => return,
        };
        let saved = i32::from(hops) - i32::from(offered) - 1;
        let Some(q) = self.link_mut(topic, shortcut) else {
            return;
        };
        if q.eager {
            return;
        }
        let since = q.role_since.max(parent_since);
        let slots = &mut q.shortcut_tallies;
        let slot = slots
            .iter()
            .position(|t| t.is_some_and(|t| t.parent == (parent, parent_conn)))
            // A free slot, else the oldest tally makes room.
            .or_else(|| slots.iter().position(Option::is_none))
            .or_else(|| {
                slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, t)| t.map(|t| t.since))
                    .map(|(i, _)| i)
            })
            .unwrap_or(0);
        let Some(entry) = slots.get_mut(slot) else {
            return;
        };
        let mut tally = match *entry {
            Some(t) if t.parent == (parent, parent_conn) && t.since >= since => t,
            _ => ShortcutTally {
                parent: (parent, parent_conn),
                since: now,
                saved: 0,
                samples: 0,
            },
        };
        tally.saved = tally.saved.saturating_add(saved);
        tally.samples = tally.samples.saturating_add(1);
        if tally.samples >= needed.saturating_mul(4) {
            // Keep the recent past: halve the weight of what was counted so far.
            tally.saved /= 2;
            tally.samples /= 2;
        }
        *entry = Some(tally);
        if tally.samples >= needed && tally.saved >= i32::from(threshold) * i32::from(tally.samples)
        {
            *entry = None;
            self.swap_parent(topic, shortcut, parent, *id, offered, seen_at);
        }
    }

    /// Makes `shortcut` eager in `topic` (empty GRAFT) and `parent` lazy, if both links kept
    /// their roles for `optimization_hold` (so a swap is never undone by the next message),
    /// `parent` is eager, `shortcut` lazy, and the shortcut's score lets it be eager.
    ///
    /// The evidence is complete since `seen_at`. When no other message of the topic reached
    /// this node since, the tree is taken as unchanged and `parent` is pruned at once (the
    /// shortcut had the message first, so it is not below us: the eager graph stays one
    /// tree). Otherwise messages overlap, other nodes may have reshaped the tree meanwhile
    /// and the shortcut may now hang below us: only the shortcut is made eager, and
    /// `parent` stays eager until its next duplicate, which proves another path and prunes
    /// it.
    ///
    /// `shortcut` claimed `claimed` hops for message `id` (the latest evidence): the swap is
    /// proposed and completes once the claim is proven ([`Node::complete_swap`]).
    fn swap_parent(
        &mut self,
        topic: &TopicId,
        shortcut: SessionKey,
        parent: SessionKey,
        id: MessageId,
        claimed: u8,
        seen_at: Instant,
    ) {
        let now = self.now;
        let hold = self.config.optimization_hold;
        let (Some(p), Some(q)) = (self.link(topic, parent), self.link(topic, shortcut)) else {
            return;
        };
        let settled =
            p.eager && !q.eager && now - p.role_since >= hold && now - q.role_since >= hold;
        if !settled || !self.may_be_eager(shortcut) {
            return;
        }
        let fresh = self
            .tree(topic)
            .is_some_and(|t| t.last_first_copy_at <= seen_at);
        // The hop claim is the announcer's word: it proves it first (claims.rs).
        let _proposed = self.propose_swap(topic, shortcut, parent, id, claimed, fresh);
    }

    /// A swap whose hop claim was proven (claims.rs). When the evidence was fresh, `parent`
    /// is pruned at once; otherwise it stays eager until its next duplicate (see
    /// [`Node::swap_parent`]). The shortcut was made eager, and told, when the claim was put
    /// to the test.
    pub(super) fn complete_swap(&mut self, topic: &TopicId, parent: SessionKey, fresh: bool) {
        let now = self.now;
        if fresh {
            self.prune(topic, parent);
        } else if let Some(p) = self.link_mut(topic, parent) {
            p.replaced_at = Some(now);
        }
        self.stats.tree_swaps += 1;
    }
}
