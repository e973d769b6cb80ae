//! Hostile authenticated peers against one node, one rule per test: minimum HELLO window,
//! GRAFT and IHAVE floods, broken promises, scoring and bans, stalled sessions and node-wide
//! readiness, the pre-auth budget, tokens for the whole session, membership hints. Each test
//! checks the typed close or drop, its counter, and that honest peers keep working.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use bytes::BytesMut;
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::capability::{peer_caveat, Caveat, CborValue};
use overlay_proto::frame::flags;
use overlay_proto::score::{Penalty, Standing};
use overlay_proto::wire::{self, Kind, PeerEntry};
use overlay_proto::{
    Action, CloseReason, ConnId, Direction, Input, Instant, MessageId, NodeConfig, OverlayError,
    PeerId, RejectReason,
};
use support::{
    event, graft, hello, peer, random_id, raw_frame as frame, raw_peer_config, start, Bed, KEY,
    NOW_UNIX,
};

const APP: u16 = overlay_proto::OVERLAY_APP_PROTO_ID;

fn token(caveats: Vec<Caveat>) -> String {
    support::token(caveats, &[], None)
}

/// A config whose peers need no token (most tests), long idle timers (tests advance time).
fn open_config() -> NodeConfig {
    let mut c = raw_peer_config();
    // GRAFT timing tests count from `graft_timeout`, settled tree or not.
    c.graft_timeout_settled = c.graft_timeout;
    c
}

fn token_config() -> NodeConfig {
    let mut c = open_config();
    c.auth.require_token = true;
    c.auth.keys.insert("k1", "overlay", KEY);
    c.auth.own_token = Some(token(vec![]).into());
    c
}

/// An IHAVE of `ids`, each in one hop.
fn ihave(ids: &[MessageId]) -> Vec<u8> {
    let with_hops: Vec<_> = ids.iter().map(|id| (*id, 1)).collect();
    support::ihave(&with_hops)
}

/// An unrelayed GOSSIP from `origin`.
fn gossip(origin: PeerId, nonce: u64, payload: &[u8]) -> Vec<u8> {
    support::gossip(origin, nonce, payload, 0).1
}

fn shuffle(kind: Kind, entries: &[PeerEntry]) -> Vec<u8> {
    let mut body = BytesMut::new();
    wire::put_shuffle(&mut body, entries);
    event(kind, &body)
}

/// Frames of `kind` transmitted on `conn`; for GRAFT, only those asking for ids (an empty
/// GRAFT just tells the peer the link is eager, as on every new eager session).
fn sent(bed: &Bed, conn: u64, kind: Kind) -> usize {
    bed.sent(conn, kind)
        .iter()
        .filter(|body| !(kind == Kind::Graft && body.is_empty()))
        .count()
}

/// Empty GRAFT frames transmitted on `conn` (the link is eager on our side: push to us).
fn role_grafts(bed: &Bed, conn: u64) -> usize {
    bed.sent(conn, Kind::Graft)
        .iter()
        .filter(|body| body.is_empty())
        .count()
}

fn rejected(bed: &Bed, reason: RejectReason) -> u64 {
    bed.node.stats().rejected.get(reason)
}

fn score_of(bed: &Bed, who: PeerId) -> overlay_proto::score::PeerScore {
    bed.node.peer_score(&who)
}

#[test]
fn a_hello_granting_a_tiny_window_is_refused_with_400() {
    let mut bed = Bed::new(open_config());
    bed.up(1, peer(2), [10, 0, 0, 2]);
    bed.send(1, hello(&peer(2), 0, 0, None, false));
    assert_eq!(
        bed.closed(1),
        Some(CloseReason::Violation(OverlayError::Malformed))
    );
    assert_eq!(bed.error_code(1), Some(400));
    assert_eq!(rejected(&bed, RejectReason::SmallWindow), 1);
    assert_eq!(rejected(&bed, RejectReason::Malformed), 0, "counted once");
    // Enough frames but too few bytes is refused too.
    bed.up(2, peer(3), [10, 0, 0, 3]);
    bed.send(2, hello(&peer(3), 512, 1024, None, false));
    assert_eq!(rejected(&bed, RejectReason::SmallWindow), 2);
    // The minimum itself is fine.
    bed.up(3, peer(4), [10, 0, 0, 4]);
    bed.send(3, hello(&peer(4), 16, 64 * 1024, None, false));
    bed.send(3, start(""));
    assert!(bed.is_up(3));
}

