//! Plumtree epidemic broadcast: eager push to α peers, batched lazy IHAVE to β peers, GRAFT
//! on a missing message after a timeout, PRUNE of redundant eager links.

use bytes::{BufMut, Bytes, BytesMut};
use core::time::Duration;

use super::defense::announcer_rank;
use super::{Node, SessionKey};
use crate::action::CloseReason;
use crate::action::{Action, Delivery};
use crate::cache::StoredMessage;
use crate::error::OverlayError;
use crate::peer::{ConnId, MessageId, PeerId};
use crate::plumtree::PlumtreeOutput;
use crate::precheck;
use crate::score::Penalty;
use crate::sessions::Sessions;
use crate::stats::RejectReason;
use crate::time::micros;
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::{self, GossipMsg, Kind, WireError, IHAVE_ENTRY_LEN, SIGNED_GOSSIP_HEADER_LEN};
use std::collections::BTreeMap;

/// Most ids tracked as "announced but missing" at once.
const MAX_MISSING: usize = 65_536;

impl Node {
    pub(super) fn on_broadcast(&mut self, request: u64, topic: TopicId, payload: Bytes) {
        let result = self.broadcast(topic, payload.clone());
        if let (Ok(id), true) = (&result, topic.is_default()) {
            let origin = self.identity.peer_id;
            // Subscribers' queues share the store's copy, like the peers' transmits.
            let payload = self.cache.newest_payload(id).unwrap_or(payload);
            self.deliver_to_clients(None, id, &origin, 0, &payload);
        }
        self.actions
            .push_back(Action::BroadcastResult { request, result });
    }

    pub(super) fn broadcast(
        &mut self,
        topic: TopicId,
        payload: Bytes,
    ) -> Result<MessageId, OverlayError> {
        if self.shutting_down {
            return Err(OverlayError::ShuttingDown);
        }
        if !self.trees.contains_key(&topic) {
            self.stats.rejected.bump(RejectReason::NotMember);
            return Err(OverlayError::NotJoined);
        }
        if payload.len() > self.config.max_message_bytes {
            self.stats.rejected.bump(RejectReason::Oversize);
            return Err(OverlayError::TooLarge);
        }
        if !self.ready {
            self.stats.rejected.bump(RejectReason::Degraded);
            return Err(OverlayError::Busy);
        }
        let origin = self.identity.peer_id;
        let nonce = rand_core::RngCore::next_u64(&mut self.rng);
        let id = MessageId::compute_in(&topic, &origin, nonce, &payload);
        let auth = self.signer.as_ref().map(|s| s.sign(&id));
        let now = self.now;
        let stored = StoredMessage {
            topic,
            origin,
            nonce,
            hops: 0,
            auth,
            payload: payload.clone(),
            from: None,
            received_at: now,
        };
        self.cache.insert(now, id, stored);
        // Every eager peer's transmit shares the store's copy (not the caller's buffer).
        let payload = self.cache.newest_payload(&id).unwrap_or(payload);
        self.stats.gossip_originated += 1;
        self.note_own_message(&topic, id);
        let msg = GossipMsg {
            id,
            origin,
            nonce,
            hops: 0,
            auth,
            payload,
        };
        self.forward(&topic, None, &msg);
        Ok(id)
    }

    pub(super) fn on_send_direct(&mut self, request: u64, peer: PeerId, payload: Bytes) {
        let result = if payload.len() > self.config.max_message_bytes {
            self.stats.rejected.bump(RejectReason::Oversize);
            Err(OverlayError::TooLarge)
        } else {
            match self.sessions.key_of_peer(&peer) {
                Some(key) if self.session(key).is_some_and(|s| s.is_running()) => {
                    match self.send_frame(key, Kind::Direct, &[&payload]) {
                        super::send::Sent::Dropped => Err(OverlayError::Busy),
                        _ => Ok(()),
                    }
                }
                _ => {
                    self.stats.rejected.bump(RejectReason::NotConnected);
                    Err(OverlayError::NotConnected)
                }
            }
        };
        self.actions
            .push_back(Action::SendResult { request, result });
    }

