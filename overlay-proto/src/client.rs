//! Client sessions: TLS connections without a client certificate, authenticated by their
//! START token alone (issue #9). A client publishes, subscribes to deliveries and sends
//! DIRECT messages to the node; it is never a gossip peer, never in membership views or
//! SHUFFLE, and has its own limits ([`ClientLimits`]) and counters ([`ClientStats`]).
//!
//! The wire format is `docs/PROTOCOL.md`, "Client sessions". The node side lives in
//! `node/client.rs`; this module holds what drivers and tests see.

use core::net::SocketAddr;
use core::time::Duration;
use serde::{Deserialize, Serialize};

use crate::action::CloseReason;
use crate::peer::ConnId;

/// Request kind: publish the payload to the overlay (answer `{"id":"<64 hex>"}`).
pub const CODE_PUBLISH: u16 = 0x0110;
/// Request kind: start deliveries (answer `{}`).
pub const CODE_SUBSCRIBE: u16 = 0x0111;
/// Request kind: stop deliveries (answer `{}`).
pub const CODE_UNSUBSCRIBE: u16 = 0x0112;
/// Event kind, node → client: `id[32] origin[32] hops u8` then the message.
pub const CODE_DELIVER: u16 = 0x0113;
/// Event kind, node → client: `dropped u64`, deliveries dropped because the client's queue
/// was full.
pub const CODE_LAGGED: u16 = 0x0114;
/// Length of the DELIVER header before the message.
pub const DELIVER_HEADER_LEN: usize = 32 + 32 + 1;
/// Largest body of a SUBSCRIBE / UNSUBSCRIBE request (reserved for `{"topic":"name"}`).
pub const MAX_CONTROL_REQUEST_BODY: usize = 1024;

/// Token `scope.methods` name that allows PUBLISH.
pub const METHOD_PUBLISH: &str = "publish";
/// Token `scope.methods` name that allows SUBSCRIBE (and UNSUBSCRIBE).
pub const METHOD_SUBSCRIBE: &str = "subscribe";
/// Token `scope.methods` name that allows DIRECT (the same name as for peers).
pub const METHOD_DIRECT: &str = "direct";

/// Limits of client sessions (`[clients]` in the daemon's TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientLimits {
    /// Running client sessions at most; a START past it is answered 503 (`max_clients`).
    pub max_clients: usize,
    /// Requests and DIRECT messages per second one client may send (token bucket refill);
    /// a token's `Rate` caveat may lower it. Over it: PUBLISH answered 429, DIRECT dropped.
    pub rate_per_s: u32,
    /// Token bucket depth for `rate_per_s`.
    pub rate_burst: u32,
    /// Window the node grants each client (HELLO reply `credit_frames`).
    pub window_frames: u32,
    /// Window the node grants each client (HELLO reply `credit_bytes`).
    pub window_bytes: u32,
    /// Window assumed when a client's HELLO does not say (`credit_frames` absent).
    pub default_client_window_frames: u32,
    /// Window assumed when a client's HELLO does not say (`credit_bytes` absent).
    pub default_client_window_bytes: u32,
    /// Frames queued for one client while it grants no credit; past it deliveries are
    /// dropped and reported with LAGGED.
    pub queue_frames: usize,
    /// Bytes queued for one client while it grants no credit (as `queue_frames`).
    pub queue_bytes: usize,
    /// A running client that sent nothing for this long is closed (408 `idle`). Clients keep
    /// the session with any frame (a PING is answered with PONG).
    pub idle_timeout: Duration,
    /// Bytes of partially received frames buffered for all clients together; a client whose
    /// half-sent frame takes the total past it is closed (503 `busy`).
    pub max_buffered_bytes: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_clients: 1024,
            rate_per_s: 1000,
            rate_burst: 2000,
            window_frames: 256,
            window_bytes: 4 * 1024 * 1024,
            default_client_window_frames: 256,
            default_client_window_bytes: 4 * 1024 * 1024,
            queue_frames: 1024,
            queue_bytes: 8 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ClientLimits {
    /// The first setting out of range, as `(setting, accepted)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let checks: [(bool, &'static str, &'static str); 9] = [
            (
                self.max_buffered_bytes >= crate::frame::MAX_FRAME_BYTES,
                "clients.max_buffered_bytes",
                ">= 1048576",
            ),
            (self.rate_per_s >= 1, "clients.rate_per_s", ">= 1"),
            (self.rate_burst >= 1, "clients.rate_burst", ">= 1"),
            (self.window_frames >= 2, "clients.window_frames", ">= 2"),
            (
                self.window_bytes as usize >= crate::frame::MAX_FRAME_BYTES,
                "clients.window_bytes",
                ">= 1048576 (one maximal frame)",
            ),
            (
                self.default_client_window_frames >= 1,
                "clients.default_client_window_frames",
                ">= 1",
            ),
            (self.queue_frames >= 1, "clients.queue_frames", ">= 1"),
            (
                self.queue_bytes >= crate::frame::MAX_FRAME_BYTES,
                "clients.queue_bytes",
                ">= 1048576",
            ),
            (!self.idle_timeout.is_zero(), "clients.idle_timeout", "> 0"),
        ];
        for (ok, setting, accepted) in checks {
            if !ok {
                return Err((setting, accepted));
            }
        }
        Ok(())
    }
}