#[test]
fn graft_spam_repeating_one_id_bans_the_peer_and_the_node_stays_ready() {
    let mut bed = Bed::new(open_config());
    bed.open(1, peer(2)); // honest
    bed.up(2, peer(3), [10, 0, 0, 3]);
    bed.send(
        2,
        hello(&peer(3), 16, 64 * 1024, Some("10.0.0.3:9415"), false),
    );
    bed.send(2, start(""));
    assert!(bed.is_up(2));
    let id = bed.broadcast(b"held").unwrap();
    bed.send(2, graft(&vec![id; 8192]));
    assert_eq!(bed.closed(2), Some(CloseReason::Banned));
    assert_eq!(bed.error_code(2), Some(403));
    assert_eq!(rejected(&bed, RejectReason::GraftFlood), 8191);
    assert_eq!(rejected(&bed, RejectReason::Banned), 1);
    let stats = bed.node.stats();
    assert_eq!(stats.peers_banned, 1);
    assert_eq!(stats.bans_active, 1);
    assert_eq!(stats.score_penalties[Penalty::GraftFlood as usize], 8191);
    assert!(score_of(&bed, peer(3)).score < -50.0);
    // The answer was sent once, not 8192 times.
    assert!(sent(&bed, 2, Kind::Gossip) <= 2);
    // The banned PeerId cannot come back, even from another address.
    bed.up(3, peer(3), [10, 0, 0, 33]);
    assert_eq!(bed.closed(3), Some(CloseReason::Banned));
    assert_eq!(rejected(&bed, RejectReason::Banned), 2);
    // The honest session and broadcasts are unaffected.
    assert!(bed.node.is_ready());
    assert!(bed.broadcast(b"after").is_ok());
    assert_eq!(bed.closed(1), None);
    // After the ban (60 s by default) the peer may connect again.
    bed.advance(Duration::from_secs(61));
    bed.up(4, peer(3), [10, 0, 0, 3]);
    assert_eq!(bed.closed(4), None);
}

#[test]
fn graft_ids_are_capped_per_frame_and_rate_limited_per_peer() {
    let mut cfg = open_config();
    cfg.graft_max_ids = 4;
    cfg.graft_rate_per_s = 10;
    cfg.graft_rate_burst = 6;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    let mut ids = Vec::new();
    for p in [&b"m0"[..], b"m1", b"m2", b"m3", b"m4", b"m5", b"m6", b"m7"] {
        ids.push(bed.broadcast(p).unwrap());
    }
    let before = bed.node.stats().gossip_sent;
    bed.send(1, graft(&ids));
    // 8 distinct ids, 4 honoured.
    assert_eq!(bed.node.stats().gossip_sent - before, 4);
    assert_eq!(rejected(&bed, RejectReason::GraftFlood), 4);
    // The bucket (6) has 2 left: a second frame gets 2 answers.
    bed.send(1, graft(&ids[4..]));
    assert_eq!(bed.node.stats().gossip_sent - before, 6);
    assert_eq!(rejected(&bed, RejectReason::GraftFlood), 6);
    // Ids never seen here are scored too.
    let unknown: Vec<MessageId> = (0..3).map(random_id).collect();
    bed.advance(Duration::from_secs(1));
    bed.send(1, graft(&unknown));
    let s = score_of(&bed, peer(2));
    // 6 (decayed once by 0.9) + 3.
    assert!((s.components.penalty(Penalty::GraftFlood) - 8.4).abs() < 1e-9);
    assert_eq!(bed.closed(1), None, "mild abuse is scored, not cut");
}