    /// A GOSSIP frame of `topic` arrived from session `key`, at stream offset `at`.
    pub(super) fn on_gossip(&mut self, key: SessionKey, topic: TopicId, msg: GossipMsg, at: u64) {
        let now = self.now;
        let Some(from) = self.session(key).map(|s| s.peer) else {
            return;
        };
        if self.not_member(key, &topic) {
            return;
        }
        if self.cache.contains(&msg.id) || self.validation.contains(&msg.id) {
            self.stats.gossip_duplicates += 1;
            let over_rate = self
                .session_mut(key)
                .is_some_and(|s| !s.control.duplicate.try_take(now));
            if over_rate {
                self.penalize(key, crate::score::Penalty::DuplicateFlood, 1);
            }
            // An answer to a hop claim under test (claims.rs) is no sign of redundancy.
            let settled = self.settle_claim(&topic, key, &msg.id, msg.hops);
            // The tree's copy of a message held since it came first over a link on
            // probation: forward it now along the tree, and keep the link.
            let released = self
                .trees
                .get_mut(&topic)
                .filter(|t| t.is_established_eager(now, key))
                .is_some_and(|t| t.release_held(&msg.id));
            if released {
                self.stats.tree_edges_spared += 1;
                self.forward_held(&topic, &msg.id, Some(key));
            } else if !settled {
                // Rules for a duplicate whose first copy came over a new link (probation, a
                // young link) before the usual prune rule; one lookup of that link for both.
                let first = self.first_copy_link(&msg.id).filter(|f| *f != key);
                let decided = first.is_some_and(|f| {
                    self.spare_tree_edge(&topic, key, f) || self.prune_young_link(&topic, key, f)
                });
                if !decided {
                    self.prune_if_redundant(&topic, key, &msg.id);
                }
            }
            return;
        }
        // A new id: nothing is stored, delivered or forwarded before the content checks.
        if let Err(reason) = self.check_gossip(&topic, &msg, at) {
            self.reject_invalid_gossip(key, reason);
            return;
        }
        if self.validates() {
            // The application decides first (validation.rs); the payload is here, so stop
            // waiting for it from announcers.
            if let Some(tree) = self.trees.get_mut(&topic) {
                tree.reset_streak(key);
            }
            self.remove_missing(&msg.id);
            self.hold_for_validation(key, from, topic, msg);
            return;
        }
        self.accept_gossip(key, from, topic, msg);
    }

    /// A new, valid message of `topic` from session `key` (peer `from`): store, forward,
    /// deliver. Dropped (counted) when this node left the topic meanwhile.
    pub(super) fn accept_gossip(
        &mut self,
        key: SessionKey,
        from: PeerId,
        topic: TopicId,
        msg: GossipMsg,
    ) {
        if !self.trees.contains_key(&topic) {
            self.stats.rejected.bump(RejectReason::NotMember);
            return;
        }
        let now = self.now;
        let hops = msg.hops.saturating_add(1);
        // The tree parent of this message; after application validation the session key may
        // have been reused by another peer, which is then not the parent.
        let conn = self.session(key).filter(|s| s.peer == from).map(|s| s.conn);
        let stored = StoredMessage {
            topic,
            origin: msg.origin,
            nonce: msg.nonce,
            hops,
            auth: msg.auth,
            payload: msg.payload.clone(),
            from: conn,
            received_at: now,
        };
        self.cache.insert(now, msg.id, stored);
        // Forwards and the delivery share the store's exact-size copy: the received slice
        // would pin the driver's receive block while they wait in queues.
        let payload = self.cache.newest_payload(&msg.id).unwrap_or(msg.payload);
        let msg = GossipMsg { payload, ..msg };
        self.note_first_copy(&topic, key);
        self.scores.first_delivery(from);
        // What the announcements of the id said, read once before the entry goes: the best
        // offer (and when it came), the GRAFT sent and when the id was first announced.
        let (offer, announced) = match self.missing.get(&msg.id) {
            Some(m) => (
                m.best_offer.map(|o| (o, m.best_offer_at)),
                Some((m.grafted, m.announced_at)),
            ),
            None => (None, None),
        };
        self.remove_missing(&msg.id);
        self.stats.gossip_delivered += 1;
        self.stats.delivered_hops_sum += u64::from(hops);
        self.stats.delivered_hops_max = self.stats.delivered_hops_max.max(hops);
        self.make_eager(&topic, key);
        let forwarded = GossipMsg { hops, ..msg };
        let until = now + self.config.graft_timeout;
        let held = self
            .trees
            .get_mut(&topic)
            .is_some_and(|t| t.hold(now, forwarded.id, key, until));
        if held {
            self.stats.gossip_held += 1;
            self.forward_to(&topic, Some(key), &forwarded, Some(true));
            self.arm_lazy_flush();
        } else {
            self.forward(&topic, Some(key), &forwarded);
        }
        if topic.is_default() {
            self.deliver_to_clients(
                None,
                &forwarded.id,
                &forwarded.origin,
                hops,
                &forwarded.payload,
            );
        }
        // After forwarding: a link made eager now must not get this message pushed (its
        // peer had it first and would prune the link as redundant).
        if let Some(((offered, shortcut, shortcut_conn), offered_at)) = offer {
            if self
                .session(shortcut)
                .is_some_and(|s| s.conn == shortcut_conn)
            {
                let seen_at = announced.map_or(now, |(_, at)| at);
                // The best announcement came first: it was this much earlier than our copy.
                let early = micros(now.saturating_duration_since(offered_at));
                self.consider_shortcut(
                    &topic,
                    shortcut,
                    &forwarded.id,
                    offered,
                    hops,
                    conn,
                    seen_at,
                    -early,
                );
            }
        }
        if let Some((grafted, announced_at)) = announced {
            self.note_announced_arrival(&topic, key, grafted, announced_at);
        }
        self.note_new_message(&topic, forwarded.id);
        self.actions.push_back(Action::Deliver(Box::new(Delivery {
            topic,
            id: forwarded.id,
            origin: forwarded.origin,
            from,
            hops,
            payload: forwarded.payload,
        })));
    }

