//! Topics: one Plumtree broadcast tree per topic over the shared sessions.
//!
//! A node is always in the default topic and joins or leaves others (`Input::Join`,
//! `Input::Leave`, at most `max_topics` in all). It tells every running peer its complete set
//! of topics with a TOPICS message (at session start when it has any besides the default, and
//! whenever the set changes). A session takes part in a topic's tree — a link of that topic's
//! [`Plumtree`] machine — only while both ends are in the topic (and the peer's token covers
//! it), so a topic's payloads, announcements and grafts only travel between members.

use bytes::BytesMut;

use super::{Node, SessionKey};
use crate::action::{Action, CloseReason, NeighborChange, NeighborDownReason};
use crate::error::OverlayError;
use crate::peer::{MessageId, PeerId};
use crate::plumtree::{Link, Params, Plumtree};
use crate::stats::RejectReason;
use crate::topic::TopicId;
use crate::wire::{self, Kind};

/// Peers asked at once for members of an under-linked topic.
const TOPIC_PEERS_ASKED: usize = 2;
/// Most entries of a TOPIC_PEERS answer.
const TOPIC_PEERS_MAX: usize = 16;

impl Node {
    /// The tree of `topic`, when this node is in it.
    pub(super) fn tree(&self, topic: &TopicId) -> Option<&Plumtree> {
        self.trees.get(topic)
    }

    /// Session `key`'s link in `topic`, when both ends are in it.
    pub(super) fn link(&self, topic: &TopicId, key: SessionKey) -> Option<&Link> {
        self.trees.get(topic).and_then(|t| t.link(key))
    }

    /// The topics this node is in, in byte order (the default topic included).
    pub fn topics(&self) -> Vec<TopicId> {
        self.trees.keys().copied().collect()
    }

    /// True when this node is in `topic`.
    pub fn is_joined(&self, topic: &TopicId) -> bool {
        self.trees.contains_key(topic)
    }

    /// True when the peer of session `key` may take part in `topic`: it announced the topic
    /// (every peer is in the default one) and its token covers it.
    fn peer_in_topic(&self, key: SessionKey, topic: &TopicId) -> bool {
        self.session(key).is_some_and(|s| {
            s.is_running()
                && s.topic_allowed(topic)
                && (topic.is_default() || s.peer_topics.binary_search(topic).is_ok())
        })
    }

    pub(super) fn on_join(&mut self, topic: TopicId) {
        let result = self.join(topic);
        self.actions.push_back(Action::Joined { topic, result });
    }

    pub(super) fn on_leave(&mut self, topic: TopicId) {
        let result = self.leave(topic);
        self.actions.push_back(Action::Left { topic, result });
    }

    /// Joins `topic`: `Ok(true)` when newly joined, `Ok(false)` when already in it.
    fn join(&mut self, topic: TopicId) -> Result<bool, OverlayError> {
        if self.trees.contains_key(&topic) {
            return Ok(false);
        }
        if self.shutting_down {
            return Err(OverlayError::ShuttingDown);
        }
        if self.trees.len() >= self.config.max_topics {
            self.stats.rejected.bump(RejectReason::TopicLimit);
            return Err(OverlayError::TooManyTopics);
        }
        self.trees
            .insert(topic, Plumtree::new(Params::of(&self.config)));
        let members: Vec<SessionKey> = self
            .live_sessions()
            .map(|(key, _)| key)
            .filter(|key| self.peer_in_topic(*key, &topic))
            .collect();
        for key in members {
            self.add_link(topic, key);
        }
        self.announce_topics();
        Ok(true)
    }

    /// Leaves `topic`: `Ok(true)` when this node was in it. The default topic cannot be left
    /// (`NotJoined`).
    fn leave(&mut self, topic: TopicId) -> Result<bool, OverlayError> {
        if topic.is_default() {
            return Err(OverlayError::NotJoined);
        }
        if self.trees.remove(&topic).is_none() {
            return Ok(false);
        }
        // Missing ids of the topic are dropped when their graft timer runs out.
        self.announce_topics();
        Ok(true)
    }

