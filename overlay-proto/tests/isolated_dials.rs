//! A node with no session whose dials keep failing (most of its passive list is dead, as after
//! a mass failure) dials more addresses at once until one connects.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)] // test code

mod support;

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeSet;

use overlay_proto::{
    Action, DialId, Direction, Input, Instant, Node, NodeConfig, OverlayError, PeerId,
};
use support::node;

fn config() -> NodeConfig {
    support::token_config()
}

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 9415))
}

/// The dials the node asked for since the last call.
fn connects(n: &mut Node) -> Vec<(DialId, SocketAddr)> {
    let mut out = Vec::new();
    while let Some(a) = n.poll_action() {
        if let Action::Connect { dial, addr, .. } = a {
            out.push((dial, addr));
        }
    }
    out
}

#[test]
fn an_isolated_node_whose_dials_fail_dials_more_at_once_and_stops_when_one_connects() {
    let cfg = config();
    let (base, target) = (cfg.max_concurrent_dials, cfg.active_target);
    let mut n = node(1, cfg);
    let mut now = Instant::ZERO;
    n.handle(
        now,
        Input::PeersDiscovered {
            addrs: (1..=100).map(addr).collect(),
        },
    );
    let mut in_flight: Vec<(DialId, SocketAddr)> = connects(&mut n);
    assert_eq!(
        in_flight.len(),
        base.min(target),
        "the usual dial limit at first"
    );
    let mut tried = BTreeSet::new();
    let mut widest = in_flight.len();
    // Every dial fails (dead hosts), one at a time, 1 ms apart.
    for _ in 0..3 * base {
        let (dial, a) = in_flight.remove(0);
        assert!(
            tried.insert(a),
            "{a} dialed twice while untried addresses were left"
        );
        now += Duration::from_millis(1);
        n.handle(
            now,
            Input::DialFailed {
                dial,
                error: OverlayError::Refused,
            },
        );
        in_flight.extend(connects(&mut n));
        widest = widest.max(in_flight.len());
    }
    assert_eq!(
        widest,
        2 * target,
        "after {base} failures in a row an isolated node dials two addresses per missing \
         session, past the usual {base} slots"
    );
    assert!(widest > base);
    // One dial connects: back to the usual limit, no new dial until the wide ones drain.
    let (dial, a) = in_flight.remove(0);
    n.handle(
        now,
        Input::ConnectionUp {
            conn: overlay_proto::ConnId(1),
            peer: PeerId([9; 32]),
            direction: Direction::Outbound,
            remote: a,
            dial: Some(dial),
            kx_group: None,
        },
    );
    assert!(connects(&mut n).is_empty());
    let (dial, _) = in_flight.remove(0);
    n.handle(
        now,
        Input::DialFailed {
            dial,
            error: OverlayError::Refused,
        },
    );
    assert!(
        connects(&mut n).is_empty(),
        "{} dials still in flight, more than the usual {base}",
        in_flight.len()
    );
}
