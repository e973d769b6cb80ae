//! The receive path: bytes → frames, with every ceiling (frame length, credit window, message
//! size, quota) checked from the 38-byte header before the body is buffered or decoded.

use bytes::Bytes;

use super::handshake::MAX_HANDSHAKE_FRAME;
use super::{Node, SessionKey};
use crate::action::CloseReason;
use crate::error::OverlayError;
use crate::frame::{self, flags, Frame, FrameError, Header, HEADER_LEN};
use crate::peer::{ConnId, DialId};
use crate::precheck::Prechecked;
use crate::session::Phase;
use crate::stats::RejectReason;
use crate::topic::TopicId;
use crate::wire::{self, Kind, IHAVE_ENTRY_LEN, MAX_IHAVE_IDS, SIGNED_GOSSIP_HEADER_LEN};

/// Largest body of a control message (IHAVE / GRAFT batches, shuffles).
const MAX_CONTROL_BODY: usize = MAX_IHAVE_IDS * IHAVE_ENTRY_LEN;

/// Where the bytes being decoded are.
enum Source<'a> {
    /// The session's buffer (a frame that arrived in pieces).
    Session,
    /// Bytes handed over by the driver, decoded in place.
    Held(&'a mut Bytes),
}

/// What the header check decided for one frame.
enum HeaderVerdict {
    /// Wait for more bytes.
    NeedMore,
    /// Decode and handle the frame.
    Accept(Option<Kind>),
    /// Close the session.
    Reject(RejectReason, CloseReason),
}

impl Node {
    pub(super) fn on_received(&mut self, conn: ConnId, data: Bytes, checks: Prechecked) {
        if self.is_client(&conn) {
            // Client sessions carry no GOSSIP: nothing was prechecked for them.
            self.on_client_received(conn, data);
            return;
        }
        let Some(key) = self.sessions.key_of(&conn) else {
            // Bytes for a session we already closed: nothing to do.
            return;
        };
        let now = self.now;
        self.stats.bytes_in += data.len() as u64;
        let Some(s) = self.session_mut(key) else {
            return;
        };
        if s.phase == Phase::Closing {
            return;
        }
        s.liveness.heard(now);
        s.received_at = s.received_at.max(now);
        let data = if s.phase == Phase::AwaitHello {
            // A reference HELLO on a connection with a certificate makes a client session.
            match self.route_first_hello(key, conn, data) {
                Some(data) => data,
                None => return,
            }
        } else {
            data
        };
        self.prechecked = checks;
        self.take_bytes(key, data);
        self.prechecked = Prechecked::default();
        self.maybe_grant_credit(key);
    }

    /// Handles every whole frame in `data`, zero-copy: frames are decoded straight from the
    /// caller's bytes (slices of the driver's receive block, shared or not), and only a frame
    /// split across two reads is copied into the session's buffer, one piece at a time: its
    /// header first (checked before anything more is buffered), then exactly the rest of it.
    fn take_bytes(&mut self, key: SessionKey, mut data: Bytes) {
        while !data.is_empty() {
            let Some(s) = self.session_mut(key) else {
                return;
            };
            if s.phase == Phase::Closing {
                return;
            }
            if s.recv_buf.is_empty() {
                if !self.process_frames(key, Source::Held(&mut data)) {
                    return;
                }
                // What is left is the start of a frame: keep it for the next read.
                if let Some(s) = self.session_mut(key) {
                    if !data.is_empty() {
                        s.recv_buf.extend_from_slice(&data);
                    }
                }
                return;
            }
            // Complete the buffered frame with just the bytes it still needs.
            let buffered = s.recv_buf.len();
            let want = if buffered < HEADER_LEN {
                HEADER_LEN - buffered
            } else {
                match frame::peek(&s.recv_buf) {
                    Ok(Some(h)) => (h.len as usize).saturating_sub(buffered),
                    // A bad header: process_frames rejects it without more bytes.
                    _ => 0,
                }
            };
            let piece = data.split_to(want.min(data.len()));
            s.recv_buf.extend_from_slice(&piece);
            if !self.process_frames(key, Source::Session) {
                return;
            }
        }
    }