#[test]
fn an_ihave_flood_is_rate_limited_held_to_its_share_and_scored() {
    let mut cfg = open_config();
    cfg.ihave_rate_burst = 100;
    cfg.ihave_rate_per_s = 100;
    cfg.ihave_max_missing_per_peer = 50;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2)); // flooder
    bed.open(2, peer(3)); // honest
    let ids: Vec<MessageId> = (0..400).map(random_id).collect();
    bed.send(1, ihave(&ids));
    // 300 over the rate, 50 over the share.
    assert_eq!(rejected(&bed, RejectReason::IhaveFlood), 350);
    let s = score_of(&bed, peer(2));
    assert_eq!(s.components.penalty(Penalty::IhaveFlood), 350.0);
    assert_eq!(s.standing, Standing::Ban);
    assert_eq!(bed.closed(1), Some(CloseReason::Banned));
    // The honest peer's announcement still gets into the table and is grafted.
    let wanted = random_id(10_000);
    bed.send(2, ihave(&[wanted]));
    bed.advance(Duration::from_millis(100));
    assert_eq!(sent(&bed, 2, Kind::Graft), 1);
    assert!(bed.node.is_ready());
}

#[test]
fn an_honest_publishers_backlog_of_announcements_after_a_stall_is_not_scored() {
    // A node stalled for 3 s (CPU starvation, a paused reader) reads a fast publisher's
    // IHAVE batches of those seconds at one instant: more ids than the publisher's share of
    // the missing table, at a rate within the bucket. The ids over the share are ignored
    // and counted, never scored: the publisher delivered first copies and broke no promise.
    let mut cfg = open_config();
    cfg.ihave_max_missing_per_peer = 50;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2)); // the publisher, our only peer
    for nonce in 0..5 {
        bed.send(1, gossip(peer(2), nonce, b"before the stall"));
    }
    bed.advance(Duration::from_secs(3));
    let backlog: Vec<MessageId> = (0..300).map(random_id).collect();
    for batch in backlog.chunks(60) {
        bed.send(1, ihave(batch));
    }
    assert_eq!(rejected(&bed, RejectReason::IhaveFlood), 250);
    let s = score_of(&bed, peer(2));
    assert_eq!(s.components.penalty(Penalty::IhaveFlood), 0.0);
    assert_eq!(s.standing, Standing::Good);
    assert_eq!(bed.closed(1), None);
    // The ids within its share are grafted from it.
    bed.advance(Duration::from_millis(90));
    assert_eq!(sent(&bed, 1, Kind::Graft), 1);
    assert!(bed.node.is_ready());
}

#[test]
fn an_ihave_flooder_within_the_rate_is_scored_for_its_overflow_and_banned() {
    let mut cfg = open_config();
    cfg.ihave_max_missing_per_peer = 50;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2)); // announces made-up ids, never delivers, never answers a GRAFT
    bed.open(2, peer(3)); // honest
    bed.send(1, ihave(&(0..64).map(random_id).collect::<Vec<_>>()));
    // It delivered nothing first: the 14 ids over its share are scored.
    assert_eq!(rejected(&bed, RejectReason::IhaveFlood), 14);
    let penalty = |bed: &Bed, p| score_of(bed, peer(2)).components.penalty(p);
    assert_eq!(penalty(&bed, Penalty::IhaveFlood), 14.0);
    assert_eq!(bed.closed(1), None);
    // The 50 ids of its share are grafted and never answered (it is alive): 50 broken
    // promises ban it.
    bed.advance(Duration::from_millis(90));
    bed.heartbeat(1);
    bed.advance(Duration::from_millis(210));
    assert_eq!(bed.closed(1), Some(CloseReason::Banned));
    assert_eq!(bed.closed(2), None);
    assert_eq!(score_of(&bed, peer(3)).standing, Standing::Good);
    assert!(bed.node.is_ready());
}

#[test]
fn a_publisher_that_broke_as_many_promises_as_it_delivered_is_scored_for_its_overflow() {
    let mut cfg = open_config();
    cfg.ihave_max_missing_per_peer = 2;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    bed.send(1, gossip(peer(2), 1, b"one first copy"));
    bed.send(1, ihave(&(0..4).map(random_id).collect::<Vec<_>>()));
    // It delivered: the 2 ids over its share are ignored, not scored.
    assert_eq!(rejected(&bed, RejectReason::IhaveFlood), 2);
    let penalty = |bed: &Bed, p| score_of(bed, peer(2)).components.penalty(p);
    assert_eq!(penalty(&bed, Penalty::IhaveFlood), 0.0);
    // Its 2 ids are grafted and never answered while it keeps talking: 2 broken promises
    // against 1 first delivery make it a suspect.
    bed.advance(Duration::from_millis(90));
    bed.heartbeat(1);
    bed.advance(Duration::from_millis(210));
    assert!(penalty(&bed, Penalty::BrokenPromise) >= 1.0);
    bed.send(1, ihave(&(100..104).map(random_id).collect::<Vec<_>>()));
    assert_eq!(rejected(&bed, RejectReason::IhaveFlood), 4);
    assert_eq!(penalty(&bed, Penalty::IhaveFlood), 2.0);
}

