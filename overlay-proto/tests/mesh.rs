//! Multi-node behaviour in virtual time: dissemination, mass failure, α/β fan-out, and
//! backpressure against a slow consumer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::{MessageId, RejectReason};

fn mesh(nodes: usize, seed: u64) -> Mesh {
    let cfg = MeshConfig {
        nodes,
        seed,
        ..MeshConfig::default()
    };
    Mesh::new(cfg).expect("valid mesh config")
}

fn delivered_to(mesh: &Mesh, id: &MessageId) -> usize {
    mesh.track(id).map_or(0, |t| t.delivered.len())
}

fn alive_count(mesh: &Mesh) -> usize {
    (0..mesh.len()).filter(|i| mesh.is_alive(*i)).count()
}

#[test]
fn two_nodes_open_a_session_and_exchange_gossip() {
    let mut m = mesh(2, 7);
    m.run_for(Duration::from_secs(2));
    for i in 0..2 {
        let s = m.stats(i).unwrap();
        assert_eq!(
            s.sessions_running, 1,
            "node {i} should have one running session: {s:?}"
        );
    }
    let id = m
        .broadcast(0, Bytes::from_static(b"hello overlay"))
        .unwrap();
    m.run_for(Duration::from_secs(1));
    let track = m.track(&id).unwrap();
    assert_eq!(track.delivered.len(), 1);
    assert_eq!(track.delivered[0].0, 1);
    assert_eq!(track.delivered[0].2, 1, "one hop");
}

#[test]
fn hundred_nodes_every_broadcast_reaches_every_node() {
    let mut m = mesh(100, 11);
    m.run_for(Duration::from_secs(10));
    let mut ids = Vec::new();
    for k in 0..20 {
        let origin = (k * 37) % 100;
        let payload = Bytes::from(vec![k as u8; 1024]);
        ids.push(m.broadcast(origin, payload).unwrap());
        m.run_for(Duration::from_millis(50));
    }
    m.run_for(Duration::from_secs(5));
    for id in &ids {
        assert_eq!(
            delivered_to(&m, id),
            99,
            "message {id:?} must reach all 99 other nodes"
        );
    }
    // Plumtree converges: far fewer duplicates than an eager flood would cause. Every new
    // link starts eager, so the first broadcasts (50 ms apart, while the tree forms) flood
    // the new mesh: each node then gets each payload once per link but one, about 9 times
    // here; duplicates prune the eager graph to a tree within the first broadcasts.
    let dups: u64 = (0..100)
        .map(|i| m.stats(i).unwrap().gossip_duplicates)
        .sum();
    let links: u64 = (0..100)
        .map(|i| m.stats(i).unwrap().sessions_running as u64)
        .sum();
    let delivered: u64 = (0..100).map(|i| m.stats(i).unwrap().gossip_delivered).sum();
    assert_eq!(delivered, 20 * 99);
    let flood = 20 * (links - 100);
    assert!(
        dups * 5 < flood,
        "duplicates {dups} should stay far below a flood's {flood}"
    );
}

#[test]
fn after_killing_half_the_next_broadcasts_reach_every_survivor() {
    let mut m = mesh(100, 23);
    m.run_for(Duration::from_secs(10));
    for i in (0..100).filter(|i| i % 2 == 1) {
        m.kill(i);
    }
    assert_eq!(alive_count(&m), 50);
    let mut ids = Vec::new();
    for k in 0..5 {
        let origin = k * 2;
        ids.push(
            m.broadcast(origin, Bytes::from(vec![k as u8; 512]))
                .unwrap(),
        );
        m.run_for(Duration::from_millis(100));
    }
    // Bounded virtual time for repair and dissemination.
    m.run_for(Duration::from_secs(5));
    for id in &ids {
        assert_eq!(
            delivered_to(&m, id),
            49,
            "every survivor but the origin gets {id:?}"
        );
    }
}