    /// Decodes and handles every complete frame in `source`. Returns false once the session
    /// is gone or closing (nothing more may be read for it).
    fn process_frames(&mut self, key: SessionKey, mut source: Source<'_>) -> bool {
        loop {
            let verdict = match self.session(key) {
                Some(s) if s.phase != Phase::Closing => {
                    let bytes: &[u8] = match &source {
                        Source::Session => &s.recv_buf,
                        Source::Held(data) => data,
                    };
                    self.check_header(key, s.phase, frame::peek(bytes), bytes.len())
                }
                _ => return false,
            };
            let kind = match verdict {
                HeaderVerdict::NeedMore => return true,
                HeaderVerdict::Accept(kind) => kind,
                HeaderVerdict::Reject(reject, close) => {
                    self.count_reject(key, reject);
                    self.close_session(key, close);
                    return false;
                }
            };
            let at = match self.session(key) {
                Some(s) => s.recv_pos,
                None => return false,
            };
            let decoded = match &mut source {
                Source::Session => match self.session_mut(key) {
                    Some(s) => frame::decode(&mut s.recv_buf),
                    None => return false,
                },
                Source::Held(data) => frame::decode_bytes(data),
            };
            if let (Ok(Some(f)), Some(s)) = (&decoded, self.session_mut(key)) {
                s.recv_pos += u64::from(f.header.len);
            }
            let frame = match decoded {
                Ok(Some(frame)) => frame,
                Ok(None) => return true,
                Err(e) => {
                    let (reject, err) = classify_frame_error(&e);
                    self.count_reject(key, reject);
                    self.close_session(key, CloseReason::Violation(err));
                    return false;
                }
            };
            self.stats.frames_in += 1;
            match kind {
                Some(kind) => self.on_overlay_frame(key, kind, frame, at),
                None => self.on_handshake_frame(key, frame),
            }
        }
    }

    /// Checks a peeked header against the session's ceilings. Nothing is allocated or
    /// decoded before this says `Accept`.
    fn check_header(
        &self,
        key: SessionKey,
        phase: Phase,
        peeked: Result<Option<Header>, FrameError>,
        available: usize,
    ) -> HeaderVerdict {
        let h = match peeked {
            Ok(Some(h)) => h,
            Ok(None) => return HeaderVerdict::NeedMore,
            Err(e) => {
                let (reject, err) = classify_frame_error(&e);
                return HeaderVerdict::Reject(reject, CloseReason::Violation(err));
            }
        };
        let Some(s) = self.session(key) else {
            return HeaderVerdict::NeedMore;
        };
        let len = h.len as usize;
        let too_large = HeaderVerdict::Reject(
            RejectReason::Oversize,
            CloseReason::Violation(OverlayError::TooLarge),
        );
        let kind = if phase == Phase::Running {
            if h.flags & flags::RESP != 0 && h.code >= 400 {
                // The peer is closing with an error; let the frame through to be reported.
                if len > MAX_HANDSHAKE_FRAME {
                    return too_large;
                }
                None
            } else {
                let kind = match Kind::from_code(h.code) {
                    Some(k)
                        if h.app_proto_id == self.config.app_proto_id
                            && h.flags & flags::EVENT != 0
                            && h.cap_len == 0 =>
                    {
                        k
                    }
                    _ => {
                        return HeaderVerdict::Reject(
                            RejectReason::Malformed,
                            CloseReason::Violation(OverlayError::Malformed),
                        )
                    }
                };
                let body_limit = match kind {
                    Kind::Gossip => s.grant.max_message_bytes + SIGNED_GOSSIP_HEADER_LEN,
                    Kind::TopicGossip => {
                        TopicId::LEN + s.grant.max_message_bytes + SIGNED_GOSSIP_HEADER_LEN
                    }
                    Kind::Direct => s.grant.max_message_bytes,
                    Kind::TopicIHave
                    | Kind::TopicGraft
                    | Kind::TopicGraftMiss
                    | Kind::TopicPeers => TopicId::LEN + MAX_CONTROL_BODY,
                    _ => MAX_CONTROL_BODY,
                };
                if len.saturating_sub(HEADER_LEN) > body_limit {
                    return too_large;
                }
                if kind == Kind::Topics
                    && len.saturating_sub(HEADER_LEN)
                        > 2 + self.config.max_peer_topics * TopicId::LEN
                {
                    return HeaderVerdict::Reject(
                        RejectReason::TopicLimit,
                        CloseReason::Violation(OverlayError::TooLarge),
                    );
                }
                if kind.uses_credit() && !s.recv_allowance.fits(len) {
                    return HeaderVerdict::Reject(
                        RejectReason::Credits,
                        CloseReason::Violation(OverlayError::Quota),
                    );
                }
                Some(kind)
            }
        } else {
            if len > MAX_HANDSHAKE_FRAME {
                return too_large;
            }
            None
        };
        if available < len {
            return HeaderVerdict::NeedMore;
        }
        HeaderVerdict::Accept(kind)
    }

