//! Overlay membership: keep `active_target` running sessions, refill them quickly from the
//! passive list (with jittered exponential backoff per address), and learn peers through
//! periodic shuffles.

use bytes::BytesMut;
use core::net::SocketAddr;

use super::{Node, SessionKey};
use crate::action::{Action, CloseReason, DialOutcome};
use crate::error::OverlayError;
use crate::membership::MembershipOutput;
use crate::passive::Inserted;
use crate::peer::{ConnId, DialId, PeerId};
use crate::session::Session;
use crate::wire::{self, Kind, PeerEntry, WireError};

/// Most tagged operator dials waiting for their session at once (more are refused as `Busy`).
const MAX_DIAL_REQUESTS: usize = 1024;

impl Node {
    pub(super) fn on_operator_dial(&mut self, request: Option<u64>, addr: SocketAddr) {
        let outcome = self.operator_dial(request, addr);
        self.actions.push_back(Action::DialAnswer {
            request,
            addr,
            outcome,
        });
    }

    fn operator_dial(&mut self, request: Option<u64>, addr: SocketAddr) -> DialOutcome {
        if self.shutting_down {
            return DialOutcome::Refused(OverlayError::ShuttingDown);
        }
        if Some(addr) == self.identity.listen_addr {
            return DialOutcome::Refused(OverlayError::Refused);
        }
        if request.is_some() && self.dial_requests_waiting() >= MAX_DIAL_REQUESTS {
            self.stats.dials_refused += 1;
            return DialOutcome::Refused(OverlayError::Busy);
        }
        self.learn_peer(addr, None, true);
        if let Some(dial) = self.membership.dial_to(&addr) {
            if let Some(request) = request {
                self.membership.wait_for(dial, request);
            }
            return DialOutcome::Dialing(dial);
        }
        let reaching = self
            .live_sessions()
            .find(|(_, s)| s.reaches(addr))
            .map(|(key, _)| key);
        if let Some(key) = reaching {
            let Some(session) = self.session_mut(key) else {
                return DialOutcome::Refused(OverlayError::Refused);
            };
            if session.is_running() {
                return DialOutcome::Connected(session.conn);
            }
            session.dial_requests.extend(request);
            return DialOutcome::Handshaking(session.conn);
        }
        if self.membership.dial_slots_full(self.membership_count()) {
            // The address stays in the passive list: membership dials it when a slot frees.
            self.stats.dials_refused += 1;
            return DialOutcome::Refused(OverlayError::Busy);
        }
        let dial = self.start_dial(addr);
        if let Some(request) = request {
            self.membership.wait_for(dial, request);
        }
        DialOutcome::Dialing(dial)
    }

    /// Tagged operator dials not answered yet (on dials in flight and handshaking sessions).
    fn dial_requests_waiting(&self) -> usize {
        let on_dials = self.membership.requests_waiting();
        let on_sessions: usize = self
            .live_sessions()
            .map(|(_, s)| s.dial_requests.len())
            .sum();
        on_dials + on_sessions
    }

    /// Answers tagged operator dials that ended without a session of their own.
    pub(super) fn settle_dial_requests(
        &mut self,
        requests: Vec<u64>,
        result: Result<ConnId, OverlayError>,
    ) {
        if !requests.is_empty() {
            self.actions
                .push_back(Action::DialResult { requests, result });
        }
    }

    pub(super) fn on_peers_discovered(&mut self, addrs: Vec<SocketAddr>) {
        for addr in addrs {
            self.learn_peer(addr, None, true);
        }
        self.maintain_membership();
    }

    /// Adds an address to the passive list (not our own); counts it when the full list
    /// cannot take it.
    pub(super) fn learn_peer(&mut self, addr: SocketAddr, peer: Option<PeerId>, seed: bool) {
        if Some(addr) == self.identity.listen_addr || peer == Some(self.identity.peer_id) {
            return;
        }
        let now = self.now;
        if self.scores.is_addr_banned(&addr, now)
            || peer.is_some_and(|p| self.scores.is_peer_banned(&p, now))
        {
            return;
        }
        let inserted = self.membership.learn(now, addr, peer, seed, &mut self.rng);
        if inserted == Inserted::Dropped {
            self.stats.passive_dropped += 1;
        }
    }

    /// A dial or session to `addr` failed: back off before the next attempt.
    pub(super) fn note_failure(&mut self, addr: SocketAddr) {
        let now = self.now;
        self.membership.note_failure(now, addr, &mut self.rng);
    }

    /// True when we dial `addr` or run a session that reaches it.
    pub(super) fn is_connected_to(&self, addr: &SocketAddr) -> bool {
        self.membership.is_dialing(addr) || self.live_sessions().any(|(_, s)| s.reaches(*addr))
    }

    pub(super) fn start_dial(&mut self, addr: SocketAddr) -> DialId {
        let now = self.now;
        let dial = self.membership.start_dial(now, addr);
        self.stats.dials_started += 1;
        self.drain_membership();
        dial
    }

    /// Carries out the membership machine's decisions, in the order it made them: dials
    /// become `Connect` actions, requests on abandoned dials are answered.
    pub(super) fn drain_membership(&mut self) {
        while let Some(output) = self.membership.poll_output() {
            match output {
                MembershipOutput::Connect { dial, addr, peer } => {
                    self.actions.push_back(Action::Connect { dial, addr, peer });
                }
                MembershipOutput::Abandoned { requests } => {
                    self.settle_dial_requests(requests, Err(OverlayError::ShuttingDown));
                }
            }
        }
    }

