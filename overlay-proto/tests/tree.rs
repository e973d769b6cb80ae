//! Plumtree tree maintenance, one rule per test: the optimisation step (an IHAVE showing a
//! path shorter by `optimization_threshold` swaps the links), its hold (a swap is not undone
//! by the next message), the promotion-only GRAFT, and on the mesh: random senders converge
//! to one symmetric eager tree, which is repaired after a mass kill.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::frame::{flags, Header};
use overlay_proto::mesh::{node_peer_id, Mesh, MeshConfig};
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{
    Action, ConnId, Direction, Input, Instant, MessageId, Node, NodeConfig, NodeIdentity,
    OriginAuth, PeerId, SessionEvent,
};
use std::collections::{BTreeMap, BTreeSet};

const APP: u16 = overlay_proto::OVERLAY_APP_PROTO_ID;

// ---------------------------------------------------------------------------------------
// One node and hand-driven peers.

fn config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = OriginAuth::None;
    // One eager peer: the first session is the parent, later ones are lazy.
    c.alpha = 1;
    // Raw peers never send heartbeats: keep the failure detector out of the way.
    c.idle_timeout = Duration::from_secs(10_000);
    c.liveness_timeout = Duration::from_secs(9_000);
    c.keepalive_interval = Duration::from_secs(5_000);
    tree_optimization(&mut c);
    c
}

/// The opt-in tree optimisation these tests study (off by default in the core).
fn tree_optimization(c: &mut NodeConfig) {
    c.optimization_threshold = 3;
    c.graft_timeout_settled = Duration::from_millis(240);
}

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

fn event(kind: Kind, body: &[u8]) -> Vec<u8> {
    let h = Header {
        len: (38 + body.len()) as u32,
        ver: 1,
        flags: flags::EVENT,
        code: kind.code(),
        app_proto_id: APP,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = BytesMut::new();
    h.write(&mut out);
    out.extend_from_slice(body);
    out.to_vec()
}

/// A GOSSIP from origin `peer(99)` with `nonce`, as relayed with `hops`.
fn gossip(nonce: u64, hops: u8) -> (MessageId, Vec<u8>) {
    let origin = peer(99);
    let payload = nonce.to_be_bytes();
    let id = MessageId::compute(&origin, nonce, &payload);
    let mut body = Vec::new();
    wire::put_gossip_header(&mut body, &id, &origin, nonce, hops);
    body.extend_from_slice(&payload);
    (id, event(Kind::Gossip, &body))
}

fn ihave(id: &MessageId, hops: u8) -> Vec<u8> {
    let mut body = id.0.to_vec();
    body.push(hops);
    event(Kind::IHave, &body)
}

struct Bed {
    node: Node,
    now: Instant,
    actions: Vec<Action>,
}

impl Bed {
    /// A node with `peers` sessions on connections 1..=peers; connection 1 is its only eager
    /// peer.
    fn new(peers: u64) -> Bed {
        let identity = NodeIdentity {
            peer_id: peer(1),
            listen_addr: Some(SocketAddr::from(([10, 0, 0, 1], 9415))),
            signing_key: None,
        };
        let mut bed = Bed {
            node: Node::new(config(), identity, 42).unwrap(),
            now: Instant::ZERO,
            actions: Vec::new(),
        };
        for conn in 1..=peers {
            bed.open(conn, peer(conn as u8 + 1));
        }
        bed
    }

    fn input(&mut self, input: Input) {
        self.node.handle(self.now, input);
        while let Some(a) = self.node.poll_action() {
            self.actions.push(a);
        }
    }

    fn open(&mut self, conn: u64, who: PeerId) {
        self.input(Input::ConnectionUp {
            conn: ConnId(conn),
            peer: who,
            direction: Direction::Inbound,
            remote: SocketAddr::from(([10, 0, 0, 100 + conn as u8], 40_000)),
            dial: None,
            kx_group: None,
        });
        let hello = HelloRequestBody {
            ua: Some("tree-test".into()),
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: who.to_string(),
                listen: None,
                credit_frames: 1 << 20,
                credit_bytes: 1 << 30,
            },
        };
        let json = serde_json::to_vec(&hello).unwrap();
        let h = Header {
            len: (38 + json.len()) as u32,
            ver: 1,
            flags: flags::REQ,
            code: 0,
            app_proto_id: 0,
            tenant_id: 0,
            cap_len: 0,
            corr_id: 0,
        };
        let mut hello_frame = BytesMut::new();
        h.write(&mut hello_frame);
        hello_frame.extend_from_slice(&json);
        self.send(conn, hello_frame.to_vec());
        let start = Header {
            len: 38,
            ver: 1,
            flags: flags::START | flags::REQ,
            code: 0,
            app_proto_id: APP,
            tenant_id: 0,
            cap_len: 0,
            corr_id: 0,
        };
        let mut start_frame = BytesMut::new();
        start.write(&mut start_frame);
        self.send(conn, start_frame.to_vec());
        assert!(
            self.actions.iter().any(|a| matches!(
                a,
                Action::Session(SessionEvent::Up { conn: c, .. }) if *c == ConnId(conn)
            )),
            "session {conn} should open"
        );
    }

    fn send(&mut self, conn: u64, bytes: Vec<u8>) {
        self.input(Input::Received {
            conn: ConnId(conn),
            data: Bytes::from(bytes),
        });
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.node.poll_timeout() {
            if t > until {
                break;
            }
            self.now = t.max(self.now);
            self.input(Input::Timeout);
        }
        self.now = until;
        self.input(Input::Timeout);
    }

    /// Bodies of the frames of `kind` transmitted on `conn` since the last call to `clear`.
    fn sent(&self, conn: u64, kind: Kind) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for a in &self.actions {
            if let Action::Transmit { conn: c, data } = a {
                if *c != ConnId(conn) {
                    continue;
                }
                let mut buf = BytesMut::from(&data[..]);
                while let Ok(Some(f)) = overlay_proto::frame::decode(&mut buf) {
                    if f.header.flags & flags::EVENT != 0 && f.header.code == kind.code() {
                        out.push(f.payload.map(|p| p.to_vec()).unwrap_or_default());
                    }
                }
            }
        }
        out
    }

    fn clear(&mut self) {
        self.actions.clear();
    }

    fn is_eager(&self, who: PeerId) -> bool {
        self.node
            .sessions()
            .iter()
            .find(|s| s.peer == who)
            .is_some_and(|s| s.eager)
    }
}