#[test]
fn a_low_score_stops_ihave_and_graft_from_the_peer() {
    let mut cfg = open_config();
    cfg.ihave_rate_burst = 10;
    cfg.ihave_rate_per_s = 10;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    // 70 over the rate: -14, below the gossip threshold (-10) but above prune (-20).
    let ids: Vec<MessageId> = (0..80).map(random_id).collect();
    bed.send(1, ihave(&ids));
    assert_eq!(score_of(&bed, peer(2)).standing, Standing::NoControl);
    bed.send(1, ihave(&[random_id(5_000)]));
    bed.send(1, graft(&[random_id(5_001)]));
    assert_eq!(rejected(&bed, RejectReason::LowScore), 2);
    // Scores decay: after a while the peer is trusted again (the 10 ids it did announce are
    // grafted and never answered: broken promises, which decay too).
    bed.advance(Duration::from_secs(25));
    assert_eq!(score_of(&bed, peer(2)).standing, Standing::Good);
    assert_eq!(bed.closed(1), None);
}

#[test]
fn an_announcer_that_never_answers_a_graft_breaks_its_promise() {
    let mut bed = Bed::new(open_config());
    bed.open(1, peer(2));
    let ids: Vec<MessageId> = (0..3).map(random_id).collect();
    bed.send(1, ihave(&ids));
    bed.advance(Duration::from_millis(90));
    assert_eq!(sent(&bed, 1, Kind::Graft), 1);
    bed.heartbeat(1);
    bed.advance(Duration::from_millis(200));
    let s = score_of(&bed, peer(2));
    assert_eq!(s.components.penalty(Penalty::BrokenPromise), 3.0);
    assert_eq!(
        bed.node.stats().score_penalties[Penalty::BrokenPromise as usize],
        3
    );
}

#[test]
fn a_stalled_announcer_not_heard_since_the_graft_breaks_no_promise() {
    // The peer announced ids (the catch-up of a new session, say), then stalled (frozen
    // for 3 s): nothing arrives from it after our GRAFT. That is no broken promise (the
    // failure detector judges silence); it is not scored, and keeps its standing. Once it
    // talks again, an unanswered GRAFT is a broken promise as usual.
    let mut bed = Bed::new(open_config());
    bed.open(1, peer(2));
    let ids: Vec<MessageId> = (0..21).map(random_id).collect();
    bed.send(1, ihave(&ids));
    bed.advance(Duration::from_secs(3));
    assert_eq!(sent(&bed, 1, Kind::Graft), 1);
    let s = score_of(&bed, peer(2));
    assert_eq!(s.components.penalty(Penalty::BrokenPromise), 0.0);
    assert_eq!(s.standing, Standing::Good);
    assert_eq!(bed.closed(1), None);
    // Alive again, it announces more and answers nothing: now it is blamed.
    bed.send(1, ihave(&[random_id(500)]));
    bed.advance(Duration::from_millis(90));
    bed.heartbeat(1);
    bed.advance(Duration::from_millis(200));
    assert_eq!(
        score_of(&bed, peer(2))
            .components
            .penalty(Penalty::BrokenPromise),
        1.0
    );
}

#[test]
fn announcers_that_delivered_are_asked_first() {
    let mut bed = Bed::new(open_config());
    bed.open(1, peer(2)); // never delivered
    bed.open(2, peer(3)); // delivered once
    bed.send(2, gossip(peer(9), 1, b"first"));
    let wanted = random_id(77);
    bed.send(1, ihave(&[wanted]));
    bed.send(2, ihave(&[wanted]));
    bed.advance(Duration::from_millis(90));
    assert_eq!(sent(&bed, 2, Kind::Graft), 1, "the deliverer is asked");
    assert_eq!(sent(&bed, 1, Kind::Graft), 0);
}

