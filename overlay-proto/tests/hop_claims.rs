//! Hop claims are cost-bearing (issue #7): a tree-optimisation swap toward an announcer waits
//! until the announcer proves its IHAVE hop count by sending the message with at most that many
//! hops; a false or unanswered claim is scored as a broken promise and the announcer goes back
//! to lazy; swaps are rate-limited; an announcer that proved a claim is trusted for its session.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use core::time::Duration;
use overlay_proto::score::Penalty;
use overlay_proto::wire::Kind;
use overlay_proto::{MessageId, NodeConfig};
use support::{event, peer, peer_opening, raw_peer_config, Bed};

/// Tree optimisation on, `alpha` eager links, every swap decided by one message.
fn config(alpha: usize) -> NodeConfig {
    let mut c = raw_peer_config();
    c.alpha = alpha;
    c.optimization_threshold = 3;
    c.optimization_samples = 1;
    c
}

/// A GOSSIP from origin `peer(99)` with `nonce`, as relayed with `hops`.
fn gossip(nonce: u64, hops: u8) -> (MessageId, Vec<u8>) {
    support::gossip(peer(99), nonce, &nonce.to_be_bytes(), hops)
}

fn ihave(id: &MessageId, hops: u8) -> Vec<u8> {
    support::ihave(&[(*id, hops)])
}

/// One node (peer 1) and raw peers `conn + 1` on connections `1..=peers`; with α = 1,
/// connection 1 is the only eager link. Roles have settled and the log is empty.
fn settled_bed(cfg: NodeConfig, peers: u64) -> Bed {
    let alpha = cfg.alpha;
    let mut bed = Bed::with_node(support::node(1, cfg));
    for conn in 1..=peers {
        let who = peer(conn as u8 + 1);
        bed.up(conn, who, [10, 0, 0, 100 + conn as u8]);
        bed.send(conn, peer_opening(&who));
    }
    // Every session starts eager; the peers past the first α prune us.
    for conn in (alpha as u64 + 1)..=peers {
        bed.send(conn, event(Kind::Prune, &[]));
    }
    // Roles settle (unchanged for longer than `optimization_hold`).
    bed.advance(Duration::from_secs(3));
    bed.clear();
    bed
}

fn broken_promises(bed: &Bed, who: overlay_proto::PeerId) -> f64 {
    bed.penalty(who, Penalty::BrokenPromise)
}

/// Message `nonce` arrives over the parent (connection 1) in 7 hops; connection `conn`
/// then claims it had it in 1 (a path of 2 instead of 7): a swap is proposed.
fn claim(bed: &mut Bed, nonce: u64, conn: u64) -> MessageId {
    let (id, push) = gossip(nonce, 6);
    bed.send(1, push);
    bed.send(conn, ihave(&id, 1));
    id
}

#[test]
fn a_swap_waits_for_the_announcer_to_prove_its_hop_claim() {
    let mut bed = settled_bed(config(1), 3);
    let id = claim(&mut bed, 1, 2);
    // The announcer is asked for that very message and made eager; the parent stays.
    assert_eq!(bed.sent(2, Kind::Graft), vec![id.0.to_vec()]);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)) && bed.is_eager(peer(3)));
    assert_eq!(bed.node.stats().tree_swaps, 0);
    // The answer carries the claimed hop count: proven. Now the parent is pruned.
    let (_, answer) = gossip(1, 1);
    bed.send(2, answer);
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1);
    assert!(
        bed.sent(2, Kind::Prune).is_empty(),
        "the answer is no redundancy"
    );
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().tree_swaps, 1);
    assert_eq!(broken_promises(&bed, peer(3)), 0.0);
}

#[test]
fn a_false_hop_claim_is_a_broken_promise_and_the_swap_is_undone() {
    let mut bed = settled_bed(config(1), 3);
    claim(&mut bed, 1, 2);
    // The payload comes, but from farther than claimed.
    let (_, answer) = gossip(1, 5);
    bed.send(2, answer);
    assert_eq!(
        bed.sent(2, Kind::Prune).len(),
        1,
        "the claimant goes back to lazy"
    );
    assert!(bed.sent(1, Kind::Prune).is_empty(), "the parent stays");
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    assert_eq!(bed.node.stats().tree_swaps, 0);
    assert_eq!(broken_promises(&bed, peer(3)), 1.0);
}

#[test]
fn an_unanswered_hop_claim_is_a_broken_promise_and_the_swap_is_undone() {
    let mut bed = settled_bed(config(1), 3);
    claim(&mut bed, 1, 2);
    // No answer within 2 × graft_retry (240 ms).
    bed.advance(Duration::from_millis(200));
    assert!(bed.sent(2, Kind::Prune).is_empty(), "still on probation");
    bed.advance(Duration::from_millis(100));
    assert_eq!(bed.sent(2, Kind::Prune).len(), 1);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    assert_eq!(bed.node.stats().tree_swaps, 0);
    assert_eq!(broken_promises(&bed, peer(3)), 1.0);
    // A late answer changes nothing.
    let (_, answer) = gossip(1, 1);
    bed.send(2, answer);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert_eq!(bed.node.stats().tree_swaps, 0);
}

#[test]
fn a_graft_miss_answering_a_hop_claim_is_solicited_and_undoes_the_swap_unscored() {
    let mut bed = settled_bed(config(1), 3);
    let id = claim(&mut bed, 1, 2);
    assert_eq!(bed.sent(2, Kind::Graft), vec![id.0.to_vec()]);
    // The announcer no longer holds the message it claimed.
    bed.send(2, event(Kind::GraftMiss, &support::ids_body(&[id])));
    let stats = bed.node.stats();
    assert_eq!(stats.graft_misses_unsolicited, 0, "our GRAFT asked for it");
    assert_eq!(stats.graft_misses_received, 1);
    assert_eq!(stats.graft_misses_too_soon, 1, "right after its own claim");
    // The claim cannot be proven: the announcer goes back to lazy, the parent stays.
    assert_eq!(bed.sent(2, Kind::Prune).len(), 1);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    assert_eq!(stats.tree_swaps, 0);
    // Counted, not scored, and the proposal's deadline no longer scores it either.
    bed.advance(Duration::from_millis(300));
    assert_eq!(broken_promises(&bed, peer(3)), 0.0);
    // A second miss for the same id asks for nothing: unsolicited now.
    bed.send(2, event(Kind::GraftMiss, &support::ids_body(&[id])));
    assert_eq!(bed.node.stats().graft_misses_unsolicited, 1);
}

#[test]
fn swaps_are_rate_limited() {
    let mut cfg = config(2);
    cfg.optimization_swaps_per_s = 1;
    // Connections 1 and 2 are eager, 3 and 4 lazy.
    let mut bed = settled_bed(cfg, 4);
    let first = claim(&mut bed, 1, 3);
    assert_eq!(bed.sent(3, Kind::Graft), vec![first.0.to_vec()]);
    // A second claim in the same second, on other links: no proposal.
    let (id, push) = gossip(2, 6);
    bed.send(2, push);
    bed.send(4, ihave(&id, 1));
    assert!(bed.sent(4, Kind::Graft).is_empty());
    // A second later the budget is back.
    bed.advance(Duration::from_secs(1));
    let (id, push) = gossip(3, 6);
    bed.send(2, push);
    bed.send(4, ihave(&id, 1));
    assert_eq!(bed.sent(4, Kind::Graft), vec![id.0.to_vec()]);
}
