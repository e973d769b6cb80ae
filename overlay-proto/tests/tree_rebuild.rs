//! The tree rebuild after a failure nearby (`tree_rebuild_losses`): two running sessions lost
//! to closed connections within `tree_settle` make every tree link eager and new again
//! `tree_rebuild_delay` later, with an empty GRAFT to each peer, at most once per
//! `tree_rebuild_interval`; sessions the node closed itself (the failure detector, here) never
//! count; on a mesh, a kind kill rebuilds and the survivors' eager graph prunes back to one
//! tree, and a silent kill of as many nodes rebuilds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::wire::Kind;
use overlay_proto::{CloseReason, ConnId, Input, NodeConfig, OriginAuth};
use support::{assert_symmetric_near_tree, event, one_parent_bed_with, peer, raw_peer_config, Bed};

/// The defaults of the rule.
const DELAY: Duration = Duration::from_secs(3);

fn config() -> NodeConfig {
    let mut c = raw_peer_config();
    c.alpha = 1;
    c
}

/// A node with sessions on connections 1..=peers, connection 1 its only eager link (the
/// others pruned it), 3 s later and with nothing recorded yet.
fn settled_bed(cfg: NodeConfig, peers: u64) -> Bed {
    let mut bed = one_parent_bed_with(cfg, peers);
    bed.advance(Duration::from_secs(3));
    bed.clear();
    bed
}

/// The peer's connection went away (a crash, a kind kill).
fn connection_gone(bed: &mut Bed, conn: u64) {
    bed.input(Input::ConnectionClosed {
        conn: ConnId(conn),
        error: None,
    });
}

/// The connections among `conns` that were sent an empty GRAFT (a role change only).
fn told_eager(bed: &Bed, conns: impl IntoIterator<Item = u64>) -> Vec<u64> {
    conns
        .into_iter()
        .filter(|c| bed.sent(*c, Kind::Graft).iter().any(Vec::is_empty))
        .collect()
}

#[test]
fn two_closed_connections_rebuild_the_tree_after_the_delay() {
    let mut bed = settled_bed(config(), 6);
    assert!(bed.is_eager(peer(2)));
    assert!((3..=5).all(|n| !bed.is_eager(peer(n))));
    connection_gone(&mut bed, 5);
    connection_gone(&mut bed, 6);
    bed.advance(DELAY - Duration::from_millis(200));
    assert_eq!(bed.node.stats().tree_rebuilds, 0, "not before the delay");
    assert!(told_eager(&bed, 1..=4).is_empty());
    bed.advance(Duration::from_millis(300));
    assert_eq!(bed.node.stats().tree_rebuilds, 1);
    // Every surviving link is eager on our side and the peer is told so.
    assert!((2..=5).all(|n| bed.is_eager(peer(n))));
    assert_eq!(told_eager(&bed, 1..=4), vec![1, 2, 3, 4]);
    assert!(
        (1..=4).all(|c| bed.grafted(c).is_empty()),
        "no id asked for"
    );
    // The next message floods every link once, as at the start.
    bed.clear();
    bed.broadcast(b"after the rebuild").unwrap();
    assert!((1..=4).all(|c| bed.sent(c, Kind::Gossip).len() == 1));
    // Duplicates prune the mesh back down: a rebuilt link has given no first copy, so the
    // first duplicate over it (past the broadcast's `graft_timeout`) makes it lazy at once.
    bed.advance(Duration::from_millis(100));
    let (_, dup) = support::gossip(peer(99), 7, b"x", 1);
    bed.send(2, dup.clone());
    bed.send(3, dup);
    assert!(
        bed.is_eager(peer(3)),
        "the link that brought it first stays eager"
    );
    assert!(!bed.is_eager(peer(4)), "the duplicate's link is pruned");
    assert_eq!(bed.sent(3, Kind::Prune).len(), 1);
}

#[test]
fn one_loss_or_losses_further_apart_than_tree_settle_rebuild_nothing() {
    let mut bed = settled_bed(config(), 6);
    connection_gone(&mut bed, 6);
    bed.advance(Duration::from_secs(11));
    connection_gone(&mut bed, 5);
    bed.advance(Duration::from_secs(5));
    assert_eq!(bed.node.stats().tree_rebuilds, 0);
    assert!(told_eager(&bed, 1..=4).is_empty());
    assert!((3..=5).all(|n| !bed.is_eager(peer(n))));
}

#[test]
fn a_second_failure_within_the_interval_rebuilds_nothing_more() {
    let mut bed = settled_bed(config(), 8);
    connection_gone(&mut bed, 7);
    connection_gone(&mut bed, 8);
    bed.advance(DELAY + Duration::from_millis(200));
    assert_eq!(bed.node.stats().tree_rebuilds, 1);
    bed.advance(Duration::from_secs(10));
    connection_gone(&mut bed, 5);
    connection_gone(&mut bed, 6);
    bed.advance(Duration::from_secs(10));
    assert_eq!(bed.node.stats().tree_rebuilds, 1, "at most one per minute");
    // After the interval, two more losses rebuild again.
    bed.open(9, peer(10));
    bed.open(10, peer(11));
    bed.open(11, peer(12));
    bed.advance(Duration::from_secs(45));
    connection_gone(&mut bed, 9);
    connection_gone(&mut bed, 10);
    bed.advance(DELAY + Duration::from_millis(200));
    assert_eq!(bed.node.stats().tree_rebuilds, 2);
}