    /// The content checks of a GOSSIP with a new id ([`precheck::check_content`]): the
    /// verdict the driver computed for this frame where it read it, if any, else computed here.
    fn check_gossip(
        &mut self,
        topic: &TopicId,
        msg: &GossipMsg,
        at: u64,
    ) -> Result<(), RejectReason> {
        let mode = self.config.origin_auth;
        // The driver prechecks default-topic GOSSIP frames only.
        if topic.is_default() {
            if let Some(verdict) = self.prechecked.take(at, &msg.id, mode) {
                return verdict;
            }
        }
        precheck::check_content_in(
            topic,
            mode,
            &msg.id,
            &msg.origin,
            msg.nonce,
            msg.auth.as_ref(),
            &msg.payload,
        )
    }

    /// A GOSSIP failed its content checks: count it (`Action::Rejected`), score it
    /// (`invalid_message`: with the default weight this alone bans the peer), and close the
    /// session with 400. The ban, if any, is registered as the session leaves.
    fn reject_invalid_gossip(&mut self, key: SessionKey, reason: RejectReason) {
        self.count_reject(key, reason);
        self.note_penalty(key, Penalty::InvalidMessage);
        self.close_session(key, CloseReason::Violation(OverlayError::Malformed));
    }

    /// Pushes `msg` to every eager peer of `topic` and queues an IHAVE for up to β of its lazy
    /// peers, skipping the session it came from.
    fn forward(&mut self, topic: &TopicId, from: Option<SessionKey>, msg: &GossipMsg) {
        self.forward_to(topic, from, msg, None);
    }

    /// Forwards the stored message `id` of `topic`, held since it came first over a link on
    /// probation, to the established eager links (not `except`: the link that brought the
    /// tree's copy).
    fn forward_held(&mut self, topic: &TopicId, id: &MessageId, except: Option<SessionKey>) {
        self.stats.gossip_released += 1;
        let Some(stored) = self.cache.get(id) else {
            return;
        };
        let msg = GossipMsg {
            id: *id,
            origin: stored.origin,
            nonce: stored.nonce,
            hops: stored.hops,
            auth: stored.auth,
            payload: stored.payload,
        };
        self.forward_to(topic, except, &msg, Some(false));
    }

    /// Held messages whose hold ran out: forward them along the tree (the tree's copy did
    /// not come within `graft_timeout`, so the link on probation may be the only way in).
    /// Keeps the flush timer armed while messages are held.
    fn release_due_held(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        for (topic, tree) in &mut self.trees {
            due.extend(tree.due_held(now).into_iter().map(|id| (*topic, id)));
        }
        for (topic, id) in due {
            self.forward_held(&topic, &id, None);
        }
        if self.trees.values().any(|t| t.holds_messages()) {
            self.arm_lazy_flush();
        }
    }

    /// [`Node::forward`] to some eager peers: all (`on_probation` None), only those on
    /// probation (`Some(true)`) or only established ones (`Some(false)`, and no IHAVE).
    fn forward_to(
        &mut self,
        topic: &TopicId,
        from: Option<SessionKey>,
        msg: &GossipMsg,
        on_probation: Option<bool>,
    ) {
        let now = self.now;
        let mut header = [0u8; TopicId::LEN + SIGNED_GOSSIP_HEADER_LEN];
        let (prefix, kind) = if topic.is_default() {
            (0, Kind::Gossip)
        } else {
            header[..TopicId::LEN].copy_from_slice(&topic.0);
            (TopicId::LEN, Kind::TopicGossip)
        };
        let header_len = prefix + wire::gossip_header_len(msg.auth.as_ref());
        let mut cursor = &mut header[prefix..];
        wire::put_gossip_header_with(
            &mut cursor,
            &msg.id,
            &msg.origin,
            msg.nonce,
            msg.hops,
            msg.auth.as_ref(),
        );
        let header = &header[..header_len];
        let mut i = 0;
        while let Some(key) = self.tree(topic).and_then(|t| t.eager().get(i).copied()) {
            i += 1;
            if Some(key) == from {
                continue;
            }
            if let Some(want) = on_probation {
                if self.tree(topic).and_then(|t| t.link_on_probation(now, key)) != Some(want) {
                    continue;
                }
            }
            if self.send_frame_sharing(key, kind, &[header], &msg.payload)
                != super::send::Sent::Dropped
            {
                self.stats.gossip_sent += 1;
            }
        }
        if on_probation != Some(false) {
            self.announce_lazily(topic, from, msg.id, msg.hops);
        }
    }

