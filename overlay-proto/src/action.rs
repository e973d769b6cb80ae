//! Actions: what a node asks its driver to do, pulled with `Node::poll_action()`.

use bytes::Bytes;
use core::net::SocketAddr;
use serde::{Deserialize, Serialize};

use crate::chunks::Chunks;
use crate::config::{LiveSettings, ReconfigureError};
use crate::error::OverlayError;
use crate::peer::{ConnId, DialId, Direction, MessageId, PeerId};
use crate::stats::RejectReason;
use crate::topic::TopicId;

/// One thing for the driver to carry out, in the order produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub enum Action {
    /// Write these bytes on the connection, in order, after everything written before.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// One or more whole OAP/1 frames, as shared pieces (a forwarded payload is one piece
        /// shared by every peer's transmit; write them with one vectored write).
        data: Chunks,
    },
    /// Open a TLS connection. Answer with `Input::ConnectionUp { dial: Some(dial), .. }` or
    /// `Input::DialFailed`.
    Connect {
        /// Echo this in the answer.
        dial: DialId,
        /// Where.
        addr: SocketAddr,
        /// The identity expected there, when known (the driver may pin it).
        peer: Option<PeerId>,
    },
    /// Flush what was transmitted, then close the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
        /// For `CloseReason::Duplicate`: the connection of the session that won (callers
        /// waiting on the closed one now wait on, or were answered with, the winner).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner: Option<ConnId>,
    },
    /// Answer to `Input::Dial`, produced for every such input.
    DialAnswer {
        /// The caller's tag of the `Input::Dial`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
        /// The address asked for.
        addr: SocketAddr,
        /// What the node did about it.
        outcome: DialOutcome,
    },
    /// The end of tagged `Input::Dial`s whose `DialAnswer` was not final (`Dialing` or
    /// `Handshaking`) and that did not end with their session's `SessionEvent::Up`: the dial
    /// failed, the session closed before it ran, or it lost a duplicate tie-break to a
    /// session that already runs (then `result` names that session's connection).
    DialResult {
        /// The callers' tags.
        requests: Vec<u64>,
        /// The running session that answers them, or why there is none.
        result: Result<ConnId, OverlayError>,
    },
    /// A gossip message reached this node for the first time: hand it to the application.
    /// Boxed (as are `Validate`'s delivery and `Reconfigured`'s answer) so an `Action` stays
    /// small in every queue that holds them; a box serializes as its content, so the trace
    /// format is unchanged.
    Deliver(Box<Delivery>),
    /// A new gossip message passed the content checks and waits for the application's verdict
    /// (`NodeConfig::validation = App`): answer with `Input::Verdict { id, .. }` before
    /// `validation_timeout`, or it is ignored. Until then it is neither forwarded nor delivered.
    Validate {
        /// Echo this in the verdict.
        id: u64,
        /// The message as it would be delivered.
        delivery: Box<Delivery>,
    },
    /// A direct message from a connected peer.
    DirectMessage {
        /// Sender.
        from: PeerId,
        /// The message.
        payload: Bytes,
    },
    /// Outcome of `Input::Broadcast` or `Input::Publish`.
    BroadcastResult {
        /// The caller's tag.
        request: u64,
        /// The message id, or why it was not sent.
        result: Result<MessageId, OverlayError>,
    },
    /// Outcome of `Input::Join`.
    Joined {
        /// The topic.
        topic: TopicId,
        /// `true` when newly joined, `false` when already in it; or why not
        /// (`TooManyTopics`, `ShuttingDown`).
        result: Result<bool, OverlayError>,
    },
    /// Outcome of `Input::Leave`.
    Left {
        /// The topic.
        topic: TopicId,
        /// `true` when the node was in it, `false` when not; `NotJoined` for the default
        /// topic, which cannot be left.
        result: Result<bool, OverlayError>,
    },
    /// Outcome of `Input::SendDirect`.
    SendResult {
        /// The caller's tag.
        request: u64,
        /// Queued for the peer, or why not.
        result: Result<(), OverlayError>,
    },
    /// A session changed state.
    Session(SessionEvent),
    /// A peer became, or stopped being, this node's neighbour in a topic: a running session
    /// with it whose peer is in the topic (it announced the topic with TOPICS, every peer is
    /// in the default one, and its token covers the topic) while this node is in it too.
    /// Produced when the session opens or ends, when the peer joins or leaves the topic, and
    /// when this node joins a topic (one `up` for every member already connected, in session
    /// order, before `Joined`); leaving a topic produces none (its stream ends). Several in
    /// one input come in topic byte order.
    TopicNeighbor {
        /// The topic.
        topic: TopicId,
        /// The neighbour.
        peer: PeerId,
        /// It became a neighbour in the topic, or why it no longer is one.
        change: NeighborChange,
    },
    /// A peer's frame, message or connection was rejected (also counted in stats).
    Rejected {
        /// The connection, when there is one.
        conn: Option<ConnId>,
        /// The peer, when known.
        peer: Option<PeerId>,
        /// Why.
        reason: RejectReason,
    },
    /// Readiness changed: `ready == false` means saturated (the driver's `/readyz` answers 503).
    Readiness {
        /// True when below every threshold.
        ready: bool,
        /// Which load signals are over their threshold (empty when ready).
        saturated: Vec<String>,
    },
    /// Answer to `Input::Reconfigure`: the settings in force now, or why the new ones were
    /// refused (then nothing changed).
    Reconfigured(Box<Result<LiveSettings, ReconfigureError>>),
    /// `Input::Shutdown` finished: every session was closed.
    ShutdownComplete,
    /// A client session started or ended.
    Client(crate::client::ClientEvent),
    /// A DIRECT message from a client session (answer with `Input::SendToClient`).
    ClientMessage {
        /// The client session.
        client: ConnId,
        /// The message.
        payload: Bytes,
    },
}