#[test]
fn a_link_made_eager_on_our_side_is_told_to_the_peer() {
    let mut cfg = open_config();
    cfg.alpha = 3;
    let mut bed = Bed::new(cfg);
    // Every new session starts eager on both ends (each side makes it eager at open): no
    // GRAFT is needed to say so.
    for conn in 1..=4 {
        bed.open(conn, peer(conn as u8 + 1));
    }
    for conn in 1..=4 {
        assert_eq!(role_grafts(&bed, conn), 0, "session {conn}");
    }
    assert_eq!(bed.node.stats().eager_peers, 4);
    // Peer 5 prunes us; then an eager peer leaves: a lazy one is promoted so that α = 3 eager
    // links remain, and told (its side treats the link as lazy).
    bed.send(4, event(Kind::Prune, &[]));
    assert_eq!(bed.node.stats().eager_peers, 3);
    bed.send(1, frame(flags::RESP, 500, APP, &[], &[]));
    assert!(bed.closed(1).is_some());
    assert_eq!(bed.node.stats().eager_peers, 3);
    assert_eq!(role_grafts(&bed, 4), 1);
}

#[test]
fn eager_peers_that_announce_instead_of_pushing_are_asked_after_lazy_announcers() {
    let mut bed = Bed::new(open_config());
    for conn in 1..=4 {
        bed.open(conn, peer(conn as u8 + 1));
    }
    // Every session starts eager; peer 5 prunes us, so session 4 is lazy.
    bed.send(4, event(Kind::Prune, &[]));
    // Sessions 1-3 are eager on both ends: an honest eager peer pushes. All three announce
    // the id first; the lazy session 4 announces it last and is asked first.
    let wanted = random_id(31);
    for conn in 1..=4 {
        bed.send(conn, ihave(&[wanted]));
    }
    bed.advance(Duration::from_millis(90));
    assert_eq!(sent(&bed, 4, Kind::Graft), 1, "the lazy announcer is asked");
    for conn in 1..=3 {
        assert_eq!(sent(&bed, conn, Kind::Graft), 0, "session {conn}");
    }
}

#[test]
fn announcers_that_broke_a_promise_are_asked_last() {
    let mut cfg = open_config();
    cfg.alpha = 1;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2)); // the eager one
    bed.open(2, peer(3)); // lazy: will break a promise
    bed.open(3, peer(4)); // lazy, honest
                          // Every session starts eager; peers 3 and 4 prune us.
    bed.send(2, event(Kind::Prune, &[]));
    bed.send(3, event(Kind::Prune, &[]));
    let first = random_id(41);
    bed.send(2, ihave(&[first]));
    bed.advance(Duration::from_millis(90));
    bed.heartbeat(2);
    bed.advance(Duration::from_millis(210));
    assert_eq!(sent(&bed, 2, Kind::Graft), 1);
    assert_eq!(
        score_of(&bed, peer(3))
            .components
            .penalty(Penalty::BrokenPromise),
        1.0
    );
    // Grafting made session 2 eager; the PRUNE puts it back among the lazy ones.
    bed.send(2, event(Kind::Prune, &[]));
    let second = random_id(42);
    bed.send(2, ihave(&[second]));
    bed.send(3, ihave(&[second]));
    bed.advance(Duration::from_millis(90));
    assert_eq!(
        sent(&bed, 3, Kind::Graft),
        1,
        "the peer with no broken promise first"
    );
    assert_eq!(
        sent(&bed, 2, Kind::Graft),
        1,
        "no second GRAFT to the promise breaker yet"
    );
}

#[test]
fn a_full_announcer_list_makes_room_for_a_better_ranked_announcer() {
    let mut cfg = open_config();
    cfg.max_announcers = 2;
    let mut bed = Bed::new(cfg);
    for conn in 1..=4 {
        bed.open(conn, peer(conn as u8 + 1));
    }
    // Every session starts eager; peer 5 prunes us, so session 4 is lazy.
    bed.send(4, event(Kind::Prune, &[]));
    // Two eager announcers fill the list; the lazy one arriving third replaces the latest
    // of them, and is asked first.
    let wanted = random_id(51);
    for conn in [1, 2, 4] {
        bed.send(conn, ihave(&[wanted]));
    }
    bed.advance(Duration::from_millis(90));
    assert_eq!(sent(&bed, 4, Kind::Graft), 1);
    // Unanswered: the next GRAFT goes to the eager announcer that kept its place; the one
    // dropped from the list is never asked.
    bed.advance(Duration::from_millis(125));
    assert_eq!(sent(&bed, 1, Kind::Graft), 1);
    bed.advance(Duration::from_millis(500));
    assert_eq!(sent(&bed, 2, Kind::Graft), 0);
}