    /// Queues an IHAVE of `id` for up to β lazy links of `topic` (not `from`).
    fn announce_lazily(
        &mut self,
        topic: &TopicId,
        from: Option<SessionKey>,
        id: MessageId,
        hops: u8,
    ) {
        let Some(tree) = self.trees.get_mut(topic) else {
            return;
        };
        let done = tree.announce(&mut self.rng, from, id, hops);
        for _ in 0..done.overflow {
            self.stats.rejected.bump(RejectReason::IhaveOverflow);
        }
        if done.queued {
            self.arm_lazy_flush();
        }
    }

    pub(super) fn arm_lazy_flush(&mut self) {
        if self.lazy_flush_at.is_none() {
            self.lazy_flush_at = Some(self.now + self.config.lazy_flush_interval);
        }
    }

    /// Sends every pending IHAVE batch, topic by topic.
    pub(super) fn flush_lazy(&mut self) {
        self.lazy_flush_at = None;
        self.release_due_held();
        let mut body = BytesMut::new();
        let mut pending: Vec<(TopicId, SessionKey)> = Vec::new();
        for (topic, tree) in &self.trees {
            pending.extend(tree.pending_announcements().map(|k| (*topic, k)));
        }
        for (topic, key) in pending {
            if !self.session(key).is_some_and(|s| s.is_running()) {
                continue;
            }
            let Some(mut batch) = self.trees.get_mut(&topic).and_then(|t| t.take_batch(key)) else {
                continue;
            };
            // Announce only what a GRAFT can still get (the store may have dropped a
            // message since it was queued here).
            batch.retain(|(id, _)| self.cache.holds(id));
            if batch.is_empty() {
                if let Some(tree) = self.trees.get_mut(&topic) {
                    tree.return_batch(key, batch);
                }
                continue;
            }
            body.clear();
            body.reserve(TopicId::LEN + batch.len() * IHAVE_ENTRY_LEN);
            if !topic.is_default() {
                body.put_slice(&topic.0);
            }
            for (id, hops) in &batch {
                body.put_slice(&id.0);
                body.put_u8(*hops);
            }
            self.stats.ihave_sent += batch.len() as u64;
            self.send_frame(key, wire::kind_in_topic(Kind::IHave, &topic), &[&body]);
            if let Some(tree) = self.trees.get_mut(&topic) {
                // Keep the allocation for the next batch.
                tree.return_batch(key, batch);
            }
        }
    }

    pub(super) fn on_ihave(
        &mut self,
        key: SessionKey,
        topic: TopicId,
        body: &[u8],
    ) -> Result<(), WireError> {
        let ids = wire::parse_ihave(body)?;
        let Some(conn) = self.session(key).map(|s| s.conn) else {
            return Ok(());
        };
        let count = (body.len() / IHAVE_ENTRY_LEN) as u64;
        self.stats.ihave_received += count;
        if self.not_member(key, &topic) {
            return Ok(());
        }
        if !self.control_allowed(key) {
            self.stats.rejected.add(RejectReason::LowScore, count);
            return Ok(());
        }
        let now = self.now;
        let allowed = self
            .session_mut(key)
            .map_or(0, |s| s.control.ihave.take_up_to(now, count));
        // Ids over the rate are a flood whoever sends them; ids over the peer's share of the
        // missing table are ignored too, and scored unless the peer is a publisher that
        // delivers first copies (see `share_overflow_is_flood`).
        let over_rate = count - allowed;
        let mut over_share = 0u64;
        let share = self.config.ihave_max_missing_per_peer;
        // The GRAFT waits `graft_timeout` for the copy an eager peer may be pushing, and for
        // other announcers to choose from. When the announcer is our only link in the topic
        // (a node rebuilding its links after a mass failure, or a new node hearing its first
        // session's catch-up announcements), nobody else can push or announce it: waiting
        // only delays. (With other links, an eager one that is silent, say, the wait lets a
        // better announcer come forward.) Nor does it wait while the node may be cut off from
        // the tree: it lost a running session within `tree_settle` and has accepted no new
        // message of the topic since (its parent may be gone; the first message after the
        // loss is then repaired at the first announcement, and the wait resumes after it).
        let recent_loss = self
            .session_lost_at
            .filter(|lost| now.saturating_duration_since(*lost) < self.config.tree_settle);
        let wait = self.tree(&topic).is_some_and(|t| {
            let other_link = t.len() > usize::from(t.link(key).is_some());
            let cut_off = recent_loss.is_some_and(|lost| t.unchanged_since(lost));
            other_link && !cut_off
        });
        let deadline = if wait {
            now + self.graft_wait(key, &topic)
        } else {
            now
        };
        for (id, hops) in ids.take(allowed as usize) {
            if self.cache.contains(&id) {
                if let Some((our_hops, from, at)) = self.cache.arrival(&id) {
                    let late = micros(now.saturating_duration_since(at));
                    self.consider_shortcut(&topic, key, &id, hops, our_hops, from, at, late);
                }
                continue;
            }
            match self.missing.get(&id).map(|m| m.topic) {
                Some(t) if t == topic => {
                    self.add_announcer(topic, id, key, conn, now);
                    self.missing.note_offer(&id, hops, key, conn, now);
                    continue;
                }
                // Ids bind their topic: the same id announced in another topic is false.
                Some(_) => continue,
                None => {}
            }
            let owned = self.session(key).map_or(usize::MAX, |s| s.missing_owned);
            if owned >= share {
                over_share += 1;
                continue;
            }
            if self.missing.len() >= MAX_MISSING {
                self.stats.rejected.bump(RejectReason::IhaveOverflow);
                continue;
            }
            self.missing
                .insert(now, id, topic, key, conn, hops, deadline);
            if let Some(s) = self.session_mut(key) {
                s.missing_owned += 1;
            }
        }
        let ignored = over_rate + over_share;
        if ignored > 0 {
            self.stats.rejected.add(RejectReason::IhaveFlood, ignored);
        }
        let flood = if over_share > 0 && self.share_overflow_is_flood(&topic, key, over_rate) {
            ignored
        } else {
            over_rate
        };
        if flood > 0 {
            self.penalize(
                key,
                Penalty::IhaveFlood,
                u32::try_from(flood).unwrap_or(u32::MAX),
            );
        }
        Ok(())
    }