#[test]
fn an_ihave_with_a_path_shorter_by_the_threshold_swaps_the_links() {
    let mut bed = Bed::new(3);
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    // Links settle (roles unchanged for longer than `optimization_hold`).
    bed.advance(Duration::from_secs(3));
    bed.clear();
    let (id, push) = gossip(1, 6);
    bed.send(1, push);
    // Through peer 3 the message would have taken 2 hops instead of 7: 5 ≥ 3 shorter.
    bed.send(2, ihave(&id, 1));
    assert_eq!(
        bed.sent(2, Kind::Graft),
        vec![Vec::<u8>::new()],
        "empty GRAFT"
    );
    assert_eq!(
        bed.sent(1, Kind::Prune).len(),
        1,
        "the old parent is pruned"
    );
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().tree_swaps, 1);
    // The shortcut is not asked for the payload again: nothing is missing.
    bed.advance(Duration::from_millis(500));
    assert_eq!(bed.sent(2, Kind::Graft).len(), 1);
}

#[test]
fn a_gain_below_the_threshold_keeps_the_tree() {
    let mut bed = Bed::new(3);
    bed.advance(Duration::from_secs(3));
    bed.clear();
    let (id, push) = gossip(1, 4);
    bed.send(1, push);
    // Through peer 3: 3 hops instead of 5, 2 shorter, below the default threshold of 3.
    bed.send(2, ihave(&id, 2));
    assert!(bed.sent(2, Kind::Graft).is_empty());
    assert!(bed.sent(1, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
    assert_eq!(bed.node.stats().tree_swaps, 0);
}

#[test]
fn an_announcement_before_a_longer_eager_push_swaps_the_links() {
    let mut bed = Bed::new(3);
    bed.advance(Duration::from_secs(3));
    bed.clear();
    let (id, push) = gossip(1, 9);
    // The IHAVE comes first (the lazy path is faster), then the eager push over 10 hops.
    bed.send(3, ihave(&id, 2));
    bed.send(1, push);
    assert_eq!(bed.sent(3, Kind::Graft), vec![Vec::<u8>::new()]);
    assert_eq!(bed.sent(1, Kind::Prune).len(), 1);
    assert!(bed.is_eager(peer(4)) && !bed.is_eager(peer(2)));
}

#[test]
fn a_swap_is_not_undone_by_the_next_message() {
    let mut bed = Bed::new(3);
    bed.advance(Duration::from_secs(3));
    let (id, push) = gossip(1, 6);
    bed.send(1, push);
    bed.send(2, ihave(&id, 1));
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    bed.clear();
    // The next message comes from the other side: through the new parent it is long, the
    // old parent announces it much shorter. Both links just changed role: no swap back.
    bed.advance(Duration::from_millis(100));
    let (id2, push2) = gossip(2, 8);
    bed.send(2, push2);
    bed.send(1, ihave(&id2, 0));
    assert!(bed.sent(1, Kind::Graft).is_empty());
    assert!(bed.sent(2, Kind::Prune).is_empty());
    assert!(bed.is_eager(peer(3)) && !bed.is_eager(peer(2)));
    assert_eq!(bed.node.stats().tree_swaps, 1);
    // Once both links have held their roles for `optimization_hold`, a real shortcut counts.
    bed.advance(Duration::from_secs(3));
    let (id3, push3) = gossip(3, 8);
    bed.send(2, push3);
    bed.send(1, ihave(&id3, 0));
    assert_eq!(bed.node.stats().tree_swaps, 2);
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
}

#[test]
fn a_stale_announcement_does_not_reshape_the_tree() {
    let mut bed = Bed::new(3);
    bed.advance(Duration::from_secs(3));
    let (id, push) = gossip(1, 6);
    bed.send(1, push);
    // Seconds later (a catch-up IHAVE of a new session, say) the old id says nothing about
    // the tree as it is now.
    bed.advance(Duration::from_secs(2));
    bed.send(2, ihave(&id, 0));
    assert_eq!(bed.node.stats().tree_swaps, 0);
    assert!(bed.is_eager(peer(2)) && !bed.is_eager(peer(3)));
}

#[test]
fn an_empty_graft_promotes_the_sender_and_asks_for_nothing() {
    let mut bed = Bed::new(2);
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
    let mut bed = Bed::new(2);
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
    let mut bed = Bed::new(2);
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
    tree_optimization(&mut cfg.node_config);
    Mesh::new(cfg).unwrap()
}

/// The eager links of every live node as (node, peer node) pairs.
fn eager_links(m: &Mesh, seed: u64) -> BTreeSet<(usize, usize)> {
    let index: BTreeMap<PeerId, usize> = (0..m.len()).map(|i| (node_peer_id(seed, i), i)).collect();
    let mut links = BTreeSet::new();
    for i in (0..m.len()).filter(|i| m.is_alive(*i)) {
        for s in m.node(i).unwrap().sessions() {
            if s.eager {
                links.insert((i, index[&s.peer]));
            }
        }
    }
    links
}

/// Checks that the eager links are symmetric and form one spanning tree of the live nodes.
fn assert_one_symmetric_tree(m: &Mesh, seed: u64) {
    let links = eager_links(m, seed);
    let one_sided: Vec<_> = links
        .iter()
        .filter(|(a, b)| !links.contains(&(*b, *a)))
        .collect();
    assert!(one_sided.is_empty(), "one-sided eager links: {one_sided:?}");
    let alive: Vec<usize> = (0..m.len()).filter(|i| m.is_alive(*i)).collect();
    let edges = links.len() / 2;
    assert_eq!(edges, alive.len() - 1, "a spanning tree has n − 1 edges");
    let mut seen = BTreeSet::from([alive[0]]);
    let mut stack = vec![alive[0]];
    while let Some(a) = stack.pop() {
        for (_, b) in links.range((a, 0)..(a + 1, 0)) {
            if seen.insert(*b) {
                stack.push(*b);
            }
        }
    }
    assert_eq!(seen.len(), alive.len(), "the eager graph is connected");
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
    assert_one_symmetric_tree(&m, 5);
    let rmr = random_broadcasts(&mut m, 15, 100);
    // A tree shared by every sender: each node gets each payload once.
    assert!(rmr <= 0.05, "steady RMR {rmr:.3} with random senders");
    assert_one_symmetric_tree(&m, 5);
}

#[test]
fn the_tree_is_repaired_after_killing_a_third_of_the_nodes() {
    let mut m = mesh(60, 9);
    m.run_for(Duration::from_secs(10));
    random_broadcasts(&mut m, 5, 0);
    assert_one_symmetric_tree(&m, 9);
    for i in (0..60).filter(|i| i % 3 == 1) {
        m.kill(i);
    }
    m.run_for(Duration::from_secs(5));
    // Every broadcast after the kill reaches every survivor, and the survivors' eager graph
    // becomes one tree again.
    random_broadcasts(&mut m, 5, 7);
    assert_one_symmetric_tree(&m, 9);
    let rmr = random_broadcasts(&mut m, 10, 50);
    assert!(rmr <= 0.05, "RMR {rmr:.3} after the repair");
}