    /// Handles one frame of a running session.
    /// `at` is the frame's stream offset (to match a content-check verdict made by the driver).
    fn on_overlay_frame(&mut self, key: SessionKey, kind: Kind, frame: Frame, at: u64) {
        let now = self.now;
        let len = frame.header.len as usize;
        self.stats.frames_in_by_kind[kind.index()] += 1;
        let Some(s) = self.session_mut(key) else {
            return;
        };
        if kind.uses_credit() {
            s.recv_allowance.take(len);
            s.recv_since_grant.add(1, len as u64);
        }
        let max_message_bytes = s.grant.max_message_bytes;
        if s.grant.operations & kind.operation().bit() == 0 {
            self.count_reject(key, RejectReason::Forbidden);
            self.close_session(key, CloseReason::Violation(OverlayError::Forbidden));
            return;
        }
        if matches!(kind, Kind::Gossip | Kind::TopicGossip | Kind::Direct) && !s.rate.try_take(now)
        {
            self.stats.rejected.bump(RejectReason::Quota);
            return;
        }
        let body = frame.payload.unwrap_or_default();
        // The default topic uses the plain kinds; a `TOPIC_*` body starts with the topic.
        let (topic, body) = match kind {
            Kind::TopicGossip
            | Kind::TopicIHave
            | Kind::TopicGraft
            | Kind::TopicPrune
            | Kind::TopicGraftMiss => match wire::split_topic(kind, &body) {
                Ok(split) => split,
                Err(_) => {
                    self.count_reject(key, RejectReason::Malformed);
                    self.close_session(key, CloseReason::Violation(OverlayError::Malformed));
                    return;
                }
            },
            _ => (TopicId::DEFAULT, body),
        };
        let result = match kind {
            Kind::Gossip | Kind::TopicGossip => match wire::parse_gossip(&body) {
                // The header check allowed for the larger, signed header; the payload
                // itself must fit the peer's message limit exactly.
                Ok(m) if m.payload.len() > max_message_bytes => {
                    self.count_reject(key, RejectReason::Oversize);
                    self.close_session(key, CloseReason::Violation(OverlayError::TooLarge));
                    return;
                }
                parsed => parsed.map(|m| self.on_gossip(key, topic, m, at)),
            },
            Kind::IHave | Kind::TopicIHave => self.on_ihave(key, topic, &body),
            Kind::Graft | Kind::TopicGraft => self.on_graft(key, topic, &body),
            Kind::GraftMiss | Kind::TopicGraftMiss => self.on_graft_miss(key, topic, &body),
            Kind::Prune | Kind::TopicPrune => {
                if body.is_empty() {
                    self.on_prune(key, topic);
                    Ok(())
                } else {
                    Err(wire::WireError { kind })
                }
            }
            Kind::Topics => self.on_topics(key, &body),
            Kind::TopicPeers => match wire::split_topic(kind, &body) {
                Ok((topic, rest)) => self.on_topic_peers(key, topic, &rest),
                Err(e) => Err(e),
            },
            Kind::Credit => wire::parse_credit(&body).map(|g| self.on_credit(key, g)),
            Kind::Direct => {
                self.on_direct(key, body);
                Ok(())
            }
            Kind::Shuffle | Kind::ShuffleReply => self.on_shuffle(key, kind, &body),
            Kind::RunningPeers => self.on_running_peers(key, &body),
            Kind::Ping => {
                self.send_frame(key, Kind::Pong, &[]);
                Ok(())
            }
            Kind::Pong => {
                if let Some(s) = self.session_mut(key) {
                    s.liveness.pong(now);
                }
                Ok(())
            }
        };
        if result.is_err() {
            self.count_reject(key, RejectReason::Malformed);
            self.close_session(key, CloseReason::Violation(OverlayError::Malformed));
        }
    }

    fn on_credit(&mut self, key: SessionKey, grant: wire::CreditGrant) {
        if let Some(s) = self.session_mut(key) {
            s.on_credit(grant);
        }
        self.drain_queue(key);
    }

    fn on_direct(&mut self, key: SessionKey, payload: Bytes) {
        if let Some(s) = self.session(key) {
            let from = s.peer;
            self.stats.direct_delivered += 1;
            self.actions
                .push_back(crate::action::Action::DirectMessage { from, payload });
        }
    }

    /// The driver's error, if any, is informational: the session ends the same way.
    /// Callers waiting for the session are answered with that error (`Refused` without one).
    pub(super) fn on_connection_closed(&mut self, conn: ConnId, error: Option<OverlayError>) {
        if self.is_client(&conn) {
            self.close_client(conn, None, CloseReason::TransportClosed);
            return;
        }
        if let Some(key) = self.sessions.key_of(&conn) {
            let waiting = self
                .session_mut(key)
                .map(|s| std::mem::take(&mut s.dial_requests))
                .unwrap_or_default();
            self.settle_dial_requests(waiting, Err(error.unwrap_or(OverlayError::Refused)));
            self.close_session(key, CloseReason::TransportClosed);
        }
    }

    /// Every failure kind backs off the same way; callers waiting for the dial get `error`.
    pub(super) fn on_dial_failed(&mut self, dial: DialId, error: OverlayError) {
        let (addr, waiting) = self.membership.finish_dial(dial);
        self.settle_dial_requests(waiting, Err(error));
        self.stats.dials_failed += 1;
        if let Some(addr) = addr {
            self.membership.note_dial_result(false);
            self.note_failure(addr);
            self.maintain_membership();
        }
    }
}

/// Maps a codec error to the reject counter and the typed session error.
fn classify_frame_error(e: &FrameError) -> (RejectReason, OverlayError) {
    match e {
        FrameError::FrameTooLarge { .. } | FrameError::DecompressBoundExceeded => {
            (RejectReason::Oversize, OverlayError::TooLarge)
        }
        _ => (RejectReason::Malformed, OverlayError::Malformed),
    }
}