/// Why a client's request, frame or session was refused, or a delivery dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClientRejectReason {
    /// Bytes that do not decode as OAP/1 or as a client frame (400).
    Malformed,
    /// The client's HELLO granted less than the minimum window (400).
    SmallWindow,
    /// Missing or invalid token, or a frame before START (401).
    Unauth,
    /// The token does not allow the operation or the session (403).
    Forbidden,
    /// The token is bound to a peer (`overlay`/`peer` caveat): not usable by a client (403).
    WrongPeer,
    /// The token expired during the session (401).
    Expired,
    /// A message or frame larger than allowed (413).
    Oversize,
    /// Over the client's request rate (429 for PUBLISH; DIRECT dropped).
    Rate,
    /// A frame past the credit window the node granted (429, closed).
    Credits,
    /// `max_clients` client sessions run already (503).
    MaxClients,
    /// The pre-auth budget is full (503).
    Preauth,
    /// The node is saturated or shutting down (503).
    Busy,
    /// HELLO / START did not finish within the handshake timeout (408).
    HandshakeTimeout,
    /// Nothing received for `idle_timeout` (408).
    Idle,
    /// A HELLO with the peer keys (`peer_id`) on a connection without a certificate (401).
    NoCertificate,
}

impl ClientRejectReason {
    /// Number of variants.
    pub const COUNT: usize = 15;
    /// Every variant, in counter order.
    pub const ALL: [ClientRejectReason; Self::COUNT] = [
        ClientRejectReason::Malformed,
        ClientRejectReason::SmallWindow,
        ClientRejectReason::Unauth,
        ClientRejectReason::Forbidden,
        ClientRejectReason::WrongPeer,
        ClientRejectReason::Expired,
        ClientRejectReason::Oversize,
        ClientRejectReason::Rate,
        ClientRejectReason::Credits,
        ClientRejectReason::MaxClients,
        ClientRejectReason::Preauth,
        ClientRejectReason::Busy,
        ClientRejectReason::HandshakeTimeout,
        ClientRejectReason::Idle,
        ClientRejectReason::NoCertificate,
    ];

