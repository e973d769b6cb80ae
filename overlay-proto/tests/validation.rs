//! Application validation (`NodeConfig::validation = App`): each new message waits for the
//! application's verdict (`Action::Validate` / `Input::Verdict`) before it is forwarded or
//! delivered. Accept, reject (the sender is penalized), ignore, timeout and the table's bound,
//! on a deterministic mesh whose nodes' "applications" are shims answering the node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig, NodeShim};
use overlay_proto::score::Penalty;
use overlay_proto::{Action, Input, Instant, ValidationMode, ValidationStats, Verdict};

/// The application of one node: answers every `Action::Validate` by the payload's first byte
/// (`b'a'` accept, `b'r'` reject, `b'i'` ignore, anything else: no answer).
#[derive(Debug)]
struct App;

impl NodeShim for App {
    fn on_input(&mut self, _now: Instant, input: Input, to_node: &mut Vec<Input>) {
        to_node.push(input);
    }

    fn on_actions(&mut self, _now: Instant, actions: &mut Vec<Action>, to_node: &mut Vec<Input>) {
        for action in actions.iter() {
            if let Action::Validate { id, delivery } = action {
                let verdict = match delivery.payload.first() {
                    Some(b'a') => Verdict::Accept,
                    Some(b'r') => Verdict::Reject,
                    Some(b'i') => Verdict::Ignore,
                    _ => continue,
                };
                to_node.push(Input::Verdict { id: *id, verdict });
            }
        }
    }
}

const NODES: usize = 8;

/// A warmed-up mesh of validating nodes, each with an [`App`].
fn mesh(pending_max: usize) -> Mesh {
    let mut config = MeshConfig {
        nodes: NODES,
        seed: 7,
        ..MeshConfig::default()
    };
    config.node_config.validation = ValidationMode::App;
    config.node_config.validation_timeout = Duration::from_millis(500);
    config.node_config.validation_pending_max = pending_max;
    let mut mesh = Mesh::new(config).unwrap();
    for i in 0..NODES {
        mesh.set_shim(i, Box::new(App));
    }
    mesh.run_for(Duration::from_secs(3));
    mesh
}

fn vstats(mesh: &Mesh, i: usize) -> ValidationStats {
    mesh.node(i).unwrap().validation_stats()
}

fn total(mesh: &Mesh, f: impl Fn(&ValidationStats) -> u64) -> u64 {
    (0..NODES).map(|i| f(&vstats(mesh, i))).sum()
}

/// Rejection penalties over the mesh (`validation_rejected`); none ever lands on
/// `invalid_message`, which is for bad ids and signatures.
fn invalid_penalties(mesh: &Mesh) -> u64 {
    (0..NODES)
        .map(|i| {
            let s = mesh.stats(i).unwrap();
            assert_eq!(s.score_penalties[Penalty::InvalidMessage as usize], 0);
            s.score_penalties[Penalty::ValidationRejected as usize]
        })
        .sum()
}

#[test]
fn accepted_messages_reach_every_node_once_each_validated_once_per_node() {
    let mut mesh = mesh(64);
    let id = mesh.broadcast(0, Bytes::from_static(b"accept me")).unwrap();
    mesh.run_for(Duration::from_secs(2));
    assert_eq!(mesh.track(&id).unwrap().delivered.len(), NODES - 1);
    // Every other node asked its application exactly once (copies while pending are
    // duplicates); the origin does not validate its own message.
    assert_eq!(vstats(&mesh, 0).requested, 0);
    for i in 1..NODES {
        let s = vstats(&mesh, i);
        assert_eq!(
            (s.requested, s.accepted, s.pending),
            (1, 1, 0),
            "node {i}: {s:?}"
        );
    }
    assert_eq!(invalid_penalties(&mesh), 0);
}

