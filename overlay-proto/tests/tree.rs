//! Plumtree tree maintenance, one rule per test: new sessions start eager; the optimisation
//! step (a lazy link whose announcements were on average `optimization_threshold` hops
//! shorter, over `optimization_samples` messages from one eager link, replaces it), its hold
//! (a swap is not undone by the next message), the two-phase swap when messages overlap, the
//! promotion-only GRAFT, the GRAFT hold that follows the tree's lateness, and on the mesh:
//! random senders converge to one symmetric eager tree without endless swapping, which is
//! repaired after a mass kill.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::wire::Kind;
use overlay_proto::{Input, MessageId, NodeConfig, OriginAuth};
use support::{assert_symmetric_near_tree, event, one_parent_bed_with, peer, raw_peer_config, Bed};

// ---------------------------------------------------------------------------------------
// One node and hand-driven peers.

fn config() -> NodeConfig {
    let mut c = raw_peer_config();
    c.alpha = 1;
    c
}

/// The tree optimisation's settings these tests rely on (the core's defaults).
const THRESHOLD: u8 = 2;
const SAMPLES: u16 = 6;

/// A GOSSIP from origin `peer(99)` with `nonce`, as relayed with `hops`.
fn gossip(nonce: u64, hops: u8) -> (MessageId, Vec<u8>) {
    support::gossip(peer(99), nonce, &nonce.to_be_bytes(), hops)
}

fn ihave(id: &MessageId, hops: u8) -> Vec<u8> {
    support::ihave(&[(*id, hops)])
}

/// A node with `peers` sessions on connections 1..=peers; connection 1 is its only eager
/// peer.
fn one_parent_bed(peers: u64) -> Bed {
    one_parent_bed_with(config(), peers)
}

/// [`one_parent_bed`] 3 s later (every link's role older than `optimization_hold`), with
/// nothing sent yet recorded.
fn settled_bed(peers: u64) -> Bed {
    let mut bed = one_parent_bed(peers);
    bed.advance(Duration::from_secs(3));
    bed.clear();
    bed
}

#[test]
fn every_new_session_starts_eager() {
    let mut bed = Bed::new(config());
    for conn in 1..=4 {
        bed.open(conn, peer(conn as u8 + 1));
    }
    // More than alpha (1): every link is eager until a duplicate or a PRUNE says otherwise.
    for conn in 1..=4u8 {
        assert!(bed.is_eager(peer(conn + 1)), "session {conn} eager");
    }
    assert_eq!(bed.node.stats().eager_peers, 4);
}

/// `count` messages pushed over connection 1 with `hops`, each announced right after by the
/// peer on connection 2 with `offered` hops. Nonces from `first`.
/// The announcer on `conn` proves its hop claim: it answers the GRAFT for message `nonce`
/// with the `hops` it claimed (a swap completes only then; claims.rs).
fn prove(bed: &mut Bed, conn: u64, nonce: u64, hops: u8) {
    let (_, answer) = gossip(nonce, hops);
    bed.send(conn, answer);
}

fn pushed_then_announced(bed: &mut Bed, first: u64, count: u64, hops: u8, offered: u8) {
    for nonce in first..first + count {
        let (id, push) = gossip(nonce, hops);
        bed.send(1, push);
        bed.send(2, ihave(&id, offered));
        bed.advance(Duration::from_millis(50));
    }
}

#[test]
fn one_message_alone_does_not_reshape_the_tree() {
    let mut bed = settled_bed(3);
    // Through peer 3 this message would have taken 2 hops instead of 10: one sender's
    // view, not the tree's.
    pushed_then_announced(&mut bed, 1, 1, 9, 1);
    assert!(bed.sent(2, Kind::Graft).is_empty());
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    assert_eq!(bed.node.stats().tree_swaps, 0);
}

