//! A new link on probation never displaces an established tree edge (`link_probation`, issue
//! #7's graft-spam latency): a message it brings first goes at once only to the other links on
//! probation; the established eager links get it when the tree's own copy arrives (that link
//! is kept eager) or after `graft_timeout`. A node with no established eager link, a link past
//! its probation and `link_probation = 0` forward at once as textbook Plumtree does (with
//! `link_probation = 0`, a link younger than `optimization_hold` that brings a first copy is
//! pruned when an established link brings the duplicate). With `link_probation_after_ban`
//! set, only links opened that soon after the node's last ban go on probation.
//! One rule per test, with hand-driven peers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use core::time::Duration;
use overlay_proto::wire::Kind;
use overlay_proto::CloseReason;
use overlay_proto::{MessageId, NodeConfig};
use support::{graft, peer, raw_peer_config, Bed};

/// Long enough for the first sessions to be established under a 3 s probation.
const SETTLED: Duration = Duration::from_secs(5);

fn config() -> NodeConfig {
    let mut c = raw_peer_config();
    // The link optimisation would drop links that carried no message yet.
    c.link_optimization = false;
    // The rule under test, on every new link (the default).
    c.link_probation = Duration::from_secs(3);
    c.link_probation_after_ban = Duration::ZERO;
    c
}

/// A GOSSIP from origin `peer(99)` with `nonce`, as relayed with `hops`.
fn gossip(nonce: u64, hops: u8) -> (MessageId, Vec<u8>) {
    support::gossip(peer(99), nonce, &nonce.to_be_bytes(), hops)
}

/// The number of GOSSIP frames sent on `conn` so far.
fn pushed(bed: &Bed, conn: u64) -> usize {
    bed.sent(conn, Kind::Gossip).len()
}

/// A node whose sessions on connections 1 (the tree parent) and 2 (a child) are established
/// eager links, and a session on connection 3 opened just now (on probation).
fn bed_with_a_new_link(cfg: NodeConfig) -> Bed {
    bed_with_a_new_link_after(cfg, false)
}

/// [`bed_with_a_new_link`], where the parent has relayed a first copy when `relayed` (a
/// settled tree edge: rule 8 lets only such a link's duplicate prune a young link).
fn bed_with_a_new_link_after(cfg: NodeConfig, relayed: bool) -> Bed {
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    if relayed {
        bed.send(1, gossip(1000, 2).1);
    }
    bed.advance(SETTLED);
    bed.open(3, peer(4));
    assert!(bed.is_eager(peer(2)) && bed.is_eager(peer(3)) && bed.is_eager(peer(4)));
    bed.clear();
    bed
}

#[test]
fn a_first_copy_over_a_new_link_waits_for_the_trees_copy() {
    let mut bed = bed_with_a_new_link(config());
    bed.open(4, peer(5));
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    // Delivered, and pushed at once only to the other link on probation.
    assert_eq!(pushed(&bed, 4), 1, "the other new link gets it at once");
    assert_eq!(pushed(&bed, 1), 0, "held from the established links");
    assert_eq!(pushed(&bed, 2), 0, "held from the established links");
    assert_eq!(bed.node.stats().gossip_held, 1);
    // The tree's copy arrives from the parent: the child gets it now, the parent is kept.
    bed.advance(Duration::from_millis(20));
    bed.send(1, m);
    assert_eq!(pushed(&bed, 2), 1, "released to the child");
    assert_eq!(pushed(&bed, 1), 0, "never back to the parent");
    assert!(
        bed.sent(1, Kind::Prune).is_empty(),
        "the tree edge is not pruned"
    );
    assert!(bed.is_eager(peer(2)));
    let stats = bed.node.stats();
    assert_eq!((stats.gossip_released, stats.tree_edges_spared), (1, 1));
    // The hold ended: nothing more goes out later.
    bed.advance(Duration::from_millis(200));
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (0, 1));
}

