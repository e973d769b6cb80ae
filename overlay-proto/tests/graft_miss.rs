//! GRAFT_MISS: a GRAFT for ids the node saw but no longer holds is answered "gone" (to peers
//! that said `graft_miss` in HELLO only); the grafter asks the next announcer at once and
//! scores nobody (an answer within `graft_miss_grace` of the same peer's IHAVE is counted).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use core::time::Duration;
use overlay_proto::score::Penalty;
use overlay_proto::wire::Kind;
use overlay_proto::{Action, ConnId, MessageId, NodeConfig, PeerId};
use support::{event, hello, ids_body, ids_in, peer, random_id as id, raw_peer_config, start, Bed};

fn config() -> NodeConfig {
    let mut c = raw_peer_config();
    c.graft_timeout_settled = c.graft_timeout;
    c
}

/// An IHAVE of `ids`, each in one hop.
fn ihave(ids: &[MessageId]) -> Vec<u8> {
    let with_hops: Vec<_> = ids.iter().map(|id| (*id, 1)).collect();
    support::ihave(&with_hops)
}

fn new_bed(cfg: NodeConfig) -> Bed {
    Bed::with_node(support::node(1, cfg))
}

/// An inbound session from `who` whose HELLO says `graft_miss` or not.
fn open(bed: &mut Bed, conn: u64, who: PeerId, graft_miss: bool) {
    bed.up(conn, who, [10, 0, 0, 100 + conn as u8]);
    bed.send(conn, hello(&who, 1 << 20, 1 << 30, None, graft_miss));
    bed.send(conn, start(""));
    assert!(bed.is_up(conn));
}

/// Ids in the GRAFT_MISS frames sent on `conn`.
fn misses_sent(bed: &Bed, conn: u64) -> Vec<MessageId> {
    ids_in(&bed.sent(conn, Kind::GraftMiss))
}

#[test]
fn a_graft_for_an_id_no_longer_held_is_answered_with_graft_miss() {
    let mut cfg = config();
    cfg.store_ttl = Duration::from_secs(2);
    let mut bed = new_bed(cfg);
    open(&mut bed, 1, peer(2), true);
    let kept = bed.broadcast(b"kept").unwrap();
    bed.advance(Duration::from_secs(3));
    let fresh = bed.broadcast(b"fresh").unwrap();
    let never = id(7);
    bed.send(
        1,
        event(Kind::Graft, &ids_body(&[kept, fresh, never, kept])),
    );
    assert_eq!(
        misses_sent(&bed, 1),
        vec![kept],
        "only the dropped id, once"
    );
    assert_eq!(bed.node.stats().graft_misses_sent, 1);
    // The held one is pushed; the never-seen one is still a (scored) flood; the dropped one
    // is not held against the grafter.
    let pushed = bed.sent(1, Kind::Gossip);
    assert!(pushed.iter().any(|b| b[..32] == fresh.0));
    assert_eq!(
        bed.penalty(peer(2), Penalty::GraftFlood),
        2.0,
        "the repeat and the unknown id"
    );
}

#[test]
fn peers_that_did_not_say_graft_miss_get_no_graft_miss() {
    let mut cfg = config();
    cfg.store_ttl = Duration::from_secs(2);
    let mut bed = new_bed(cfg);
    open(&mut bed, 1, peer(2), false);
    let dropped = bed.broadcast(b"dropped").unwrap();
    bed.advance(Duration::from_secs(3));
    bed.send(1, event(Kind::Graft, &ids_body(&[dropped])));
    assert!(misses_sent(&bed, 1).is_empty());
    assert!(bed.sent(1, Kind::GraftMiss).is_empty());
    assert_eq!(bed.node.stats().graft_misses_sent, 0);
    assert_eq!(bed.penalty(peer(2), Penalty::GraftFlood), 0.0);
}

/// Announcer A (session 1) announces at 0, B (session 2) at 590 ms; the first GRAFT (after a
/// 600 ms `graft_timeout`) goes to A.
fn two_announcers() -> (Bed, MessageId) {
    let mut cfg = config();
    cfg.graft_timeout = Duration::from_millis(600);
    cfg.graft_timeout_settled = cfg.graft_timeout;
    let mut bed = new_bed(cfg);
    open(&mut bed, 1, peer(2), true);
    open(&mut bed, 2, peer(3), true);
    let wanted = id(1);
    bed.send(1, ihave(&[wanted]));
    bed.advance(Duration::from_millis(590));
    bed.send(2, ihave(&[wanted]));
    bed.advance(Duration::from_millis(15));
    assert_eq!(bed.grafted(1), vec![wanted]);
    assert!(bed.grafted(2).is_empty());
    (bed, wanted)
}

