//! The [`Node`]: the overlay state machine. One input in, then drain actions.

use core::net::SocketAddr;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::config::{ConfigError, NodeConfig};
use crate::input::Input;
use crate::peer::{ConnId, Direction, PeerId};
use crate::stats::NodeStats;
use crate::time::Instant;

/// Who this node is: its TLS-proven identity and the address peers should dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// This node's peer id (from its certificate key).
    pub peer_id: PeerId,
    /// The address this node accepts connections on, advertised to peers.
    pub listen_addr: Option<SocketAddr>,
}

/// A session's state, as reported by [`Node::sessions`].
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The connection.
    pub conn: ConnId,
    /// The peer.
    pub peer: PeerId,
    /// The remote address.
    pub remote: SocketAddr,
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
}

/// The overlay state machine. See the crate docs for the driving loop.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    identity: NodeIdentity,
    actions: VecDeque<Action>,
    stats: NodeStats,
}

impl Node {
    /// Creates a node. `seed` drives every random choice (peer sampling, jitter, nonces).
    pub fn new(config: NodeConfig, identity: NodeIdentity, seed: u64) -> Result<Node, ConfigError> {
        config.validate()?;
        let _ = seed;
        Ok(Node { config, identity, actions: VecDeque::new(), stats: NodeStats::default() })
    }

    /// Applies one input at time `now`. Drain [`Node::poll_action`] afterwards.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let _ = (now, input);
    }

    /// The next action for the driver, or `None` when drained.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the node next needs `Input::Timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// A snapshot of counters and gauges.
    pub fn stats(&self) -> NodeStats {
        self.stats.clone()
    }

    /// False while saturated (drives `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.stats.ready
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The configuration in force.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Every session, ordered by connection id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        Vec::new()
    }
}