#[test]
fn a_held_copy_goes_on_after_graft_timeout_when_the_tree_stays_silent() {
    let cfg = config();
    let timeout = cfg.graft_timeout;
    let mut bed = bed_with_a_new_link(cfg);
    let (_, m) = gossip(1, 3);
    bed.send(3, m);
    bed.advance(timeout / 2);
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (0, 0), "still held");
    bed.advance(timeout);
    // The new link may be the only way in: every established eager link gets it.
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (1, 1));
    assert_eq!(bed.node.stats().gossip_released, 1);
    assert_eq!(bed.node.stats().tree_edges_spared, 0);
}

#[test]
fn a_later_duplicate_of_a_message_a_new_link_brought_first_prunes_no_tree_edge() {
    let cfg = config();
    let timeout = cfg.graft_timeout;
    let mut bed = bed_with_a_new_link(cfg);
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    // Released by the timeout; the parent's copy comes later still.
    bed.advance(timeout * 2);
    bed.send(1, m);
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().tree_edges_spared, 1);
}

#[test]
fn past_its_probation_a_new_link_displaces_the_old_parent_as_usual() {
    let mut bed = bed_with_a_new_link(config());
    bed.advance(SETTLED);
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    // Textbook Plumtree: forwarded at once to every other eager link ...
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (1, 1));
    assert_eq!(bed.node.stats().gossip_held, 0);
    // ... and the old parent's later copy is a duplicate that prunes it: the tree shortens.
    bed.send(1, m);
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1);
    assert!(!bed.is_eager(peer(2)));
}

#[test]
fn without_an_established_eager_link_a_new_link_is_the_tree() {
    // A node that just joined (or lost its tree): every link is new, nothing is held.
    let mut bed = Bed::new(config());
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(1, m);
    assert_eq!(pushed(&bed, 2), 1);
    assert_eq!(bed.node.stats().gossip_held, 0);
}

#[test]
fn a_zero_probation_turns_the_rule_off() {
    let mut cfg = config();
    cfg.link_probation = Duration::ZERO;
    let mut bed = bed_with_a_new_link_after(cfg, true);
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    // Nothing held: forwarded at once to every other eager link, as textbook Plumtree does.
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (1, 1));
    assert_eq!(bed.node.stats().gossip_held, 0);
    // The parent's copy is a duplicate, but the link that brought the first copy is young
    // (joined less than `optimization_hold` ago): the young link is pruned, the parent kept
    // (session 7: a new session never reshapes the tree by arrival order).
    bed.send(1, m);
    assert!(bed.sent(1, Kind::Prune).is_empty(), "the parent stays");
    assert_eq!(bed.sent(3, Kind::Prune).len(), 1, "the young link goes");
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(4)));
}

#[test]
fn a_young_link_past_optimization_hold_displaces_the_old_parent_as_textbook_plumtree() {
    let mut cfg = config();
    cfg.link_probation = Duration::ZERO;
    let hold = cfg.optimization_hold;
    let mut bed = bed_with_a_new_link(cfg);
    bed.advance(hold);
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    bed.send(1, m);
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1, "textbook prune");
    assert!(bed.sent(3, Kind::Prune).is_empty());
}

/// Probation only within 30 s of a ban.
const AFTER_BAN: Duration = Duration::from_secs(30);

fn after_ban_config() -> NodeConfig {
    let mut c = config();
    c.link_probation_after_ban = AFTER_BAN;
    c
}

/// A node with established eager links on connections 1 and 2 that bans the peer of
/// connection 9 (a GRAFT repeating a held id) and then waits `after`.
fn bed_after_a_ban(after: Duration) -> Bed {
    let mut bed = Bed::new(after_ban_config());
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    bed.advance(SETTLED);
    bed.open(9, peer(10));
    let id = bed.broadcast(b"held").unwrap();
    bed.send(9, graft(&vec![id; 8192]));
    assert_eq!(bed.closed(9), Some(CloseReason::Banned));
    bed.advance(after);
    bed.clear();
    bed
}

#[test]
fn with_no_ban_a_new_link_is_not_on_probation() {
    let mut bed = bed_with_a_new_link_after(after_ban_config(), true);
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    // Textbook Plumtree: honest newcomers keep the flood-and-prune channel (nothing held).
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (1, 1));
    bed.send(1, m);
    assert_eq!(bed.node.stats().gossip_held, 0);
    // The young link is the one pruned (session 7, see `a_zero_probation_turns_the_rule_off`).
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert_eq!(bed.sent(3, Kind::Prune).len(), 1);
}

