//! Latency-aware membership ([`crate::optimizer`]): the node's side of a probe round: which
//! links may be dropped, whom to probe, judging the probe when its connection is up, and the
//! swap when it runs.
//!
//! A link may be dropped (`droppable_links`) only when the node dialed it (a link the peer
//! dialed may be that peer's only way into the overlay, e.g. a node whose own dials all
//! reached an eclipse attacker's nodes), runs, is older than
//! [`MIN_LINK_AGE`], has a round-trip estimate (one the peer made untrustworthy by answering
//! a PING we never sent ranks slowest), and carries no tree edge in any topic it is in (lazy,
//! or eager since it joined with no message since: before the first broadcast every link is
//! eager and none is a tree edge yet), each of those topics keeping
//! more than `topic_min_links` links. So no node's tree parent is ever closed; and since
//! eager/lazy roles are symmetric, the peer keeps its own tree links (a node whose only link
//! is lazy does not exist: a lone link is made eager), so a swap never disconnects it. The
//! peer refills its active view from its passive list as after any lost session.
//!
//! Candidates come from a running peer's answer to RUNNING_PEERS (its own running sessions),
//! not from the passive list, which SHUFFLE floods can fill with one party's addresses; of an
//! answer's entries the probe is one the fewest SHUFFLE entries named, and the link a kept
//! probe replaces is the most named of those it beats, never one named less than the probe
//! ([`crate::mentions`]). A candidate must be one the score
//! allows to gossip (`Standing::Good`); its round trip is measured by our own dial (TCP +
//! TLS), which a peer cannot shorten by answering early.

use bytes::BytesMut;
use core::time::Duration;

use super::send::Sent;
use super::{Node, SessionKey};
use crate::action::CloseReason;
use crate::optimizer::{Judgement, LinkOptimizer};
use crate::peer::Direction;
use crate::score::Standing;
use crate::wire::{self, Kind};

/// A link this young is never dropped (its roles and round trip are still settling).
pub(super) const MIN_LINK_AGE: Duration = Duration::from_secs(2);

/// Every running session takes one more round-trip sample this long after it runs (before
/// [`MIN_LINK_AGE`], so that a link is judged by it when it may first be dropped).
const RESAMPLE_AFTER: Duration = Duration::from_millis(1500);

/// Most entries in a RUNNING_PEERS answer (as many as a SHUFFLE sample).
const RUNNING_PEERS_MAX: usize = 16;

