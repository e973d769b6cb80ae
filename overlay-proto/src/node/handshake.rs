//! Session open: connection up, HELLO exchange, capability check on START (both ways), and
//! the duplicate / self-connection / max-sessions rules.

use bytes::Bytes;
use core::net::SocketAddr;

use super::{Node, SessionKey};
use crate::action::{Action, CloseReason};
use crate::error::OverlayError;
use crate::frame::{flags, Frame, Header, HelloReply, StatusCode};
use crate::peer::{ConnId, DialId, Direction, PeerId};
use crate::ratelimit::TokenBucket;
use crate::session::{ConnectionInfo, ControlBuckets, Grant, Phase, Session};
use crate::sessions::handshake::{
    check_hello, our_hello, step, Admission, HelloRefusal, Started, Step, WindowFloor,
};
use crate::stats::RejectReason;
use crate::wire::{HelloOverlay, HelloRequestBody, Operation};

/// Largest HELLO or START frame accepted during the handshake (header included).
pub(super) const MAX_HANDSHAKE_FRAME: usize = 16 * 1024;

/// Every operation allowed.
const ALL_OPERATIONS: u8 = 0x0F;

impl Node {
    fn default_grant(&self) -> Grant {
        Grant {
            operations: ALL_OPERATIONS,
            max_message_bytes: self.config.max_message_bytes,
            rate_cap: None,
        }
    }

    /// The quota of a peer: the node's configured quota, lowered by the token's `Rate` caveat.
    pub(super) fn peer_quota(&self, rate_cap: Option<(u32, u32)>) -> (u32, u32) {
        let (rate, burst) = (self.config.peer_rate_per_s, self.config.peer_rate_burst);
        match rate_cap {
            Some((cap_rate, cap_burst)) => (rate.min(cap_rate), burst.min(cap_burst)),
            None => (rate, burst),
        }
    }

    pub(super) fn on_connection_up(
        &mut self,
        conn: ConnId,
        peer: PeerId,
        direction: Direction,
        remote: SocketAddr,
        dial: Option<DialId>,
        kx_group: Option<String>,
    ) {
        let now = self.now;
        let mut waiting = Vec::new();
        let dial_rtt = dial.and_then(|d| self.membership.dial_rtt(d, now));
        if let Some(d) = dial {
            let (addr, requests) = self.membership.finish_dial(d);
            if addr.is_some() {
                self.membership.note_dial_result(true);
            }
            waiting = requests;
        }
        let rate = TokenBucket::new(
            now,
            self.config.peer_rate_per_s,
            self.config.peer_rate_burst,
        );
        let c = &self.config;
        let control = ControlBuckets {
            graft: TokenBucket::new(now, c.graft_rate_per_s, c.graft_rate_burst),
            ihave: TokenBucket::new(now, c.ihave_rate_per_s, c.ihave_rate_burst),
            duplicate: TokenBucket::new(now, c.duplicate_rate_per_s, c.duplicate_rate_burst),
            shuffle: TokenBucket::new(now, c.shuffle_rate_per_s, c.shuffle_rate_burst),
        };
        let info = ConnectionInfo {
            conn,
            peer,
            remote,
            direction,
            dial,
            kx_group,
        };
        let mut session = Session::new(now, info, rate, control, self.default_grant());
        session.dial_requests = waiting;
        if let Some(rtt) = dial_rtt {
            session.liveness.set_handshake_rtt(rtt);
        }
        let key = match self.sessions.admit(session, &self.identity.peer_id) {
            Admission::Admitted(key) => key,
            Admission::InUse(newcomer) => {
                // A driver bug: the handle is in use. Refuse the newcomer without touching the
                // existing session.
                self.stats.rejected.bump(RejectReason::Duplicate);
                self.settle_dial_requests(newcomer.dial_requests, Err(OverlayError::Refused));
                self.actions.push_back(Action::Close {
                    conn,
                    reason: CloseReason::Duplicate,
                    winner: None,
                });
                return;
            }
        };
        // A connection to ourselves closes here.
        self.drain_sessions();
        if self.session(key).is_none() {
            return;
        }
        if self.shutting_down {
            self.close_session(key, CloseReason::Shutdown);
            return;
        }
        let dialed_addr = (direction == Direction::Outbound).then_some(&remote);
        if self.is_banned(&peer, dialed_addr) {
            self.refuse(key, RejectReason::Banned, CloseReason::Banned);
            return;
        }
        // Running sessions and our own dials count (this one too, when it is a dial); inbound
        // connections before START live on the pre-auth budget instead.
        let others = self.membership_count() - usize::from(direction == Direction::Outbound);
        if others >= self.config.max_sessions {
            self.refuse(
                key,
                RejectReason::MaxSessions,
                CloseReason::Violation(OverlayError::Refused),
            );
            return;
        }
        if direction == Direction::Inbound {
            // Until START succeeds the connection lives on the pre-auth budget only.
            if let Err(reason) = self.preauth.try_admit(remote.ip()) {
                self.refuse(key, reason, CloseReason::Violation(OverlayError::Busy));
                return;
            }
            if let Some(s) = self.session_mut(key) {
                s.holds_preauth = true;
            }
        }
        if direction == Direction::Inbound && !self.ready {
            self.refuse(
                key,
                RejectReason::Degraded,
                CloseReason::Violation(OverlayError::Busy),
            );
            return;
        }
        // A latency probe is judged before the duplicate rule: a probe whose peer dialed us
        // meanwhile must not win the tie-break and close that running session.
        if self.reject_probe(key) {
            return;
        }
        if let Some(existing) = self.sessions.key_of_peer(&peer) {
            if !self.resolve_duplicate(existing, key) {
                return;
            }
        }
        self.sessions.claim_peer(key);
        if dial.is_some() {
            // TLS proved who answers at this address: pin it against later hints.
            self.membership.pin(&remote, peer);
        }
        if direction == Direction::Outbound {
            self.send_hello(key);
        }
    }

