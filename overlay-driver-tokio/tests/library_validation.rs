//! The library's validation hook with real nodes: A — B — C in a line, B validates
//! (`ValidationMode::App`) and rejects what A publishes that the application deems bad.
//! Accepted messages reach C; a rejected one goes no further, and A's standing at B falls
//! (the `validation_rejected` penalty: with the default weight one rejection does not ban A
//! at B, a few in a row do).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::time::Duration;

use bytes::Bytes;
use overlay_proto::score::Penalty;
use overlay_proto::{NodeConfig, ValidationMode};
use runtime_common::*;

/// The ends of the line want one session (`active_target` 1), so they dial only B and never
/// each other. `max_sessions` stays above 1: with a limit of 1, the one running session is
/// 100 % of it, so the core reports the node saturated (`sessions`) at its next tick and
/// refuses broadcasts with `Busy` — A's broadcasts then passed only when they beat that tick
/// (the test failed with `Busy` on a loaded machine).
fn end_config() -> NodeConfig {
    NodeConfig {
        max_sessions: 2,
        active_target: 1,
        ..NodeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_rejects_what_a_publishes_so_c_never_sees_it_and_a_is_penalized_at_b() {
    let a = overlay_with(end_config(), 31).await;
    let b = overlay_with(
        NodeConfig {
            validation: ValidationMode::App,
            ..NodeConfig::default()
        },
        32,
    )
    .await;
    let c = overlay_with(end_config(), 33).await;
    let mut c_gossip = c.deliveries();

    // B's application: payloads starting with "bad" are rejected, the rest accepted.
    let mut validator = b.validator().expect("the first call gets the validator");
    assert!(b.validator().is_none(), "one validator per node");
    let judge = tokio::spawn(async move {
        let mut judged = Vec::new();
        while let Some(pending) = validator.recv().await {
            let payload = pending.message().payload.clone();
            let result = if payload.starts_with(b"bad") {
                pending.reject().await
            } else {
                pending.accept().await
            };
            if result.is_err() {
                break;
            }
            judged.push(payload);
        }
        judged
    });

    bounded("a dials b", a.dial(b.local_addr())).await.unwrap();
    bounded("c dials b", c.dial(b.local_addr())).await.unwrap();
    wait_stats(&b, "b runs two sessions", |s| s.sessions_running == 2).await;

    // Accepted: reaches C through B.
    let good = bounded("a publishes", a.broadcast(Bytes::from_static(b"good news")))
        .await
        .unwrap();
    let got = bounded("c receives", c_gossip.recv()).await.unwrap();
    assert_eq!(got.id, good);
    assert_eq!(got.from, b.peer_id());

    // Rejected at B: penalized there, never forwarded to C.
    bounded("a publishes", a.broadcast(Bytes::from_static(b"bad news")))
        .await
        .unwrap();
    let stats = wait_stats(&b, "b penalizes a", |s| {
        s.score_penalties[Penalty::ValidationRejected as usize] >= 1
    })
    .await;
    assert_eq!(
        stats.gossip_delivered, 1,
        "only the good one was delivered at B"
    );
    assert_eq!(stats.score_penalties[Penalty::InvalidMessage as usize], 0);
    let a_at_b = b.peers().await;
    let a_at_b = a_at_b.iter().find(|s| s.peer == a.peer_id());
    assert!(a_at_b.is_some(), "one rejection does not ban A");

    assert_eq!(stats.peers_banned, 0);

    // More rejections in one burst: B bans A. (One at a time, the ban would depend on how
    // much the score decays between them, i.e. on how fast a loaded machine runs them.)
    for n in 2..=8 {
        let bad = Bytes::from(format!("bad news {n}"));
        // Once B has banned A, A may have no session left: its broadcasts still succeed
        // (kept for later peers) or are refused as busy; neither matters here.
        let _ = bounded("a publishes", a.broadcast(bad)).await;
    }
    let stats = wait_stats(&b, "b bans a", |s| s.peers_banned >= 1).await;
    let rejections = stats.score_penalties[Penalty::ValidationRejected as usize];
    assert!(rejections >= 2, "banned only after repeated rejections");
    wait_until("a is banned at b", || async {
        !b.peers().await.iter().any(|s| s.peer == a.peer_id())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.stats().await.gossip_delivered,
        1,
        "C got the good one only"
    );
    assert!(c_gossip.lost() == 0);

    a.shutdown().await;
    c.shutdown().await;
    b.shutdown().await;
    drop(b);
    let judged = bounded("validator ends", judge).await.unwrap();
    // Every rejection that counted was judged (and the good one); messages that came after
    // the ban were never handed to the validator.
    assert!(judged.len() as u64 > rejections && judged.len() <= 9);
    assert_eq!(judged[..2], [&b"good news"[..], &b"bad news"[..]]);
    assert!(judged[2..].iter().all(|p| p.starts_with(b"bad news ")));
}