impl Node {
    /// Links that may be dropped for a faster one, with their round trips.
    fn droppable_links(&self, except: Option<SessionKey>) -> Vec<(SessionKey, Duration)> {
        let now = self.now;
        let min_links = self.config.topic_min_links;
        self.live_sessions()
            .filter(|(key, s)| {
                Some(*key) != except
                    && s.is_running()
                    && s.direction == Direction::Outbound
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

    /// The link a kept probe of round trip `rtt` (session `probe`) replaces: of the droppable
    /// links it is clearly faster than and whose peer SHUFFLEs named at least as often as the
    /// probe's, the most named (what a flood pushes; see `Membership::mentions`), then the
    /// slowest, then the lowest key.
    /// The probe is judged by the same rule before its handshake, so a probe is kept only
    /// when some link would make way for it.
    fn link_to_close(&self, probe: SessionKey, rtt: Duration) -> Option<(SessionKey, Duration)> {
        let links: Vec<(SessionKey, u32, Duration)> = self
            .droppable_links(Some(probe))
            .into_iter()
            .map(|(key, w)| (key, self.session_mentions(key), w))
            .collect();
        let probe_named = self.session_mentions(probe);
        let key =
            self.membership
                .optimizer()
                .link_to_replace(rtt, probe_named, links.iter().copied())?;
        links
            .into_iter()
            .find(|(k, _, _)| *k == key)
            .map(|(k, _, w)| (k, w))
    }

    /// How many SHUFFLE entries named session `key`'s peer.
    fn session_mentions(&self, key: SessionKey) -> u32 {
        self.session(key)
            .map_or(0, |s| self.membership.mentions(&s.peer))
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
        if !self.probe_slot_free() {
            return;
        }
        if !self.probe_worthwhile() {
            self.membership.optimizer_mut().skip(now);
            return;
        }
        // The candidates come from a running peer's own running sessions, not from the
        // passive list: SHUFFLE floods can fill that list with one party's addresses, but a
        // peer answers only what it is asked, once per request, with sessions it runs.
        let askable: Vec<SessionKey> = self
            .live_sessions()
            .filter(|(_, s)| {
                s.is_running()
                    && s.running_peers
                    && s.running_peers_asked
                        .is_none_or(|at| !LinkOptimizer::awaits(at, now))
                    && self.scores.standing(&s.peer) == Standing::Good
            })
            .map(|(key, _)| key)
            .collect();
        if askable.is_empty() {
            self.membership.optimizer_mut().skip(now);
            return;
        }
        let pick = self.random_below(askable.len());
        let Some(&asked) = askable.get(pick) else {
            return;
        };
        let mut body = BytesMut::with_capacity(1);
        wire::put_shuffle(&mut body, &[]);
        if self.send_frame(asked, Kind::RunningPeers, &[&body]) == Sent::Dropped {
            self.membership.optimizer_mut().skip(now);
            return;
        }
        if let Some(s) = self.session_mut(asked) {
            s.running_peers_asked = Some(now);
        }
        self.stats.link_probe_asks += 1;
        self.membership.optimizer_mut().start_ask(now);
    }

    /// True when a probe may be dialed: the active view is full and a dial and a session
    /// slot are free.
    fn probe_slot_free(&self) -> bool {
        let count = self.membership_count();
        count >= self.config.active_target
            && count < self.config.max_sessions
            && !self.membership.dial_slots_full(count)
    }

    /// True when some link may be dropped for a faster one. A probe is pointless when no link
    /// may be dropped, none has a round trip yet (no decision), or the slowest is already too
    /// fast for any swap to matter (a LAN).
    fn probe_worthwhile(&self) -> bool {
        self.slowest_droppable(None)
            .is_some_and(|(_, rtt)| LinkOptimizer::worth_probing(rtt))
    }

    /// RUNNING_PEERS from session `key`. A request (no entry) is answered, within the peer's
    /// SHUFFLE rate, with up to [`RUNNING_PEERS_MAX`] of our running peers (not the asker)
    /// that gave a `listen` address, in random order. An answer is taken only when we asked
    /// that session: its entries are checked like SHUFFLE entries and learnt, and when the
    /// round still waits for it, the usable entry SHUFFLEs named least (at random among
    /// equals) is dialed as the round's probe.
    /// Requests over the rate and answers we did not ask for are ignored and scored
    /// (`shuffle_flood`).
    pub(super) fn on_running_peers(
        &mut self,
        key: SessionKey,
        body: &[u8],
    ) -> Result<(), wire::WireError> {
        let entries = wire::parse_shuffle(Kind::RunningPeers, body)?;
        let now = self.now;
        let Some(s) = self.session_mut(key) else {
            return Ok(());
        };
        let from = s.remote;
        let asked_at = if entries.is_empty() {
            None
        } else {
            s.running_peers_asked.take()
        };
        let welcome = if entries.is_empty() {
            s.control.shuffle.try_take(now)
        } else {
            asked_at.is_some()
        };
        if !welcome {
            self.reject_shuffle_flood(key);
            return Ok(());
        }
        if entries.is_empty() {
            self.answer_running_peers(key);
            return Ok(());
        }
        let offered = self.learn_hints(key, &from, entries);
        if !asked_at.is_some_and(|at| self.membership.optimizer_mut().take_answer(at)) {
            // The round gave up on this answer: its entries are only learnt.
            return Ok(());
        }
        if self.shutting_down || !self.probe_slot_free() || !self.probe_worthwhile() {
            self.membership.optimizer_mut().skip(now);
            return Ok(());
        }
        let usable: Vec<(u32, core::net::SocketAddr)> = offered
            .into_iter()
            .filter(|e| {
                e.peer != self.identity.peer_id
                    && !self.sessions.has_peer(&e.peer)
                    && self.scores.standing(&e.peer) == Standing::Good
                    && !self.scores.is_peer_banned(&e.peer, now)
                    && !self.scores.is_addr_banned(&e.addr, now)
                    && Some(e.addr) != self.identity.listen_addr
                    && self.membership.probe_ready(now, &e.addr)
                    && !self.is_connected_to(&e.addr)
            })
            .map(|e| (self.membership.mentions(&e.peer), e.addr))
            .collect();
        // Peers that SHUFFLEs keep naming are what a flood pushes: the least named first.
        let Some(least) = usable.iter().map(|(named, _)| *named).min() else {
            self.membership.optimizer_mut().skip(now);
            return Ok(());
        };
        let usable: Vec<core::net::SocketAddr> = usable
            .into_iter()
            .filter(|(named, _)| *named == least)
            .map(|(_, addr)| addr)
            .collect();
        let pick = self.random_below(usable.len());
        let Some(&addr) = usable.get(pick) else {
            return Ok(());
        };
        let dial = self.start_dial(addr);
        self.stats.link_probes += 1;
        self.membership.optimizer_mut().start_probe(now, dial, addr);
        Ok(())
    }

    /// Answers a RUNNING_PEERS request from `key` (nothing when we run no other session with
    /// a `listen` address).
    fn answer_running_peers(&mut self, key: SessionKey) {
        let mut entries: Vec<wire::PeerEntry> = self.running_peer_entries(Some(key)).collect();
        // A random subset when there are more than fit (partial Fisher–Yates).
        let keep = entries.len().min(RUNNING_PEERS_MAX);
        for i in 0..keep {
            let j = i + self.random_below(entries.len() - i);
            entries.swap(i, j);
        }
        entries.truncate(keep);
        if entries.is_empty() {
            return;
        }
        let mut body = BytesMut::with_capacity(1 + entries.len() * 51);
        wire::put_shuffle(&mut body, &entries);
        self.send_frame(key, Kind::RunningPeers, &[&body]);
    }

    /// The connection of our dial `key` is up (TLS done, handshake not started): when it is the
    /// round's probe and no link would make way for it (`link_to_close`: none it is clearly
    /// faster than and named at most as often; or its peer may not be preferred, or already
    /// has a session with us), it is closed here and true is returned.
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
        // The link this probe would replace (the swap rule below), if any.
        let worst = self.link_to_close(key, rtt).map(|(_, w)| w);
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
    /// slowest droppable link, that link is closed (`CloseReason::Optimized`). A session
    /// without a round-trip estimate gets an early PING, and every session a second one
    /// [`RESAMPLE_AFTER`] later (when the optimisation is on).
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
        // A session without a round trip gets a PING now; every session gets one more
        // before it is old enough to be dropped, so that a link is judged by the lowest of
        // samples taken at different moments (a dial's own sample, or the first PING's, is
        // taken while the nodes may be busy starting). Jittered so that a peer cannot tell
        // when our PING leaves and answer it early.
        let unknown = s.liveness.rtt().is_none();
        let jitter = self.config.tick_interval * self.random_below(4) as u32;
        if let Some(s) = self.session_mut(key) {
            if unknown {
                s.liveness.probe_rtt_at(now + jitter);
            }
            s.liveness.probe_rtt_at(now + RESAMPLE_AFTER + jitter);
        }
        let Some(rtt) = kept else {
            return;
        };
        let budget = self.membership.optimizer_mut().may_swap(now);
        let slowest = self.link_to_close(key, rtt).filter(|_| budget);
        let swapped = slowest.is_some();
        if let Some((slow, _)) = slowest {
            self.stats.links_optimized += 1;
            self.close_session(slow, CloseReason::Optimized);
        }
        self.membership.optimizer_mut().finish(now, swapped);
    }
}
