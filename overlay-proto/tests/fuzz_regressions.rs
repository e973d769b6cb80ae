//! Inputs found by the `node_sequence` fuzz target (fuzz/fuzz_targets/node_sequence.rs), kept
//! as tests. The first two broke bounds the harness expected: operator dials went past
//! `max_concurrent_dials`, and discovered addresses grew the passive list past
//! `passive_capacity`. The core now keeps both bounds and counts what it refuses; the fuzz
//! invariants assert the same bounds, so the harness and the core cannot drift apart. The third
//! (crash-6dfa3aa9, found in a long run) was the harness's own bound being wrong: inbound
//! connections before START live on the pre-auth budget, not on `max_sessions`; the test pins
//! both budgets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

use core::net::SocketAddr;
use overlay_proto::{
    Action, ConnId, DialOutcome, Direction, Input, Instant, Node, NodeConfig, NodeIdentity,
    OriginAuth, OverlayError, PeerId, RejectReason,
};

fn node(cfg: NodeConfig) -> Node {
    let mut cfg = cfg;
    cfg.origin_auth = OriginAuth::None;
    Node::new(cfg, NodeIdentity::new(PeerId([0xEE; 32]), None), 42).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

/// The `Connect` actions and operator-dial answers the node produced since the last call.
fn drain(node: &mut Node) -> (usize, Vec<DialOutcome>) {
    let (mut connects, mut answers) = (0, Vec::new());
    while let Some(a) = node.poll_action() {
        match a {
            Action::Connect { .. } => connects += 1,
            Action::DialAnswer { outcome, .. } => answers.push(outcome),
            _ => {}
        }
    }
    (connects, answers)
}

/// crash-6898342d: `Dial` ×3 to distinct addresses with `max_concurrent_dials = 2`. The third
/// is refused as `Busy` and counted; its address waits in the passive list.
#[test]
fn operator_dials_stay_within_max_concurrent_dials() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.max_concurrent_dials = 2;
    let mut n = node(cfg);
    let mut outcomes = Vec::new();
    for port in [9171, 9255, 9000] {
        n.handle(
            Instant::ZERO,
            Input::Dial {
                request: None,
                addr: addr(port),
            },
        );
        let (connects, answers) = drain(&mut n);
        assert_eq!(answers.len(), 1, "one answer per Dial");
        outcomes.extend(answers);
        assert!(connects <= 1);
    }
    assert!(matches!(outcomes[0], DialOutcome::Dialing(_)));
    assert!(matches!(outcomes[1], DialOutcome::Dialing(_)));
    assert_eq!(outcomes[2], DialOutcome::Refused(OverlayError::Busy));
    let s = n.stats();
    assert_eq!(
        (s.dials_in_flight, s.dials_started, s.dials_refused),
        (2, 2, 1)
    );
    // The same address as a dial in flight joins it, at the ceiling or not.
    n.handle(
        Instant::ZERO,
        Input::Dial {
            request: None,
            addr: addr(9171),
        },
    );
    let (connects, answers) = drain(&mut n);
    assert_eq!(connects, 0);
    assert!(matches!(answers[..], [DialOutcome::Dialing(_)]));
    assert_eq!(n.stats().dials_refused, 1);
}

/// Once a slot frees, membership dials the refused address from the passive list.
#[test]
fn a_refused_operator_dial_is_dialed_when_a_slot_frees() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.max_concurrent_dials = 1;
    cfg.active_target = 2;
    let mut n = node(cfg);
    n.handle(
        Instant::ZERO,
        Input::Dial {
            request: None,
            addr: addr(9001),
        },
    );
    let first = match n.poll_action() {
        Some(Action::Connect { dial, .. }) => dial,
        other => panic!("expected a Connect, got {other:?}"),
    };
    let _ = drain(&mut n);
    n.handle(
        Instant::ZERO,
        Input::Dial {
            request: None,
            addr: addr(9002),
        },
    );
    let (connects, answers) = drain(&mut n);
    assert_eq!(
        (connects, answers),
        (0, vec![DialOutcome::Refused(OverlayError::Busy)])
    );
    n.handle(
        Instant::ZERO,
        Input::DialFailed {
            dial: first,
            error: OverlayError::Refused,
        },
    );
    let mut dialed = Vec::new();
    while let Some(a) = n.poll_action() {
        if let Action::Connect { addr, .. } = a {
            dialed.push(addr);
        }
    }
    assert_eq!(dialed, vec![addr(9002)]);
    assert_eq!(n.stats().dials_in_flight, 1);
}