#[test]
fn after_a_ban_a_new_link_goes_on_probation() {
    let mut bed = bed_after_a_ban(Duration::from_secs(1));
    bed.open(3, peer(4));
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(3, m);
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (0, 0), "held");
    assert_eq!(bed.node.stats().gossip_held, 1);
}

#[test]
fn long_after_a_ban_a_new_link_is_not_on_probation() {
    let mut bed = bed_after_a_ban(AFTER_BAN);
    bed.open(3, peer(4));
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(3, m);
    assert_eq!((pushed(&bed, 1), pushed(&bed, 2)), (1, 1));
    assert_eq!(bed.node.stats().gossip_held, 0);
}

/// `link_probation = 0` and a node whose parent (connection 1) has relayed a first copy, with
/// two sessions (connections 3 and 4) opened just now.
fn bed_with_two_young_links() -> Bed {
    let mut cfg = config();
    cfg.link_probation = Duration::ZERO;
    let mut bed = bed_with_a_new_link_after(cfg, true);
    bed.open(4, peer(5));
    bed.clear();
    bed
}

#[test]
fn a_settled_edge_has_a_young_link_pruned_at_most_once_per_optimization_hold() {
    // A peer that echoes back what we pushed to it brings a "duplicate" of every message a
    // newcomer gave us first; it may veto one newcomer per `optimization_hold`, not all.
    let mut bed = bed_with_two_young_links();
    let (_, m1) = gossip(1, 3);
    bed.send(3, m1.clone());
    bed.send(1, m1);
    assert_eq!(
        bed.sent(3, Kind::Prune).len(),
        1,
        "the first young link goes"
    );
    let (_, m2) = gossip(2, 3);
    bed.send(4, m2.clone());
    bed.send(1, m2);
    assert!(
        bed.sent(4, Kind::Prune).is_empty(),
        "no second veto within the hold"
    );
    assert!(
        bed.sent(1, Kind::Prune).is_empty(),
        "the settled edge stays too"
    );
    assert!(bed.is_eager(peer(2)) && bed.is_eager(peer(5)));
    assert_eq!(bed.node.stats().young_links_kept, 1);
}

#[test]
fn a_link_that_never_relayed_a_first_copy_gets_no_veto_over_a_young_link() {
    let mut cfg = config();
    cfg.link_probation = Duration::ZERO;
    let mut bed = Bed::new(cfg);
    bed.open(1, peer(2));
    bed.open(2, peer(3));
    bed.advance(SETTLED);
    bed.open(3, peer(4));
    bed.clear();
    let (_, m) = gossip(1, 3);
    bed.send(3, m.clone());
    // Connection 2 is eager and old, but no first copy ever came over it: its duplicate
    // does not prune the newcomer (the usual duplicate rules decide about it instead).
    bed.send(2, m);
    assert!(bed.sent(3, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(4)));
    assert_eq!(bed.node.stats().young_links_kept, 0);
}

#[test]
fn echoes_past_the_veto_count_against_the_echoing_link() {
    // After its one veto, every further "duplicate" the settled link brings of a message a
    // newcomer gave first counts in its duplicate streak: an echoing peer is pruned once the
    // streak reaches `prune_after_duplicates`, and the newcomer stays.
    let mut bed = bed_with_two_young_links();
    let (_, m1) = gossip(1, 3);
    bed.send(3, m1.clone());
    bed.send(1, m1);
    let streak = u64::from(config().prune_after_duplicates);
    for nonce in 2..2 + streak {
        let (_, m) = gossip(nonce, 3);
        bed.send(4, m.clone());
        bed.send(1, m);
    }
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1, "the echoing link goes");
    assert!(bed.sent(4, Kind::Prune).is_empty(), "the newcomer stays");
    assert!(bed.is_eager(peer(5)) && !bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().young_links_kept, streak);
}
