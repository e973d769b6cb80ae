//! Inputs found by the `node_sequence` fuzz target (fuzz/fuzz_targets/node_sequence.rs), kept
//! as tests. Both were bounds the harness first assumed too tightly; the tests pin down the
//! bounds the core really keeps, so the fuzz invariants and the core cannot drift apart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

use core::net::SocketAddr;
use overlay_proto::{Action, Input, Instant, Node, NodeConfig, NodeIdentity, OriginAuth, PeerId};

fn node(cfg: NodeConfig) -> Node {
    let mut cfg = cfg;
    cfg.origin_auth = OriginAuth::None;
    Node::new(cfg, NodeIdentity::new(PeerId([0xEE; 32]), None), 42).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

fn connects(node: &mut Node) -> usize {
    let mut n = 0;
    while let Some(a) = node.poll_action() {
        n += usize::from(matches!(a, Action::Connect { .. }));
    }
    n
}

/// crash-6898342d: `Dial` ×3 to distinct addresses with `max_concurrent_dials = 2`.
/// Operator dials are answered on top of the automatic-dial ceiling, at most one per address.
#[test]
fn operator_dials_exceed_the_automatic_ceiling_once_per_address() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.max_concurrent_dials = 2;
    let mut n = node(cfg);
    for port in [9171, 9255, 9000] {
        n.handle(Instant::ZERO, Input::Dial { addr: addr(port) });
    }
    assert_eq!(connects(&mut n), 3);
    assert_eq!(n.stats().dials_in_flight, 3);
    // The same address again joins the dial in flight.
    n.handle(Instant::ZERO, Input::Dial { addr: addr(9000) });
    assert_eq!(connects(&mut n), 0);
    assert_eq!(n.stats().dials_in_flight, 3);
}

/// The passive-list input: 12 discovered addresses with `passive_capacity = 8`. Discovered
/// addresses are seeds (never evicted); only learned peers are bounded by the capacity.
#[test]
fn discovered_addresses_are_kept_beyond_the_passive_capacity() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.passive_capacity = 8;
    cfg.active_target = 1;
    cfg.max_concurrent_dials = 1;
    let mut n = node(cfg);
    let addrs: Vec<SocketAddr> = (0..12).map(|i| addr(9000 + i)).collect();
    n.handle(Instant::ZERO, Input::PeersDiscovered { addrs });
    let _ = connects(&mut n);
    let s = n.stats();
    assert!(s.passive_peers > 8 && s.passive_peers <= 12, "{s:?}");
}
