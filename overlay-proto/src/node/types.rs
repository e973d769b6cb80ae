//! Public views of the node: its identity and read-only session summaries.

use core::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::origin::SigningSeed;
use crate::peer::{ConnId, Direction, PeerId};
use crate::score::PeerScore;

/// Who this node is: its TLS-proven identity, its origin-signing key and the address peers
/// should dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// This node's peer id (from its certificate key).
    pub peer_id: PeerId,
    /// The address this node accepts connections on, advertised to peers.
    pub listen_addr: Option<SocketAddr>,
    /// The Ed25519 seed of the certificate key, when the identity is Ed25519: signs this
    /// node's broadcasts. Its public key must hash to `peer_id`. Wiped on drop; a trace
    /// header carries it (traces are secrets).
    #[serde(default)]
    pub signing_key: Option<SigningSeed>,
}

impl NodeIdentity {
    /// An identity without a signing key (usable with `origin_auth = None` only).
    pub fn new(peer_id: PeerId, listen_addr: Option<SocketAddr>) -> Self {
        NodeIdentity {
            peer_id,
            listen_addr,
            signing_key: None,
        }
    }

    /// An Ed25519 identity: the peer id is derived from the seed's public key.
    pub fn from_signing_seed(seed: SigningSeed, listen_addr: Option<SocketAddr>) -> Self {
        NodeIdentity {
            peer_id: seed.peer_id(),
            listen_addr,
            signing_key: Some(seed),
        }
    }
}

/// A session's state, as reported by [`crate::Node::sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionState {
    /// HELLO / START exchange in progress.
    Handshaking,
    /// Open; gossip flows.
    Running,
    /// Closing (graceful).
    Closing,
}

impl SessionState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Handshaking => "handshaking",
            SessionState::Running => "running",
            SessionState::Closing => "closing",
        }
    }
}

/// A read-only view of one session, for operators (`GET /v1/peers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The connection.
    pub conn: ConnId,
    /// The peer.
    pub peer: PeerId,
    /// The remote address.
    pub remote: SocketAddr,
    /// The address the peer accepts connections on (from its HELLO), when it gave one.
    pub listen: Option<SocketAddr>,
    /// Who dialed.
    pub direction: Direction,
    /// Current state.
    pub state: SessionState,
    /// Negotiated TLS key-exchange group.
    pub kx_group: Option<String>,
    /// Frames we may still send before the peer grants more.
    pub send_credit_frames: u32,
    /// Frames queued waiting for credit.
    pub queued_frames: usize,
    /// Frames sent and not yet re-credited by the peer.
    pub inflight_frames: u32,
    /// True when this peer is an eager (Plumtree) push target.
    pub eager: bool,
    /// The peer's score, standing and score components.
    pub score: PeerScore,
}