#[test]
fn a_mean_saving_over_the_samples_swaps_the_links() {
    let mut bed = settled_bed(3);
    // Each message would have come THRESHOLD hops sooner through peer 3.
    let hops = 6;
    let offered = hops - THRESHOLD;
    pushed_then_announced(&mut bed, 1, u64::from(SAMPLES) - 1, hops, offered);
    assert_eq!(bed.node.stats().tree_swaps, 0, "one sample short");
    pushed_then_announced(&mut bed, 100, 1, hops, offered);
    // The announcer is asked for the message of its latest claim; the parent stays until
    // the answer bears the claim out.
    let (claimed, _) = gossip(100, hops);
    assert_eq!(bed.sent(2, Kind::Graft), vec![claimed.0.to_vec()]);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert_eq!(bed.node.stats().tree_swaps, 0);
    prove(&mut bed, 2, 100, offered);
    assert_eq!(
        bed.sent(1, Kind::Prune).len(),
        1,
        "the old parent is pruned"
    );
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().tree_swaps, 1);
    // The shortcut is not asked for another payload: nothing is missing.
    bed.advance(Duration::from_millis(500));
    assert_eq!(bed.sent(2, Kind::Graft).len(), 1);
}

#[test]
fn a_mean_saving_below_the_threshold_keeps_the_tree() {
    let mut bed = settled_bed(3);
    // Some senders are much closer through peer 3, more are farther: the mean saving is
    // below the threshold although single messages show large ones.
    for round in 0..4 {
        pushed_then_announced(&mut bed, round * 10, 1, 9, 1);
        pushed_then_announced(&mut bed, round * 10 + 1, 2, 4, 7);
    }
    assert_eq!(bed.node.stats().tree_swaps, 0);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
}

#[test]
fn a_shortcut_heard_through_us_never_replaces_the_parent() {
    let mut bed = settled_bed(3);
    // Peer 3 announces every message with more hops than we had: it is behind us.
    pushed_then_announced(&mut bed, 1, 3 * u64::from(SAMPLES), 3, 5);
    assert_eq!(bed.node.stats().tree_swaps, 0);
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
}

#[test]
fn the_best_announcement_before_a_longer_eager_push_counts_too() {
    let mut bed = settled_bed(3);
    // The IHAVEs come first (the lazy path is faster), then the eager pushes over 10 hops.
    for nonce in 0..u64::from(SAMPLES) {
        let (id, push) = gossip(nonce, 9);
        bed.send(2, ihave(&id, 2));
        bed.send(1, push);
        bed.advance(Duration::from_millis(50));
    }
    let last = u64::from(SAMPLES) - 1;
    let (claimed, _) = gossip(last, 9);
    assert_eq!(bed.sent(2, Kind::Graft), vec![claimed.0.to_vec()]);
    prove(&mut bed, 2, last, 2);
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1);
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
}

