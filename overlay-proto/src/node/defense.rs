//! Defences against hostile peers: the scoring entry points, bans, session deadlines (stalled
//! send queues, tokens expiring mid-session) and the sanity rules for addresses peers claim.

use core::net::SocketAddr;

use super::{Node, SessionKey};
use crate::action::CloseReason;
use crate::error::OverlayError;
use crate::peer::{Direction, PeerId};
use crate::plumtree::Plumtree;
use crate::score::{Penalty, ScoreBook, Standing};
use crate::session::Session;
use crate::sessions::Sessions;
use crate::stats::RejectReason;

impl Node {
    /// Records `n` occurrences of `penalty` against the session's peer and applies the new
    /// standing: below `prune_threshold` the peer is made lazy, below `ban_threshold` the
    /// session is closed (`banned`, 403) and the peer and its addresses are banned.
    ///
    /// This is the entry point for every path that finds a peer misbehaving (the gossip path
    /// calls it for messages with a bad id or signature). The session may be gone on return.
    pub(super) fn penalize(&mut self, key: SessionKey, penalty: Penalty, n: u32) {
        if n == 0 {
            return;
        }
        let Some(peer) = self.session(key).map(|s| s.peer) else {
            return;
        };
        if let Some(c) = self.stats.score_penalties.get_mut(penalty as usize) {
            *c += u64::from(n);
        }
        match self.scores.penalize(peer, penalty, n) {
            Standing::Ban => self.ban_session(key),
            Standing::Lazy => self.make_lazy_everywhere(key),
            Standing::NoControl | Standing::Good => {}
        }
    }

    /// Records one `penalty` without acting on the standing yet: for a caller that closes the
    /// session itself right after (the ban, if due, is registered as the session leaves).
    pub(super) fn note_penalty(&mut self, key: SessionKey, penalty: Penalty) {
        let Some(peer) = self.session(key).map(|s| s.peer) else {
            return;
        };
        if let Some(c) = self.stats.score_penalties.get_mut(penalty as usize) {
            *c += 1;
        }
        let _standing = self.scores.penalize(peer, penalty, 1);
    }

    /// Closes the session and bans its peer and the addresses it was reached at.
    pub(super) fn ban_session(&mut self, key: SessionKey) {
        let Some(s) = self.session(key) else {
            return;
        };
        let peer = s.peer;
        let addrs = ban_addrs(s);
        self.scores.ban(peer, &addrs, self.now);
        self.stats.peers_banned += 1;
        self.count_reject(key, RejectReason::Banned);
        self.close_session(key, CloseReason::Banned);
    }

    /// False when the peer's score is below `gossip_threshold`: its IHAVE and GRAFT are
    /// ignored.
    pub(super) fn control_allowed(&self, key: SessionKey) -> bool {
        self.session(key)
            .is_some_and(|s| self.scores.standing(&s.peer) < Standing::NoControl)
    }

    /// False when the peer's score keeps it lazy.
    pub(super) fn may_be_eager(&self, key: SessionKey) -> bool {
        self.session(key)
            .is_some_and(|s| self.scores.standing(&s.peer) < Standing::Lazy)
    }

    /// True when connections from `peer` (or to `addr`, for our own dials) are refused now.
    pub(super) fn is_banned(&self, peer: &PeerId, addr: Option<&SocketAddr>) -> bool {
        let now = self.now;
        self.scores.is_peer_banned(peer, now)
            || addr.is_some_and(|a| self.scores.is_addr_banned(a, now))
    }

    /// Score and budget bookkeeping for a session being removed (called by `close_session`).
    pub(super) fn on_session_leaving(&mut self, session: &Session, reason: CloseReason) {
        if session.holds_preauth {
            self.preauth.release(session.remote.ip());
        }
        if !session.is_running() {
            return;
        }
        if let CloseReason::Violation(e) = reason {
            let peer_fault = matches!(
                e,
                OverlayError::Malformed
                    | OverlayError::TooLarge
                    | OverlayError::Forbidden
                    | OverlayError::Quota
                    | OverlayError::Unauthorized
                    | OverlayError::Crypto
            );
            if peer_fault {
                self.stats.score_penalties[Penalty::Violation as usize] += 1;
                let _standing = self.scores.penalize(session.peer, Penalty::Violation, 1);
            }
            if self.scores.standing(&session.peer) == Standing::Ban
                && !self.scores.is_peer_banned(&session.peer, self.now)
            {
                let addrs = ban_addrs(session);
                self.scores.ban(session.peer, &addrs, self.now);
                self.stats.peers_banned += 1;
            }
        }
        self.scores.disconnected(session.peer, self.now);
    }

    /// Closes running sessions whose send queue made no progress for `stall_timeout`, and
    /// sessions whose peer's token expired. Called from the maintenance tick.
    pub(super) fn check_session_deadlines(&mut self) {
        let now = self.now;
        let stall = self.config.stall_timeout;
        let mut doomed = Vec::new();
        for (key, s) in self.live_sessions() {
            if !s.is_running() {
                continue;
            }
            if s.token_expires_at.is_some_and(|t| t <= now) {
                doomed.push((key, RejectReason::Expired, CloseReason::TokenExpired));
            } else if s.queue.frames() > 0 && now - s.queue_progress_at >= stall {
                doomed.push((key, RejectReason::Stalled, CloseReason::Stalled));
            }
        }
        for (key, reject, close) in doomed {
            self.count_reject(key, reject);
            self.close_session(key, close);
        }
        self.scores.on_tick(now);
    }

