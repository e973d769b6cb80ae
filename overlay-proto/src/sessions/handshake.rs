//! The handshake rules of a session (OAP/1 HELLO, then START with the capability token) and
//! the rules that end a session before or after it: which frame each phase expects, what a
//! peer's HELLO must say, which of two sessions with one peer survives, the self-connection
//! rule, the handshake deadline and the failure detector's verdicts. Token checks are the
//! node's (they need its key ring); everything here decides from the session alone.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use super::{SessionKey, Sessions, SessionsOutput};
use crate::action::{CloseReason, SessionEvent};
use crate::error::OverlayError;
use crate::frame::{flags, Header, HEADER_LEN};
use crate::liveness::{Heartbeat, LivenessConfig, Verdict};
use crate::peer::{ConnId, Direction, PeerId};
use crate::session::{Grant, Phase, Session};
use crate::time::Instant;
use crate::wire::HelloOverlay;

/// What a frame that arrived during the handshake is, for the session's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The peer's HELLO request (we wait for it: inbound).
    Hello,
    /// The reply to our HELLO (outbound).
    HelloReply,
    /// The peer's START with its token (inbound, after HELLO).
    Start,
    /// The reply to our START (outbound).
    StartReply,
    /// An error response from the peer: the session ends with it.
    PeerError(OverlayError),
    /// Anything else: refused before the token is verified.
    Unexpected,
}

/// What frame `header` is for a session in `phase`; `app_proto_id` is the overlay's.
pub(crate) fn step(phase: Phase, header: &Header, app_proto_id: u16) -> Step {
    let h = header;
    if h.flags & flags::RESP != 0 && h.code >= 400 {
        return Step::PeerError(OverlayError::from_wire_code(h.code));
    }
    match phase {
        Phase::AwaitHello if h.app_proto_id == 0 && h.flags & flags::REQ != 0 => Step::Hello,
        Phase::AwaitHelloReply if h.app_proto_id == 0 && h.flags & flags::RESP != 0 => {
            Step::HelloReply
        }
        Phase::AwaitStart if h.app_proto_id == app_proto_id && h.flags & flags::START != 0 => {
            Step::Start
        }
        Phase::AwaitStartReply if h.app_proto_id == app_proto_id && h.flags & flags::RESP != 0 => {
            Step::StartReply
        }
        _ => Step::Unexpected,
    }
}

/// The overlay keys of our HELLO (request or reply): overlay 1, our identity and listen
/// address, the window we grant (`credit_frames`, `credit_bytes`), and that we answer GRAFT
/// for ids we no longer hold with GRAFT_MISS.
pub(crate) fn our_hello(
    me: &PeerId,
    listen: Option<SocketAddr>,
    credit_frames: u32,
    credit_bytes: u32,
) -> HelloOverlay {
    HelloOverlay {
        overlay: 1,
        peer_id: me.to_string(),
        listen: listen.map(|a| a.to_string()),
        credit_frames,
        credit_bytes,
        graft_miss: true,
        running_peers: true,
    }
}

/// The smallest window a peer's HELLO may grant us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowFloor {
    /// Frames.
    pub(crate) frames: u32,
    /// Bytes.
    pub(crate) bytes: u32,
}

/// Why a peer's HELLO is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloRefusal {
    /// Not overlay version 1 (400).
    Version,
    /// The `peer_id` is not the TLS-proven identity (401).
    Identity,
    /// The window it grants us is below the floor: it would let one peer hold our frames (and
    /// readiness) hostage (400, counted as `small_window`).
    SmallWindow,
}

impl HelloRefusal {
    /// The close reason of the refusal.
    pub(crate) fn close_reason(self) -> CloseReason {
        match self {
            HelloRefusal::Version | HelloRefusal::SmallWindow => {
                CloseReason::Violation(OverlayError::Malformed)
            }
            HelloRefusal::Identity => CloseReason::Violation(OverlayError::Crypto),
        }
    }
}