    /// How long the first GRAFT for an id of `topic` that session `key` announced waits for
    /// the tree's own copy: `graft_timeout`, plus half the announcer's round-trip estimate
    /// (its one-way delay) while the tree is settled, the extra capped at
    /// `graft_timeout_settled − graft_timeout`.
    ///
    /// Where links are slow the tree's copy often trails an announcement by more than
    /// `graft_timeout`, and a GRAFT sent before it comes pulls a duplicate and makes a link
    /// eager whose path was shorter for this one sender only; the duplicates that follow
    /// prune other edges, and the tree grows deeper window after window (1000 simulated
    /// nodes with 10–50 ms links under the eclipse attack, seed 5: last-delivery hops from
    /// 11 to 13–18 over 20 broadcasts with the plain timeout; see docs/SIMULATION.md). The
    /// announcer's delay scales the wait with the network: nothing is added on a LAN, and a
    /// peer whose round trip is unknown adds nothing. While the tree is not settled (a
    /// session ended within `tree_settle`: failures nearby, peers banned for bad copies)
    /// repairs are what the node needs, and nothing is added.
    fn graft_wait(&self, key: SessionKey, topic: &TopicId) -> Duration {
        if !self.tree_settled(topic) {
            return self.config.graft_timeout;
        }
        let cap = self
            .config
            .graft_timeout_settled
            .saturating_sub(self.config.graft_timeout);
        let rtt = self
            .session(key)
            .and_then(|s| s.liveness.rtt())
            .unwrap_or_default();
        self.config.graft_timeout + (rtt / 2).min(cap)
    }

    /// Whether announcements over session `key`'s share of the missing-id table are scored
    /// as a flood: unless the peer has given us first copies recently and broke fewer GRAFT
    /// promises than that ([`super::defense::AnnouncerRank::Delivered`]) and the same IHAVE
    /// stayed within the rate (`over_rate` ids above it).
    ///
    /// A publisher we depend on can announce more than its share in one burst: a node that
    /// was stalled (starved of CPU, a paused reader) reads seconds of a fast publisher's
    /// IHAVE batches at one instant, before any GRAFT could resolve them. Those ids are
    /// ignored (counted), not scored: scoring them banned an honest publisher whose first
    /// copies this node lived on (issue #7, "no honest node penalised"). A flooder of
    /// made-up ids delivers nothing first, so its overflow is scored as before.
    fn share_overflow_is_flood(&self, topic: &TopicId, key: SessionKey, over_rate: u64) -> bool {
        over_rate > 0
            || announcer_rank(&self.sessions, &self.scores, self.trees.get(topic), key)
                != super::defense::AnnouncerRank::Delivered
    }

    /// Adds an announcer to a missing id, keeping the list in [`super::defense::AnnouncerRank`] order
    /// (arrival order within a rank; see [`crate::plumtree::MissingIds::add_announcer`]).
    fn add_announcer(
        &mut self,
        topic: TopicId,
        id: MessageId,
        key: SessionKey,
        conn: ConnId,
        at: Instant,
    ) {
        let max = self.config.max_announcers;
        let (sessions, scores, tree) = (&self.sessions, &self.scores, self.trees.get(&topic));
        self.missing.add_announcer(&id, key, conn, at, max, |k| {
            announcer_rank(sessions, scores, tree, k)
        });
    }

