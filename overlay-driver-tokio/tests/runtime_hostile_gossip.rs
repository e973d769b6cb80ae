//! Hostile GOSSIP content over real TLS: a peer that passes the token check sends a message
//! whose id does not match its content, or that claims another node as its origin. Each is a
//! typed reject (400, `bad_id` / `bad_signature`), never delivered or relayed, and the honest
//! session next to it keeps working. Also: a hand-built client computing id and signature as
//! docs/PROTOCOL.md describes is accepted, and `origin_auth = sign` refuses a non-Ed25519
//! identity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::time::Duration;

use bytes::Bytes;
use overlay_proto::wire::{self, Kind};
use overlay_proto::{MessageId, NodeConfig, OriginAuth, OriginSigner, RejectReason};
use runtime_common::*;
use svc_overlay::tls::Identity;
use svc_overlay::{Error, Overlay, Subscription};

/// A server overlay (`origin_auth = sign`, the default) with an honest peer session.
struct Bed {
    server: Overlay,
    good: Overlay,
}

impl Bed {
    async fn new() -> Bed {
        let server = overlay_with(NodeConfig::default(), 21).await;
        let good = overlay(22).await;
        bounded("good peer dials", good.dial(server.local_addr()))
            .await
            .unwrap();
        Bed { server, good }
    }

    /// The honest session still carries gossip both ways, signed and verified.
    async fn still_healthy(&self) {
        let mut at_good = self.good.deliveries();
        let id = bounded(
            "broadcast",
            self.server.broadcast(Bytes::from_static(b"ok")),
        )
        .await
        .unwrap();
        let d = bounded("delivery to the good peer", at_good.recv())
            .await
            .unwrap();
        assert_eq!(d.id, id);
        let mut at_server = self.server.deliveries();
        let id = bounded(
            "broadcast back",
            self.good.broadcast(Bytes::from_static(b"ok2")),
        )
        .await
        .unwrap();
        let d = bounded("delivery to the server", at_server.recv())
            .await
            .unwrap();
        assert_eq!(d.id, id);
    }

    async fn rejected(&self, reason: RejectReason) -> u64 {
        self.server.stats().await.rejected.get(reason)
    }

    /// No delivery of `payload` reached the honest peer within a short wait.
    async fn good_never_got(&self, sub: &mut Subscription, payload: &[u8]) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.recv()).await {
            assert_ne!(&m.payload[..], payload, "a rejected message was relayed");
        }
    }

    async fn stop(self) {
        bounded("shutdown", self.server.shutdown()).await;
        bounded("shutdown", self.good.shutdown()).await;
    }
}

fn signer_of(identity: &Identity) -> OriginSigner {
    OriginSigner::new(identity.ed25519_seed().expect("dev identities are Ed25519"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_id_is_400_bad_id_and_goes_nowhere() {
    let bed = Bed::new().await;
    let mut at_good = bed.good.deliveries();
    let mut c = RawClient::open(&bed.server).await;
    let me = signer_of(&c.identity);
    // Correctly signed for its id, but the id does not match the payload carried.
    let (_, mut body) = wire::gossip_body(&me.peer_id(), 1, 0, b"original", Some(&me));
    let n = body.len();
    body[n - 8..].copy_from_slice(b"TAMPERED");
    c.send(&event_frame(Kind::Gossip.code(), &body)).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(400));
    assert_eq!(bed.rejected(RejectReason::BadId).await, 1);
    assert_eq!(bed.rejected(RejectReason::BadSignature).await, 0);
    assert_eq!(bed.server.stats().await.gossip_delivered, 0);
    bed.good_never_got(&mut at_good, b"TAMPERED").await;
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_origin_is_400_bad_signature_signed_or_not() {
    let bed = Bed::new().await;
    let mut at_good = bed.good.deliveries();
    let victim = bed.good.peer_id();

    // Claims the honest peer as origin (id computed for that claim), signed with its own key.
    let mut c = RawClient::open(&bed.server).await;
    let mallory = signer_of(&c.identity);
    let id = MessageId::compute(&victim, 7, b"from good, honest");
    let auth = mallory.sign(&id);
    let mut body = Vec::new();
    wire::put_gossip_header_with(&mut body, &id, &victim, 7, 0, Some(&auth));
    body.extend_from_slice(b"from good, honest");
    c.send(&event_frame(Kind::Gossip.code(), &body)).await;
    assert_eq!(last_error_code(&c.until_closed().await), Some(400));
    assert_eq!(bed.rejected(RejectReason::BadSignature).await, 1);

    // The same claim without a signature.
    let mut c = RawClient::open(&bed.server).await;
    let (_, body) = wire::gossip_body(&victim, 8, 0, b"from good, honest", None);
    c.send(&event_frame(Kind::Gossip.code(), &body)).await;
    assert_eq!(last_error_code(&c.until_closed().await), Some(400));
    assert_eq!(bed.rejected(RejectReason::BadSignature).await, 2);

    assert_eq!(bed.rejected(RejectReason::BadId).await, 0);
    assert_eq!(bed.server.stats().await.gossip_delivered, 0);
    bed.good_never_got(&mut at_good, b"from good, honest").await;
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_built_signed_message_is_delivered_and_relayed() {
    let bed = Bed::new().await;
    let mut at_server = bed.server.deliveries();
    let mut at_good = bed.good.deliveries();
    let c_identity;
    {
        let mut c = RawClient::open(&bed.server).await;
        let me = signer_of(&c.identity);
        let (id, body) = wire::gossip_body(&me.peer_id(), 42, 0, b"by hand", Some(&me));
        c.send(&event_frame(Kind::Gossip.code(), &body)).await;
        let d = bounded("delivered at the server", at_server.recv())
            .await
            .unwrap();
        assert_eq!(
            (d.id, d.origin, &d.payload[..]),
            (id, me.peer_id(), &b"by hand"[..])
        );
        // The honest peer verifies the relayed signature and delivers it too.
        let d = bounded("relayed to the good peer", at_good.recv())
            .await
            .unwrap();
        assert_eq!(d.id, id);
        c_identity = c.identity.peer_id();
    }
    assert_eq!(bed.server.stats().await.rejected.total(), 0, "{c_identity}");
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_mode_refuses_a_non_ed25519_identity() {
    // An ECDSA P-256 identity loaded from PEM, as `--cert/--key` would.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["svc-overlay.local".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ecdsa = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    assert!(ecdsa.ed25519_seed().is_none());

    let refused = Overlay::builder()
        .bind(loopback())
        .identity(ecdsa.clone())
        .build()
        .await
        .map(|_| ())
        .unwrap_err();
    match &refused {
        Error::Config(text) => {
            assert!(text.contains("origin_auth"), "{text}");
            assert!(text.contains("Ed25519"), "{text}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }

    let none = NodeConfig {
        origin_auth: OriginAuth::None,
        ..NodeConfig::default()
    };
    let ov = Overlay::builder()
        .bind(loopback())
        .identity(ecdsa)
        .node_config(none)
        .build()
        .await
        .expect("none mode runs with any identity");
    bounded("shutdown", ov.shutdown()).await;
}