#[test]
fn new_sessions_start_eager_and_the_origin_announces_to_beta_lazy_peers() {
    let mut cfg = MeshConfig {
        nodes: 30,
        seed: 5,
        bootstrap_peers: 29,
        ..MeshConfig::default()
    };
    cfg.node_config.active_target = 29;
    cfg.node_config.max_concurrent_dials = 29;
    cfg.node_config.alpha = 3;
    cfg.node_config.beta = 6;
    let mut m = Mesh::new(cfg).unwrap();
    m.run_for(Duration::from_secs(5));
    let start = m.stats(0).unwrap();
    assert!(
        start.sessions_running >= 20,
        "dense mesh expected: {start:?}"
    );
    // Every session starts eager (textbook Plumtree); the first broadcast floods and its
    // duplicates prune the eager graph to a tree.
    assert_eq!(start.eager_peers, start.sessions_running);
    m.broadcast(1, Bytes::from_static(b"first")).unwrap();
    m.run_for(Duration::from_secs(2));
    let before = m.stats(0).unwrap();
    assert!(
        before.eager_peers < before.sessions_running / 2,
        "pruned: {before:?}"
    );
    assert!(before.lazy_peers >= 6, "{before:?}");
    m.broadcast(0, Bytes::from_static(b"fan-out")).unwrap();
    let after = m.stats(0).unwrap();
    let gossip_idx = overlay_proto::wire::Kind::Gossip.index();
    assert_eq!(
        after.frames_out_by_kind[gossip_idx] - before.frames_out_by_kind[gossip_idx],
        before.eager_peers as u64,
        "one push per eager peer"
    );
    m.run_for(Duration::from_millis(20));
    let flushed = m.stats(0).unwrap();
    assert_eq!(
        flushed.ihave_sent - before.ihave_sent,
        6,
        "β = 6 lazy announcements"
    );
}

/// Two nodes with a 64-frame / 1 MiB credit window and a 128-frame / 1 MiB send queue, for the
/// backpressure tests. The stalled node reads nothing for seconds while its timers run, so its
/// failure detector would (rightly) give up on a peer it cannot hear; these tests are about the
/// sender's backpressure, so the detector waits longer (it is tested in tests/liveness.rs).
fn two_nodes_small_queues() -> MeshConfig {
    let mut cfg = MeshConfig {
        nodes: 2,
        seed: 3,
        ..MeshConfig::default()
    };
    cfg.node_config.credit_window_frames = 64;
    cfg.node_config.credit_window_bytes = 1 << 20;
    cfg.node_config.max_queue_frames = 128;
    cfg.node_config.max_queue_bytes = 1 << 20;
    cfg.node_config.liveness_timeout = Duration::from_secs(20);
    cfg
}