#[test]
fn zero_losses_turns_the_rebuild_off() {
    let mut cfg = config();
    cfg.tree_rebuild_losses = 0;
    let mut bed = settled_bed(cfg, 6);
    connection_gone(&mut bed, 5);
    connection_gone(&mut bed, 6);
    bed.advance(Duration::from_secs(10));
    assert_eq!(bed.node.stats().tree_rebuilds, 0);
    assert!((3..=5).all(|n| !bed.is_eager(peer(n))));
}

#[test]
fn sessions_the_failure_detector_closed_do_not_count() {
    // Liveness on (the raw-peer config turns it off); connections 5 and 6 go silent, the
    // others keep sending heartbeats.
    let mut cfg = config();
    let defaults = NodeConfig::default();
    cfg.idle_timeout = defaults.idle_timeout;
    cfg.liveness_timeout = defaults.liveness_timeout;
    cfg.keepalive_interval = defaults.keepalive_interval;
    let mut bed = Bed::new(cfg);
    for conn in 1..=6 {
        bed.open(conn, peer(conn as u8 + 1));
    }
    for conn in 2..=6 {
        bed.send(conn, event(Kind::Prune, &[]));
    }
    for _ in 0..100 {
        bed.advance(Duration::from_millis(100));
        for conn in 1..=4 {
            bed.heartbeat(conn);
        }
    }
    assert_eq!(bed.closed(5), Some(CloseReason::PeerUnresponsive));
    assert_eq!(bed.closed(6), Some(CloseReason::PeerUnresponsive));
    assert!((1..=4).all(|c| bed.closed(c).is_none()));
    assert_eq!(bed.node.stats().tree_rebuilds, 0);
    assert!(
        (3..=5).all(|n| !bed.is_eager(peer(n))),
        "the tree is as it was"
    );
}

// ---------------------------------------------------------------------------------------
// The whole mesh.

fn mesh(seed: u64) -> Mesh {
    let mut cfg = MeshConfig {
        nodes: 60,
        seed,
        ..MeshConfig::default()
    };
    cfg.node_config.origin_auth = OriginAuth::None;
    cfg.node_config.link_optimization = false;
    Mesh::new(cfg).unwrap()
}

/// `count` broadcasts from live nodes, one per second, each checked to reach every live node;
/// returns the RMR over them.
fn broadcasts(m: &mut Mesh, count: u64, salt: u64) -> f64 {
    let alive: Vec<usize> = (0..m.len()).filter(|i| m.is_alive(*i)).collect();
    let received = |m: &Mesh| -> u64 {
        (0..m.len())
            .filter_map(|i| m.stats(i))
            .map(|s| s.gossip_delivered + s.gossip_duplicates)
            .sum()
    };
    let before = received(m);
    for k in 0..count {
        let sender = alive[((k + salt).wrapping_mul(2_654_435_761) % alive.len() as u64) as usize];
        let id = m.broadcast(sender, Bytes::from(vec![k as u8; 64])).unwrap();
        m.run_for(Duration::from_secs(1));
        let reached = m.track(&id).unwrap().delivered.len();
        assert_eq!(reached, alive.len() - 1, "broadcast {k} from {sender}");
    }
    (received(m) - before) as f64 / (count as f64 * (alive.len() - 1) as f64) - 1.0
}

fn rebuilds(m: &Mesh) -> (u64, usize) {
    let per_node: Vec<u64> = (0..m.len())
        .filter_map(|i| m.stats(i))
        .map(|s| s.tree_rebuilds)
        .collect();
    (
        per_node.iter().sum(),
        per_node.iter().filter(|n| **n > 0).count(),
    )
}

#[test]
fn a_kind_kill_rebuilds_and_the_tree_prunes_back_to_one_tree() {
    let mut m = mesh(9);
    m.run_for(Duration::from_secs(10));
    broadcasts(&mut m, 5, 0);
    assert_eq!(rebuilds(&m), (0, 0), "no rebuild without failures");
    for i in (0..60).filter(|i| i % 3 == 1) {
        m.kill(i);
    }
    m.run_for(Duration::from_secs(5));
    let (total, nodes) = rebuilds(&m);
    eprintln!("{total} rebuilds on {nodes} of 40 survivors");
    assert!(
        nodes >= 30,
        "survivors that lost two links rebuilt: {nodes}"
    );
    assert_eq!(total, nodes as u64, "one rebuild per node");
    // The rebuild's flood reaches everyone, its duplicates prune, and the tree is clean.
    broadcasts(&mut m, 3, 7);
    let rmr = broadcasts(&mut m, 10, 50);
    assert!(rmr <= 0.05, "RMR {rmr:.3} after the rebuild");
    assert_symmetric_near_tree(&m, 2);
}

#[test]
fn a_silent_kill_rebuilds_nothing() {
    // The same nodes go silent instead: their sessions are closed by the survivors' failure
    // detectors (`peer_unresponsive`), which attackers going quiet would look like too.
    let mut m = mesh(9);
    m.run_for(Duration::from_secs(10));
    broadcasts(&mut m, 5, 0);
    for i in (0..60).filter(|i| i % 3 == 1) {
        m.kill_silently(i);
    }
    m.run_for(Duration::from_secs(10));
    assert_eq!(rebuilds(&m), (0, 0));
    broadcasts(&mut m, 5, 7);
}