    /// Forgets a missing id and gives its slot back to the peer that created it.
    pub(super) fn remove_missing(&mut self, id: &MessageId) {
        let Some(entry) = self.missing.remove(id) else {
            return;
        };
        if let Some((key, conn)) = entry.owner {
            if let Some(s) = self.session_mut(key) {
                if s.conn == conn {
                    s.missing_owned = s.missing_owned.saturating_sub(1);
                }
            }
        }
    }

    /// True when bytes from session `key` arrived after `at` (when we sent it a GRAFT).
    ///
    /// A GRAFT left unanswered by a peer we have not heard from since is no broken promise:
    /// the peer (or the link, or this node) stalled, and the failure detector judges that.
    /// Blaming it made a publisher score a daemon that was frozen for 3 s below the gossip
    /// and prune thresholds (the catch-up ids it announced as the session opened were
    /// grafted just as it froze): the publisher's only link went lazy and it ignored the
    /// daemon's GRAFTs, which then banned the publisher (issue #7, "no honest node
    /// penalised"). A silent liar is still blamed: it keeps sending (credit, heartbeats,
    /// its own IHAVE batches), just not what it promised. Whoever is blamed or not, the
    /// next announcer is asked at once.
    fn heard_since(&self, key: SessionKey, at: Instant) -> bool {
        self.session(key).is_some_and(|s| s.received_at > at)
    }

    fn session_alive(&self, key: SessionKey, conn: ConnId) -> bool {
        session_alive(&self.sessions, key, conn)
    }

    /// Missing ids whose graft timer expired: the announcer asked last (if any) broke its
    /// promise; ask the next one (batched per session).
    pub(super) fn expire_missing(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        let mut taken = std::collections::BTreeSet::new();
        for id in self.due_missing() {
            // A timer queued before a GRAFT_MISS made us ask again at once is stale; an id
            // is handled once per round.
            if self.missing.is_stale(&id, now) || !taken.insert(id) {
                continue;
            }
            due.push((id, true));
        }
        self.graft_next(due);
    }

    /// Asks the next announcer of each id (one GRAFT per session and topic). With `blame`,
    /// the announcer asked last (if any, and still connected) broke its promise.
    fn graft_next(&mut self, ids: Vec<(MessageId, bool)>) {
        let now = self.now;
        let retry = now + self.config.graft_retry;
        let mut grafts: BTreeMap<(SessionKey, TopicId), Vec<MessageId>> = BTreeMap::new();
        let mut broken: BTreeMap<SessionKey, u32> = BTreeMap::new();
        let mut done: Vec<MessageId> = Vec::new();
        for (id, blame) in ids {
            if self.cache.contains(&id) {
                done.push(id);
                continue;
            }
            let Some(entry) = self.missing.get(&id) else {
                continue;
            };
            let topic = entry.topic;
            if !self.trees.contains_key(&topic) {
                // This node left the topic.
                done.push(id);
                continue;
            }
            // Ranks change while an id waits (a peer breaks a promise for another id): ask
            // the best-ranked live announcer now, the earliest among equals.
            let (sessions, scores, tree) = (&self.sessions, &self.scores, self.trees.get(&topic));
            let live = |k: SessionKey, c: ConnId| {
                session_alive(sessions, k, c) && tree.is_some_and(|t| t.link(k).is_some())
            };
            let rank = |k: SessionKey| announcer_rank(sessions, scores, tree, k);
            let Some(next) = self.missing.ask_next(&id, now, retry, live, rank) else {
                continue;
            };
            if let Some((key, conn)) = next.asked {
                if blame && self.session_alive(key, conn) && self.heard_since(key, next.asked_at) {
                    *broken.entry(key).or_default() += 1;
                }
            }
            match next.chosen {
                Some(key) => grafts.entry((key, topic)).or_default().push(id),
                None => done.push(id),
            }
        }
        for id in &done {
            self.remove_missing(id);
        }
        for (key, n) in broken {
            self.penalize(key, Penalty::BrokenPromise, n);
        }
        for ((key, topic), ids) in grafts {
            if self.session(key).is_none() {
                continue;
            }
            self.make_eager(&topic, key);
            let mut body = BytesMut::with_capacity(TopicId::LEN + ids.len() * MessageId::LEN);
            if !topic.is_default() {
                body.put_slice(&topic.0);
            }
            for id in &ids {
                body.put_slice(&id.0);
            }
            self.stats.grafts_sent += 1;
            self.send_frame(key, wire::kind_in_topic(Kind::Graft, &topic), &[&body]);
        }
    }

