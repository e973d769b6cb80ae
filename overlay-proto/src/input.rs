//! Inputs: everything that can happen to a node. Each is applied with `Node::handle(now, input)`.

use bytes::Bytes;
use core::net::SocketAddr;
use serde::{Deserialize, Serialize};

use crate::config::LiveSettings;
use crate::error::OverlayError;
use crate::peer::{ConnId, DialId, Direction, PeerId};
use crate::precheck::Prechecked;
use crate::topic::TopicId;

/// One event from the outside world. Serializable: a trace is a list of `(now, Input)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A TLS connection finished its handshake. `peer` was authenticated by the certificate.
    ConnectionUp {
        /// Driver's handle for the connection.
        conn: ConnId,
        /// Identity proven by the peer's certificate.
        peer: PeerId,
        /// Who dialed.
        direction: Direction,
        /// The remote socket address.
        remote: SocketAddr,
        /// For outbound connections, the dial this answers.
        dial: Option<DialId>,
        /// The negotiated TLS key-exchange group, for reporting (e.g. `X25519MLKEM768`).
        kx_group: Option<String>,
    },
    /// A dial requested by `Action::Connect` failed before a session could start.
    DialFailed {
        /// The dial.
        dial: DialId,
        /// Why (Timeout, Refused, Crypto).
        error: OverlayError,
    },
    /// Bytes arrived on a connection (after TLS).
    Received {
        /// The connection.
        conn: ConnId,
        /// The plaintext bytes, in order.
        data: Bytes,
    },
    /// Bytes arrived on a connection, with the content-check verdicts of the GOSSIP frames
    /// inside them, computed by the connection's [`Prechecker`](crate::Prechecker) where the
    /// bytes were read. Handled exactly like `Received`; the node uses a verdict instead of
    /// checking the frame itself (same result). Traces keep the bytes only: replay checks
    /// inline.
    ReceivedPrechecked {
        /// The connection.
        conn: ConnId,
        /// The plaintext bytes, in order.
        data: Bytes,
        /// Verdicts for GOSSIP frames wholly inside `data` (never deserialized).
        #[serde(skip)]
        checks: Prechecked,
    },
    /// The connection is gone (peer closed, IO error, or after our `Action::Close`).
    ConnectionClosed {
        /// The connection.
        conn: ConnId,
        /// Why, when the driver knows.
        error: Option<OverlayError>,
    },
    /// The deadline returned by `poll_timeout` passed (or any wake-up: timers are checked).
    Timeout,
    /// The application asks to broadcast a message to the default topic.
    Broadcast {
        /// Caller's tag, echoed in `Action::BroadcastResult`.
        request: u64,
        /// The message.
        payload: Bytes,
    },
    /// The application asks to broadcast a message to a topic this node is in. Answered with
    /// `Action::BroadcastResult` (`NotJoined` when the node is not in the topic).
    Publish {
        /// Caller's tag, echoed in `Action::BroadcastResult`.
        request: u64,
        /// The topic.
        topic: TopicId,
        /// The message.
        payload: Bytes,
    },
    /// Join a topic (answered with `Action::Joined`).
    Join(TopicId),
    /// Leave a topic (answered with `Action::Left`).
    Leave(TopicId),
    /// The application asks to send a message to one connected peer.
    SendDirect {
        /// Caller's tag, echoed in `Action::SendResult`.
        request: u64,
        /// The peer.
        peer: PeerId,
        /// The message.
        payload: Bytes,
    },
    /// The operator asks to dial an address now. Answered with `Action::DialAnswer`; refused
    /// as `Busy` while `max_concurrent_dials` dials are in flight. With a `request` tag, the
    /// node also reports how the dial ends: the tag comes back in `SessionEvent::Up` or in
    /// `Action::DialResult`, exactly once (unless the answer was already final).
    Dial {
        /// Caller's tag, echoed in the answers; `None` when nobody waits for the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
        /// Where.
        addr: SocketAddr,
    },
    /// Discovery (or configuration) offers peer addresses; they join the passive list, within
    /// `passive_capacity` (an address the full list cannot take is counted as
    /// `passive_dropped`).
    PeersDiscovered {
        /// Addresses that may run overlay peers.
        addrs: Vec<SocketAddr>,
    },
    /// The operator changed the live settings (fan-outs, quotas). Validated like the start
    /// configuration; answered with `Action::Reconfigured`. Boxed: the `[scoring]` table
    /// would make every `Input` as large as this rare one (the encoding is the unboxed one,
    /// so traces are unchanged).
    Reconfigure(Box<LiveSettings>),
    /// Close every session gracefully and stop dialing.
    Shutdown,
    /// The application's verdict on a message held for validation (`Action::Validate`).
    /// Verdicts for ids no longer pending are counted and have no effect.
    Verdict {
        /// The `id` of the `Action::Validate`.
        id: u64,
        /// Accept, reject or ignore.
        verdict: crate::node::Verdict,
    },
    /// A TLS connection without a client certificate finished its handshake (server side
    /// only): a client session, authenticated by its START token alone (see
    /// [`crate::client`]). It can never become a peer.
    ClientConnectionUp {
        /// Driver's handle for the connection.
        conn: ConnId,
        /// The remote socket address.
        remote: SocketAddr,
        /// The negotiated TLS key-exchange group, for reporting.
        kx_group: Option<String>,
    },
    /// The application sends a DIRECT message to a client session (by its connection, from
    /// `ClientEvent::Up` or `Action::ClientMessage`).
    SendToClient {
        /// Caller's tag, echoed in `Action::SendResult`.
        request: u64,
        /// The client session.
        client: ConnId,
        /// The message.
        payload: Bytes,
    },
}

impl Input {
    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::ConnectionUp { .. } => "connection_up",
            Input::DialFailed { .. } => "dial_failed",
            Input::Received { .. } | Input::ReceivedPrechecked { .. } => "received",
            Input::ConnectionClosed { .. } => "connection_closed",
            Input::Timeout => "timeout",
            Input::Broadcast { .. } => "broadcast",
            Input::Publish { .. } => "publish",
            Input::Join(_) => "join",
            Input::Leave(_) => "leave",
            Input::SendDirect { .. } => "send_direct",
            Input::Dial { .. } => "dial",
            Input::PeersDiscovered { .. } => "peers_discovered",
            Input::Reconfigure(_) => "reconfigure",
            Input::Shutdown => "shutdown",
            Input::Verdict { .. } => "verdict",
            Input::ClientConnectionUp { .. } => "client_connection_up",
            Input::SendToClient { .. } => "send_to_client",
        }
    }
}