#[test]
fn a_stalled_session_is_closed_and_one_full_queue_does_not_make_the_node_unready() {
    let mut cfg = open_config();
    cfg.max_queue_frames = 32;
    cfg.stall_timeout = Duration::from_secs(2);
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2)); // honest: a huge window
    bed.up(2, peer(3), [10, 0, 0, 3]);
    bed.send(2, hello(&peer(3), 16, 64 * 1024, None, false)); // never returns credit
    bed.send(2, start(""));
    assert!(bed.is_up(2));
    for _ in 0..100 {
        assert!(
            bed.broadcast(b"load").is_ok(),
            "broadcasts keep being accepted"
        );
    }
    assert!(bed.node.is_ready(), "one full session out of two");
    assert!(bed.node.stats().rejected.get(RejectReason::Credits) > 0);
    bed.advance(Duration::from_millis(2_100));
    assert_eq!(bed.closed(2), Some(CloseReason::Stalled));
    assert_eq!(bed.error_code(2), Some(408));
    assert_eq!(rejected(&bed, RejectReason::Stalled), 1);
    assert_eq!(bed.closed(1), None);
    assert!(bed.node.is_ready());
}

#[test]
fn the_pre_auth_budget_caps_per_ip_and_in_total_without_touching_sessions() {
    let mut cfg = open_config();
    cfg.max_preauth = 4;
    cfg.max_preauth_per_ip = 2;
    cfg.max_sessions = 3;
    cfg.active_target = 1;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    // Half-open connections from one IP: two fit, the third is refused.
    for conn in 10..13 {
        bed.up(conn, peer(conn as u8), [10, 9, 9, 9]);
    }
    assert_eq!(
        bed.closed(12),
        Some(CloseReason::Violation(OverlayError::Busy))
    );
    assert_eq!(rejected(&bed, RejectReason::PreauthPerIp), 1);
    // From other IPs until the total budget is used.
    bed.up(13, peer(13), [10, 9, 9, 10]);
    bed.up(14, peer(14), [10, 9, 9, 11]);
    bed.up(15, peer(15), [10, 9, 9, 12]);
    assert_eq!(
        bed.closed(15),
        Some(CloseReason::Violation(OverlayError::Busy))
    );
    assert_eq!(rejected(&bed, RejectReason::PreauthFull), 1);
    let stats = bed.node.stats();
    assert_eq!(stats.preauth_sessions, 4);
    assert_eq!(stats.sessions_running, 2);
    // Pre-auth connections count toward neither max_sessions nor readiness: a third honest
    // session still opens (after one half-open slot frees up).
    assert!(bed.node.is_ready());
    bed.advance(Duration::from_secs(6));
    assert_eq!(rejected(&bed, RejectReason::HandshakeTimeout), 4);
    bed.open(3, peer(4));
    assert_eq!(bed.node.stats().preauth_sessions, 0);
    // max_sessions (3) is reached by running sessions only: a fourth finishing START gets 503.
    bed.open_with(4, peer(5), [10, 0, 0, 5], "");
    assert_eq!(
        bed.closed(4),
        Some(CloseReason::Violation(OverlayError::Refused))
    );
    assert_eq!(rejected(&bed, RejectReason::MaxSessions), 1);
}

#[test]
fn a_token_expiring_mid_session_closes_it_at_exp_plus_skew() {
    let mut bed = Bed::new(token_config());
    bed.open_with(
        1,
        peer(2),
        [10, 0, 0, 2],
        &token(vec![Caveat::Exp(NOW_UNIX + 10)]),
    );
    assert!(bed.is_up(1));
    bed.open_with(2, peer(3), [10, 0, 0, 3], &token(vec![]));
    assert!(bed.is_up(2));
    bed.advance(Duration::from_secs(70));
    assert_eq!(bed.closed(1), None, "within Exp + 60 s of skew");
    bed.advance(Duration::from_secs(2));
    assert_eq!(bed.closed(1), Some(CloseReason::TokenExpired));
    assert_eq!(bed.error_code(1), Some(401));
    let at = bed.closed_at(1).unwrap();
    assert!(at >= Instant::ZERO + Duration::from_secs(71));
    assert!(at <= Instant::ZERO + Duration::from_millis(71_200));
    assert_eq!(rejected(&bed, RejectReason::Expired), 1);
    assert_eq!(bed.closed(2), None, "a token without Exp lasts");
}

