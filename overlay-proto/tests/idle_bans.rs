//! With `idle_ban_keeps_tree` (off by default), a banned peer that never gave the node a first
//! copy fed no part of its tree: banning it leaves the tree as it was, with no lazy link
//! promoted in its place (issue #7's graft-spam
//! latency: hostile peers banned at their first abuse, about a second after they connect,
//! otherwise reshape the tree with a random promotion at every ban). A banned peer that did
//! feed the tree, or whose loss leaves no eager link, is replaced as before. One rule per
//! test, with hand-driven peers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use core::time::Duration;
use overlay_proto::wire::Kind;
use overlay_proto::CloseReason;
use overlay_proto::NodeConfig;
use support::{event, graft, peer, raw_peer_config, Bed};

fn config() -> NodeConfig {
    let mut c = raw_peer_config();
    // The link optimisation would drop links that carried no message yet.
    c.link_optimization = false;
    c.idle_ban_keeps_tree = true;
    // Losing one of three eager links promotes (α 3): the rule under test is what a ban
    // leaves out.
    c.alpha = 3;
    c
}

/// A node with eager links on connections 1 and 2 (peers 2 and 3), lazy links on 3 and 4
/// (peers 4 and 5: they pruned us), and an eager link on connection 5 (peer 6, the
/// spammer); it holds one message of its own, whose id is returned.
fn bed_with_a_spammer() -> (Bed, overlay_proto::MessageId) {
    bed_with_a_spammer_under(config())
}

fn bed_with_a_spammer_under(cfg: NodeConfig) -> (Bed, overlay_proto::MessageId) {
    let mut bed = Bed::new(cfg);
    for conn in 1..=5u64 {
        bed.open(conn, peer(conn as u8 + 1));
    }
    bed.advance(Duration::from_secs(1));
    bed.send(3, event(Kind::Prune, &[]));
    bed.send(4, event(Kind::Prune, &[]));
    assert!(!bed.is_eager(peer(4)) && !bed.is_eager(peer(5)));
    let id = bed.broadcast(b"held").unwrap();
    assert!(bed.is_eager(peer(2)) && bed.is_eager(peer(3)) && bed.is_eager(peer(6)));
    bed.clear();
    (bed, id)
}

/// Empty GRAFTs ("push to me") sent to the lazy peers since the last clear: promotions.
fn promotions(bed: &Bed) -> usize {
    bed.sent(3, Kind::Graft).len() + bed.sent(4, Kind::Graft).len()
}

#[test]
fn banning_a_peer_that_never_gave_a_first_copy_promotes_no_lazy_link() {
    let (mut bed, id) = bed_with_a_spammer();
    bed.send(5, graft(&vec![id; 8192]));
    assert_eq!(bed.closed(5), Some(CloseReason::Banned));
    // Two eager links are left (fewer than α = 3): before this rule a random lazy link was
    // promoted and told with an empty GRAFT.
    assert_eq!(promotions(&bed), 0);
    assert!(!bed.is_eager(peer(4)) && !bed.is_eager(peer(5)));
    assert!(bed.is_eager(peer(2)) && bed.is_eager(peer(3)));
}

#[test]
fn banning_a_peer_that_fed_the_tree_promotes_a_lazy_link_in_its_place() {
    let (mut bed, id) = bed_with_a_spammer();
    let (_, m) = support::gossip(peer(99), 1, b"first", 2);
    bed.send(5, m);
    bed.clear();
    bed.send(5, graft(&vec![id; 8192]));
    assert_eq!(bed.closed(5), Some(CloseReason::Banned));
    assert_eq!(promotions(&bed), 1, "the lost parent is replaced");
    assert!(bed.is_eager(peer(4)) || bed.is_eager(peer(5)));
}

#[test]
fn a_ban_that_leaves_no_eager_link_still_promotes() {
    let (mut bed, id) = bed_with_a_spammer();
    bed.send(1, event(Kind::Prune, &[]));
    bed.send(2, event(Kind::Prune, &[]));
    assert!(!bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    bed.clear();
    bed.send(5, graft(&vec![id; 8192]));
    assert_eq!(bed.closed(5), Some(CloseReason::Banned));
    let told = (1..=4u64)
        .map(|c| bed.sent(c, Kind::Graft).len())
        .sum::<usize>();
    assert!(told >= 1, "a node with no eager link promotes one");
}

#[test]
fn off_by_default_a_ban_promotes_a_lazy_link_as_before() {
    let mut cfg = config();
    cfg.idle_ban_keeps_tree = NodeConfig::default().idle_ban_keeps_tree;
    assert!(!cfg.idle_ban_keeps_tree);
    let (mut bed, id) = bed_with_a_spammer_under(cfg);
    bed.send(5, graft(&vec![id; 8192]));
    assert_eq!(bed.closed(5), Some(CloseReason::Banned));
    assert_eq!(promotions(&bed), 1);
}