#[test]
fn a_swap_is_not_undone_by_the_next_messages() {
    let mut bed = one_parent_bed(3);
    bed.advance(Duration::from_secs(3));
    pushed_then_announced(&mut bed, 1, u64::from(SAMPLES), 8, 2);
    prove(&mut bed, 2, u64::from(SAMPLES), 2);
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    bed.clear();
    // The next messages come from the other side: through the new parent (connection 2)
    // they are long, the old parent (connection 1) announces them much shorter. Both links
    // just changed role: no swap back.
    for nonce in 50..50 + u64::from(SAMPLES) {
        let (id, push) = gossip(nonce, 8);
        bed.send(2, push);
        bed.send(1, ihave(&id, 0));
        bed.advance(Duration::from_millis(50));
    }
    assert!(bed.sent(1, Kind::Graft).is_empty());
    assert!(bed.sent(2, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().tree_swaps, 1);
    // Once both links have held their roles for `optimization_hold`, a real shortcut counts.
    bed.advance(Duration::from_secs(3));
    for nonce in 100..100 + u64::from(SAMPLES) {
        let (id, push) = gossip(nonce, 8);
        bed.send(2, push);
        bed.send(1, ihave(&id, 0));
        bed.advance(Duration::from_millis(50));
    }
    prove(&mut bed, 1, 100 + u64::from(SAMPLES) - 1, 0);
    assert_eq!(bed.node.stats().tree_swaps, 2);
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
}

#[test]
fn a_stale_announcement_does_not_count() {
    let mut bed = one_parent_bed(3);
    bed.advance(Duration::from_secs(3));
    let mut ids = Vec::new();
    for nonce in 0..u64::from(SAMPLES) {
        let (id, push) = gossip(nonce, 9);
        bed.send(1, push);
        ids.push(id);
    }
    // Seconds later (a catch-up IHAVE of a new session, say) the old ids say nothing about
    // the tree as it is now.
    bed.advance(Duration::from_secs(2));
    for id in &ids {
        bed.send(2, ihave(id, 0));
    }
    assert_eq!(bed.node.stats().tree_swaps, 0);
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
}

#[test]
fn when_messages_overlap_the_old_parent_is_pruned_only_by_its_next_duplicate() {
    let mut bed = settled_bed(3);
    let (hops, offered) = (8, 2);
    let mut last = None;
    for nonce in 0..u64::from(SAMPLES) {
        bed.advance(Duration::from_millis(50));
        let (id, push) = gossip(nonce, hops);
        bed.send(1, push);
        last = Some(id);
        if nonce + 1 < u64::from(SAMPLES) {
            bed.send(2, ihave(&id, offered));
        }
    }
    // Another message arrives before the last announcement: by then other nodes may have
    // reshaped the tree, so the swap only adds the shortcut. (The announcements come within
    // `optimization_max_lateness` of our copies: the shortcut is no slower in time.)
    bed.advance(Duration::from_millis(2));
    let (_, other) = gossip(1000, 1);
    bed.send(1, other);
    bed.send(2, ihave(&last.unwrap(), offered));
    assert_eq!(bed.sent(2, Kind::Graft), vec![last.unwrap().0.to_vec()]);
    prove(&mut bed, 2, u64::from(SAMPLES) - 1, offered);
    assert_eq!(bed.node.stats().tree_swaps, 1);
    assert!(bed.sent(1, Kind::Prune).is_empty(), "not pruned yet");
    assert!(bed.is_eager(peer(3)) && bed.is_eager(peer(2)));
    // The old parent's next duplicate proves another path: now it is pruned, although it
    // gave us a first copy moments ago (which alone would need a streak of duplicates).
    let (_, m) = gossip(2000, 1);
    bed.send(2, m.clone());
    bed.send(1, m);
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1);
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
}

#[test]
fn a_freshly_grafted_link_is_not_pruned_by_the_copy_it_was_asked_for() {
    let mut bed = settled_bed(3);
    // Announced by peer 3, never pushed: after graft_timeout the node grafts it.
    let (id, push) = gossip(1, 2);
    bed.send(2, ihave(&id, 1));
    bed.advance(Duration::from_millis(100));
    assert_eq!(bed.sent(2, Kind::Graft).len(), 1);
    assert!(bed.is_eager(peer(3)));
    // The eager parent's copy arrives after all, then the copy the GRAFT asked for: a
    // duplicate over a link made eager moments ago, which is no sign of a cycle yet.
    bed.send(1, push.clone());
    bed.send(2, push);
    assert!(bed.sent(2, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(3)) && bed.is_eager(peer(2)));
}

#[test]
fn grafts_wait_as_long_as_the_tree_has_been_late() {
    let mut bed = one_parent_bed(3);
    bed.advance(Duration::from_secs(3));
    // The tree brings announced messages 150 ms after the announcement (a WAN-like tree):
    // no GRAFT, the eager copies arrive in time.
    for nonce in 0..4 {
        let (id, push) = gossip(nonce, 3);
        bed.send(2, ihave(&id, 1));
        bed.advance(Duration::from_millis(150));
        bed.send(1, push);
        bed.advance(Duration::from_millis(850));
    }
    bed.clear();
    // Later announcements wait that long before a GRAFT is sent.
    let (id, _) = gossip(100, 3);
    bed.send(2, ihave(&id, 1));
    bed.advance(Duration::from_millis(140));
    assert!(bed.sent(2, Kind::Graft).is_empty(), "put off");
    bed.advance(Duration::from_millis(100));
    assert_eq!(
        bed.sent(2, Kind::Graft).len(),
        1,
        "sent once the hold ran out"
    );
}

