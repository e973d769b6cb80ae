//! Plumtree's tree maintenance: which duplicate makes a link lazy, how long a GRAFT is put
//! off, and the optimisation step that swaps an eager link for a lazy one whose announcements
//! were on average `optimization_threshold` hops shorter. Every change keeps the eager/lazy
//! roles symmetric (it is told to the peer with PRUNE or GRAFT), so the eager graph tends to
//! one tree shared by every sender of a topic.

use core::time::Duration;

use super::{Node, SessionKey};
use crate::peer::{ConnId, MessageId};
use crate::plumtree::YoungLinkVerdict;
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

    /// A new message `id` of `topic` was accepted (from a peer or from validation).
    pub(super) fn note_new_message(&mut self, topic: &TopicId, id: MessageId) {
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.on_new_message(now, id);
        }
    }

    /// Rebuilds every topic's tree (the rule in [`crate::rebuild`]): each link eager and new,
    /// and an empty GRAFT to its peer so the peer's end is eager too. The next message of a
    /// topic floods once and its duplicates prune the mesh down to one tree again.
    pub(super) fn rebuild_trees(&mut self) {
        let now = self.now;
        self.stats.tree_rebuilds += 1;
        let topics: Vec<TopicId> = self.trees.keys().copied().collect();
        for topic in topics {
            let links = match self.trees.get_mut(&topic) {
                Some(tree) => tree.rebuild(now),
                None => Vec::new(),
            };
            for key in links {
                self.tell_eager(&topic, key);
            }
        }
    }

    /// This node broadcast `id` in `topic`: it shapes the links that joined since the last
    /// message, as an accepted one does.
    pub(super) fn note_own_message(&mut self, topic: &TopicId, id: MessageId) {
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.shape_links(now, id);
        }
    }

    /// Session `key` pushed us a duplicate of `id`: when the tree finds the link redundant
    /// ([`crate::plumtree::Plumtree::on_duplicate`]), make it lazy on both sides (PRUNE).
    pub(super) fn prune_if_redundant(&mut self, topic: &TopicId, key: SessionKey, id: &MessageId) {
        let now = self.now;
        let redundant = self
            .trees
            .get_mut(topic)
            .is_some_and(|t| t.on_duplicate(now, key, id));
        if redundant {
            self.prune(topic, key);
        }
    }

    /// The running session the first copy of `id` came over, when it is still known.
    pub(super) fn first_copy_link(&self, id: &MessageId) -> Option<SessionKey> {
        self.cache
            .first_from(id)
            .and_then(|c| self.sessions.key_of(&c))
    }

    /// A duplicate arrived over session `key` and its first copy came over `first`: true when
    /// `key` is an established eager link and `first` a link on probation, so the
    /// duplicate is the tree's copy and the link is not pruned (counted,
    /// `tree_edges_spared`): a link on probation never displaces a tree edge.
    pub(super) fn spare_tree_edge(
        &mut self,
        topic: &TopicId,
        key: SessionKey,
        first: SessionKey,
    ) -> bool {
        let now = self.now;
        let spared = self.tree(topic).is_some_and(|t| {
            t.is_eager(key)
                && t.link_on_probation(now, key) == Some(false)
                && t.link_on_probation(now, first) == Some(true)
        });
        if spared {
            self.stats.tree_edges_spared += 1;
        }
        spared
    }

    /// A duplicate arrived over session `key` and its first copy came over `first`: when `key`
    /// is a settled tree edge (eager for `optimization_hold`, with a first copy since) and
    /// `first` a young link (a session that joined the tree less than `optimization_hold`
    /// ago and has been eager since), the young link closed a cycle with the tree: it is
    /// pruned and the tree edge kept (the duplicate does not count against it). One settled
    /// link has a young link pruned at most once per `optimization_hold`; in between the young
    /// link stays and the usual duplicate rules judge the older one (counted,
    /// `young_links_kept`), so a peer that echoes our own pushes back cannot veto every
    /// newcomer and pays for its echoes in its duplicate streak. Returns true when it pruned
    /// the young link. While the mesh is new every link is young, so the first floods shape the tree
    /// as before.
    ///
    /// Sessions that open while messages flow (the membership layer filling its active view)
    /// otherwise bring first copies over links the tree never chose and reshape it by the
    /// order copies happen to arrive in: on the 32-node loopback mesh, 30 new sessions
    /// 5 s into a run left the eager graph in pieces and then 10–11 hops deep. A young link
    /// that is a real shortcut is still taken later, by the optimisation's swap.
    pub(super) fn prune_young_link(
        &mut self,
        topic: &TopicId,
        key: SessionKey,
        first: SessionKey,
    ) -> bool {
        let now = self.now;
        let verdict = self
            .trees
            .get_mut(topic)
            .map_or(YoungLinkVerdict::NotApplicable, |t| {
                t.young_link_verdict(now, key, first)
            });
        match verdict {
            YoungLinkVerdict::NotApplicable => false,
            YoungLinkVerdict::KeepBoth => {
                // The young link stays; the duplicate counts against the older link as any
                // other (a peer echoing our pushes back pays for it in its duplicate streak).
                self.stats.young_links_kept += 1;
                false
            }
            YoungLinkVerdict::PruneYoung => {
                self.prune(topic, first);
                true
            }
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

    /// True while this node repairs its part of `topic`'s tree after a failure nearby: one of
    /// its running sessions was lost to a closed connection (`transport_closed`: a crashed or
    /// stopped peer) within `tree_settle`, and an eager link other than `key` is left in the
    /// topic (with none left, a new link is the way back into the tree and stays eager).
    /// Sessions this node closed itself, or that a peer closed with an error (a full view,
    /// say, while a mesh forms), do not count.
    pub(super) fn repairing_tree(&self, topic: &TopicId, key: SessionKey) -> bool {
        self.rebuild.failure_within_window(self.now)
            && self
                .tree(topic)
                .is_some_and(|t| t.eager().iter().any(|k| *k != key))
    }

    /// True while this node's part of `topic`'s tree is settled: it has eager peers there and
    /// none of its running sessions ended within `tree_settle` (a lost lazy peer also hints
    /// at failures nearby, whose subtrees need fast repair).
    pub(super) fn tree_settled(&self, topic: &TopicId) -> bool {
        let (now, lost_at, settle) = (self.now, self.session_lost_at, self.config.tree_settle);
        self.tree(topic)
            .is_some_and(|t| t.settled(now, lost_at, settle))
    }

    /// When the graft timers next need attention: the earliest deadline, or now when put-off
    /// grafts wait and the tree is no longer settled.
    pub(super) fn missing_due_at(&self) -> Option<Instant> {
        self.missing
            .due_at(self.now, |topic| self.tree_settled(topic))
    }

    /// Missing ids whose graft timer ran out, in deadline order; GRAFTs are put off by each
    /// topic's hold while its tree is settled ([`crate::plumtree::MissingIds::due`]).
    pub(super) fn due_missing(&mut self) -> Vec<MessageId> {
        let (now, lost_at, settle) = (self.now, self.session_lost_at, self.config.tree_settle);
        let (trees, cache) = (&self.trees, &self.cache);
        self.missing.due(
            now,
            |topic| trees.get(topic).map_or(Duration::ZERO, |t| t.graft_hold()),
            |topic| {
                trees
                    .get(topic)
                    .is_some_and(|t| t.settled(now, lost_at, settle))
            },
            |id| cache.contains(id),
        )
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

    /// Plumtree's optimisation step ([`crate::plumtree::Plumtree::tally_shortcut`]). We hold
    /// a message of `topic` that reached us in `hops` hops over connection `from`; session
    /// `shortcut` (lazy there) announced it with `offered` hops. When the tree finds the
    /// shortcut better on average, the links swap roles (see [`Node::swap_parent`]).
    ///
    /// `late_us`: how much later the shortcut's announcement arrived than our copy (µs,
    /// negative when it came first).
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
        late_us: i64,
    ) {
        let now = self.now;
        let Some(parent_conn) = from else {
            return;
        };
        let Some(parent) = self.sessions.key_of(&parent_conn) else {
            return;
        };
        let swap = self.trees.get_mut(topic).is_some_and(|t| {
            t.tally_shortcut(
                now,
                shortcut,
                (parent, parent_conn),
                offered,
                hops,
                seen_at,
                late_us,
            )
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