    /// Counts and reports a refused connection, then closes it.
    fn refuse(&mut self, key: SessionKey, reason: RejectReason, close: CloseReason) {
        self.count_reject(key, reason);
        self.close_session(key, close);
    }

    /// Two sessions with one peer: keep the one dialed by the smaller peer id (both sides
    /// agree on that). Returns true when the new session survives. Callers waiting on the
    /// loser move to the winner (answered now when it already runs).
    fn resolve_duplicate(&mut self, existing: SessionKey, new: SessionKey) -> bool {
        if self.session(new).is_none() {
            return false;
        }
        self.stats.rejected.bump(RejectReason::Duplicate);
        let outcome = self
            .sessions
            .resolve_duplicate(&self.identity.peer_id, existing, new);
        if let Some((winner, waiting)) = outcome.answer_now {
            self.settle_dial_requests(waiting, Ok(winner));
        }
        self.drain_sessions();
        outcome.new_wins
    }

    fn hello_overlay(&self) -> HelloOverlay {
        our_hello(
            &self.identity.peer_id,
            self.identity.listen_addr,
            self.config.credit_window_frames,
            self.config.credit_window_bytes,
        )
    }

    fn control_header(&self, flags: u16, code: u16, app_proto_id: u16, corr_id: u64) -> Header {
        Header {
            len: 0,
            ver: 1,
            flags,
            code,
            app_proto_id,
            tenant_id: self.config.tenant_id,
            cap_len: 0,
            corr_id,
        }
    }

    fn send_hello(&mut self, key: SessionKey) {
        let body = HelloRequestBody {
            ua: Some(self.config.user_agent.clone()),
            overlay: self.hello_overlay(),
        };
        let Ok(json) = serde_json::to_vec(&body) else {
            return;
        };
        let header = self.control_header(flags::REQ, 0, 0, 1);
        self.send_raw(key, &header, &[], &json);
        self.grant_initial_window(key);
    }

    fn grant_initial_window(&mut self, key: SessionKey) {
        let frames = self.config.credit_window_frames;
        let bytes = u64::from(self.config.credit_window_bytes);
        if let Some(s) = self.session_mut(key) {
            s.recv_allowance.add(frames, bytes);
        }
    }

