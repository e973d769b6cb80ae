//! A publisher and its only peer, which freezes (SIGSTOP, CPU starvation) just after the
//! session opened: nobody is scored, banned or made lazy for the stall, and every message
//! the publisher sent during and after it is delivered (issue #7, "no honest node
//! penalised"; the soak's SIGSTOP failure).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::score::Penalty;
use overlay_proto::OverlayError;

const PUBLISHER: usize = 0;
const STALLED: usize = 1;

fn mesh(seed: u64) -> Mesh {
    Mesh::new(MeshConfig {
        nodes: 2,
        seed,
        bootstrap_peers: 1,
        latency_min: Duration::from_millis(1),
        latency_max: Duration::from_millis(2),
        track_deliveries: true,
        ..MeshConfig::default()
    })
    .unwrap()
}

/// Broadcasts from the publisher every millisecond for `d` (retrying while it is busy);
/// returns how many it sent.
fn publish_for(m: &mut Mesh, d: Duration, sent: &mut u64) {
    let until = m.now() + d;
    while m.now() < until {
        match m.broadcast(PUBLISHER, Bytes::from(sent.to_be_bytes().to_vec())) {
            Ok(_) => *sent += 1,
            Err(OverlayError::Busy) => {}
            Err(e) => panic!("broadcast {sent}: {e:?}"),
        }
        m.run_for(Duration::from_millis(1));
    }
}

fn stall_right_after_the_catch_up(seed: u64, freeze: Duration) {
    let mut m = mesh(seed);
    // The stalled node holds messages from before the session: it announces them (catch-up
    // IHAVE) as the session opens, and the publisher grafts them just as it freezes.
    for n in 0..21u64 {
        m.broadcast(STALLED, Bytes::from(format!("older {n}")))
            .unwrap();
    }
    let mut waited = 0;
    while m.stats(PUBLISHER).unwrap().ihave_received < 21 {
        m.run_for(Duration::from_millis(1));
        waited += 1;
        assert!(waited < 5_000, "no catch-up announcement");
    }
    m.freeze(STALLED);
    let mut sent = 0u64;
    publish_for(&mut m, freeze, &mut sent);
    m.thaw(STALLED);
    publish_for(&mut m, Duration::from_secs(2), &mut sent);
    m.run_for(Duration::from_secs(3));

    let (p, s) = (m.stats(PUBLISHER).unwrap(), m.stats(STALLED).unwrap());
    for (name, st) in [("publisher", &p), ("stalled", &s)] {
        assert_eq!(st.peers_banned, 0, "{name} banned a peer");
        assert_eq!(
            st.score_penalties[Penalty::BrokenPromise as usize],
            0,
            "{name} blamed a broken promise"
        );
        assert_eq!(
            st.score_penalties[Penalty::IhaveFlood as usize],
            0,
            "{name} scored an IHAVE flood"
        );
        assert_eq!(st.sessions_running, 1, "{name}");
    }
    assert!(sent > 1_000, "the publisher published ({sent})");
    // Every message of the publisher reached the stalled node (plus its own 21).
    assert_eq!(s.gossip_delivered, sent, "publisher sent {sent}");
    assert_eq!(p.gossip_delivered, 21);
}

#[test]
fn a_peer_frozen_for_1_3_s_after_its_catch_up_costs_nobody_anything() {
    stall_right_after_the_catch_up(7, Duration::from_millis(1_300));
}

#[test]
fn a_peer_frozen_for_1_s_after_its_catch_up_costs_nobody_anything() {
    stall_right_after_the_catch_up(8, Duration::from_millis(1_000));
}