    /// Sends this node's topic set to every running session.
    fn announce_topics(&mut self) {
        let running: Vec<SessionKey> = self
            .live_sessions()
            .filter(|(_, s)| s.is_running())
            .map(|(k, _)| k)
            .collect();
        let body = self.topics_body();
        for key in running {
            self.send_frame(key, Kind::Topics, &[&body]);
        }
    }

    /// A TOPICS body naming every topic this node is in but the default one.
    fn topics_body(&self) -> BytesMut {
        let named: Vec<&TopicId> = self.trees.keys().filter(|t| !t.is_default()).collect();
        let mut body = BytesMut::with_capacity(2 + named.len() * TopicId::LEN);
        wire::put_topics(&mut body, named.into_iter());
        body
    }

    /// A session opened: it takes part in the default topic (if its token allows) and learns
    /// our other topics.
    pub(super) fn open_topics(&mut self, key: SessionKey) {
        if self.peer_in_topic(key, &TopicId::DEFAULT) {
            self.add_link(TopicId::DEFAULT, key);
        }
        if self.trees.len() > 1 {
            let body = self.topics_body();
            self.send_frame(key, Kind::Topics, &[&body]);
        }
    }

    /// The peer of session `key` announced its topics.
    pub(super) fn on_topics(
        &mut self,
        key: SessionKey,
        body: &[u8],
    ) -> Result<(), wire::WireError> {
        let announced = wire::parse_topics(body, self.config.max_peer_topics)?;
        let Some(s) = self.session_mut(key) else {
            return Ok(());
        };
        s.peer_topics = announced;
        let joined: Vec<TopicId> = self.trees.keys().copied().collect();
        for topic in joined {
            let member = self.peer_in_topic(key, &topic);
            let linked = self.link(&topic, key).is_some();
            if member && !linked {
                self.add_link(topic, key);
            } else if !member && linked {
                self.remove_link(topic, key);
            }
        }
        Ok(())
    }

    /// Puts session `key` into `topic`'s tree: eager, as in textbook Plumtree (unless the
    /// peer's score keeps it lazy). The peer does the same on its side, so the link is eager
    /// on both ends without a GRAFT. The next message crosses the link both ways and a
    /// duplicate prunes it unless it is the faster path, so the first messages over a new
    /// mesh flood it and leave the first sender's shortest-path tree (shallow, and chosen by
    /// latency); a cap on eager links at open left one-sided links and a deep tree. The new
    /// link is told the ids of the topic this node holds most recently (catch-up after churn).
    ///
    /// Except while the node repairs its tree ([`Node::repairing_tree`]): a link that opens
    /// then is pruned at once (PRUNE, so the peer's end is lazy too), and the repair is left
    /// to the tree's own rules (GRAFT at the first announcement, a promotion where no eager
    /// link is left) and to the rebuild that follows a failure nearby ([`crate::rebuild`]).
    /// The sessions a node opens to refill its view after a mass failure would otherwise push
    /// the next message over paths the repaired tree already covers: after a 50 % kill of
    /// 1000 simulated nodes, the first broadcast's RMR was 2.6 with them eager and 1.05 lazy
    /// (docs/SIMULATION.md, "Session 13").
    fn add_link(&mut self, topic: TopicId, key: SessionKey) {
        let catch_up = self.config.catch_up_ids;
        let now = self.now;
        let eager = self.may_be_eager(key);
        let probation = self.new_link_on_probation();
        let recent: Vec<(MessageId, u8)> = self.cache.recent(topic, catch_up).collect();
        let Some(peer) = self.session(key).map(|s| s.peer) else {
            return;
        };
        let Some(tree) = self.trees.get_mut(&topic) else {
            return;
        };
        if tree.link(key).is_some() {
            return;
        }
        if tree.add_link_on_probation(now, key, eager, &recent, probation) {
            self.arm_lazy_flush();
        }
        if eager && self.repairing_tree(&topic, key) {
            self.stats.links_joined_lazy += 1;
            self.prune(&topic, key);
        }
        self.actions.push_back(Action::TopicNeighbor {
            topic,
            peer,
            change: NeighborChange::Up,
        });
    }