/// What the node did with an operator's `Input::Dial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialOutcome {
    /// A dial to that address is under way (started now, or already in flight): the session,
    /// if it opens, reports `SessionEvent::Up` with this dial. Not final for a tagged dial.
    Dialing(DialId),
    /// A session on this connection reaches that address (dialed there, or the peer
    /// advertised it as its listen address) and is still handshaking. Not final for a tagged
    /// dial.
    Handshaking(ConnId),
    /// A running session on this connection already reaches that address. Final.
    Connected(ConnId),
    /// Not dialed (final): the node is shutting down (`ShuttingDown`), the address is the node's own
    /// (`Refused`), or `max_concurrent_dials` dials are in flight (`Busy`; the address joins
    /// the passive list and membership dials it when a slot frees).
    Refused(OverlayError),
}

/// A gossip message delivered to the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The topic it was broadcast in.
    #[serde(default)]
    pub topic: TopicId,
    /// Message id.
    pub id: MessageId,
    /// The node that broadcast it.
    pub origin: PeerId,
    /// The neighbour it came from.
    pub from: PeerId,
    /// Overlay hops from the origin (1 = direct neighbour).
    pub hops: u8,
    /// The message.
    pub payload: Bytes,
}

/// Session state changes reported to the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// HELLO and capability exchange finished; gossip flows.
    Up {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: PeerId,
        /// Who dialed.
        direction: Direction,
        /// The dial, for outbound sessions.
        dial: Option<DialId>,
        /// Tags of the `Input::Dial`s this session answers.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requests: Vec<u64>,
    },
    /// The session ended.
    Down {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: CloseReason,
    },
}

/// How a peer's place in a topic changed (`Action::TopicNeighbor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NeighborChange {
    /// The peer is now a neighbour in the topic.
    Up,
    /// The peer is no longer a neighbour in the topic.
    Down(NeighborDownReason),
}

/// Why a peer stopped being a neighbour in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NeighborDownReason {
    /// The session with the peer ended.
    Closed(CloseReason),
    /// The peer left the topic (its TOPICS no longer names it).
    Left,
}

impl NeighborDownReason {
    /// A stable snake_case label: the close reason's label, or `left`.
    pub fn label(self) -> &'static str {
        match self {
            NeighborDownReason::Closed(reason) => reason.label(),
            NeighborDownReason::Left => "left",
        }
    }
}

/// Why a connection was closed by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CloseReason {
    /// Graceful shutdown.
    Shutdown,
    /// Another session with the same peer won the tie-break.
    Duplicate,
    /// The connection leads back to this node.
    SelfConnection,
    /// HELLO/START did not finish in time.
    HandshakeTimeout,
    /// The failure detector heard nothing from the peer for its silence limit (a silently
    /// dead, frozen or partitioned peer).
    PeerUnresponsive,
    /// The peer broke a rule; the error says which.
    Violation(OverlayError),
    /// The peer answered with an error status.
    PeerError(OverlayError),
    /// The transport closed under us.
    TransportClosed,
    /// Membership trimmed the session (over the active target for long).
    Trimmed,
    /// Frames waited for the peer's credit with no progress for `stall_timeout`.
    Stalled,
    /// The peer's score fell below `ban_threshold`, or the peer or its address is banned.
    Banned,
    /// The peer's token expired (`Exp` + clock skew passed) during the session.
    TokenExpired,
    /// Latency-aware membership replaced this link with a faster one, or closed a probe
    /// connection that was not faster (`link_optimization`).
    Optimized,
}

impl CloseReason {
    /// The error a caller waiting for the session (a tagged `Input::Dial`) is answered with.
    pub fn caller_error(self) -> OverlayError {
        match self {
            CloseReason::Violation(e) | CloseReason::PeerError(e) => e,
            CloseReason::HandshakeTimeout
            | CloseReason::Stalled
            | CloseReason::PeerUnresponsive => OverlayError::Timeout,
            CloseReason::Banned => OverlayError::Forbidden,
            CloseReason::TokenExpired => OverlayError::Unauthorized,
            CloseReason::Shutdown => OverlayError::ShuttingDown,
            CloseReason::Duplicate
            | CloseReason::SelfConnection
            | CloseReason::Trimmed
            | CloseReason::Optimized
            | CloseReason::TransportClosed => OverlayError::Refused,
        }
    }