#[test]
fn without_late_copies_a_missing_message_is_grafted_after_graft_timeout() {
    let mut bed = settled_bed(3);
    // A fast mesh: the tree's copies always come before any announcement, so nothing
    // teaches the node to wait; a missing message is repaired after graft_timeout (80 ms).
    let (id, _) = gossip(1, 3);
    bed.send(2, ihave(&id, 1));
    bed.advance(Duration::from_millis(79));
    assert!(bed.sent(2, Kind::Graft).is_empty());
    bed.advance(Duration::from_millis(2));
    assert_eq!(bed.sent(2, Kind::Graft).len(), 1);
}

/// When the node's PING on `conn` left, if one did since the last [`Bed::clear`].
fn ping_sent_at(bed: &Bed, conn: u64) -> Option<overlay_proto::Instant> {
    bed.log
        .iter()
        .find(|(_, a)| !support::event_bodies([a], conn, Kind::Ping).is_empty())
        .map(|(at, _)| *at)
}

/// [`one_parent_bed`] of `peers` whose node measures round trips early: latency-aware
/// membership sends each new session one PING at once.
fn measuring_bed(peers: u64) -> Bed {
    let mut cfg = config();
    cfg.link_optimization = true;
    one_parent_bed_with(cfg, peers)
}

/// Waits for the node's first PING on `conn` of a [`measuring_bed`] of `peers` and answers it
/// `rtt` after it left (every peer sends heartbeats meanwhile), so the node measures a round
/// trip of `rtt` to that peer; then clears the log.
fn answer_first_ping_after(bed: &mut Bed, peers: u64, conn: u64, rtt: Duration) {
    for _ in 0..100 {
        if ping_sent_at(bed, conn).is_some() {
            break;
        }
        bed.advance(Duration::from_millis(10));
    }
    let answer_at = ping_sent_at(bed, conn).unwrap() + rtt;
    while bed.now + Duration::from_millis(500) < answer_at {
        heartbeats(bed, peers);
        bed.advance(Duration::from_millis(500));
    }
    bed.advance(answer_at - bed.now);
    bed.send(conn, event(Kind::Pong, &[]));
    heartbeats(bed, peers);
    bed.clear();
}

/// Peers on connections `1..=peers` show they are alive.
fn heartbeats(bed: &mut Bed, peers: u64) {
    for conn in 1..=peers {
        bed.heartbeat(conn);
    }
}

/// Peer `conn` announces a new message: no GRAFT for it goes out before `wait`, one asking for
/// it goes out just after.
fn assert_grafted_after(bed: &mut Bed, conn: u64, nonce: u64, wait: Duration) {
    let (id, _) = gossip(nonce, 3);
    bed.send(conn, ihave(&id, 1));
    bed.advance(wait - Duration::from_millis(1));
    assert!(bed.sent(conn, Kind::Graft).is_empty(), "still waiting");
    bed.advance(Duration::from_millis(2));
    assert_eq!(bed.grafted(conn), vec![id], "grafted after {wait:?}");
}

#[test]
fn the_first_graft_also_waits_the_announcers_one_way_delay() {
    let mut bed = measuring_bed(3);
    answer_first_ping_after(&mut bed, 3, 2, Duration::from_millis(100));
    // Peer 3's announcement waits graft_timeout (80 ms) plus half its 100 ms round trip (its
    // one-way delay) for the tree's copy.
    assert_grafted_after(&mut bed, 2, 1, Duration::from_millis(80 + 50));
}