#[test]
fn slow_consumer_gets_backpressure_and_counted_drops_not_unbounded_memory() {
    let cfg = two_nodes_small_queues();
    let window = u64::from(cfg.node_config.credit_window_bytes) as usize;
    let queue_bytes = cfg.node_config.max_queue_bytes;
    let mut m = Mesh::new(cfg).unwrap();
    m.run_for(Duration::from_secs(2));
    assert_eq!(m.stats(0).unwrap().sessions_running, 1);
    m.set_stalled(1, true);
    let mut busy = 0;
    for k in 0..2000u32 {
        match m.broadcast(0, Bytes::from(k.to_be_bytes().repeat(256))) {
            Ok(_) => {}
            Err(overlay_proto::OverlayError::Busy) => busy += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
        m.run_for(Duration::from_millis(1));
    }
    let s = m.stats(0).unwrap();
    assert!(
        busy > 0,
        "the saturated node pushes back on the application"
    );
    assert_eq!(
        s.rejected.get(RejectReason::Degraded),
        busy,
        "every refusal is counted"
    );
    assert!(s.queued_bytes <= queue_bytes);
    let held = m.max_held_bytes(1);
    assert!(
        held <= window,
        "receiver backlog {held} bounded by the credit window {window}"
    );
    assert!(
        !m.node(0).unwrap().is_ready(),
        "readiness degrades under saturation"
    );
    // Recovery: the consumer catches up, queues drain, readiness returns.
    m.set_stalled(1, false);
    m.run_for(Duration::from_secs(3));
    let s = m.stats(0).unwrap();
    assert_eq!(s.queued_frames, 0);
    assert!(m.node(0).unwrap().is_ready());
}

#[test]
fn a_degraded_node_is_ready_again_as_soon_as_credit_drains_its_queue_not_at_the_next_tick() {
    let mut cfg = two_nodes_small_queues();
    // Ticks far apart, links fast: only the credit can make the node ready within 30 ms.
    cfg.node_config.tick_interval = Duration::from_secs(2);
    cfg.latency_min = Duration::from_millis(1);
    cfg.latency_max = Duration::from_millis(1);
    let mut m = Mesh::new(cfg).unwrap();
    m.run_for(Duration::from_secs(3));
    assert_eq!(m.stats(0).unwrap().sessions_running, 1);
    m.set_stalled(1, true);
    let mut busy = 0;
    for k in 0..400u32 {
        if let Err(e) = m.broadcast(0, Bytes::from(k.to_be_bytes().repeat(64))) {
            assert_eq!(e, overlay_proto::OverlayError::Busy);
            busy += 1;
        }
    }
    assert!(busy > 0, "the queue filled: broadcasts were refused");
    assert!(!m.node(0).unwrap().is_ready());
    // Credit from the consumer arrives a few ms after it reads again, and the drained queue
    // makes the node ready then.
    m.set_stalled(1, false);
    m.run_for(Duration::from_millis(30));
    assert_eq!(m.stats(0).unwrap().queued_frames, 0);
    assert!(
        m.node(0).unwrap().is_ready(),
        "ready once the queue drained, without waiting for a tick"
    );
    m.broadcast(0, Bytes::from_static(b"accepted again"))
        .unwrap();
}

#[test]
fn same_seed_same_digest_different_seed_different_digest() {
    let run = |seed| {
        let mut m = mesh(20, seed);
        m.run_for(Duration::from_secs(3));
        for k in 0..5 {
            m.broadcast(k, Bytes::from(vec![k as u8; 100])).unwrap();
            m.run_for(Duration::from_millis(30));
        }
        m.kill(7);
        m.run_for(Duration::from_secs(2));
        m.digest()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn relay_towards_a_stalled_peer_drops_with_a_credits_count_and_keeps_serving_others() {
    // A line 0 — 1 — 2: node 1 relays node 0's broadcasts to node 2, which stops reading.
    let mut cfg = MeshConfig {
        nodes: 3,
        seed: 4,
        bootstrap_peers: 0,
        ..MeshConfig::default()
    };
    cfg.node_config.credit_window_frames = 32;
    cfg.node_config.credit_window_bytes = 1 << 20;
    cfg.node_config.max_queue_frames = 64;
    cfg.node_config.max_queue_bytes = 1 << 20;
    cfg.node_config.shuffle_interval = Duration::from_secs(3600);
    let mut m = Mesh::new(cfg).unwrap();
    m.input(
        0,
        overlay_proto::Input::PeersDiscovered {
            addrs: vec![overlay_proto::mesh::node_addr(1)],
        },
    );
    m.input(
        2,
        overlay_proto::Input::PeersDiscovered {
            addrs: vec![overlay_proto::mesh::node_addr(1)],
        },
    );
    m.run_for(Duration::from_secs(2));
    assert_eq!(m.stats(1).unwrap().sessions_running, 2);
    m.set_stalled(2, true);
    let mut ids = Vec::new();
    for k in 0..300u32 {
        if let Ok(id) = m.broadcast(0, Bytes::from(k.to_be_bytes().repeat(64))) {
            ids.push(id);
        }
        m.run_for(Duration::from_millis(2));
    }
    let relay = m.stats(1).unwrap();
    assert!(
        relay.rejected.get(RejectReason::Credits) > 0,
        "relay drops counted: {relay:?}"
    );
    assert!(relay.queued_frames <= 64);
    // Node 1 itself gets everything node 0 sent: the stalled peer hurts nobody else.
    m.run_for(Duration::from_secs(3));
    assert_eq!(m.stats(0).unwrap().queued_frames, 0);
    for id in &ids {
        assert!(m
            .track(id)
            .unwrap()
            .delivered
            .iter()
            .any(|(n, _, _)| *n == 1));
    }
}

#[test]
fn concurrent_broadcasts_from_many_origins_keep_the_eager_tree_connected() {
    // Regression, two ways. (1) Pruning on every duplicate let two nodes of one cycle prune
    // different edges for messages travelling opposite ways, splitting the tree; deliveries
    // fell back to IHAVE/GRAFT (~90 ms with 1 ms links). (2) Protecting edges for a fixed time
    // instead stopped pruning altogether at high rates: every link eager, a flood.
    let mut cfg = MeshConfig {
        nodes: 32,
        seed: 3,
        latency_min: Duration::from_millis(1),
        latency_max: Duration::from_millis(1),
        ..MeshConfig::default()
    };
    cfg.node_config.active_target = 6;
    let mut m = Mesh::new(cfg).unwrap();
    m.run_for(Duration::from_secs(5));
    let counts = |m: &Mesh| {
        (0..32)
            .map(|i| m.stats(i).unwrap())
            .fold((0, 0), |(d, u), s| {
                (d + s.gossip_delivered, u + s.gossip_duplicates)
            })
    };
    let (delivered_before, dups_before) = counts(&m);
    let mut ids = Vec::new();
    for k in 0..400u64 {
        let origin = ((k * 2_654_435_761) % 32) as usize;
        ids.push(m.broadcast(origin, Bytes::from(vec![1u8; 256])).unwrap());
        m.run_for(Duration::from_millis(5));
    }
    m.run_for(Duration::from_secs(1));
    let mut latencies: Vec<Duration> = ids[200..]
        .iter()
        .flat_map(|id| {
            let t = m.track(id).unwrap();
            assert_eq!(t.delivered.len(), 31);
            t.delivered
                .iter()
                .map(move |(_, at, _)| *at - t.sent_at)
                .collect::<Vec<_>>()
        })
        .collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    // Eager paths are a few 1 ms hops; the lazy repair path alone costs >= 80 ms.
    assert!(
        p99 < Duration::from_millis(30),
        "p99 {p99:?}: deliveries fell back to grafts"
    );
    let (delivered, dups) = counts(&m);
    let ratio = (dups - dups_before) as f64 / (delivered - delivered_before) as f64;
    assert!(
        ratio < 0.2,
        "{ratio:.3} duplicates per delivery: the overlay is flooding"
    );
}

#[test]
fn a_single_sender_converges_to_a_tree_with_almost_no_duplicates() {
    let mut cfg = MeshConfig {
        nodes: 50,
        seed: 8,
        ..MeshConfig::default()
    };
    cfg.node_config.active_target = 6;
    let mut m = Mesh::new(cfg).unwrap();
    m.run_for(Duration::from_secs(5));
    for k in 0..60u8 {
        m.broadcast(7, Bytes::from(vec![k; 64])).unwrap();
        m.run_for(Duration::from_millis(200));
    }
    let before: Vec<_> = (0..50).map(|i| m.stats(i).unwrap()).collect();
    let mut ids = Vec::new();
    for k in 0..20u8 {
        ids.push(m.broadcast(7, Bytes::from(vec![k; 64])).unwrap());
        m.run_for(Duration::from_millis(200));
    }
    m.run_for(Duration::from_secs(1));
    let received: u64 = (0..50)
        .map(|i| {
            let s = m.stats(i).unwrap();
            (s.gossip_delivered + s.gossip_duplicates)
                - (before[i].gossip_delivered + before[i].gossip_duplicates)
        })
        .sum();
    for id in &ids {
        assert_eq!(delivered_to(&m, id), 49);
    }
    // RMR = payload messages received / (n - 1) - 1, over the 20 broadcasts.
    let rmr = received as f64 / (20.0 * 49.0) - 1.0;
    assert!(
        rmr < 0.05,
        "RMR {rmr:.3}: the eager graph did not converge to a tree"
    );
}
