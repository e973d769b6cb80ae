//! Two overlays in one process over loopback TCP + TLS: dial, session up, broadcast, direct
//! messages, API behaviour around dials and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use bytes::Bytes;
use overlay_proto::{Direction, SessionState};
use runtime_common::*;
use svc_overlay::OverlayError;
use svc_overlay::{Error, KernelEvent, Overlay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_broadcast_and_direct_between_two_overlays() {
    let a = overlay(1).await;
    let b = overlay(2).await;
    let mut b_gossip = b.deliveries();
    let mut b_direct = b.direct_messages();
    let mut b_events = b.events();

    let session = bounded("dial", a.dial(b.local_addr()))
        .await
        .expect("dial succeeds");
    assert_eq!(session.peer_id(), b.peer_id());
    assert_eq!(session.direction(), Direction::Outbound);
    assert_eq!(session.remote_addr(), b.local_addr());
    assert_eq!(session.kx_group(), Some("X25519MLKEM768"));

    // B sees the session too (inbound, running).
    wait_until("b has a running session", || async {
        b.peers()
            .await
            .iter()
            .any(|s| s.peer == a.peer_id() && s.state == SessionState::Running)
    })
    .await;
    match bounded("session up event", b_events.recv()).await.unwrap() {
        KernelEvent::SessionUp { peer } => assert_eq!(peer, a.peer_id()),
        other => panic!("unexpected event {other:?}"),
    }

    // Broadcast from A reaches B's subscriber with A as origin, one hop.
    let id = bounded(
        "broadcast",
        a.broadcast(Bytes::from_static(b"hello overlay")),
    )
    .await
    .unwrap();
    let got = bounded("delivery", b_gossip.recv())
        .await
        .expect("delivered");
    assert_eq!(got.id, id);
    assert_eq!(got.origin, a.peer_id());
    assert_eq!(got.from, a.peer_id());
    assert_eq!(got.hops, 1);
    assert_eq!(&got.payload[..], b"hello overlay");

    // Direct message through the session handle.
    bounded("direct send", session.send(Bytes::from_static(b"psst")))
        .await
        .unwrap();
    let direct = bounded("direct delivery", b_direct.recv()).await.unwrap();
    assert_eq!(direct.from, a.peer_id());
    assert_eq!(&direct.payload[..], b"psst");

    // And back, by peer id, from B.
    let mut a_direct = a.direct_messages();
    bounded("direct back", b.send_to(a.peer_id(), "pong"))
        .await
        .unwrap();
    let back = bounded("direct back delivery", a_direct.recv())
        .await
        .unwrap();
    assert_eq!(back.from, b.peer_id());

    let sa = a.stats().await;
    assert_eq!(sa.sessions_running, 1);
    assert_eq!(sa.gossip_originated, 1);
    let sb = b.stats().await;
    assert_eq!(sb.gossip_delivered, 1);
    assert_eq!(sb.direct_delivered, 1);
    assert_eq!(a.driver_stats().handshake_failures_total(), 0);

    bounded("shutdown a", a.shutdown()).await;
    // B sees the session end (A closed it gracefully with 503 "shutdown").
    loop {
        match bounded("session down event", b_events.recv())
            .await
            .unwrap()
        {
            KernelEvent::SessionDown { peer, .. } => {
                assert_eq!(peer, a.peer_id());
                break;
            }
            KernelEvent::Health { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    bounded("shutdown b", b.shutdown()).await;
    assert!(!a.is_running() && !b.is_running());
    // Subscriptions end once the node has stopped.
    assert!(bounded("subscription ends", b_gossip.recv())
        .await
        .is_none());
}

/// Broadcasts issued together reach the node task together: their frames travel in one writer
/// message per wake-up (and many per TLS record) and must arrive complete and in the order
/// the node accepted them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_issued_together_arrive_complete_and_in_order() {
    let a = overlay(11).await;
    let b = overlay(12).await;
    let mut b_gossip = b.deliveries();
    bounded("dial", a.dial(b.local_addr())).await.unwrap();
    const ROUNDS: u32 = 20;
    const PER_ROUND: u32 = 100;
    let mut expected = 0u32;
    for round in 0..ROUNDS {
        // Polled in order, so the commands queue in order (`unconstrained`: tokio's cooperative
        // budget would make a send past it yield, and the calls would queue out of the order
        // they were issued in); at most one round is in flight, which stays below the
        // subscriber's feed (it never has to drop anything).
        let sends = (0..PER_ROUND).map(|i| {
            let seq = round * PER_ROUND + i;
            let mut payload = seq.to_be_bytes().to_vec();
            payload.resize(1024, seq as u8);
            a.broadcast(Bytes::from(payload))
        });
        let ids = bounded(
            "broadcasts",
            tokio::task::unconstrained(futures_util::future::join_all(sends)),
        )
        .await;
        for id in &ids {
            assert!(id.is_ok(), "accepted: {id:?}");
        }
        for _ in 0..PER_ROUND {
            let got = bounded("delivery", b_gossip.recv())
                .await
                .expect("delivered");
            let seq = u32::from_be_bytes(got.payload[..4].try_into().unwrap());
            assert_eq!(seq, expected, "in order, none missing");
            assert_eq!(got.payload.len(), 1024);
            assert!(got.payload[4..].iter().all(|&x| x == seq as u8), "intact");
            expected += 1;
        }
    }
    assert_eq!(b_gossip.lost(), 0);
    let sb = b.stats().await;
    assert_eq!(sb.gossip_delivered, u64::from(ROUNDS * PER_ROUND));
    bounded("shutdown a", a.shutdown()).await;
    bounded("shutdown b", b.shutdown()).await;
}

/// `broadcast_batch` applies its messages in order in one go: each has its own result, the
/// accepted ones arrive complete and in that order, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_batch_arrives_complete_and_in_order() {
    let a = overlay(13).await;
    let b = overlay(14).await;
    let mut b_gossip = b.deliveries();
    bounded("dial", a.dial(b.local_addr())).await.unwrap();
    // 150 messages: more than one batch of 64 goes to the node (the API splits them).
    const COUNT: u32 = 150;
    let payloads = (0..COUNT).map(|seq| {
        let mut payload = seq.to_be_bytes().to_vec();
        payload.resize(1024, seq as u8);
        Bytes::from(payload)
    });
    let results = bounded("batch", a.broadcast_batch(payloads)).await.unwrap();
    assert_eq!(results.len(), COUNT as usize);
    let ids: Vec<_> = results.into_iter().map(|r| r.expect("accepted")).collect();
    for (seq, id) in ids.iter().enumerate() {
        let got = bounded("delivery", b_gossip.recv())
            .await
            .expect("delivered");
        assert_eq!(&got.id, id, "message {seq}: in order, none missing");
        assert_eq!(
            u32::from_be_bytes(got.payload[..4].try_into().unwrap()),
            seq as u32
        );
        assert_eq!(got.payload.len(), 1024);
        assert!(got.payload[4..].iter().all(|&x| x == seq as u8), "intact");
    }
    assert_eq!(b_gossip.lost(), 0);
    // Large messages go a few per batch (at most 1 MiB of payload each): all five are
    // accepted and arrive in order.
    let large: Vec<Bytes> = (0..5u8).map(|n| Bytes::from(vec![n; 400 * 1024])).collect();
    let results = bounded("large batch", a.broadcast_batch(large))
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    for (n, result) in results.into_iter().enumerate() {
        let id = result.expect("accepted");
        let got = bounded("large delivery", b_gossip.recv())
            .await
            .expect("delivered");
        assert_eq!(got.id, id);
        assert!(got.payload.len() == 400 * 1024 && got.payload.iter().all(|&x| x == n as u8));
    }
    // An empty batch is no command at all.
    assert!(bounded("empty", a.broadcast_batch(Vec::new()))
        .await
        .unwrap()
        .is_empty());
    bounded("shutdown a", a.shutdown()).await;
    bounded("shutdown b", b.shutdown()).await;
}

/// Backpressure applies inside a batch: once the session's queue is full the node refuses the
/// rest of the batch (`Busy`, each counted), and exactly the accepted messages arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_batch_is_refused_past_a_full_queue_and_loses_nothing_it_accepted() {
    // B grants 8 frames of credit at a time; A queues at most 8 more before it is busy.
    let small = overlay_proto::NodeConfig {
        credit_window_frames: 8,
        min_peer_window_frames: 8,
        max_queue_frames: 8,
        ..Default::default()
    };
    let a = overlay_with(small.clone(), 15).await;
    let b = overlay_with(small, 16).await;
    let mut b_gossip = b.deliveries();
    bounded("dial", a.dial(b.local_addr())).await.unwrap();
    let payloads = (0..64u32).map(|seq| Bytes::from(seq.to_be_bytes().to_vec()));
    let results = bounded("batch", a.broadcast_batch(payloads)).await.unwrap();
    assert_eq!(results.len(), 64);
    // One batch is applied in one go (no credit comes back meanwhile): a prefix is accepted,
    // the rest is refused for backpressure.
    let accepted = results.iter().take_while(|r| r.is_ok()).count();
    assert!(accepted > 0 && accepted < 64, "accepted {accepted} of 64");
    for r in &results[accepted..] {
        assert!(
            matches!(r, Err(Error::Overlay(OverlayError::Busy))),
            "refused for backpressure: {r:?}"
        );
    }
    for (seq, r) in results[..accepted].iter().enumerate() {
        let got = bounded("delivery", b_gossip.recv())
            .await
            .expect("delivered");
        assert_eq!(&got.id, r.as_ref().unwrap());
        assert_eq!(&got.payload[..], &(seq as u32).to_be_bytes());
    }
    assert_eq!(b_gossip.lost(), 0);
    // Once the queue drains the node takes broadcasts again.
    wait_until("a ready again", || async {
        a.broadcast(Bytes::from_static(b"after")).await.is_ok()
    })
    .await;
    bounded("shutdown a", a.shutdown()).await;
    bounded("shutdown b", b.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_joins_an_existing_session_and_reports_failures() {
    let a = overlay(3).await;
    let b = overlay(4).await;
    assert!(a.readiness().borrow().ready);
    let mut stream = b.deliveries().into_stream();
    let first = bounded("dial", a.dial(b.local_addr().to_string()))
        .await
        .unwrap();
    let again = bounded("dial again", a.dial(b.local_addr())).await.unwrap();
    assert_eq!(
        first.conn_id(),
        again.conn_id(),
        "the running session is reused"
    );
    assert_eq!(a.peers().await.len(), 1);
    let id = a.broadcast("streamed").await.unwrap();
    let got = bounded("stream item", futures_util::StreamExt::next(&mut stream))
        .await
        .unwrap();
    assert_eq!(got.id, id);

    // Nothing listens there any more: refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = bounded("dial closed port", a.dial(closed))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::Refused)),
        "{err:?}"
    );
    assert!(err.retry_after().is_some());

    // Dialing ourselves is refused by the core (self-connection).
    let err = bounded("dial self", a.dial(a.local_addr()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::Refused)),
        "{err:?}"
    );

    assert!(matches!(
        a.dial("not an address").await,
        Err(Error::Config(_))
    ));

    // Sending to a peer without a session.
    let stranger = overlay(5).await;
    let err = a.send_to(stranger.peer_id(), "x").await.unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::NotConnected)),
        "{err:?}"
    );

    for ov in [&a, &b, &stranger] {
        bounded("shutdown", ov.shutdown()).await;
    }
    // After shutdown every call fails fast.
    assert!(matches!(
        a.broadcast("late").await,
        Err(Error::Overlay(OverlayError::ShuttingDown))
    ));
    assert!(matches!(
        first.send("late").await,
        Err(Error::Overlay(OverlayError::ShuttingDown))
    ));
    assert!(a.peers().await.is_empty());
    let readiness = a.readiness().borrow().clone();
    assert!(!readiness.ready);
    assert!(!readiness.missing.is_empty());
    assert!(
        bounded("stream ends", futures_util::StreamExt::next(&mut stream))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_dial_to_the_wrong_identity_is_a_crypto_failure() {
    // B's address, but membership expects another identity there: the core's pin comes from
    // a previous session, so emulate it with a dial to a node that swapped identity.
    let b = overlay(6).await;
    let addr = b.local_addr();
    let a = overlay(7).await;
    bounded("dial", a.dial(addr)).await.unwrap();
    let b_id = b.peer_id();
    bounded("shutdown b", b.shutdown()).await;
    // A new node on the same port with a new identity.
    let b2 = Overlay::builder()
        .bind(addr)
        .seed(8)
        .build()
        .await
        .expect("rebind the same port");
    assert_ne!(b2.peer_id(), b_id);
    // A redials by itself (membership, with the old PeerId pinned) and fails the TLS check.
    wait_until("pinned redial refused", || async {
        a.driver_stats().handshake_failures("peer_id_mismatch") > 0
    })
    .await;
    bounded("shutdown", a.shutdown()).await;
    bounded("shutdown", b2.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_non_loopback_and_builder_validates() {
    let err = Overlay::builder()
        .bind("0.0.0.0:0".parse().unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("dev mode")),
        "{err}"
    );

    let bad = overlay_proto::NodeConfig {
        alpha: 0,
        ..overlay_proto::NodeConfig::default()
    };
    let err = Overlay::builder()
        .bind(loopback())
        .node_config(bad)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("alpha")),
        "{err}"
    );
}