    /// Applies the peer's HELLO keys: identity check, listen address, initial send window.
    fn accept_hello_overlay(
        &mut self,
        key: SessionKey,
        hello: &HelloOverlay,
    ) -> Result<(), CloseReason> {
        let Some((peer, remote)) = self.session(key).map(|s| (s.peer, s.remote)) else {
            return Err(CloseReason::TransportClosed);
        };
        let floor = WindowFloor {
            frames: self.config.min_peer_window_frames,
            bytes: self.config.min_peer_window_bytes,
        };
        match check_hello(&peer, hello, floor) {
            Ok(()) => {}
            Err(HelloRefusal::SmallWindow) => {
                // Closed here with its own counter; the caller's close is then a no-op.
                self.count_reject(key, RejectReason::SmallWindow);
                self.close_session(key, HelloRefusal::SmallWindow.close_reason());
                return Err(CloseReason::TransportClosed);
            }
            Err(refusal) => return Err(refusal.close_reason()),
        }
        let claimed: Option<SocketAddr> = hello.listen.as_deref().and_then(|a| a.parse().ok());
        let listen = match claimed {
            Some(addr)
                if !self.acceptable_hint(&addr, &remote) || self.contradicts_pins(&peer, &addr) =>
            {
                self.stats.rejected.bump(RejectReason::BadAddress);
                None
            }
            other => other,
        };
        if self.session(key).is_none() {
            return Err(CloseReason::TransportClosed);
        }
        self.sessions.apply_hello(key, hello, listen);
        Ok(())
    }

    /// Handles one complete frame while the session is handshaking.
    pub(super) fn on_handshake_frame(&mut self, key: SessionKey, frame: Frame) {
        let Some(phase) = self.session(key).map(|s| s.phase) else {
            return;
        };
        let result = match step(phase, &frame.header, self.config.app_proto_id) {
            Step::PeerError(e) => {
                self.close_session(key, CloseReason::PeerError(e));
                return;
            }
            Step::Hello => self.on_hello(key, &frame),
            Step::HelloReply => self.on_hello_reply(key, &frame),
            Step::Start => self.on_start(key, &frame),
            Step::StartReply => self.on_start_reply(key, &frame),
            Step::Unexpected => {
                // Anything else before the token is verified is refused.
                self.count_reject(key, RejectReason::Unauth);
                Err(CloseReason::Violation(OverlayError::Unauthorized))
            }
        };
        if let Err(reason) = result {
            if let CloseReason::Violation(OverlayError::Malformed) = reason {
                self.count_reject(key, RejectReason::Malformed);
            }
            self.close_session(key, reason);
        }
    }

    fn on_hello(&mut self, key: SessionKey, frame: &Frame) -> Result<(), CloseReason> {
        let payload = frame.payload.as_deref().unwrap_or_default();
        let body: HelloRequestBody = serde_json::from_slice(payload)
            .map_err(|_| CloseReason::Violation(OverlayError::Malformed))?;
        self.accept_hello_overlay(key, &body.overlay)?;
        let mut reply = HelloReply::default_for_server();
        reply.max_inflight = u64::from(self.config.credit_window_frames);
        if let Ok(serde_json::Value::Object(ext)) = serde_json::to_value(self.hello_overlay()) {
            reply.extensions = ext;
        }
        let payload = reply.to_payload();
        let header = self.control_header(
            flags::RESP,
            StatusCode::Ok.as_u16(),
            0,
            frame.header.corr_id,
        );
        self.send_raw(key, &header, &[], &payload);
        self.grant_initial_window(key);
        self.sessions.set_phase(key, Phase::AwaitStart);
        Ok(())
    }

    fn on_hello_reply(&mut self, key: SessionKey, frame: &Frame) -> Result<(), CloseReason> {
        let reply = HelloReply::from_frame(frame)
            .map_err(|_| CloseReason::Violation(OverlayError::Malformed))?;
        if !reply.versions.contains(&1) {
            return Err(CloseReason::Violation(OverlayError::Malformed));
        }
        let ext: HelloOverlay =
            serde_json::from_value(serde_json::Value::Object(reply.extensions.clone()))
                .map_err(|_| CloseReason::Violation(OverlayError::Malformed))?;
        self.accept_hello_overlay(key, &ext)?;
        let token = self.own_token.clone().unwrap_or_default();
        let header = self.control_header(flags::START | flags::REQ, 0, self.config.app_proto_id, 2);
        self.send_raw(key, &header, token.as_bytes(), &[]);
        self.sessions.set_phase(key, Phase::AwaitStartReply);
        Ok(())
    }