    /// The peer of session `key` left `topic`: takes the session out of the topic's tree and
    /// keeps α eager links there.
    fn remove_link(&mut self, topic: TopicId, key: SessionKey) {
        let Some(peer) = self.session(key).map(|s| s.peer) else {
            return;
        };
        let Some(tree) = self.trees.get_mut(&topic) else {
            return;
        };
        let linked = tree.link(key).is_some();
        let was_eager = tree.remove(key);
        if linked {
            self.actions.push_back(Action::TopicNeighbor {
                topic,
                peer,
                change: NeighborChange::Down(NeighborDownReason::Left),
            });
        }
        if was_eager {
            self.refill_eager(&topic);
        }
    }

    /// Makes session `key` lazy in every topic (its score keeps it lazy).
    pub(super) fn make_lazy_everywhere(&mut self, key: SessionKey) {
        for topic in self.topics() {
            self.make_lazy(&topic, key);
        }
    }

    /// True when a link opened now goes on probation (`link_probation`): this node banned a
    /// peer within `link_probation_after_ban` (zero: always).
    fn new_link_on_probation(&self) -> bool {
        let window = self.config.link_probation_after_ban;
        window.is_zero()
            || self
                .scores
                .last_ban_at()
                .is_some_and(|t| self.now - t < window)
    }

    /// True when session `key` gave this node the first copy of some message in some topic
    /// (its link fed this node's part of a tree).
    pub(super) fn fed_any_tree(&self, key: SessionKey) -> bool {
        self.trees.values().any(|t| t.gave_first_copy(key))
    }

    /// The session `key` with `peer` is gone (`reason`): takes it out of every tree, telling
    /// each topic it was linked in that the peer is no longer a neighbour there; returns the
    /// topics it was eager in.
    pub(super) fn remove_from_trees(
        &mut self,
        key: SessionKey,
        peer: PeerId,
        reason: CloseReason,
    ) -> Vec<TopicId> {
        let mut eager_in = Vec::new();
        for (topic, tree) in &mut self.trees {
            let linked = tree.link(key).is_some();
            if tree.remove(key) {
                eager_in.push(*topic);
            }
            if linked {
                self.actions.push_back(Action::TopicNeighbor {
                    topic: *topic,
                    peer,
                    change: NeighborChange::Down(NeighborDownReason::Closed(reason)),
                });
            }
        }
        eager_in
    }

    /// For every topic (but the default one) with fewer than `topic_min_links` links: at
    /// most every `shuffle_interval`, ask up to two running peers for members of the topic
    /// they know (TOPIC_PEERS with no entry). Called from the maintenance tick.
    pub(super) fn seek_topic_peers(&mut self) {
        let min = self.config.topic_min_links;
        if min == 0 || self.shutting_down {
            return;
        }
        let now = self.now;
        let every = self.config.shuffle_interval;
        let wanting: Vec<TopicId> = self
            .trees
            .iter()
            .filter(|(t, tree)| {
                !t.is_default()
                    && tree.len() < min
                    && tree.asked_at.is_none_or(|at| now - at >= every)
            })
            .map(|(t, _)| *t)
            .collect();
        for topic in wanting {
            let mut asked = 0;
            let mut candidates: Vec<SessionKey> = self
                .live_sessions()
                .filter(|(_, s)| s.is_running() && s.topic_peers_pending.is_none())
                .map(|(k, _)| k)
                .collect();
            while asked < TOPIC_PEERS_ASKED && !candidates.is_empty() {
                let pick = self.random_below(candidates.len());
                let key = candidates.swap_remove(pick);
                let mut body = BytesMut::with_capacity(TopicId::LEN + 1);
                body.extend_from_slice(&topic.0);
                wire::put_shuffle(&mut body, &[]);
                if self.send_frame(key, Kind::TopicPeers, &[&body]) != super::send::Sent::Dropped {
                    if let Some(s) = self.session_mut(key) {
                        s.topic_peers_pending = Some(topic);
                    }
                    asked += 1;
                }
            }
            if let Some(tree) = self.trees.get_mut(&topic) {
                tree.asked_at = Some(now);
            }
        }
    }

