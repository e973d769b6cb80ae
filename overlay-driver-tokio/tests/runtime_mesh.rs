//! Four overlays in a line (each dials the previous one): broadcasts from either end reach
//! every node exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::collections::BTreeSet;

use bytes::Bytes;
use runtime_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_node_of_a_line() {
    let mut nodes = Vec::new();
    for seed in 0..4u64 {
        nodes.push(overlay(100 + seed).await);
    }
    let mut subs: Vec<_> = nodes.iter().map(|n| n.deliveries()).collect();
    for i in 1..nodes.len() {
        let prev = nodes[i - 1].local_addr();
        let s = bounded("dial previous", nodes[i].dial(prev)).await.unwrap();
        assert_eq!(s.peer_id(), nodes[i - 1].peer_id());
    }

    for origin in [0usize, 3] {
        let id = bounded(
            "broadcast",
            nodes[origin].broadcast(Bytes::from(format!("from {origin}"))),
        )
        .await
        .unwrap();
        for (i, sub) in subs.iter_mut().enumerate() {
            if i == origin {
                continue;
            }
            let d = bounded("delivery", sub.recv()).await.unwrap();
            assert_eq!(d.id, id, "node {i}");
            assert_eq!(d.origin, nodes[origin].peer_id());
            assert!(d.hops >= 1 && d.hops <= 3, "hops {}", d.hops);
            assert_eq!(&d.payload[..], format!("from {origin}").as_bytes());
        }
    }

    // Each node delivered each message once (the origin does not deliver its own).
    for n in &nodes {
        let s = n.stats().await;
        assert_eq!(s.gossip_delivered + s.gossip_originated, 2, "{s:?}");
    }
    let ids: BTreeSet<_> = nodes.iter().map(|n| n.peer_id()).collect();
    assert_eq!(ids.len(), 4);
    for n in &nodes {
        bounded("shutdown", n.shutdown()).await;
    }
}