    /// A GRAFT_MISS from session `key`: the peer no longer holds these ids. For each id we
    /// asked this session for, ask the next announcer at once; nobody is scored (an answer
    /// within `graft_miss_grace` of the peer's IHAVE is counted). An id asked for by a
    /// hop-claim proposal ends the proposal (claims.rs), also unscored. Ids we did not ask it
    /// for are ignored (counted as unsolicited).
    pub(super) fn on_graft_miss(
        &mut self,
        key: SessionKey,
        topic: TopicId,
        body: &[u8],
    ) -> Result<(), WireError> {
        let ids = wire::parse_graft_miss(body)?;
        let Some(conn) = self.session(key).map(|s| s.conn) else {
            return Ok(());
        };
        let now = self.now;
        let grace = self.config.graft_miss_grace;
        let mut next = Vec::new();
        let mut taken = std::collections::BTreeSet::new();
        for id in ids {
            match self.missing.get(&id) {
                Some(m)
                    if m.topic == topic && m.grafted == Some((key, conn)) && taken.insert(id) =>
                {
                    self.stats.graft_misses_received += 1;
                    // Counted, not scored: a store's hold is bounded (2 × `store_bytes`), so an
                    // honest node under a burst drops young messages too (the soak had a
                    // publisher score an honest daemon out of its tree for a dozen of them),
                    // and a peer that answers "gone" costs us only one round trip: the next
                    // announcer is asked at once.
                    if now < m.grafted_announced_at + grace {
                        self.stats.graft_misses_too_soon += 1;
                    }
                    next.push((id, false));
                }
                // The GRAFT of a hop-claim proposal (claims.rs) asked for it too.
                _ => match self.claim_missed(&topic, key, conn, &id) {
                    Some(claimed_at) if taken.insert(id) => {
                        self.stats.graft_misses_received += 1;
                        if now < claimed_at + grace {
                            self.stats.graft_misses_too_soon += 1;
                        }
                    }
                    _ => self.stats.graft_misses_unsolicited += 1,
                },
            }
        }
        self.graft_next(next);
        Ok(())
    }

    pub(super) fn on_graft(
        &mut self,
        key: SessionKey,
        topic: TopicId,
        body: &[u8],
    ) -> Result<(), WireError> {
        let mut ids: Vec<MessageId> = wire::parse_graft(body)?.collect();
        self.stats.grafts_received += 1;
        if self.not_member(key, &topic) {
            return Ok(());
        }
        if !self.control_allowed(key) {
            self.stats
                .rejected
                .add(RejectReason::LowScore, ids.len() as u64);
            return Ok(());
        }
        let now = self.now;
        let total = ids.len();
        // Deduplicate without reordering the first occurrences.
        let mut seen = std::collections::BTreeSet::new();
        ids.retain(|id| seen.insert(*id));
        let mut flood = total - ids.len();
        if ids.len() > self.config.graft_max_ids {
            flood += ids.len() - self.config.graft_max_ids;
            ids.truncate(self.config.graft_max_ids);
        }
        let pruned_at = self.link(&topic, key).and_then(|l| l.pruned_at);
        let allowed = match self.session_mut(key) {
            Some(s) => s.control.graft.take_up_to(now, ids.len() as u64) as usize,
            None => return Ok(()),
        };
        flood += ids.len() - allowed;
        ids.truncate(allowed);
        self.stats
            .rejected
            .add(RejectReason::GraftFlood, flood as u64);
        if pruned_at.is_some_and(|t| now - t < self.config.graft_after_prune) {
            flood += 1;
        }
        self.make_eager(&topic, key);
        let (prefix, kind) = if topic.is_default() {
            (0, Kind::Gossip)
        } else {
            (TopicId::LEN, Kind::TopicGossip)
        };
        let mut gone: Vec<MessageId> = Vec::new();
        for id in ids {
            let Some(stored) = self.cache.get(&id) else {
                if self.cache.contains(&id) {
                    // Seen, no longer held.
                    gone.push(id);
                } else {
                    // Never seen here, so never announced by us.
                    flood += 1;
                }
                continue;
            };
            if stored.topic != topic {
                // Never announced by us in that topic.
                flood += 1;
                continue;
            }
            let mut header = [0u8; TopicId::LEN + SIGNED_GOSSIP_HEADER_LEN];
            header[..prefix].copy_from_slice(&topic.0[..prefix]);
            let header_len = prefix + wire::gossip_header_len(stored.auth.as_ref());
            let mut cursor = &mut header[prefix..];
            wire::put_gossip_header_with(
                &mut cursor,
                &id,
                &stored.origin,
                stored.nonce,
                stored.hops,
                stored.auth.as_ref(),
            );
            let header = &header[..header_len];
            if self.send_frame_sharing(key, kind, &[header], &stored.payload)
                != super::send::Sent::Dropped
            {
                self.stats.gossip_sent += 1;
            }
        }
        if !gone.is_empty() && self.session(key).is_some_and(|s| s.graft_miss) {
            // Say so, and the grafter asks its next announcer now instead of after
            // `graft_retry` (and scores no broken promise for an honest eviction).
            let mut body = BytesMut::with_capacity(TopicId::LEN + gone.len() * MessageId::LEN);
            if !topic.is_default() {
                body.put_slice(&topic.0);
            }
            for id in &gone {
                body.put_slice(&id.0);
            }
            let sent = self.send_frame(key, wire::kind_in_topic(Kind::GraftMiss, &topic), &[&body]);
            if !matches!(sent, crate::session::Sent::Dropped) {
                self.stats.graft_misses_sent += gone.len() as u64;
            }
        }
        self.penalize(
            key,
            Penalty::GraftFlood,
            u32::try_from(flood).unwrap_or(u32::MAX),
        );
        Ok(())
    }

