//! `Input::Reconfigure`: live α/β, quota and scoring changes are validated, answered, and take effect on
//! running sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::score::ScoreConfig;
use overlay_proto::{
    Action, Input, Instant, LiveSettings, Node, NodeConfig, NodeIdentity, RejectReason, SigningSeed,
};

fn lone_node() -> Node {
    let identity = NodeIdentity::from_signing_seed(SigningSeed([7; 32]), None);
    Node::new(NodeConfig::default(), identity, 1).unwrap()
}

fn actions(node: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

#[test]
fn valid_settings_are_applied_and_answered() {
    let mut node = lone_node();
    let live = LiveSettings {
        alpha: 5,
        beta: 2,
        peer_rate_per_s: 10,
        peer_rate_burst: 20,
        scoring: ScoreConfig {
            violation_weight: -40.0,
            ..ScoreConfig::default()
        },
    };
    node.handle(Instant::ZERO, Input::Reconfigure(Box::new(live.clone())));
    assert_eq!(
        actions(&mut node),
        vec![Action::Reconfigured(Box::new(Ok(live.clone())))]
    );
    assert_eq!(LiveSettings::of(node.config()), live);
}

#[test]
fn invalid_settings_are_refused_and_nothing_changes() {
    let mut node = lone_node();
    let before = node.config().clone();
    let live = LiveSettings {
        alpha: 0,
        ..LiveSettings::of(&before)
    };
    node.handle(Instant::ZERO, Input::Reconfigure(Box::new(live)));
    match actions(&mut node).as_slice() {
        [Action::Reconfigured(result)] => match result.as_ref() {
            Err(e) => {
                assert_eq!(e.setting, "alpha");
                assert_eq!(e.accepted, "1..=64");
            }
            Ok(live) => panic!("expected a refusal, got {live:?}"),
        },
        other => panic!("expected one refusal, got {other:?}"),
    }
    assert_eq!(node.config(), &before);
    let live = LiveSettings {
        beta: 257,
        ..LiveSettings::of(&before)
    };
    node.handle(Instant::ZERO, Input::Reconfigure(Box::new(live)));
    assert!(matches!(
        actions(&mut node).as_slice(),
        [Action::Reconfigured(r)] if matches!(r.as_ref(), Err(e) if e.setting == "beta")
    ));
    let live = LiveSettings {
        scoring: ScoreConfig {
            prune_threshold: 5.0,
            ..ScoreConfig::default()
        },
        ..LiveSettings::of(&before)
    };
    node.handle(Instant::ZERO, Input::Reconfigure(Box::new(live)));
    assert!(matches!(
        actions(&mut node).as_slice(),
        [Action::Reconfigured(r)]
            if matches!(r.as_ref(), Err(e) if e.setting == "scoring.ban_threshold")
    ));
    assert_eq!(node.config(), &before);
}

#[test]
fn new_scoring_weights_keep_scores_and_count_from_now_on() {
    // Decay slow enough that it does not step during the test.
    let mut m = Mesh::new(MeshConfig {
        nodes: 2,
        seed: 9,
        node_config: {
            let mut c = MeshConfig::default().node_config;
            c.scoring.decay_interval = Duration::from_secs(3600);
            c
        },
        ..MeshConfig::default()
    })
    .unwrap();
    m.run_for(Duration::from_secs(2));
    assert_eq!(m.stats(1).unwrap().sessions_running, 1);
    let sender = overlay_proto::mesh::node_peer_id(9, 0);
    for k in 0..5u8 {
        m.broadcast(0, Bytes::from(vec![k; 16])).unwrap();
    }
    m.run_for(Duration::from_millis(500));
    let before = m.node(1).unwrap().peer_score(&sender);
    assert_eq!(before.components.first_deliveries, 5.0);
    assert!((before.score - 0.5).abs() < 1e-9, "{before:?}");
    let mut live = LiveSettings::of(m.node(1).unwrap().config());
    live.scoring.first_delivery_weight = 1.0;
    m.input(1, Input::Reconfigure(Box::new(live)));
    assert_eq!(
        m.node(1).unwrap().config().scoring.first_delivery_weight,
        1.0
    );
    // Same value right after the change ...
    let kept = m.node(1).unwrap().peer_score(&sender);
    assert!((kept.score - 0.5).abs() < 1e-9, "{kept:?}");
    // ... and two more first deliveries count at the new weight.
    for k in 5..7u8 {
        m.broadcast(0, Bytes::from(vec![k; 16])).unwrap();
    }
    m.run_for(Duration::from_millis(500));
    let after = m.node(1).unwrap().peer_score(&sender);
    assert_eq!(after.components.first_deliveries, 7.0);
    assert!((after.score - 2.5).abs() < 1e-9, "{after:?}");
}

fn mesh(nodes: usize, seed: u64) -> Mesh {
    Mesh::new(MeshConfig {
        nodes,
        seed,
        ..MeshConfig::default()
    })
    .unwrap()
}

#[test]
fn lower_alpha_demotes_eager_peers_and_higher_alpha_promotes_them() {
    let mut m = mesh(12, 3);
    m.run_for(Duration::from_secs(5));
    let before = m.stats(0).unwrap();
    assert!(before.eager_peers >= 2, "{before:?}");
    let mut live = LiveSettings::of(m.node(0).unwrap().config());
    live.alpha = 1;
    m.input(0, Input::Reconfigure(Box::new(live.clone())));
    let after = m.stats(0).unwrap();
    assert_eq!(after.eager_peers, 1, "{after:?}");
    // Each demoted peer is told with PRUNE, so the link is lazy on both ends.
    assert_eq!(
        after.prunes_sent - before.prunes_sent,
        before.eager_peers as u64 - 1,
        "{after:?}"
    );
    assert_eq!(
        after.sessions_running, before.sessions_running,
        "roles change, sessions stay"
    );
    live.alpha = 64;
    m.input(0, Input::Reconfigure(Box::new(live)));
    let raised = m.stats(0).unwrap();
    assert_eq!(raised.eager_peers, raised.sessions_running, "{raised:?}");
    // Gossip still reaches everyone with the new roles.
    let id = m.broadcast(0, Bytes::from_static(b"after reload")).unwrap();
    m.run_for(Duration::from_secs(2));
    assert_eq!(m.track(&id).unwrap().delivered.len(), 11);
}

#[test]
fn a_lower_quota_applies_to_running_sessions() {
    let mut m = mesh(2, 5);
    m.run_for(Duration::from_secs(2));
    assert_eq!(m.stats(1).unwrap().sessions_running, 1);
    let mut live = LiveSettings::of(m.node(1).unwrap().config());
    live.peer_rate_per_s = 1;
    live.peer_rate_burst = 1;
    m.input(1, Input::Reconfigure(Box::new(live)));
    for k in 0..5u8 {
        m.broadcast(0, Bytes::from(vec![k; 16])).unwrap();
    }
    m.run_for(Duration::from_millis(200));
    let s = m.stats(1).unwrap();
    assert_eq!(s.gossip_delivered, 1, "{s:?}");
    assert_eq!(s.rejected.get(RejectReason::Quota), 4, "{s:?}");
}
