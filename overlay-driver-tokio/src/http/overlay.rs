//! [`OverlayApi`] for the real node handle, [`Overlay`].

use std::net::SocketAddr;

use bytes::Bytes;
use overlay_proto::{MessageId, NodeStats, PeerId, SessionInfo, TopicId};

use super::backend::{GossipSubscription, OverlayApi, ReadinessView};
use crate::api::{Cursor, CursorError, Error, Overlay, Replay, Sequenced, Subscription};

impl GossipSubscription for Subscription {
    async fn recv(&mut self) -> Option<Sequenced> {
        Subscription::recv_sequenced(self).await
    }
}

impl OverlayApi for Overlay {
    type Subscription = Subscription;
    type TopicSubscription = Subscription;

    async fn join_topic(&self, topic: TopicId) -> Result<bool, Error> {
        Overlay::join(self, topic).await
    }

    async fn leave_topic(&self, topic: TopicId) -> Result<bool, Error> {
        Overlay::leave(self, topic).await
    }

    async fn publish(&self, topic: TopicId, payload: Bytes) -> Result<MessageId, Error> {
        Overlay::publish(self, topic, payload).await
    }

    fn resume_topic(
        &self,
        topic: TopicId,
        after: Option<Cursor>,
    ) -> Option<Result<(Subscription, Replay), CursorError>> {
        Overlay::resume_topic(self, topic, after)
    }

    async fn broadcast(&self, payload: Bytes) -> Result<MessageId, Error> {
        Overlay::broadcast(self, payload).await
    }

    async fn dial(&self, addr: String) -> Result<PeerId, Error> {
        Overlay::dial(self, addr)
            .await
            .map(|session| session.peer_id())
    }

    async fn peers(&self) -> Vec<SessionInfo> {
        Overlay::peers(self).await
    }

    async fn stats(&self) -> NodeStats {
        Overlay::stats(self).await
    }

    fn readiness(&self) -> ReadinessView {
        let rx = Overlay::readiness(self);
        let now = rx.borrow();
        ReadinessView {
            ready: now.ready,
            missing: now.missing.clone(),
        }
    }

    fn subscribe(&self) -> Subscription {
        Overlay::resumable_deliveries(self)
    }

    fn resume(&self, after: Option<Cursor>) -> Result<(Subscription, Replay), CursorError> {
        Overlay::resume(self, after)
    }

    fn local_addr(&self) -> SocketAddr {
        Overlay::local_addr(self)
    }

    fn peer_id(&self) -> PeerId {
        Overlay::peer_id(self)
    }
}