#[test]
fn a_token_bound_to_another_peer_is_refused_and_a_malformed_binding_is_401() {
    let mut bed = Bed::new(token_config());
    bed.open_with(
        1,
        peer(2),
        [10, 0, 0, 2],
        &token(vec![peer_caveat(&peer(9))]),
    );
    assert_eq!(
        bed.closed(1),
        Some(CloseReason::Violation(OverlayError::Forbidden))
    );
    assert_eq!(bed.error_code(1), Some(403));
    assert_eq!(rejected(&bed, RejectReason::WrongPeer), 1);
    let malformed = Caveat::Custom {
        ns: "overlay".into(),
        name: "peer".into(),
        cbor: CborValue::Bytes(vec![1, 2, 3]),
    };
    bed.open_with(2, peer(3), [10, 0, 0, 3], &token(vec![malformed]));
    assert_eq!(bed.error_code(2), Some(401));
    assert_eq!(rejected(&bed, RejectReason::Unauth), 1);
    bed.open_with(
        3,
        peer(4),
        [10, 0, 0, 4],
        &token(vec![peer_caveat(&peer(4))]),
    );
    assert!(bed.is_up(3), "bound to the right identity");
}

#[test]
fn membership_hints_cannot_poison_the_passive_view() {
    let mut bed = Bed::new(open_config());
    // A dial proves who listens at 10.0.0.50:9415.
    let pinned: SocketAddr = "10.0.0.50:9415".parse().unwrap();
    let dial = bed.dial(pinned);
    bed.input(Input::ConnectionUp {
        conn: ConnId(50),
        peer: peer(50),
        direction: Direction::Outbound,
        remote: pinned,
        dial: Some(dial),
        kx_group: None,
    });
    // A non-loopback peer claims a loopback listen address: ignored.
    bed.up(1, peer(2), [10, 0, 0, 2]);
    bed.send(
        1,
        hello(&peer(2), 1 << 20, 1 << 30, Some("127.0.0.1:9415"), false),
    );
    bed.send(1, start(""));
    assert!(bed.is_up(1));
    let info = bed
        .node
        .sessions()
        .into_iter()
        .find(|s| s.peer == peer(2))
        .unwrap();
    assert_eq!(info.listen, None);
    assert_eq!(rejected(&bed, RejectReason::BadAddress), 1);
    let passive_before = bed.node.stats().passive_peers;
    let entries = [
        PeerEntry {
            peer: peer(60),
            addr: "0.0.0.0:9415".parse().unwrap(),
        },
        PeerEntry {
            peer: peer(61),
            addr: "127.0.0.1:9000".parse().unwrap(),
        },
        // Re-points the pinned address at another identity.
        PeerEntry {
            peer: peer(62),
            addr: pinned,
        },
        // Moves the pinned identity elsewhere.
        PeerEntry {
            peer: peer(50),
            addr: "10.0.0.66:9415".parse().unwrap(),
        },
        PeerEntry {
            peer: peer(63),
            addr: "10.0.0.63:9415".parse().unwrap(),
        },
    ];
    bed.send(1, shuffle(Kind::Shuffle, &entries));
    assert_eq!(rejected(&bed, RejectReason::BadAddress), 5);
    assert_eq!(bed.node.stats().passive_peers, passive_before + 1);
    assert_eq!(sent(&bed, 1, Kind::ShuffleReply), 1);
    // SHUFFLE past the per-peer rate (burst 4) and unsolicited replies are ignored.
    for _ in 0..5 {
        bed.send(1, shuffle(Kind::Shuffle, &[]));
    }
    bed.send(1, shuffle(Kind::ShuffleReply, &entries[4..]));
    assert_eq!(rejected(&bed, RejectReason::ShuffleFlood), 3);
    assert_eq!(sent(&bed, 1, Kind::ShuffleReply), 4);
    let s = score_of(&bed, peer(2));
    assert_eq!(s.components.penalty(Penalty::ShuffleFlood), 4.0);
}