#[test]
fn a_slow_announcer_adds_at_most_the_settled_hold_to_the_first_graft() {
    let mut bed = measuring_bed(3);
    // A 2 s round trip (a stalled or distant peer): the wait grows by
    // graft_timeout_settled − graft_timeout (160 ms) at most, 240 ms in all.
    answer_first_ping_after(&mut bed, 3, 2, Duration::from_secs(2));
    assert_grafted_after(&mut bed, 2, 1, Duration::from_millis(240));
}

#[test]
fn after_a_lost_session_the_first_graft_waits_graft_timeout_only() {
    // Peer 3 has a 100 ms round trip, but session 4 ended: failures may be near, so the
    // announcement gets no extra wait (once a message arrived since the loss, it is not
    // grafted at once either).
    let mut bed = measuring_bed(4);
    answer_first_ping_after(&mut bed, 4, 2, Duration::from_millis(100));
    bed.input(Input::ConnectionClosed {
        conn: overlay_proto::ConnId(4),
        error: None,
    });
    bed.advance(Duration::from_millis(10));
    let (_, pushed) = gossip(1, 2);
    bed.send(1, pushed);
    bed.clear();
    assert_grafted_after(&mut bed, 2, 2, Duration::from_millis(80));
}

#[test]
fn with_no_other_link_the_announcer_is_grafted_at_once() {
    // One session, eager (every new session starts eager): its announcement is all there
    // is, since nobody else can push or announce the message (a node rebuilding its links
    // after a mass failure hears the new session's catch-up announcements).
    let mut bed = settled_bed(1);
    let (id, _) = gossip(1, 3);
    bed.send(1, ihave(&id, 1));
    bed.advance(Duration::from_millis(1));
    assert_eq!(bed.sent(1, Kind::Graft), vec![id.0.to_vec()]);
    // With another link, eager or lazy, that may still push or announce it, the GRAFT waits
    // graft_timeout (here the announcer is lazy and connection 1 the eager parent).
    let mut bed = settled_bed(2);
    let (id, _) = gossip(2, 3);
    bed.send(2, ihave(&id, 1));
    bed.advance(Duration::from_millis(1));
    assert!(bed.sent(2, Kind::Graft).is_empty());
    bed.advance(Duration::from_millis(80));
    assert_eq!(bed.sent(2, Kind::Graft), vec![id.0.to_vec()]);
}

#[test]
fn a_node_that_lost_a_session_grafts_at_once_until_its_next_message() {
    // Connection 1 is the eager parent, 2..=4 lazy. Session 4 ends: the parent may be the
    // next to go (a mass failure), so until a new message arrives an announcement is
    // grafted at once instead of after graft_timeout.
    let mut bed = settled_bed(4);
    bed.input(Input::ConnectionClosed {
        conn: overlay_proto::ConnId(4),
        error: None,
    });
    bed.clear();
    let (id, m) = gossip(2, 3);
    bed.send(2, ihave(&id, 1));
    bed.advance(Duration::from_millis(1));
    assert_eq!(bed.sent(2, Kind::Graft), vec![id.0.to_vec()]);
    // The message the GRAFT brings ends it: the next announcement (from lazy connection 3)
    // waits graft_timeout again.
    bed.send(2, m);
    bed.clear();
    let (id, _) = gossip(4, 3);
    bed.send(3, ihave(&id, 1));
    bed.advance(Duration::from_millis(20));
    assert!(bed.sent(3, Kind::Graft).is_empty(), "the wait resumed");
    bed.advance(Duration::from_millis(180));
    assert_eq!(bed.sent(3, Kind::Graft), vec![id.0.to_vec()]);
}

