//! Latency-aware membership ([`crate::optimizer`]): the node's side of a probe round: which
//! links may be dropped, whom to probe, judging the probe when its connection is up, and the
//! swap when it runs.
//!
//! A link may be dropped (`droppable_links`) only when it runs, is older than
//! [`MIN_LINK_AGE`], has a round-trip estimate (one the peer made untrustworthy by answering
//! a PING we never sent ranks slowest), and carries no tree edge in any topic it is in (lazy,
//! or eager since it joined with no message since: before the first broadcast every link is
//! eager and none is a tree edge yet), each of those topics keeping
//! more than `topic_min_links` links. So no node's tree parent is ever closed; and since
//! eager/lazy roles are symmetric, the peer keeps its own tree links (a node whose only link
//! is lazy does not exist: a lone link is made eager), so a swap never disconnects it. The
//! peer refills its active view from its passive list as after any lost session.
//!
//! A candidate must be one the score allows to gossip (`Standing::Good`); its round trip is
//! measured by our own dial (TCP + TLS), which a peer cannot shorten by answering early.

use core::time::Duration;

use super::{Node, SessionKey};
use crate::action::CloseReason;
use crate::optimizer::Judgement;
use crate::peer::Direction;
use crate::score::Standing;

/// A link this young is never dropped (its roles and round trip are still settling).
pub(super) const MIN_LINK_AGE: Duration = Duration::from_secs(2);

impl Node {
    /// Links that may be dropped for a faster one, with their round trips.
    fn droppable_links(&self, except: Option<SessionKey>) -> Vec<(SessionKey, Duration)> {
        let now = self.now;
        let min_links = self.config.topic_min_links;
        self.live_sessions()
            .filter(|(key, s)| {
                Some(*key) != except
                    && s.is_running()
                    && now.saturating_duration_since(s.opened_at) >= MIN_LINK_AGE
            })
            .filter(|(key, _)| {
                self.trees.iter().all(|(topic, t)| {
                    t.link(*key).is_none()
                        || (t.carries_no_edge(*key) && (topic.is_default() || t.len() > min_links))
                })
            })
            .filter_map(|(key, s)| s.liveness.rtt().map(|rtt| (key, rtt)))
            .collect()
    }