#[test]
fn a_violation_is_scored_and_repeat_offenders_are_banned() {
    let mut bed = Bed::new(open_config());
    for round in 0..2u64 {
        bed.open(10 + round, peer(2));
        bed.send(10 + round, vec![0xFF; 64]);
        assert_eq!(
            bed.closed(10 + round),
            Some(CloseReason::Violation(OverlayError::Malformed))
        );
    }
    assert_eq!(bed.node.stats().peers_banned, 1);
    bed.up(12, peer(2), [10, 0, 0, 2]);
    assert_eq!(bed.closed(12), Some(CloseReason::Banned));
}

#[test]
fn a_message_with_a_bad_id_is_refused_with_400_and_bans_its_sender() {
    let mut bed = Bed::new(open_config());
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    let mut body = Vec::new();
    wire::put_gossip_header(&mut body, &MessageId([7; 32]), &peer(9), 1, 0);
    body.extend_from_slice(b"not what the id says");
    bed.send(1, event(Kind::Gossip, &body));
    assert_eq!(
        bed.closed(1),
        Some(CloseReason::Violation(OverlayError::Malformed))
    );
    assert_eq!(bed.error_code(1), Some(400));
    assert_eq!(rejected(&bed, RejectReason::BadId), 1);
    let stats = bed.node.stats();
    assert_eq!(stats.score_penalties[Penalty::InvalidMessage as usize], 1);
    assert_eq!(stats.peers_banned, 1);
    // The sender's identity is banned; the other session is untouched.
    bed.up(3, peer(2), [10, 0, 0, 2]);
    assert_eq!(bed.closed(3), Some(CloseReason::Banned));
    assert_eq!(bed.closed(2), None);
    assert!(bed.broadcast(b"still fine").is_ok());
}

#[test]
fn new_scoring_thresholds_act_at_once_and_new_weights_count_from_now_on() {
    let mut cfg = open_config();
    cfg.ihave_rate_burst = 10;
    cfg.ihave_rate_per_s = 10;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    // peer 2: 70 ids over the rate, -14 (no control); peer 3: 20 over, -4 (good).
    let ids: Vec<MessageId> = (0..80).map(random_id).collect();
    bed.send(1, ihave(&ids));
    let ids: Vec<MessageId> = (100..130).map(random_id).collect();
    bed.send(2, ihave(&ids));
    assert_eq!(score_of(&bed, peer(2)).standing, Standing::NoControl);
    assert!((score_of(&bed, peer(3)).score + 4.0).abs() < 1e-9);
    let mut live = overlay_proto::LiveSettings::of(bed.node.config());
    live.scoring.ihave_flood_weight = -1.0;
    live.scoring.gossip_threshold = -5.0;
    live.scoring.prune_threshold = -10.0;
    live.scoring.ban_threshold = -12.0;
    bed.input(Input::Reconfigure(Box::new(live.clone())));
    assert!(bed
        .actions()
        .any(|a| *a == Action::Reconfigured(Box::new(Ok(live.clone())))));
    // Scores keep their values; the new ban threshold closes peer 2 at once.
    assert!((score_of(&bed, peer(2)).score + 14.0).abs() < 1e-9);
    assert_eq!(bed.closed(1), Some(CloseReason::Banned));
    assert_eq!(rejected(&bed, RejectReason::Banned), 1);
    assert_eq!(bed.closed(2), None);
    assert!((score_of(&bed, peer(3)).score + 4.0).abs() < 1e-9);
    assert_eq!(score_of(&bed, peer(3)).standing, Standing::Good);
    // Two more ids over the rate from peer 3 cost the new weight: -6, below -5.
    bed.send(2, ihave(&[random_id(7_000), random_id(7_001)]));
    assert!(
        (score_of(&bed, peer(3)).score + 6.0).abs() < 1e-9,
        "{:?}",
        score_of(&bed, peer(3))
    );
    assert_eq!(score_of(&bed, peer(3)).standing, Standing::NoControl);
}