#[test]
fn an_empty_graft_promotes_the_sender_and_asks_for_nothing() {
    let mut bed = one_parent_bed(2);
    assert!(!bed.is_eager(peer(3)));
    bed.clear();
    bed.send(2, event(Kind::Graft, &[]));
    assert!(bed.is_eager(peer(3)), "the grafting peer is now eager");
    assert!(bed.sent(2, Kind::Gossip).is_empty());
    assert_eq!(bed.node.stats().grafts_received, 1);
    // The next broadcast is pushed to it.
    bed.input(Input::Broadcast {
        request: 1,
        payload: Bytes::from_static(b"hello"),
    });
    assert_eq!(bed.sent(2, Kind::Gossip).len(), 1);
}

#[test]
fn a_duplicate_after_a_quiet_spell_prunes_at_once() {
    let mut bed = one_parent_bed(2);
    // Both peers eager: alpha 1 gives one eager link, the other is made eager by a push.
    let (_, first) = gossip(1, 1);
    bed.send(2, first);
    assert!(bed.is_eager(peer(2)) && bed.is_eager(peer(3)));
    bed.advance(Duration::from_secs(1));
    bed.clear();
    let (_, m) = gossip(2, 1);
    bed.send(1, m.clone());
    bed.send(2, m);
    assert_eq!(bed.sent(2, Kind::Prune).len(), 1, "first duplicate prunes");
    assert!(!bed.is_eager(peer(3)));
}

#[test]
fn duplicates_while_the_link_is_busy_need_a_streak() {
    let mut bed = one_parent_bed(2);
    let (_, first) = gossip(1, 1);
    bed.send(2, first);
    bed.advance(Duration::from_secs(1));
    bed.clear();
    // Peer 3 gave us a first copy 5 ms ago: broadcasts overlap, one duplicate is not enough.
    let (_, a) = gossip(10, 1);
    bed.send(2, a);
    bed.advance(Duration::from_millis(5));
    let (_, b) = gossip(11, 1);
    bed.send(1, b.clone());
    bed.send(2, b);
    assert!(bed.sent(2, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(3)));
    for nonce in 12..16 {
        let (_, m) = gossip(nonce, 1);
        bed.send(1, m.clone());
        bed.send(2, m);
    }
    assert_eq!(bed.sent(2, Kind::Prune).len(), 1, "pruned after 5 in a row");
}

// ---------------------------------------------------------------------------------------
// The whole mesh.

fn mesh(nodes: usize, seed: u64) -> Mesh {
    let mut cfg = MeshConfig {
        nodes,
        seed,
        ..MeshConfig::default()
    };
    cfg.node_config.origin_auth = OriginAuth::None;
    // The tree rules alone, over a fixed membership: latency-aware membership swaps links
    // while these tests measure (it has its own tests in link_optimization.rs).
    cfg.node_config.link_optimization = false;
    Mesh::new(cfg).unwrap()
}

/// Checks that the eager links are symmetric and form one spanning tree of the live nodes.
fn assert_one_symmetric_tree(m: &Mesh) {
    assert_symmetric_near_tree(m, 0);
}

/// Payload messages received by all nodes (first copies and duplicates).
fn received(m: &Mesh) -> u64 {
    (0..m.len())
        .filter_map(|i| m.stats(i))
        .map(|s| s.gossip_delivered + s.gossip_duplicates)
        .sum()
}

/// `count` broadcasts from random live nodes, one per second; returns the RMR over them and
/// checks that each reached every live node.
fn random_broadcasts(m: &mut Mesh, count: u64, salt: u64) -> f64 {
    let alive: Vec<usize> = (0..m.len()).filter(|i| m.is_alive(*i)).collect();
    let before = received(m);
    for k in 0..count {
        let sender = alive[((k + salt).wrapping_mul(2_654_435_761) % alive.len() as u64) as usize];
        let id = m.broadcast(sender, Bytes::from(vec![k as u8; 64])).unwrap();
        m.run_for(Duration::from_secs(1));
        let reached = m.track(&id).unwrap().delivered.len();
        assert_eq!(reached, alive.len() - 1, "broadcast {k} from {sender}");
    }
    let total = received(m) - before;
    total as f64 / (count as f64 * (alive.len() - 1) as f64) - 1.0
}