/// Checks the overlay keys of a HELLO (request or reply) from `peer`, in this order: version,
/// identity, window.
pub(crate) fn check_hello(
    peer: &PeerId,
    hello: &HelloOverlay,
    floor: WindowFloor,
) -> Result<(), HelloRefusal> {
    if hello.overlay != 1 {
        return Err(HelloRefusal::Version);
    }
    match hello.peer_id.parse::<PeerId>() {
        Ok(id) if id == *peer => {}
        _ => return Err(HelloRefusal::Identity),
    }
    if hello.credit_frames < floor.frames || hello.credit_bytes < floor.bytes {
        return Err(HelloRefusal::SmallWindow);
    }
    Ok(())
}

/// Who dialed `session`: us (`me`) or the peer.
fn dialer(me: &PeerId, session: &Session) -> PeerId {
    match session.direction {
        Direction::Outbound => *me,
        Direction::Inbound => session.peer,
    }
}

/// Two sessions with one peer: the one dialed by the smaller peer id survives (both sides
/// agree on that). True when `new` survives: it was dialed by the smaller id and `existing`
/// was not (on a tie, the session already there stays).
pub(crate) fn new_session_wins(me: &PeerId, existing: &Session, new: &Session) -> bool {
    let preferred = (*me).min(new.peer);
    dialer(me, new) == preferred && dialer(me, existing) != preferred
}

/// What [`Sessions::admit`] did with a new connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The connection handle is in use already (a driver bug): the newcomer is handed back
    /// untouched, the existing session is not touched either.
    InUse(Box<Session>),
    /// In the table under this key (a connection to ourselves is queued to close).
    Admitted(SessionKey),
}

/// The outcome of the duplicate rule ([`Sessions::resolve_duplicate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    /// The new session survives (the existing one is queued to close).
    pub(crate) new_wins: bool,
    /// When the survivor already runs: its connection and the callers' dial tags that waited
    /// on the loser, to answer now (otherwise they moved to the survivor).
    pub(crate) answer_now: Option<(ConnId, Vec<u64>)>,
}

/// A session that finished its handshake ([`Sessions::start_running`], reported in
/// [`SessionsOutput::Up`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    /// The event for the driver (with the callers' dial tags).
    pub(crate) event: SessionEvent,
    /// The pre-auth slot the session held (inbound), to give back.
    pub(crate) released_preauth: Option<IpAddr>,
}

/// What the periodic check of every session found besides the closes it queued.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TimerCheck {
    /// Sessions whose failure detector wants a heartbeat sent now.
    pub(crate) heartbeats: Vec<(SessionKey, Heartbeat)>,
}

impl Sessions {
    /// A new connection (TLS done): refused when its handle is in use; otherwise added, and
    /// queued to close as [`CloseReason::SelfConnection`] when the peer is ourselves (`me`).
    pub(crate) fn admit(&mut self, session: Session, me: &PeerId) -> Admission {
        if self.has_conn(&session.conn) {
            return Admission::InUse(Box::new(session));
        }
        let to_self = session.peer == *me;
        let key = self.insert(session);
        if to_self {
            self.push_output(SessionsOutput::Close {
                key,
                reason: CloseReason::SelfConnection,
                winner: None,
            });
        }
        Admission::Admitted(key)
    }

    /// Session `new` is with the same peer as `existing` (which holds the peer's slot):
    /// applies [`new_session_wins`], queues the loser's close as
    /// [`CloseReason::Duplicate`] naming the winner, and moves the callers waiting on the
    /// loser to the winner (or hands them back to be answered now when it already runs).
    pub(crate) fn resolve_duplicate(
        &mut self,
        me: &PeerId,
        existing: SessionKey,
        new: SessionKey,
    ) -> Duplicate {
        let new_wins = match (self.get(existing), self.get(new)) {
            (Some(e), Some(n)) => new_session_wins(me, e, n),
            _ => false,
        };
        let (winner, loser) = if new_wins {
            (new, existing)
        } else {
            (existing, new)
        };
        let waiting = self
            .get_mut(loser)
            .map(|s| std::mem::take(&mut s.dial_requests))
            .unwrap_or_default();
        let mut winner_conn = None;
        let mut answer_now = None;
        if let Some(w) = self.get_mut(winner) {
            winner_conn = Some(w.conn);
            if w.is_running() {
                answer_now = Some((w.conn, waiting));
            } else {
                w.dial_requests.extend(waiting);
            }
        }
        self.push_output(SessionsOutput::Close {
            key: loser,
            reason: CloseReason::Duplicate,
            winner: winner_conn,
        });
        Duplicate {
            new_wins,
            answer_now,
        }
    }

