//! A test bed for hostile-input tests: a server overlay with one honest peer session, to check
//! that what a hostile client or peer does leaves that session (and the node) healthy.

use bytes::Bytes;
use overlay_proto::{NodeConfig, RejectReason};
use svc_overlay::Overlay;

use super::{bounded, overlay, overlay_with};

/// A server overlay (`cfg`) and an honest peer overlay with a session to it.
pub struct Bed {
    /// The node under attack.
    pub server: Overlay,
    /// The honest peer, dialed in to `server`.
    pub good: Overlay,
}

impl Bed {
    /// Starts both overlays (seeds `server_seed` and `server_seed + 1`) and opens the honest
    /// session.
    pub async fn new(cfg: NodeConfig, server_seed: u64) -> Bed {
        let server = overlay_with(cfg, server_seed).await;
        let good = overlay(server_seed + 1).await;
        bounded("good peer dials", good.dial(server.local_addr()))
            .await
            .unwrap();
        Bed { server, good }
    }

    /// The honest session still carries gossip: a broadcast from the server reaches the peer
    /// (other messages may come first), and the server still lists the peer.
    pub async fn still_healthy(&self) {
        let mut sub = self.good.deliveries();
        let id = bounded(
            "broadcast",
            self.server.broadcast(Bytes::from_static(b"honest traffic")),
        )
        .await
        .expect("broadcast accepted");
        loop {
            let d = bounded("delivery to the honest peer", sub.recv())
                .await
                .unwrap();
            if d.id == id {
                break;
            }
        }
        assert!(self
            .server
            .peers()
            .await
            .iter()
            .any(|s| s.peer == self.good.peer_id()));
    }

    /// [`Bed::still_healthy`], and the server reports ready.
    pub async fn still_ready_and_healthy(&self) {
        assert!(
            self.server.readiness().borrow().ready,
            "readiness: {:?}",
            self.server.readiness().borrow().missing
        );
        self.still_healthy().await;
    }

    /// The server's reject counter for `reason`.
    pub async fn rejected(&self, reason: RejectReason) -> u64 {
        self.server.stats().await.rejected.get(reason)
    }

    /// Shuts both overlays down.
    pub async fn stop(self) {
        bounded("shutdown", self.server.shutdown()).await;
        bounded("shutdown", self.good.shutdown()).await;
    }
}