#[test]
fn rejected_messages_go_no_further_and_penalize_the_sender() {
    let mut mesh = mesh(64);
    let neighbours = mesh.stats(0).unwrap().sessions_running as u64;
    let id = mesh.broadcast(0, Bytes::from_static(b"reject me")).unwrap();
    mesh.run_for(Duration::from_secs(2));
    assert!(mesh.track(&id).unwrap().delivered.is_empty());
    // Only node 0's neighbours saw it, and each rejected it and penalized node 0
    // (`validation_rejected`: with the default weight one rejection does not ban).
    let rejected = total(&mesh, |s| s.rejected);
    assert!(rejected >= 1);
    assert_eq!(total(&mesh, |s| s.requested), rejected);
    assert_eq!(invalid_penalties(&mesh), rejected);
    assert!(rejected <= neighbours, "{rejected} > {neighbours}");
    assert_eq!(
        mesh.stats(0).unwrap().sessions_running as u64,
        neighbours,
        "one rejection bans nobody"
    );
    // A few more in a row: node 0's neighbours ban it.
    for _ in 0..4 {
        mesh.broadcast(0, Bytes::from_static(b"reject me too"))
            .unwrap();
        mesh.run_for(Duration::from_millis(500));
    }
    mesh.run_for(Duration::from_secs(1));
    assert_eq!(
        mesh.stats(0).unwrap().sessions_running,
        0,
        "node 0 is banned after repeated rejections"
    );
    assert!(mesh.stats(0).unwrap().sessions_closed >= neighbours);
    for i in 0..NODES {
        assert_eq!(mesh.stats(i).unwrap().gossip_delivered, 0, "node {i}");
    }
}

#[test]
fn ignored_messages_go_no_further_without_a_penalty() {
    let mut mesh = mesh(64);
    let id = mesh.broadcast(0, Bytes::from_static(b"ignore me")).unwrap();
    mesh.run_for(Duration::from_secs(2));
    assert!(mesh.track(&id).unwrap().delivered.is_empty());
    let ignored = total(&mesh, |s| s.ignored);
    assert!(ignored >= 1);
    assert_eq!(total(&mesh, |s| s.requested), ignored);
    assert_eq!(invalid_penalties(&mesh), 0);
}

#[test]
fn a_message_without_a_verdict_is_ignored_at_its_deadline() {
    let mut mesh = mesh(64);
    let id = mesh
        .broadcast(0, Bytes::from_static(b"unanswered"))
        .unwrap();
    // Eager neighbours get it at once, lazy ones after an IHAVE and a GRAFT: all hold it
    // within 400 ms, before the first deadline (500 ms after the first arrival).
    mesh.run_for(Duration::from_millis(400));
    let pending = total(&mesh, |s| s.pending as u64);
    assert!(pending >= 1, "held while the application thinks");
    assert_eq!(total(&mesh, |s| s.requested), pending);
    mesh.run_for(Duration::from_secs(1));
    assert_eq!(total(&mesh, |s| s.pending as u64), 0);
    assert_eq!(total(&mesh, |s| s.timed_out), pending);
    assert!(mesh.track(&id).unwrap().delivered.is_empty());
    // A verdict after the deadline changes nothing and is counted.
    mesh.input(
        1,
        Input::Verdict {
            id: 0,
            verdict: Verdict::Accept,
        },
    );
    assert!(vstats(&mesh, 1).unknown_verdicts >= 1);
    assert!(mesh.track(&id).unwrap().delivered.is_empty());
}

#[test]
fn the_pending_table_is_bounded_and_overflow_is_counted() {
    let mut mesh = mesh(2);
    for n in 0..5u8 {
        mesh.broadcast(0, Bytes::from(vec![b'x', n])).unwrap();
    }
    mesh.run_for(Duration::from_millis(200));
    for i in 1..NODES {
        let s = vstats(&mesh, i);
        assert!(s.pending <= 2, "node {i}: {s:?}");
        assert_eq!(
            s.requested + s.dropped_full,
            if s.requested == 0 { 0 } else { 5 },
            "node {i}: {s:?}"
        );
    }
    assert!(total(&mesh, |s| s.dropped_full) >= 3);
    // Once the held ones time out, the table has room again.
    mesh.run_for(Duration::from_secs(1));
    let id = mesh
        .broadcast(0, Bytes::from_static(b"accept later"))
        .unwrap();
    mesh.run_for(Duration::from_secs(2));
    assert_eq!(mesh.track(&id).unwrap().delivered.len(), NODES - 1);
}