/// The passive-list input: 12 discovered addresses with `passive_capacity = 8`. The list keeps
/// 8 of them and counts the 4 it could not take.
#[test]
fn discovered_addresses_stay_within_the_passive_capacity() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.passive_capacity = 8;
    cfg.active_target = 1;
    cfg.max_concurrent_dials = 1;
    let mut n = node(cfg);
    let addrs: Vec<SocketAddr> = (0..12).map(|i| addr(9000 + i)).collect();
    n.handle(Instant::ZERO, Input::PeersDiscovered { addrs });
    let (connects, _) = drain(&mut n);
    assert_eq!(connects, 1);
    let s = n.stats();
    assert_eq!((s.passive_peers, s.passive_dropped), (8, 4), "{s:?}");
    // A flood of operator dials cannot grow it either.
    for i in 0..100 {
        n.handle(
            Instant::ZERO,
            Input::Dial {
                request: None,
                addr: addr(10_000 + i),
            },
        );
    }
    let _ = drain(&mut n);
    let s = n.stats();
    assert_eq!(s.passive_peers, 8);
    assert_eq!((s.dials_refused, s.passive_dropped), (100, 104));
}

/// Discovery that moves on (pods replaced): a full list of discovered addresses makes room for
/// new ones by forgetting those that failed.
#[test]
fn new_discovered_addresses_replace_failed_ones() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.passive_capacity = 2;
    cfg.active_target = 1;
    cfg.max_concurrent_dials = 1;
    let mut n = node(cfg);
    n.handle(
        Instant::ZERO,
        Input::PeersDiscovered {
            addrs: vec![addr(9000), addr(9001)],
        },
    );
    let (dial, dead) = match n.poll_action() {
        Some(Action::Connect { dial, addr, .. }) => (dial, addr),
        other => panic!("expected a Connect, got {other:?}"),
    };
    let _ = drain(&mut n);
    n.handle(
        Instant::ZERO,
        Input::DialFailed {
            dial,
            error: OverlayError::Timeout,
        },
    );
    let _ = drain(&mut n);
    n.handle(
        Instant::ZERO,
        Input::PeersDiscovered {
            addrs: vec![addr(9002)],
        },
    );
    let _ = drain(&mut n);
    let s = n.stats();
    assert_eq!((s.passive_peers, s.passive_dropped), (2, 0), "{s:?}");
    // The failed address is the one forgotten: discovering it again finds no room.
    n.handle(Instant::ZERO, Input::PeersDiscovered { addrs: vec![dead] });
    let _ = drain(&mut n);
    assert_eq!(n.stats().passive_dropped, 1);
}

/// crash-6dfa3aa9: with `max_sessions = 4`, four connections we dialed (outbound, handshaking)
/// and two inbound ones before START made six handshaking sessions. That is by design: inbound
/// connections before START live on the pre-auth budget (`max_preauth`, per IP
/// `max_preauth_per_ip`), so a flood of them cannot take the slots of authenticated peers. Both
/// budgets hold: a third inbound connection from the same address is refused as
/// `preauth_per_ip`, a fifth outbound one as `max_sessions`, and once our own sessions fill
/// `max_sessions` a new inbound one is refused as `max_sessions` too.
#[test]
fn handshaking_sessions_stay_within_max_sessions_plus_the_preauth_budget() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.max_sessions = 4;
    cfg.active_target = 3;
    cfg.max_preauth = 4;
    cfg.max_preauth_per_ip = 2;
    let mut n = node(cfg);
    let up = |n: &mut Node, conn: u64, direction: Direction| {
        n.handle(
            Instant::ZERO,
            Input::ConnectionUp {
                conn: ConnId(conn),
                peer: PeerId([conn as u8; 32]),
                direction,
                remote: addr(9000 + conn as u16),
                dial: None,
                kx_group: None,
            },
        );
        while n.poll_action().is_some() {}
    };
    // Inbound first: while our own sessions fill `max_sessions`, inbound connections are
    // refused at once, so the pre-auth budget only fills alongside them in this order.
    for conn in 11..=13 {
        up(&mut n, conn, Direction::Inbound);
    }
    for conn in 1..=5 {
        up(&mut n, conn, Direction::Outbound);
    }
    let s = n.stats();
    assert_eq!(s.sessions_running, 0);
    assert_eq!(s.preauth_sessions, 2, "two inbound on the pre-auth budget");
    assert_eq!(s.sessions_handshaking, 4 + 2, "four outbound, two inbound");
    assert!(s.sessions_running + s.sessions_handshaking <= 4 + s.preauth_sessions);
    assert_eq!(
        s.rejected.get(RejectReason::MaxSessions),
        1,
        "the fifth outbound"
    );
    assert_eq!(
        s.rejected.get(RejectReason::PreauthPerIp),
        1,
        "the third inbound"
    );
    up(&mut n, 14, Direction::Inbound);
    let s = n.stats();
    assert_eq!(
        s.rejected.get(RejectReason::MaxSessions),
        2,
        "inbound while full"
    );
    assert_eq!((s.sessions_handshaking, s.preauth_sessions), (6, 2));
}
