//! What the HTTP layer needs from a running node: the [`OverlayApi`] trait.
//!
//! The router is generic over this trait so it can be tested against a fake; the real
//! implementation for [`crate::api::Overlay`] is in `overlay.rs`.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use overlay_proto::{MessageId, NodeStats, PeerId, SessionInfo, TopicId};

use crate::api::{Cursor, CursorError, Error, Replay, Sequenced};

/// A snapshot of the node's readiness, as `GET /readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadinessView {
    /// True when the node accepts work (listeners bound, load below the thresholds).
    pub ready: bool,
    /// What is missing or saturated when not ready (e.g. `sessions`, `send_queue`).
    pub missing: Vec<String>,
}

/// A stream of gossip deliveries for one subscriber.
pub trait GossipSubscription: Send + 'static {
    /// The next delivered message and its cursor; `None` when the node has stopped. A jump
    /// in the sequence numbers means the subscriber lost the messages in between.
    fn recv(&mut self) -> impl Future<Output = Option<Sequenced>> + Send;
}

/// The node operations the HTTP layer uses. Cheap to clone (a handle).
pub trait OverlayApi: Clone + Send + Sync + 'static {
    /// The subscription type returned by [`OverlayApi::subscribe`].
    type Subscription: GossipSubscription;

    /// The subscription type returned by [`OverlayApi::resume_topic`].
    type TopicSubscription: GossipSubscription;

    /// Originates a gossip message in the default topic.
    fn broadcast(&self, payload: Bytes) -> impl Future<Output = Result<MessageId, Error>> + Send;

    /// Dials `addr` (`host:port`; names are resolved) and waits for the session to open.
    fn dial(&self, addr: String) -> impl Future<Output = Result<PeerId, Error>> + Send;

    /// The node's sessions.
    fn peers(&self) -> impl Future<Output = Vec<SessionInfo>> + Send;

    /// The node's counters and gauges.
    fn stats(&self) -> impl Future<Output = NodeStats> + Send;

    /// The current readiness.
    fn readiness(&self) -> ReadinessView;

    /// A new subscription to delivered gossip messages.
    fn subscribe(&self) -> Self::Subscription;

    /// A subscription resumed after `after`: the kept messages since and the count of those
    /// no longer kept, then the live feed (see [`crate::api::Overlay::resume`]).
    fn resume(&self, after: Option<Cursor>) -> Result<(Self::Subscription, Replay), CursorError>;

    /// The address the node accepts sessions (and same-port HTTP) on.
    fn local_addr(&self) -> SocketAddr;

    /// The node's own identity.
    fn peer_id(&self) -> PeerId;

    /// Joins `topic` for the operator: `Ok(true)` when newly joined, `Ok(false)` when the node
    /// was in it (see [`crate::api::Overlay::join`]).
    fn join_topic(&self, topic: TopicId) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Ends the operator's hold on `topic`: `Ok(true)` when the node was in it (see
    /// [`crate::api::Overlay::leave`]).
    fn leave_topic(&self, topic: TopicId) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Originates a gossip message in `topic` (`NotJoined` when the node is not in it).
    fn publish(
        &self,
        topic: TopicId,
        payload: Bytes,
    ) -> impl Future<Output = Result<MessageId, Error>> + Send;

    /// `topic`'s deliveries from now on, like [`OverlayApi::subscribe`] (`after` = `None`) or
    /// [`OverlayApi::resume`] (`after` = the client's last cursor), in the topic's own
    /// numbering; `None` when the node is not in the topic. The subscription ends when the
    /// node leaves the topic.
    fn resume_topic(
        &self,
        topic: TopicId,
        after: Option<Cursor>,
    ) -> Option<Result<(Self::TopicSubscription, Replay), CursorError>>;
}