    /// The status code sent before closing, when one is sent.
    pub fn wire_code(self) -> Option<u16> {
        match self {
            CloseReason::Violation(e) => Some(e.wire_code()),
            CloseReason::HandshakeTimeout | CloseReason::PeerUnresponsive => Some(408),
            CloseReason::Duplicate
            | CloseReason::SelfConnection
            | CloseReason::Trimmed
            | CloseReason::Optimized => Some(409),
            CloseReason::Shutdown => Some(503),
            CloseReason::Stalled => Some(408),
            CloseReason::Banned => Some(403),
            CloseReason::TokenExpired => Some(401),
            CloseReason::PeerError(_) | CloseReason::TransportClosed => None,
        }
    }

    /// A stable snake_case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "shutdown",
            CloseReason::Duplicate => "duplicate",
            CloseReason::SelfConnection => "self_connection",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::PeerUnresponsive => "peer_unresponsive",
            CloseReason::Violation(e) | CloseReason::PeerError(e) => e.label(),
            CloseReason::TransportClosed => "transport_closed",
            CloseReason::Trimmed => "trimmed",
            CloseReason::Stalled => "stalled",
            CloseReason::Banned => "banned",
            CloseReason::TokenExpired => "expired",
            CloseReason::Optimized => "optimized",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Input;

    /// The shapes of trace format 3, before the dial tags.
    #[derive(Serialize)]
    enum V3Action {
        Close {
            conn: ConnId,
            reason: CloseReason,
        },
        DialAnswer {
            addr: SocketAddr,
            outcome: DialOutcome,
        },
    }

    #[derive(Serialize)]
    enum V3Input {
        Dial { addr: SocketAddr },
    }

    /// The shapes of the variants before they were boxed.
    #[derive(Serialize)]
    enum UnboxedAction {
        Deliver(Delivery),
        Validate { id: u64, delivery: Delivery },
        Reconfigured(Result<LiveSettings, ReconfigureError>),
    }

    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap_or_default();
        out
    }

    #[test]
    fn untagged_records_encode_as_in_trace_format_3() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9415));
        let outcome = DialOutcome::Dialing(DialId(3));
        assert_eq!(
            cbor(&Action::Close {
                conn: ConnId(1),
                reason: CloseReason::Trimmed,
                winner: None,
            }),
            cbor(&V3Action::Close {
                conn: ConnId(1),
                reason: CloseReason::Trimmed,
            })
        );
        assert_eq!(
            cbor(&Action::DialAnswer {
                request: None,
                addr,
                outcome,
            }),
            cbor(&V3Action::DialAnswer { addr, outcome })
        );
        let old = cbor(&V3Input::Dial { addr });
        assert_eq!(
            cbor(&Input::Dial {
                request: None,
                addr
            }),
            old
        );
        let read: Input = ciborium::from_reader(old.as_slice()).unwrap_or(Input::Timeout);
        assert_eq!(
            read,
            Input::Dial {
                request: None,
                addr
            }
        );
    }

    #[test]
    fn boxed_variants_encode_as_before_and_keep_every_action_small() {
        let delivery = Delivery {
            topic: TopicId([1; 32]),
            id: MessageId([2; 32]),
            origin: PeerId([3; 32]),
            from: PeerId([4; 32]),
            hops: 5,
            payload: Bytes::from_static(b"payload"),
        };
        let live = LiveSettings::of(&crate::NodeConfig::default());
        let refused = ReconfigureError {
            setting: "alpha".to_string(),
            accepted: "1..=64".to_string(),
        };
        let pairs = [
            (
                Action::Deliver(Box::new(delivery.clone())),
                cbor(&UnboxedAction::Deliver(delivery.clone())),
            ),
            (
                Action::Validate {
                    id: 7,
                    delivery: Box::new(delivery.clone()),
                },
                cbor(&UnboxedAction::Validate { id: 7, delivery }),
            ),
            (
                Action::Reconfigured(Box::new(Ok(live.clone()))),
                cbor(&UnboxedAction::Reconfigured(Ok(live))),
            ),
            (
                Action::Reconfigured(Box::new(Err(refused.clone()))),
                cbor(&UnboxedAction::Reconfigured(Err(refused))),
            ),
        ];
        for (action, old) in pairs {
            assert_eq!(cbor(&action), old, "{action:?}");
            let read: Option<Action> = ciborium::from_reader(old.as_slice()).ok();
            assert_eq!(read, Some(action));
        }
        // Every queue of actions (the core's, the driver's scratch) pays the largest variant
        // per slot: no variant carries a whole delivery or settings table inline.
        assert!(
            core::mem::size_of::<Action>() <= 96,
            "Action is {} bytes",
            core::mem::size_of::<Action>()
        );
    }
}