    /// TOPIC_PEERS from session `key`. A request (no entry) is answered with up to 16
    /// running peers that announced the topic (and this node, when it is in it), within the
    /// peer's SHUFFLE rate; an answer is taken only when we asked that session for that
    /// topic: its entries are checked like SHUFFLE entries, learnt, and dialed while the
    /// topic has fewer than `topic_min_links` links. Requests over the rate and answers we
    /// did not ask for are ignored and scored (`shuffle_flood`).
    pub(super) fn on_topic_peers(
        &mut self,
        key: SessionKey,
        topic: TopicId,
        body: &[u8],
    ) -> Result<(), wire::WireError> {
        let entries = wire::parse_shuffle(Kind::TopicPeers, body)?;
        let now = self.now;
        let Some(s) = self.session_mut(key) else {
            return Ok(());
        };
        let from = s.remote;
        let welcome = if entries.is_empty() {
            s.control.shuffle.try_take(now)
        } else if s.topic_peers_pending == Some(topic) {
            s.topic_peers_pending = None;
            true
        } else {
            false
        };
        if !welcome {
            self.reject_shuffle_flood(key);
            return Ok(());
        }
        if entries.is_empty() {
            self.answer_topic_peers(key, topic);
            return Ok(());
        }
        let fresh: Vec<core::net::SocketAddr> = self
            .learn_hints(key, &from, entries)
            .into_iter()
            .filter(|e| e.peer != self.identity.peer_id && !self.sessions.has_peer(&e.peer))
            .map(|e| e.addr)
            .collect();
        let links = self.tree(&topic).map_or(usize::MAX, |t| t.len());
        let want = self.config.topic_min_links.saturating_sub(links);
        for addr in fresh.into_iter().take(want) {
            let _dialing = self.dial_for_topic(addr);
        }
        Ok(())
    }

    fn answer_topic_peers(&mut self, key: SessionKey, topic: TopicId) {
        let mut entries = Vec::new();
        if self.trees.contains_key(&topic) {
            if let Some(addr) = self.identity.listen_addr {
                entries.push(wire::PeerEntry {
                    peer: self.identity.peer_id,
                    addr,
                });
            }
        }
        for (k, s) in self.live_sessions() {
            if entries.len() >= TOPIC_PEERS_MAX {
                break;
            }
            if k == key || !s.is_running() || s.peer_topics.binary_search(&topic).is_err() {
                continue;
            }
            if let Some(addr) = s.listen {
                entries.push(wire::PeerEntry { peer: s.peer, addr });
            }
        }
        if entries.is_empty() {
            return;
        }
        let mut body = BytesMut::with_capacity(TopicId::LEN + 1 + entries.len() * 51);
        body.extend_from_slice(&topic.0);
        wire::put_shuffle(&mut body, &entries);
        self.send_frame(key, Kind::TopicPeers, &[&body]);
    }

    /// A topic frame from a session that is not a member there: counted and ignored (after a
    /// leave, a peer may still send until our TOPICS reaches it).
    pub(super) fn not_member(&mut self, key: SessionKey, topic: &TopicId) -> bool {
        if self.link(topic, key).is_some() {
            return false;
        }
        self.stats.rejected.bump(RejectReason::NotMember);
        true
    }
}