    fn on_start(&mut self, key: SessionKey, frame: &Frame) -> Result<(), CloseReason> {
        let grant = match self.check_token(key, frame.cap.as_ref()) {
            Ok(grant) => grant,
            Err((e, reason)) => {
                self.count_reject(key, reason);
                return Err(CloseReason::Violation(e));
            }
        };
        if self.membership_count() >= self.config.max_sessions {
            self.count_reject(key, RejectReason::MaxSessions);
            return Err(CloseReason::Violation(OverlayError::Refused));
        }
        let token = self.own_token.clone().unwrap_or_default();
        let header = self.control_header(
            flags::START | flags::RESP,
            StatusCode::Ok.as_u16(),
            self.config.app_proto_id,
            frame.header.corr_id,
        );
        self.send_raw(key, &header, token.as_bytes(), &[]);
        self.open_session(key, grant);
        Ok(())
    }

    fn on_start_reply(&mut self, key: SessionKey, frame: &Frame) -> Result<(), CloseReason> {
        if frame.header.code != StatusCode::Ok.as_u16() {
            return Err(CloseReason::PeerError(OverlayError::from_wire_code(
                frame.header.code,
            )));
        }
        match self.check_token(key, frame.cap.as_ref()) {
            Ok(grant) => {
                self.open_session(key, grant);
                Ok(())
            }
            Err((e, reason)) => {
                self.count_reject(key, reason);
                Err(CloseReason::Violation(e))
            }
        }
    }

    /// Verifies the peer's token exactly like the reference verifier, then derives the limits
    /// the overlay enforces itself (scope methods, max bytes, `BytesLe`, `Rate`, the
    /// `overlay`/`peer` binding to the TLS identity, and the expiry for the whole session).
    fn check_token(
        &mut self,
        key: SessionKey,
        cap: Option<&Bytes>,
    ) -> Result<Grant, (OverlayError, RejectReason)> {
        let Some((remote, peer)) = self.session(key).map(|s| (s.remote, s.peer)) else {
            return Err((OverlayError::Refused, RejectReason::Unauth));
        };
        let Some(limits) = self.verify_start_token(cap, remote, Some(&peer))? else {
            return Ok(self.default_grant());
        };
        let mut grant = self.default_grant();
        if !limits.methods.is_empty() {
            grant.operations = Operation::Control.bit();
            for op in [Operation::Gossip, Operation::Direct, Operation::Membership] {
                if limits.allows(op.name()) {
                    grant.operations |= op.bit();
                }
            }
        }
        grant.max_message_bytes = limits.max_message_bytes;
        grant.rate_cap = limits.rate_cap;
        let (rate, burst) = self.peer_quota(limits.rate_cap);
        let now = self.now;
        if let Some(s) = self.session_mut(key) {
            s.rate = TokenBucket::new(now, rate, burst);
            s.token_expires_at = limits.expires_at;
            s.allowed_topics = limits.topics;
        }
        Ok(grant)
    }

    pub(super) fn count_reject(&mut self, key: SessionKey, reason: RejectReason) {
        self.stats.rejected.bump(reason);
        let (conn, peer) = match self.session(key) {
            Some(s) => (Some(s.conn), Some(s.peer)),
            None => (None, None),
        };
        self.actions
            .push_back(Action::Rejected { conn, peer, reason });
    }

    /// The handshake finished: the sessions machine reports the session up (drained here).
    fn open_session(&mut self, key: SessionKey, grant: Grant) {
        self.sessions.start_running(key, grant);
        self.drain_sessions();
    }

    /// A session is up (the sessions machine's [`Started`]): it joins gossip (its topics)
    /// and membership, and the driver is told.
    pub(super) fn on_session_up(&mut self, key: SessionKey, started: Started) {
        let Some((peer, listen)) = self.session(key).map(|s| (s.peer, s.listen)) else {
            return;
        };
        if let Some(ip) = started.released_preauth {
            self.preauth.release(ip);
        }
        self.scores.connected(peer);
        self.open_topics(key);
        self.stats.sessions_opened += 1;
        self.actions.push_back(Action::Session(started.event));
        if let Some(addr) = listen {
            self.learn_peer(addr, Some(peer), false);
            self.membership.note_success(&addr);
        }
        self.on_link_running(key);
    }
}