    /// The metrics label (`client_rejected_total{reason}`), also the `error` label on the wire.
    pub fn label(self) -> &'static str {
        match self {
            ClientRejectReason::Malformed => "malformed",
            ClientRejectReason::SmallWindow => "small_window",
            ClientRejectReason::Unauth => "unauth",
            ClientRejectReason::Forbidden => "forbidden",
            ClientRejectReason::WrongPeer => "wrong_peer",
            ClientRejectReason::Expired => "expired",
            ClientRejectReason::Oversize => "too_large",
            ClientRejectReason::Rate => "rate",
            ClientRejectReason::Credits => "credit_violation",
            ClientRejectReason::MaxClients => "max_clients",
            ClientRejectReason::Preauth => "preauth_full",
            ClientRejectReason::Busy => "busy",
            ClientRejectReason::HandshakeTimeout => "handshake_timeout",
            ClientRejectReason::Idle => "idle",
            ClientRejectReason::NoCertificate => "certificate_required",
        }
    }

    /// The status code sent with it.
    pub fn wire_code(self) -> u16 {
        match self {
            ClientRejectReason::Malformed | ClientRejectReason::SmallWindow => 400,
            ClientRejectReason::Unauth
            | ClientRejectReason::Expired
            | ClientRejectReason::NoCertificate => 401,
            ClientRejectReason::Forbidden | ClientRejectReason::WrongPeer => 403,
            ClientRejectReason::HandshakeTimeout | ClientRejectReason::Idle => 408,
            ClientRejectReason::Oversize => 413,
            ClientRejectReason::Rate | ClientRejectReason::Credits => 429,
            ClientRejectReason::MaxClients
            | ClientRejectReason::Preauth
            | ClientRejectReason::Busy => 503,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts by [`ClientRejectReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientRejectCounts(pub [u64; ClientRejectReason::COUNT]);

impl ClientRejectCounts {
    /// Adds one.
    pub fn bump(&mut self, reason: ClientRejectReason) {
        self.0[reason.index()] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, reason: ClientRejectReason) -> u64 {
        self.0[reason.index()]
    }

    /// `(reason, count)` pairs, in counter order.
    pub fn iter(&self) -> impl Iterator<Item = (ClientRejectReason, u64)> + '_ {
        ClientRejectReason::ALL
            .iter()
            .map(move |r| (*r, self.get(*r)))
    }
}

/// Counters and gauges of client sessions (part of [`crate::NodeStats`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientStats {
    /// Gauge: client sessions through START.
    pub sessions: usize,
    /// Gauge: client connections still in HELLO / START.
    pub handshaking: usize,
    /// Gauge: running clients subscribed to deliveries.
    pub subscribers: usize,
    /// Gauge: bytes of partial frames buffered for all clients.
    pub buffered_bytes: usize,
    /// Counter: client sessions that passed START.
    pub opened: u64,
    /// Counter: client sessions closed (any reason, after START).
    pub closed: u64,
    /// Counter: PUBLISH requests answered with an id.
    pub published: u64,
    /// Counter: DELIVER frames queued for clients.
    pub delivered: u64,
    /// Counter: deliveries dropped because a client's queue was full (reported with LAGGED).
    pub lagged: u64,
    /// Counter: DIRECT messages from clients handed to the application.
    pub direct_in: u64,
    /// Counter: DIRECT messages from the application to clients.
    pub direct_out: u64,
    /// Counter: client sessions opened on a connection that presented a certificate (a
    /// reference HELLO, without the peer keys, makes a client of it).
    pub from_certificate: u64,
    /// Counter: refusals by reason.
    pub rejected: ClientRejectCounts,
}

/// A client session changed state (`Action::Client`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientEvent {
    /// START succeeded.
    Up {
        /// The connection (the client's handle for `Input::SendToClient`).
        conn: ConnId,
        /// The client's address.
        remote: SocketAddr,
    },
    /// The session ended (after START).
    Down {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// One client session, as [`crate::Node::clients`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    /// The connection (the handle for `Input::SendToClient`).
    pub conn: ConnId,
    /// The client's address.
    pub remote: SocketAddr,
    /// True once START succeeded.
    pub running: bool,
    /// True while subscribed to deliveries.
    pub subscribed: bool,
    /// Frames queued for the client's credit.
    pub queued_frames: usize,
    /// The negotiated TLS group.
    pub kx_group: Option<String>,
}