    /// Whether an address a peer claims (HELLO `listen`, SHUFFLE entry) may enter membership:
    /// never an unspecified address or port 0, and loopback only from a loopback peer.
    pub(super) fn acceptable_hint(&self, addr: &SocketAddr, from: &SocketAddr) -> bool {
        let ip = addr.ip();
        if ip.is_unspecified() || addr.port() == 0 || ip.is_multicast() {
            return false;
        }
        !ip.is_loopback() || from.ip().is_loopback()
    }

    /// Learns the usable entries of a SHUFFLE-shaped body from session `key` (whose remote is
    /// `from`) into the passive list and returns them. The others (unusable addresses, or
    /// contradicting what TLS proved) are counted (`bad_address`), and when there were any the
    /// peer is scored (`shuffle_flood`): honest nodes never keep such entries, so they do not
    /// relay them.
    pub(super) fn learn_hints(
        &mut self,
        key: SessionKey,
        from: &SocketAddr,
        entries: Vec<crate::wire::PeerEntry>,
    ) -> Vec<crate::wire::PeerEntry> {
        let mut bad = 0u64;
        let mut good = Vec::with_capacity(entries.len());
        for e in entries {
            if !self.acceptable_hint(&e.addr, from) || self.contradicts_pins(&e.peer, &e.addr) {
                bad += 1;
                continue;
            }
            self.learn_peer(e.addr, Some(e.peer), false);
            good.push(e);
        }
        if bad > 0 {
            self.stats.rejected.add(RejectReason::BadAddress, bad);
            self.penalize(key, Penalty::ShuffleFlood, 1);
        }
        good
    }

    /// A SHUFFLE-shaped frame over the peer's rate, or an answer nobody asked for: ignored,
    /// counted and scored (`shuffle_flood`).
    pub(super) fn reject_shuffle_flood(&mut self, key: SessionKey) {
        self.stats.rejected.bump(RejectReason::ShuffleFlood);
        self.penalize(key, Penalty::ShuffleFlood, 1);
    }

    /// Whether a `(peer, addr)` hint contradicts what verified connections proved: the address
    /// is pinned to another identity, or the peer is pinned to (or connected at) another
    /// address.
    pub(super) fn contradicts_pins(&self, peer: &PeerId, addr: &SocketAddr) -> bool {
        let passive = self.membership.passive();
        if passive.pinned_to_other(addr, peer) {
            return true;
        }
        if passive
            .pinned_addr_of(peer)
            .is_some_and(|pinned| pinned != *addr)
        {
            return true;
        }
        // A connected peer is where its session says it is.
        if let Some(s) = self
            .sessions
            .key_of_peer(peer)
            .and_then(|k| self.session(k))
        {
            let known = s.listen.or(match s.direction {
                Direction::Outbound => Some(s.remote),
                Direction::Inbound => None,
            });
            if known.is_some_and(|k| k != *addr) {
                return true;
            }
        }
        false
    }
}

/// The order in which the announcers of a missing id are asked (GRAFT), best first.
///
/// Under an eclipse attack most of a node's sessions can be silent attackers that announce
/// ids and never answer a GRAFT. Asking announcers in arrival order then spends every retry
/// on them (they hear of a message early: honest nodes push to them). The rank puts proven
/// peers first and known or likely liars last, so an honest announcer is asked early even
/// when it announced late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AnnouncerRank {
    /// Gave us messages first recently, and broke fewer promises than that.
    Delivered,
    /// Nothing known either way.
    Unproven,
    /// A link we treat as eager that announced instead of pushing: roles are symmetric
    /// (every unilateral promotion is told with GRAFT), so an honest eager peer pushes the
    /// payload; one that only announces is either mid-PRUNE or withholding.
    EagerAnnouncer,
    /// Broke at least as many GRAFT promises as it made first deliveries, recently.
    Suspect,
}

/// The rank of session `key`'s announcements in the topic whose tree is `tree` (see
/// [`AnnouncerRank`]).
pub(super) fn announcer_rank(
    sessions: &Sessions,
    scores: &ScoreBook,
    tree: Option<&Plumtree>,
    key: SessionKey,
) -> AnnouncerRank {
    let Some(s) = sessions.get(key) else {
        return AnnouncerRank::Suspect;
    };
    let view = scores.view(&s.peer);
    let broken = view.components.penalty(Penalty::BrokenPromise);
    let delivered = view.components.first_deliveries;
    if broken > 0.0 && broken >= delivered {
        AnnouncerRank::Suspect
    } else if delivered >= 1.0 {
        AnnouncerRank::Delivered
    } else if tree.is_some_and(|t| t.is_eager(key)) {
        AnnouncerRank::EagerAnnouncer
    } else {
        AnnouncerRank::Unproven
    }
}

/// The addresses banned with a session's peer: where we dialed it and where it listens.
fn ban_addrs(s: &Session) -> Vec<SocketAddr> {
    let mut addrs = Vec::with_capacity(2);
    if s.direction == Direction::Outbound {
        addrs.push(s.remote);
    }
    if let Some(l) = s.listen {
        if !addrs.contains(&l) {
            addrs.push(l);
        }
    }
    addrs
}