    /// Applies an accepted HELLO (see [`check_hello`]) to session `key`: the peer's listen
    /// address (as the node vetted it), whether it speaks GRAFT_MISS and answers RUNNING_PEERS,
    /// and the window it grants.
    pub(crate) fn apply_hello(
        &mut self,
        key: SessionKey,
        hello: &HelloOverlay,
        listen: Option<SocketAddr>,
    ) {
        if let Some(s) = self.get_mut(key) {
            s.listen = listen;
            s.graft_miss = hello.graft_miss;
            s.running_peers = hello.running_peers;
            s.send_window
                .add(hello.credit_frames, u64::from(hello.credit_bytes));
        }
    }

    /// Moves session `key` to `phase` (a handshake step).
    pub(crate) fn set_phase(&mut self, key: SessionKey, phase: Phase) {
        if let Some(s) = self.get_mut(key) {
            s.phase = phase;
        }
    }

    /// The handshake of session `key` finished with the peer's `grant`: it runs, and
    /// [`SessionsOutput::Up`] is queued with the event for the driver (the callers' dial tags
    /// move into it) and the pre-auth slot to give back.
    pub(crate) fn start_running(&mut self, key: SessionKey, grant: Grant) {
        let Some(s) = self.get_mut(key) else {
            return;
        };
        s.phase = Phase::Running;
        s.grant = grant;
        let released_preauth = std::mem::take(&mut s.holds_preauth).then_some(s.remote.ip());
        let event = SessionEvent::Up {
            conn: s.conn,
            peer: s.peer,
            direction: s.direction,
            dial: s.dial,
            requests: std::mem::take(&mut s.dial_requests),
        };
        let started = Started {
            event,
            released_preauth,
        };
        self.push_output(SessionsOutput::Up { key, started });
    }

    /// The periodic check at `now`: a session still handshaking `handshake_timeout` after it
    /// came up is queued to close ([`CloseReason::HandshakeTimeout`]); a running session's
    /// failure detector (`liveness`; first excused for `late` when the node itself did not
    /// run for longer than `tick`) either gives up on the peer (queued to close,
    /// [`CloseReason::PeerUnresponsive`]) or asks for a heartbeat (returned).
    pub(crate) fn check_timers(
        &mut self,
        now: Instant,
        handshake_timeout: Duration,
        liveness: &LivenessConfig,
        late: Duration,
        tick: Duration,
    ) -> TimerCheck {
        let excuse = late > tick;
        let mut expired = Vec::new();
        let mut check = TimerCheck::default();
        for (key, s) in self.iter_mut() {
            if s.phase.is_handshaking() && now - s.opened_at >= handshake_timeout {
                expired.push((key, CloseReason::HandshakeTimeout));
            } else if s.phase == Phase::Running {
                if excuse {
                    s.liveness.excuse(late, now);
                }
                // A PING waits for credit like any other frame; a heartbeat must leave now.
                let can_ping = s.queue.frames() == 0 && s.send_window.fits(HEADER_LEN);
                match s.liveness.poll(now, liveness, can_ping) {
                    Verdict::Unresponsive { .. } => {
                        expired.push((key, CloseReason::PeerUnresponsive));
                    }
                    Verdict::Heartbeat(kind) => check.heartbeats.push((key, kind)),
                    Verdict::Alive => {}
                }
            }
        }
        for (key, reason) in expired {
            self.push_output(SessionsOutput::Close {
                key,
                reason,
                winner: None,
            });
        }
        check
    }
}