    /// Dials passive peers until the active view is full (bounded by concurrent dials).
    /// Dials `addr` for a topic that lacks links, when a dial slot and a session slot are free
    /// and the address is not already connected or dialed. True when dialing.
    pub(super) fn dial_for_topic(&mut self, addr: SocketAddr) -> bool {
        let busy = self.membership.dial_slots_full(self.membership_count())
            || self.membership_count() + self.membership.dials_in_flight()
                >= self.config.max_sessions;
        if busy || self.shutting_down || self.is_connected_to(&addr) {
            return false;
        }
        let banned = self.scores.is_addr_banned(&addr, self.now);
        if banned || Some(addr) == self.identity.listen_addr {
            return false;
        }
        let _dial = self.start_dial(addr);
        true
    }

    pub(super) fn maintain_membership(&mut self) {
        if self.shutting_down {
            return;
        }
        let now = self.now;
        let count = self.membership_count();
        let (scores, sessions, membership) = (&self.scores, &self.sessions, &self.membership);
        let usable = |a: &SocketAddr, k: &crate::passive::KnownPeer| {
            k.peer.is_none_or(|p| !sessions.has_peer(&p))
                && !scores.is_addr_banned(a, now)
                && !k.peer.is_some_and(|p| scores.is_peer_banned(&p, now))
                && !membership.is_dialing(a)
                && !sessions.iter().any(|(_, s)| s.reaches(*a))
        };
        let chosen = membership.choose_dials(now, count, &mut self.rng, usable);
        for addr in chosen {
            let _dial = self.start_dial(addr);
        }
    }

    /// Bookkeeping after a session is gone: gossip roles, passive list, replacement dials.
    pub(super) fn after_session_removed(
        &mut self,
        session: &Session,
        eager_in: &[crate::topic::TopicId],
        reason: CloseReason,
    ) {
        for topic in eager_in {
            self.refill_eager(topic);
        }
        let addr = session.listen.or(match session.direction {
            crate::peer::Direction::Outbound => Some(session.remote),
            crate::peer::Direction::Inbound => None,
        });
        if let Some(addr) = addr {
            match reason {
                CloseReason::SelfConnection => self.membership.forget(&addr),
                CloseReason::Duplicate | CloseReason::Shutdown => {}
                // A probe not kept, or a slow link swapped for a faster one: the peer did
                // nothing wrong, so it stays known without a failure or back-off.
                CloseReason::Optimized => self.learn_peer(addr, Some(session.peer), false),
                _ => {
                    // Whether the session failed or ran and then dropped, wait before
                    // reconnecting: a crashed peer must not be hammered.
                    self.learn_peer(addr, Some(session.peer), false);
                    self.note_failure(addr);
                }
            }
        }
        self.maintain_membership();
    }

    /// Periodic shuffle: send a sample of known peers to one random running peer.
    pub(super) fn shuffle(&mut self) {
        let running: Vec<SessionKey> = self
            .live_sessions()
            .filter(|(_, s)| s.is_running())
            .map(|(k, _)| k)
            .collect();
        if running.is_empty() {
            return;
        }
        let idx = self.random_below(running.len());
        let Some(&target) = running.get(idx) else {
            return;
        };
        let entries = self.sample_entries(Some(target));
        let mut body = BytesMut::new();
        wire::put_shuffle(&mut body, &entries);
        if self.send_frame(target, Kind::Shuffle, &[&body]) != super::send::Sent::Dropped {
            if let Some(s) = self.session_mut(target) {
                s.shuffle_pending = true;
            }
        }
    }

    /// Up to `shuffle_len` entries: ourselves, running peers and passive peers
    /// ([`crate::membership::Membership::sample`]).
    fn sample_entries(&mut self, exclude: Option<SessionKey>) -> Vec<PeerEntry> {
        let limit = self.config.shuffle_len.min(wire::MAX_SHUFFLE_ENTRIES);
        let own = self.identity.listen_addr.map(|addr| PeerEntry {
            peer: self.identity.peer_id,
            addr,
        });
        let running: Vec<PeerEntry> = self.running_peer_entries(exclude).collect();
        self.membership
            .sample(own, running.into_iter(), limit, &mut self.rng)
    }

    /// Our running peers that gave a `listen` address (but `except`), as SHUFFLE entries, in
    /// session order: what SHUFFLE samples and RUNNING_PEERS answers list.
    pub(super) fn running_peer_entries(
        &self,
        except: Option<SessionKey>,
    ) -> impl Iterator<Item = PeerEntry> + '_ {
        self.live_sessions()
            .filter(move |(key, s)| Some(*key) != except && s.is_running())
            .filter_map(|(_, s)| s.listen.map(|addr| PeerEntry { peer: s.peer, addr }))
    }

    /// SHUFFLE / SHUFFLE_REPLY from a peer. Its entries are hints: a SHUFFLE over the peer's
    /// rate or a reply we did not ask for is ignored and scored; entries with unusable
    /// addresses, or that contradict identities proven by TLS, are dropped and counted.
    pub(super) fn on_shuffle(
        &mut self,
        key: SessionKey,
        kind: Kind,
        body: &[u8],
    ) -> Result<(), WireError> {
        let entries = wire::parse_shuffle(kind, body)?;
        let now = self.now;
        let Some(s) = self.session_mut(key) else {
            return Ok(());
        };
        let welcome = match kind {
            Kind::Shuffle => s.control.shuffle.try_take(now),
            _ => std::mem::take(&mut s.shuffle_pending),
        };
        let from = s.remote;
        if !welcome {
            self.reject_shuffle_flood(key);
            return Ok(());
        }
        if kind == Kind::Shuffle {
            let reply = self.sample_entries(Some(key));
            let mut out = BytesMut::new();
            wire::put_shuffle(&mut out, &reply);
            self.send_frame(key, Kind::ShuffleReply, &[&out]);
        }
        for e in self.learn_hints(key, &from, entries) {
            self.membership.note_mention(&e.peer);
        }
        Ok(())
    }
}
