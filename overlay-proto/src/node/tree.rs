//! Plumtree's tree maintenance: which duplicate makes a link lazy, how long a GRAFT is put
//! off, and the optimisation step that swaps an eager link for a lazy one whose announcements
//! were on average `optimization_threshold` hops shorter. Every change keeps the eager/lazy
//! roles symmetric (it is told to the peer with PRUNE or GRAFT), so the eager graph tends to
//! one tree shared by every sender of a topic.

use core::time::Duration;

use super::{Node, SessionKey};
use crate::peer::{ConnId, MessageId};
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::{self, Kind};

impl Node {
    /// Session `key` gave us a message of `topic` first: the link is a tree edge for it.
    pub(super) fn note_first_copy(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.on_first_copy(now, key);
        }
    }

    /// A new message of `topic` was accepted (from a peer or from validation).
    pub(super) fn note_new_message(&mut self, topic: &TopicId) {
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.on_new_message(now);
        }
    }

    /// Session `key` pushed us a duplicate: when the tree finds the link redundant
    /// ([`crate::plumtree::Plumtree::on_duplicate`]), make it lazy on both sides (PRUNE).
    pub(super) fn prune_if_redundant(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        let redundant = self
            .trees
            .get_mut(topic)
            .is_some_and(|t| t.on_duplicate(now, key));
        if redundant {
            self.prune(topic, key);
        }
    }

    /// Makes `key` lazy in `topic` and tells it with PRUNE.
    pub(super) fn prune(&mut self, topic: &TopicId, key: SessionKey) {
        let now = self.now;
        let running = self.session(key).is_some_and(|s| s.is_running());
        if let Some(tree) = self.trees.get_mut(topic) {
            if running {
                tree.prune(now, key);
            }
        }
        self.stats.prunes_sent += 1;
        let kind = wire::kind_in_topic(Kind::Prune, topic);
        let body: &[u8] = if topic.is_default() { &[] } else { &topic.0 };
        self.send_frame(key, kind, &[body]);
    }

    /// True while this node's part of `topic`'s tree is settled: it has eager peers there and
    /// none of its running sessions ended within `tree_settle` (a lost lazy peer also hints
    /// at failures nearby, whose subtrees need fast repair).
    fn tree_settled(&self, topic: &TopicId) -> bool {
        let (now, lost_at, settle) = (self.now, self.session_lost_at, self.config.tree_settle);
        self.tree(topic)
            .is_some_and(|t| t.settled(now, lost_at, settle))
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
    /// GRAFT hold ([`crate::plumtree::Plumtree::graft_hold`]) while the tree is settled: then the message is
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
                .and_then(|m| self.tree(&m.topic))
                .map_or(Duration::ZERO, |t| t.graft_hold());
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
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.note_announced_arrival(now, parent, grafted.map(|(k, _)| k), announced_at);
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

    /// Plumtree's optimisation step ([`crate::plumtree::Plumtree::tally_shortcut`]). We hold
    /// a message of `topic` that reached us in `hops` hops over connection `from`; session
    /// `shortcut` (lazy there) announced it with `offered` hops. When the tree finds the
    /// shortcut better on average, the links swap roles (see [`Node::swap_parent`]).
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
        let now = self.now;
        let Some(parent_conn) = from else {
            return;
        };
        let Some(parent) = self.by_conn.get(&parent_conn).copied() else {
            return;
        };
        let swap = self.trees.get_mut(topic).is_some_and(|t| {
            t.tally_shortcut(now, shortcut, (parent, parent_conn), offered, hops, seen_at)
        });
        if swap {
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
        let ready = self
            .tree(topic)
            .is_some_and(|t| t.swap_ready(now, shortcut, parent));
        if !ready || !self.may_be_eager(shortcut) {
            return;
        }
        let fresh = self.tree(topic).is_some_and(|t| t.unchanged_since(seen_at));
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
        } else if let Some(tree) = self.trees.get_mut(topic) {
            tree.mark_replaced(now, parent);
        }
        self.stats.tree_swaps += 1;
    }
}