#[test]
fn random_senders_converge_to_one_symmetric_eager_tree() {
    let mut m = mesh(60, 5);
    m.run_for(Duration::from_secs(10));
    random_broadcasts(&mut m, 5, 0);
    assert_one_symmetric_tree(&m);
    let rmr = random_broadcasts(&mut m, 15, 100);
    // A tree shared by every sender: each node gets each payload once.
    assert!(rmr <= 0.05, "steady RMR {rmr:.3} with random senders");
    assert_one_symmetric_tree(&m);
}

fn swaps(m: &Mesh) -> u64 {
    (0..m.len())
        .filter_map(|i| m.stats(i))
        .map(|s| s.tree_swaps)
        .sum()
}

/// Swaps in the first 20 random broadcasts, in the next 40, and the RMR of those 40, on a
/// 60-node mesh whose nodes allow `max_lateness` (see `optimization_max_lateness`).
fn settling(max_lateness: Duration) -> (u64, u64, f64) {
    let mut cfg = MeshConfig {
        nodes: 60,
        seed: 11,
        ..MeshConfig::default()
    };
    cfg.node_config.origin_auth = OriginAuth::None;
    cfg.node_config.link_optimization = false;
    cfg.node_config.optimization_max_lateness = max_lateness;
    let mut m = Mesh::new(cfg).unwrap();
    m.run_for(Duration::from_secs(10));
    random_broadcasts(&mut m, 20, 0);
    let early = swaps(&m);
    let rmr = random_broadcasts(&mut m, 40, 300);
    let late = swaps(&m) - early;
    assert_symmetric_near_tree(&m, 1);
    (early, late, rmr)
}

#[test]
fn the_optimisation_settles_instead_of_oscillating() {
    // By hops alone (any lateness allowed): the tree is reshaped early, then, once shaped,
    // further senders rarely show a mean saving and it stops changing (a rule driven by
    // single messages keeps reshaping it for each sender).
    let (early, late, rmr) = settling(Duration::from_secs(60));
    eprintln!(
        "hops alone: swaps {early} in the first 20 broadcasts, {late} in the next 40; RMR {rmr:.3}"
    );
    assert!(early > 0, "the optimisation shaped the tree");
    assert!(
        late <= 6,
        "{late} swaps over 40 broadcasts after {early} in the first 20"
    );
    assert!(rmr <= 0.05, "RMR {rmr:.3}");
    // With the default allowance, shortcuts whose announcements trail our copies (slower
    // links, however few hops) are not taken: fewer swaps, and still settled.
    let (early_timed, late_timed, rmr) = settling(NodeConfig::default().optimization_max_lateness);
    eprintln!("timed: swaps {early_timed} in the first 20 broadcasts, {late_timed} in the next 40; RMR {rmr:.3}");
    assert!(early_timed + late_timed < early + late);
    assert!(late_timed <= 6, "{late_timed} swaps over 40 broadcasts");
    assert!(rmr <= 0.05, "RMR {rmr:.3}");
}

#[test]
fn the_tree_is_repaired_after_killing_a_third_of_the_nodes() {
    let mut m = mesh(60, 9);
    m.run_for(Duration::from_secs(10));
    random_broadcasts(&mut m, 5, 0);
    assert_symmetric_near_tree(&m, 2);
    for i in (0..60).filter(|i| i % 3 == 1) {
        m.kill(i);
    }
    m.run_for(Duration::from_secs(5));
    // Every broadcast after the kill reaches every survivor, and the survivors' eager graph
    // becomes one tree again.
    random_broadcasts(&mut m, 5, 7);
    assert_symmetric_near_tree(&m, 2);
    let rmr = random_broadcasts(&mut m, 10, 50);
    assert!(rmr <= 0.05, "RMR {rmr:.3} after the repair");
    assert_symmetric_near_tree(&m, 2);
}
