//! The failure detector in virtual time: frozen and silently killed peers are closed as
//! `peer_unresponsive` within 2 s at default settings; a short freeze, jitter and TCP-style
//! retransmission delays are not mistaken for death; a node does not blame its peers for its
//! own stall.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{node_peer_id, Mesh, MeshConfig, SessionDown};
use overlay_proto::CloseReason;

/// The detection bound the issue asks for.
const BOUND: Duration = Duration::from_secs(2);

fn config(nodes: usize, seed: u64, bootstrap: usize) -> MeshConfig {
    MeshConfig {
        nodes,
        seed,
        bootstrap_peers: bootstrap,
        latency_min: Duration::from_millis(10),
        latency_max: Duration::from_millis(60),
        ..MeshConfig::default()
    }
}

fn unresponsive(downs: &[SessionDown]) -> Vec<SessionDown> {
    downs
        .iter()
        .filter(|d| d.reason == CloseReason::PeerUnresponsive)
        .copied()
        .collect()
}

/// Mesh indices of the running peers of node `i`.
fn running_peers(m: &Mesh, seed: u64, i: usize) -> Vec<usize> {
    let peers = m.node(i).unwrap().running_peers();
    (0..m.len())
        .filter(|j| peers.contains(&node_peer_id(seed, *j)))
        .collect()
}

#[test]
fn a_frozen_peer_is_closed_as_unresponsive_within_two_seconds_and_the_node_recovers() {
    let mut m = Mesh::new(config(2, 3, 1)).unwrap();
    m.run_for(Duration::from_secs(3));
    assert_eq!(m.stats(0).unwrap().sessions_running, 1);
    m.record_session_downs(true);
    let frozen_at = m.now();
    m.freeze(1);
    m.run_for(Duration::from_secs(3));
    let downs = unresponsive(m.session_downs());
    assert_eq!(downs.len(), 1, "{:?}", m.session_downs());
    let d = downs[0];
    assert_eq!((d.node, d.peer), (0, Some(1)));
    let took = d.at - frozen_at;
    assert!(took <= BOUND, "detected after {took:?}");
    let s = m.stats(0).unwrap();
    assert_eq!(s.peers_unresponsive, 1);
    assert_eq!(s.sessions_running, 0);

    // SIGCONT: the node runs its overdue tick first. It was the one that stopped, so it
    // excuses the three seconds and learns from the close that node 0 sent instead.
    m.thaw(1);
    m.run_for(Duration::from_millis(200));
    let s1 = m.stats(1).unwrap();
    assert_eq!(
        s1.peers_unresponsive, 0,
        "a node does not blame peers for its own stall"
    );
    let own: Vec<_> = m.session_downs().iter().filter(|d| d.node == 1).collect();
    assert_eq!(own.len(), 1);
    assert_ne!(own[0].reason, CloseReason::PeerUnresponsive);
    // Membership redials (after its backoff) and the pair is whole again.
    m.run_for(Duration::from_secs(5));
    assert_eq!(m.stats(0).unwrap().sessions_running, 1);
    assert_eq!(m.stats(1).unwrap().sessions_running, 1);
}

#[test]
fn a_freeze_shorter_than_the_limit_goes_unnoticed() {
    let mut m = Mesh::new(config(2, 4, 1)).unwrap();
    m.run_for(Duration::from_secs(3));
    m.record_session_downs(true);
    // Heartbeats leave every ≤ 600 ms, so a 500 ms pause leaves the peer ≤ 1.2 s of silence.
    m.freeze(1);
    m.run_for(Duration::from_millis(500));
    m.thaw(1);
    m.run_for(Duration::from_secs(5));
    assert!(m.session_downs().is_empty(), "{:?}", m.session_downs());
    for i in 0..2 {
        assert_eq!(m.stats(i).unwrap().sessions_running, 1);
    }
}

#[test]
fn every_neighbour_of_a_silently_killed_node_notices_within_two_seconds() {
    let seed = 21;
    let mut m = Mesh::new(config(40, seed, 5)).unwrap();
    m.run_for(Duration::from_secs(10));
    let victims: Vec<usize> = (0..40).filter(|i| i % 5 == 2).collect();
    let mut expected = Vec::new();
    for i in (0..40).filter(|i| !victims.contains(i)) {
        for p in running_peers(&m, seed, i) {
            if victims.contains(&p) {
                expected.push((i, p));
            }
        }
    }
    assert!(expected.len() >= victims.len(), "victims had neighbours");
    m.record_session_downs(true);
    let killed_at = m.now();
    for &v in &victims {
        m.kill_silently(v);
    }
    m.run_for(Duration::from_secs(3));
    let downs = unresponsive(m.session_downs());
    for (node, victim) in &expected {
        let d = downs
            .iter()
            .find(|d| d.node == *node && d.peer == Some(*victim))
            .unwrap_or_else(|| panic!("node {node} never noticed victim {victim}"));
        assert!(
            d.at - killed_at <= BOUND,
            "node {node} noticed victim {victim} after {:?}",
            d.at - killed_at
        );
    }
    assert_eq!(downs.len(), expected.len(), "only sessions to victims end");
    // Membership replaces the dead sessions and gossip reaches every survivor.
    m.run_for(Duration::from_secs(5));
    let id = m.broadcast(0, Bytes::from_static(b"after")).unwrap();
    m.run_for(Duration::from_secs(2));
    assert_eq!(
        m.track(&id).unwrap().delivered.len(),
        40 - victims.len() - 1
    );
}

#[test]
fn no_false_positive_under_one_percent_loss_and_fifty_ms_jitter() {
    // TCP as the detector sees it: per-connection latency 10-60 ms, 50 ms of jitter per
    // transmission, in-order delivery (a late segment holds back the rest), 1 % loss with a
    // 200 ms RTO that doubles when the retransmission is lost too.
    let mut cfg = config(30, 5, 5);
    cfg.loss = 0.01;
    cfg.track_deliveries = false;
    let mut m = Mesh::new(cfg).unwrap();
    m.set_jitter(Duration::from_millis(50));
    m.set_loss_backoff(true);
    m.run_for(Duration::from_secs(5));
    m.record_session_downs(true);
    let start = m.now();
    let mut k = 0u32;
    while m.now() - start < Duration::from_secs(40) {
        // Traffic mixes with idle periods: a burst every second, quiet in between.
        if k % 10 < 3 {
            let origin = (k as usize * 7) % 30;
            m.broadcast(origin, Bytes::from(vec![1u8; 512])).unwrap();
        }
        k += 1;
        m.run_for(Duration::from_millis(100));
    }
    let downs = unresponsive(m.session_downs());
    assert!(downs.is_empty(), "false positives: {downs:?}");
    let heartbeats: u64 = (0..30).map(|i| m.stats(i).unwrap().heartbeats_sent).sum();
    assert!(
        heartbeats > 0,
        "idle sessions were kept alive by heartbeats"
    );
    assert_eq!(
        (0..30)
            .map(|i| m.stats(i).unwrap().peers_unresponsive)
            .sum::<u64>(),
        0
    );
}