    /// The slowest droppable link (ties: the lowest key, so the choice is deterministic).
    fn slowest_droppable(&self, except: Option<SessionKey>) -> Option<(SessionKey, Duration)> {
        self.droppable_links(except)
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    /// On the maintenance tick: ends a round whose probe vanished, and starts a round when
    /// one is due, the active view is full and a dial slot is free.
    pub(super) fn optimize_links(&mut self) {
        if self.shutting_down {
            return;
        }
        let now = self.now;
        let optimizer = self.membership.optimizer();
        let alive = optimizer
            .probe_dial()
            .zip(optimizer.probe_addr())
            .is_some_and(|(dial, addr)| {
                self.membership.dial_to(&addr) == Some(dial)
                    || self.live_sessions().any(|(_, s)| s.dial == Some(dial))
            });
        self.membership.optimizer_mut().check_probe(now, |_| alive);
        if !self.membership.optimizer_mut().due(now) {
            return;
        }
        if self.membership_count() < self.config.active_target
            || self.membership_count() >= self.config.max_sessions
            || self.membership.dial_slots_full(self.membership_count())
        {
            return;
        }
        let worst = self.slowest_droppable(None).map(|(_, rtt)| rtt);
        if !worst.is_some_and(crate::optimizer::LinkOptimizer::worth_probing) {
            // No link may be dropped, none has a round trip yet (no decision), or the slowest
            // is already too fast for any swap to matter (a LAN).
            self.membership.optimizer_mut().skip(now);
            return;
        }
        let (scores, sessions, membership) = (&self.scores, &self.sessions, &self.membership);
        let usable = |a: &core::net::SocketAddr, k: &crate::passive::KnownPeer| {
            k.peer.is_some_and(|p| {
                !sessions.has_peer(&p)
                    && scores.standing(&p) == Standing::Good
                    && !scores.is_peer_banned(&p, now)
            }) && !scores.is_addr_banned(a, now)
                && !membership.is_dialing(a)
                && !sessions.iter().any(|(_, s)| s.reaches(*a))
        };
        let Some(addr) = membership.choose_probe(now, &mut self.rng, usable) else {
            self.membership.optimizer_mut().skip(now);
            return;
        };
        let dial = self.start_dial(addr);
        self.stats.link_probes += 1;
        self.membership.optimizer_mut().start_probe(now, dial, addr);
    }

    /// The connection of our dial `key` is up (TLS done, handshake not started): when it is the
    /// round's probe and not clearly faster than the slowest droppable link (or its peer may not
    /// be preferred, or already has a session with us), it is closed here and true is returned.
    /// A probe an operator's dial has joined meanwhile is an ordinary dial from then on.
    pub(super) fn reject_probe(&mut self, key: SessionKey) -> bool {
        let Some(s) = self.session(key) else {
            return false;
        };
        let (Some(dial), Some(rtt)) = (s.dial, s.liveness.rtt()) else {
            return false;
        };
        if s.direction != Direction::Outbound
            || self.membership.optimizer().probe_dial() != Some(dial)
        {
            return false;
        }
        let (peer, asked_for) = (s.peer, !s.dial_requests.is_empty());
        let now = self.now;
        if asked_for {
            // Someone asked for this peer: keep the connection, end the round unswapped.
            self.membership.optimizer_mut().finish(now, false);
            return false;
        }
        if self.sessions.key_of_peer(&peer).is_some_and(|k| k != key) {
            // The peer dialed us while the probe was on its way: the running session stays.
            self.membership.optimizer_mut().finish(now, false);
            self.stats.link_probes_rejected += 1;
            self.close_session(key, CloseReason::Optimized);
            return true;
        }
        let eligible = self.scores.standing(&peer) == Standing::Good;
        let worst = self.slowest_droppable(None).map(|(_, w)| w);
        let judgement = self
            .membership
            .optimizer_mut()
            .judge(now, dial, rtt, worst, eligible);
        if judgement != Judgement::Reject {
            return false;
        }
        self.stats.link_probes_rejected += 1;
        self.close_session(key, CloseReason::Optimized);
        true
    }

    /// Session `key` runs now: when it is the kept probe and still clearly faster than the
    /// slowest droppable link, that link is closed (`CloseReason::Optimized`). Every other
    /// session without a round-trip estimate gets an early PING (when the optimisation is on).
    pub(super) fn on_link_running(&mut self, key: SessionKey) {
        if !self.config.link_optimization {
            return;
        }
        let Some(s) = self.session(key) else {
            return;
        };
        let now = self.now;
        let kept = s
            .dial
            .and_then(|d| self.membership.optimizer().kept_probe_rtt(d));
        if s.liveness.rtt().is_none() {
            // Jittered so that a peer cannot tell when our PING leaves and answer it early.
            let jitter = self.random_below(4) as u32;
            let at = now + self.config.tick_interval * jitter;
            if let Some(s) = self.session_mut(key) {
                s.liveness.probe_rtt_at(at);
            }
        }
        let Some(rtt) = kept else {
            return;
        };
        let budget = self.membership.optimizer_mut().may_swap(now);
        let slowest = self
            .slowest_droppable(Some(key))
            .filter(|(_, w)| budget && self.membership.optimizer().clearly_faster(rtt, *w));
        let swapped = slowest.is_some();
        if let Some((slow, _)) = slowest {
            self.stats.links_optimized += 1;
            self.close_session(slow, CloseReason::Optimized);
        }
        self.membership.optimizer_mut().finish(now, swapped);
    }
}