    pub(super) fn on_prune(&mut self, key: SessionKey, topic: TopicId) {
        self.stats.prunes_received += 1;
        if self.not_member(key, &topic) {
            return;
        }
        self.make_lazy(&topic, key);
    }

    /// Moves a session's link in `topic` to the eager set (unless its score keeps it lazy).
    pub(super) fn make_eager(&mut self, topic: &TopicId, key: SessionKey) {
        if !self.may_be_eager(key) || !self.session(key).is_some_and(|s| s.is_running()) {
            return;
        }
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.make_eager(now, key);
        }
    }

    /// Moves a session's link in `topic` to the lazy set.
    pub(super) fn make_lazy(&mut self, topic: &TopicId, key: SessionKey) {
        if !self.session(key).is_some_and(|s| s.is_running()) {
            return;
        }
        let now = self.now;
        if let Some(tree) = self.trees.get_mut(topic) {
            tree.make_lazy(now, key);
        }
    }

    /// Keeps at least α eager peers in `topic` after losing one: the tree promotes random
    /// lazy peers ([`crate::plumtree::Plumtree::refill_eager`]), each told with an empty
    /// GRAFT. Peers whose score keeps them lazy are never promoted.
    pub(super) fn refill_eager(&mut self, topic: &TopicId) {
        let now = self.now;
        let Some(tree) = self.trees.get_mut(topic) else {
            return;
        };
        let (sessions, scores) = (&self.sessions, &self.scores);
        let may_be_eager = |key: SessionKey| {
            sessions.get(key).is_some_and(|s| {
                s.is_running() && scores.standing(&s.peer) < crate::score::Standing::Lazy
            })
        };
        let _promoted = tree.refill_eager(now, &mut self.rng, may_be_eager);
        self.drain_tree(topic);
    }

    /// Carries out the decisions `topic`'s tree queued, in the order it made them.
    pub(super) fn drain_tree(&mut self, topic: &TopicId) {
        while let Some(output) = self.trees.get_mut(topic).and_then(|t| t.poll_output()) {
            match output {
                PlumtreeOutput::TellEager(key) => self.tell_eager(topic, key),
            }
        }
    }

    /// Makes a lazy session eager on our own initiative (a new session while we have fewer
    /// than α eager peers, or a lazy peer promoted to replace a lost eager one) and tells the
    /// peer with an empty GRAFT, so it pushes to us too.
    ///
    /// Links are then eager on both ends or on neither: a node never believes it has eager
    /// peers that in fact only announce to it (β-sampled IHAVE). Without this, a node whose
    /// unilateral eager peers all treat it as lazy learns ids only from the announcers that
    /// sampled it, which under an eclipse attack can all be silent attackers (issue #7).
    /// The peer prunes the link as usual if it turns out redundant.
    pub(super) fn promote_to_eager(&mut self, topic: &TopicId, key: SessionKey) {
        let was_eager = self.link(topic, key).is_some_and(|l| l.eager);
        self.make_eager(topic, key);
        if !was_eager && self.link(topic, key).is_some_and(|l| l.eager) {
            self.tell_eager(topic, key);
        }
    }

    /// Tells the peer of session `key` that the link is eager on our side in `topic` (an
    /// empty GRAFT: push to us; no id asked for).
    pub(super) fn tell_eager(&mut self, topic: &TopicId, key: SessionKey) {
        self.stats.grafts_sent += 1;
        let kind = wire::kind_in_topic(Kind::Graft, topic);
        let body: &[u8] = if topic.is_default() { &[] } else { &topic.0 };
        self.send_frame(key, kind, &[body]);
    }
}

/// True when session `key` is still the running session on `conn`.
fn session_alive(sessions: &Sessions, key: SessionKey, conn: ConnId) -> bool {
    sessions
        .get(key)
        .is_some_and(|s| s.conn == conn && s.is_running())
}