#[test]
fn an_honest_miss_asks_the_next_announcer_at_once_and_blames_nobody() {
    let (mut bed, wanted) = two_announcers();
    // A's answer comes 610 ms after its IHAVE: past the 500 ms grace.
    bed.advance(Duration::from_millis(5));
    bed.send(1, event(Kind::GraftMiss, &ids_body(&[wanted])));
    assert_eq!(
        bed.grafted(2),
        vec![wanted],
        "B asked at once, not after graft_retry"
    );
    assert_eq!(bed.penalty(peer(2), Penalty::BrokenPromise), 0.0);
    assert_eq!(bed.node.stats().graft_misses_received, 1);
    assert_eq!(bed.node.stats().graft_misses_too_soon, 0);
    // A's stale GRAFT timer (600 + 120 ms) must not blame B, asked at 610 ms.
    bed.advance(Duration::from_millis(115)); // 725 ms
    assert_eq!(bed.penalty(peer(3), Penalty::BrokenPromise), 0.0);
    // B keeps talking (an announcement of something else) but never sends what it
    // promised: its own timer (610 + 120 ms) runs out.
    bed.send(2, ihave(&[id(99)]));
    bed.advance(Duration::from_millis(10)); // 735 ms
    assert_eq!(bed.penalty(peer(3), Penalty::BrokenPromise), 1.0);
    assert_eq!(bed.penalty(peer(2), Penalty::BrokenPromise), 0.0);
}

#[test]
fn a_miss_soon_after_the_peers_own_ihave_is_counted_but_not_scored() {
    let (mut bed, wanted) = two_announcers();
    bed.advance(Duration::from_millis(5));
    bed.send(1, event(Kind::GraftMiss, &ids_body(&[wanted])));
    assert_eq!(bed.grafted(2), vec![wanted]);
    // B announced at 590 ms and says "gone" at 620 ms: counted as too soon, but a bounded
    // store may honestly drop young messages under a burst, so nobody is scored.
    bed.advance(Duration::from_millis(10));
    bed.send(2, event(Kind::GraftMiss, &ids_body(&[wanted])));
    assert_eq!(bed.penalty(peer(3), Penalty::BrokenPromise), 0.0);
    assert_eq!(bed.penalty(peer(2), Penalty::BrokenPromise), 0.0);
    assert_eq!(bed.node.stats().graft_misses_too_soon, 1);
    // No announcer left: the id is given up, no further GRAFT.
    bed.advance(Duration::from_secs(1));
    assert_eq!(bed.grafted(1), vec![wanted]);
    assert_eq!(bed.grafted(2), vec![wanted]);
    assert_eq!(
        bed.node.stats().score_penalties[Penalty::BrokenPromise as usize],
        0,
        "nobody blamed"
    );
}

#[test]
fn misses_for_ids_not_asked_of_that_peer_are_ignored() {
    let (mut bed, wanted) = two_announcers();
    // B was not asked; an unknown id was never missing.
    bed.send(2, event(Kind::GraftMiss, &ids_body(&[wanted, id(99)])));
    assert_eq!(bed.node.stats().graft_misses_unsolicited, 2);
    assert!(bed.grafted(2).is_empty(), "nothing changes");
    // A repeated id in A's answer counts once.
    bed.advance(Duration::from_millis(5));
    bed.send(1, event(Kind::GraftMiss, &ids_body(&[wanted, wanted])));
    assert_eq!(bed.grafted(2), vec![wanted]);
    assert_eq!(bed.node.stats().graft_misses_received, 1);
    assert_eq!(bed.penalty(peer(3), Penalty::BrokenPromise), 0.0);
    // A malformed body (not a whole number of ids) closes the session like a bad GRAFT.
    bed.send(1, event(Kind::GraftMiss, &[1, 2, 3]));
    assert!(bed
        .actions()
        .any(|a| matches!(a, Action::Close { conn, .. } if *conn == ConnId(1))));
}

fn gossip(origin: PeerId, nonce: u64, payload: &[u8]) -> (MessageId, Vec<u8>) {
    support::gossip(origin, nonce, payload, 0)
}

#[test]
fn an_id_dropped_before_the_lazy_flush_is_not_announced() {
    let mut cfg = config();
    // One stored message: the second arrival drops the first (the count bound is hard).
    cfg.store_capacity = 1;
    let mut bed = new_bed(cfg);
    open(&mut bed, 1, peer(2), true);
    open(&mut bed, 2, peer(3), true);
    // Peer 3 prunes us: its link is lazy, so it gets IHAVE batches.
    bed.send(2, event(Kind::Prune, &[]));
    let (first, frame1) = gossip(peer(9), 1, b"first");
    let (second, frame2) = gossip(peer(9), 2, b"second");
    bed.send(1, frame1);
    bed.send(1, frame2);
    bed.advance(Duration::from_millis(20));
    let announced: Vec<MessageId> = bed
        .sent(2, Kind::IHave)
        .iter()
        .flat_map(|b| {
            b.chunks_exact(33)
                .map(|c| MessageId(c[..32].try_into().unwrap()))
        })
        .collect();
    assert_eq!(announced, vec![second], "the dropped one is left out");
    assert_ne!(first, second);
    // A GRAFT for it anyway is answered "gone".
    bed.send(2, event(Kind::Graft, &ids_body(&[first])));
    assert_eq!(misses_sent(&bed, 2), vec![first]);
}
