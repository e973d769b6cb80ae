//! Topics: joining and leaving, the bounds, non-members never carrying a topic's payloads,
//! each topic's tree repairing itself, the id (and so the origin signature) binding the topic,
//! and a trace with topics replaying exactly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::frame::{flags, Header};
use overlay_proto::mesh::{node_peer_id, Mesh, MeshConfig};
use overlay_proto::precheck::check_content_in;
use overlay_proto::trace::{Replayer, TraceHeader, TraceReader, TraceWriter};
use overlay_proto::wire::{self, Kind};
use overlay_proto::SessionState;
use overlay_proto::{
    Action, CloseReason, ConnId, Direction, Input, Instant, MessageId, NeighborChange,
    NeighborDownReason, Node, NodeConfig, NodeIdentity, OriginAuth, OriginSigner, OverlayError,
    PeerId, RejectReason, SigningSeed, TopicId,
};
use std::collections::{BTreeMap, BTreeSet};

fn cfg() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = OriginAuth::None;
    c
}

fn identity(id: u8) -> NodeIdentity {
    NodeIdentity::new(
        PeerId([id; 32]),
        Some(SocketAddr::from(([127, 0, 0, id], 9415))),
    )
}

/// Two nodes joined by one session (A dialed B), driven by hand.
struct Pair {
    a: Node,
    b: Node,
    now: Instant,
    /// Every action of A, in order.
    a_actions: Vec<Action>,
    /// Every action of B, in order.
    b_actions: Vec<Action>,
    /// A's inputs with its actions, for the trace test.
    a_record: Vec<(Instant, Input, Vec<Action>)>,
}

const A_CONN: ConnId = ConnId(1);
const B_CONN: ConnId = ConnId(2);

impl Pair {
    fn new(config: NodeConfig) -> Pair {
        Pair::with(config.clone(), config)
    }

    /// Two nodes with their own configurations (A dials B).
    fn with(a: NodeConfig, b: NodeConfig) -> Pair {
        let mut pair = Pair {
            a: Node::new(a, identity(1), 11).unwrap(),
            b: Node::new(b, identity(2), 22).unwrap(),
            now: Instant::ZERO,
            a_actions: Vec::new(),
            b_actions: Vec::new(),
            a_record: Vec::new(),
        };
        pair.input_b(Input::ConnectionUp {
            conn: B_CONN,
            peer: PeerId([1; 32]),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
            dial: None,
            kx_group: None,
        });
        pair.input_a(Input::ConnectionUp {
            conn: A_CONN,
            peer: PeerId([2; 32]),
            direction: Direction::Outbound,
            remote: SocketAddr::from(([127, 0, 0, 2], 9415)),
            dial: None,
            kx_group: None,
        });
        pair.settle();
        pair
    }

    fn input_a(&mut self, input: Input) -> Vec<Action> {
        self.a.handle(self.now, input.clone());
        let mut actions = Vec::new();
        while let Some(act) = self.a.poll_action() {
            actions.push(act);
        }
        self.a_record.push((self.now, input, actions.clone()));
        self.a_actions.extend(actions.iter().cloned());
        let bytes: Vec<Bytes> = transmits(&actions, A_CONN);
        for data in bytes {
            self.input_b(Input::Received { conn: B_CONN, data });
        }
        actions
    }

    fn input_b(&mut self, input: Input) -> Vec<Action> {
        self.b.handle(self.now, input);
        let mut actions = Vec::new();
        while let Some(act) = self.b.poll_action() {
            actions.push(act);
        }
        self.b_actions.extend(actions.iter().cloned());
        for data in transmits(&actions, B_CONN) {
            self.input_a(Input::Received { conn: A_CONN, data });
        }
        actions
    }

    /// Runs both nodes' timers for a while.
    fn settle(&mut self) {
        for _ in 0..30 {
            self.now += Duration::from_millis(10);
            self.input_a(Input::Timeout);
            self.input_b(Input::Timeout);
        }
    }

    fn delivered_at_b(&self, topic: TopicId) -> Vec<MessageId> {
        self.b_actions
            .iter()
            .filter_map(|a| match a {
                Action::Deliver(d) if d.topic == topic => Some(d.id),
                _ => None,
            })
            .collect()
    }
}

fn transmits(actions: &[Action], conn: ConnId) -> Vec<Bytes> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transmit { conn: c, data } if *c == conn => Some(data.to_bytes()),
            _ => None,
        })
        .collect()
}

fn joined(actions: &[Action]) -> Result<bool, OverlayError> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Joined { result, .. } => Some(*result),
            _ => None,
        })
        .expect("every join is answered")
}

fn left(actions: &[Action]) -> Result<bool, OverlayError> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Left { result, .. } => Some(*result),
            _ => None,
        })
        .expect("every leave is answered")
}

fn published(actions: &[Action]) -> Result<MessageId, OverlayError> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::BroadcastResult { result, .. } => Some(*result),
            _ => None,
        })
        .expect("every publish is answered")
}

fn publish(topic: TopicId, n: u8) -> Input {
    Input::Publish {
        request: u64::from(n),
        topic,
        payload: Bytes::from(vec![n; 100]),
    }
}

fn event(kind: Kind, body: &[u8]) -> Bytes {
    let h = Header {
        len: (38 + body.len()) as u32,
        ver: 1,
        flags: flags::EVENT,
        code: kind.code(),
        app_proto_id: overlay_proto::OVERLAY_APP_PROTO_ID,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = BytesMut::new();
    h.write(&mut out);
    out.extend_from_slice(body);
    out.freeze()
}

#[test]
fn join_and_leave_are_answered_and_the_default_topic_stays() {
    let mut c = cfg();
    c.max_topics = 2;
    let mut node = Node::new(c, identity(1), 1).unwrap();
    let mut run = |input: Input| {
        node.handle(Instant::ZERO, input);
        let mut out = Vec::new();
        while let Some(a) = node.poll_action() {
            out.push(a);
        }
        out
    };
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    assert_eq!(
        published(&run(publish(chat, 1))),
        Err(OverlayError::NotJoined)
    );
    assert_eq!(joined(&run(Input::Join(chat))), Ok(true));
    assert_eq!(joined(&run(Input::Join(chat))), Ok(false));
    assert!(published(&run(publish(chat, 2))).is_ok());
    // The default topic counts toward max_topics = 2.
    assert_eq!(
        joined(&run(Input::Join(news))),
        Err(OverlayError::TooManyTopics)
    );
    assert_eq!(joined(&run(Input::Join(TopicId::DEFAULT))), Ok(false));
    assert_eq!(left(&run(Input::Leave(chat))), Ok(true));
    assert_eq!(left(&run(Input::Leave(chat))), Ok(false));
    assert_eq!(
        left(&run(Input::Leave(TopicId::DEFAULT))),
        Err(OverlayError::NotJoined)
    );
    assert_eq!(
        published(&run(publish(chat, 3))),
        Err(OverlayError::NotJoined)
    );
    assert_eq!(joined(&run(Input::Join(news))), Ok(true));
    let stats = node.stats();
    assert_eq!(stats.topics_joined, 2);
    assert_eq!(stats.rejected.get(RejectReason::TopicLimit), 1);
    assert_eq!(stats.rejected.get(RejectReason::NotMember), 2);
    assert_eq!(node.topics(), {
        let mut t = vec![TopicId::DEFAULT, news];
        t.sort();
        t
    });
}

#[test]
fn a_topic_flows_between_members_only_and_stops_after_leave() {
    let mut pair = Pair::new(cfg());
    let chat = TopicId::from_name("chat");
    assert_eq!(joined(&pair.input_a(Input::Join(chat))), Ok(true));
    pair.settle();
    // B is not in the topic: A publishes, B gets nothing of it.
    let id = published(&pair.input_a(publish(chat, 1))).unwrap();
    pair.settle();
    assert!(pair.delivered_at_b(chat).is_empty());
    let b = pair.b.stats();
    assert_eq!(b.frames_in_by_kind[Kind::TopicGossip.index()], 0);
    assert_eq!(b.frames_in_by_kind[Kind::TopicIHave.index()], 0);
    assert_eq!(b.frames_in_by_kind[Kind::Topics.index()], 1);
    // B joins: the next message arrives, announced as a catch-up first or pushed.
    assert_eq!(joined(&pair.input_b(Input::Join(chat))), Ok(true));
    pair.settle();
    let id2 = published(&pair.input_a(publish(chat, 2))).unwrap();
    pair.settle();
    let got = pair.delivered_at_b(chat);
    assert!(got.contains(&id2), "member B gets the topic");
    assert!(got.len() <= 2 && got.iter().all(|g| *g == id || *g == id2));
    // The default topic still flows as before.
    let d = published(&pair.input_a(Input::Broadcast {
        request: 9,
        payload: Bytes::from_static(b"everyone"),
    }))
    .unwrap();
    pair.settle();
    assert!(pair.delivered_at_b(TopicId::DEFAULT).contains(&d));
    // B leaves: nothing more of the topic reaches it.
    assert_eq!(left(&pair.input_b(Input::Leave(chat))), Ok(true));
    pair.settle();
    let before = pair.b.stats().frames_in_by_kind[Kind::TopicGossip.index()];
    let id3 = published(&pair.input_a(publish(chat, 3))).unwrap();
    pair.settle();
    assert!(!pair.delivered_at_b(chat).contains(&id3));
    assert_eq!(
        pair.b.stats().frames_in_by_kind[Kind::TopicGossip.index()],
        before
    );
}

#[test]
fn a_topic_message_from_a_non_member_is_counted_and_ignored() {
    let mut pair = Pair::new(cfg());
    let chat = TopicId::from_name("chat");
    pair.input_b(Input::Join(chat));
    pair.settle();
    // A is not in the topic, yet B's session receives a topic message on it: ignored.
    let origin = PeerId([7; 32]);
    let payload = b"stray";
    let mid = MessageId::compute_in(&chat, &origin, 5, payload);
    let mut body = chat.0.to_vec();
    wire::put_gossip_header(&mut body, &mid, &origin, 5, 0);
    body.extend_from_slice(payload);
    pair.input_b(Input::Received {
        conn: B_CONN,
        data: event(Kind::TopicGossip, &body),
    });
    assert!(pair.delivered_at_b(chat).is_empty());
    assert_eq!(pair.b.stats().rejected.get(RejectReason::NotMember), 1);
    assert_eq!(
        pair.b.sessions().len(),
        1,
        "no close for a race after leave"
    );
}

#[test]
fn a_topic_announcement_over_the_limit_closes_the_session_from_its_header() {
    let mut c = cfg();
    c.max_peer_topics = 2;
    let mut pair = Pair::new(c);
    let mut body = BytesMut::new();
    let mut topics: Vec<TopicId> = ["a", "b", "c"].map(TopicId::from_name).to_vec();
    topics.sort();
    wire::put_topics(&mut body, topics.iter());
    let out = pair.input_b(Input::Received {
        conn: B_CONN,
        data: event(Kind::Topics, &body),
    });
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Close {
            reason: CloseReason::Violation(OverlayError::TooLarge),
            ..
        }
    )));
    assert_eq!(pair.b.stats().rejected.get(RejectReason::TopicLimit), 1);
    // Unsorted, repeated or default-topic lists are malformed.
    assert!(wire::parse_topics(&body, 3).is_ok());
    let mut twice = BytesMut::new();
    wire::put_topics(&mut twice, [topics[0], topics[0]].iter());
    assert!(wire::parse_topics(&twice, 3).is_err());
    let mut default = BytesMut::new();
    wire::put_topics(&mut default, [TopicId::DEFAULT].iter());
    assert!(wire::parse_topics(&default, 3).is_err());
}

#[test]
fn the_id_and_the_signature_bind_the_topic() {
    let signer = OriginSigner::new(&SigningSeed([3; 32]));
    let origin = signer.peer_id();
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    let payload = b"hello";
    let id = MessageId::compute_in(&chat, &origin, 9, payload);
    assert_ne!(id, MessageId::compute_in(&news, &origin, 9, payload));
    assert_ne!(id, MessageId::compute(&origin, 9, payload));
    assert_eq!(
        MessageId::compute_in(&TopicId::DEFAULT, &origin, 9, payload),
        MessageId::compute(&origin, 9, payload)
    );
    let auth = signer.sign(&id);
    let check = |topic: &TopicId| {
        check_content_in(
            topic,
            OriginAuth::Sign,
            &id,
            &origin,
            9,
            Some(&auth),
            payload,
        )
    };
    assert_eq!(check(&chat), Ok(()));
    // A relay moving the signed message to another topic (or to the default one) fails the
    // id check; a new id would need the origin's key.
    assert_eq!(check(&news), Err(RejectReason::BadId));
    assert_eq!(check(&TopicId::DEFAULT), Err(RejectReason::BadId));
}

#[test]
fn a_message_moved_to_another_topic_is_rejected_and_the_relay_closed() {
    let mut pair = Pair::new(cfg());
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    for t in [chat, news] {
        pair.input_a(Input::Join(t));
        pair.input_b(Input::Join(t));
    }
    pair.settle();
    let origin = PeerId([7; 32]);
    let payload = b"moved";
    let id_in_chat = MessageId::compute_in(&chat, &origin, 5, payload);
    let mut body = news.0.to_vec();
    wire::put_gossip_header(&mut body, &id_in_chat, &origin, 5, 0);
    body.extend_from_slice(payload);
    let out = pair.input_b(Input::Received {
        conn: B_CONN,
        data: event(Kind::TopicGossip, &body),
    });
    assert!(pair.delivered_at_b(news).is_empty());
    assert_eq!(pair.b.stats().rejected.get(RejectReason::BadId), 1);
    assert!(out.iter().any(|a| matches!(a, Action::Close { .. })));
}

fn mesh(nodes: usize, seed: u64) -> Mesh {
    Mesh::new(MeshConfig {
        nodes,
        seed,
        node_config: cfg(),
        ..MeshConfig::default()
    })
    .unwrap()
}

/// The members `from` can reach over running sessions between live members: a topic's
/// messages travel only between members, so these are exactly the nodes that must deliver.
fn reachable(m: &Mesh, seed: u64, members: &[usize], from: usize) -> Vec<usize> {
    let index: BTreeMap<PeerId, usize> = (0..m.len()).map(|i| (node_peer_id(seed, i), i)).collect();
    let mut seen = BTreeSet::from([from]);
    let mut todo = vec![from];
    while let Some(i) = todo.pop() {
        let Some(node) = m.node(i) else { continue };
        for s in node.sessions() {
            let Some(&j) = index.get(&s.peer) else {
                continue;
            };
            if s.state == SessionState::Running
                && m.is_alive(j)
                && members.contains(&j)
                && seen.insert(j)
            {
                todo.push(j);
            }
        }
    }
    seen.into_iter().collect()
}

/// The nodes that delivered (or sent) a tracked message.
fn deliverers(m: &Mesh, id: &MessageId) -> Vec<usize> {
    let track = m.track(id).unwrap();
    let mut got: Vec<usize> = track.delivered.iter().map(|(i, _, _)| *i).collect();
    got.push(track.origin);
    got.sort_unstable();
    got.dedup();
    got
}

#[test]
fn on_a_mesh_members_get_every_message_and_non_members_no_payload() {
    let n = 30;
    let mut m = mesh(n, 7);
    // Half the nodes: dense enough that the members' sessions connect them all.
    let members: Vec<usize> = (0..n).filter(|i| i % 2 == 0).collect();
    m.run_for(Duration::from_secs(3));
    let topic = TopicId::from_name("mesh");
    for &i in &members {
        m.input(i, Input::Join(topic));
    }
    m.run_for(Duration::from_secs(2));
    let mut ids = Vec::new();
    for k in 0..20u8 {
        let from = members[usize::from(k) % members.len()];
        ids.push(m.publish(from, topic, Bytes::from(vec![k; 200])).unwrap());
        m.run_for(Duration::from_millis(50));
    }
    m.run_for(Duration::from_secs(2));
    assert_eq!(
        reachable(&m, 7, &members, 0),
        members,
        "the members are connected"
    );
    for id in &ids {
        assert_eq!(
            deliverers(&m, id),
            members,
            "every member and only members deliver"
        );
    }
    for i in (0..n).filter(|i| !members.contains(i)) {
        let s = m.stats(i).unwrap();
        assert_eq!(
            s.frames_in_by_kind[Kind::TopicGossip.index()],
            0,
            "node {i}"
        );
        assert_eq!(s.frames_in_by_kind[Kind::TopicIHave.index()], 0, "node {i}");
    }
    for &i in &members {
        assert_eq!(m.stats(i).unwrap().topics_joined, 2);
    }
}

#[test]
fn a_topic_tree_repairs_itself_after_members_die() {
    let n = 36;
    let mut m = mesh(n, 9);
    m.run_for(Duration::from_secs(3));
    let topic = TopicId::from_name("repair");
    let members: Vec<usize> = (0..n).filter(|i| i % 2 == 0).collect();
    for &i in &members {
        m.input(i, Input::Join(topic));
    }
    m.run_for(Duration::from_secs(2));
    // Warm the topic's tree, then kill a third of the members (not the sender).
    for k in 0..5u8 {
        m.publish(0, topic, Bytes::from(vec![k; 64])).unwrap();
        m.run_for(Duration::from_millis(100));
    }
    let dead: Vec<usize> = members.iter().copied().skip(1).step_by(3).collect();
    for &i in &dead {
        m.kill(i);
    }
    m.run_for(Duration::from_secs(3));
    let alive: Vec<usize> = members
        .iter()
        .copied()
        .filter(|i| !dead.contains(i))
        .collect();
    let connected = reachable(&m, 9, &alive, alive[0]);
    assert!(
        connected.len() + 1 >= alive.len(),
        "membership reconnected the live members: {connected:?} of {alive:?}"
    );
    let mut ids = Vec::new();
    for k in 0..10u8 {
        let from = connected[usize::from(k) % connected.len()];
        ids.push(m.publish(from, topic, Bytes::from(vec![k; 64])).unwrap());
        m.run_for(Duration::from_millis(100));
    }
    m.run_for(Duration::from_secs(3));
    for id in &ids {
        assert_eq!(
            deliverers(&m, id),
            connected,
            "every connected live member delivers after the kills"
        );
    }
}

#[test]
fn a_trace_with_topics_replays_with_zero_divergences() {
    let mut pair = Pair::new(cfg());
    let chat = TopicId::from_name("chat");
    pair.input_b(Input::Join(chat));
    pair.input_a(Input::Join(chat));
    pair.settle();
    for k in 0..5 {
        pair.input_a(publish(chat, k));
        pair.settle();
    }
    pair.input_a(Input::Leave(chat));
    pair.settle();
    assert_eq!(pair.delivered_at_b(chat).len(), 5);
    let header = TraceHeader::new(cfg(), identity(1), 11);
    let mut writer = TraceWriter::new(Vec::new(), &header).unwrap();
    for (now, input, actions) in &pair.a_record {
        writer.record(*now, input, actions).unwrap();
    }
    writer.flush().unwrap();
    let bytes = writer.into_inner();
    let (mut reader, header) = TraceReader::open(&bytes[..]).unwrap();
    let mut replayer = Replayer::new(&header).unwrap();
    let mut steps = 0;
    while let Some(record) = reader.next_record().unwrap() {
        replayer.step(&record).unwrap();
        steps += 1;
    }
    assert_eq!(steps, pair.a_record.len());
    assert!(replayer.node().topics() == vec![TopicId::DEFAULT]);
}

const KEY: overlay_proto::MacKey = overlay_proto::MacKey([7; 32]);
const NOW_UNIX: u64 = 1_700_000_000;

/// A node configuration that requires tokens and presents `own` (caveats of its token).
fn token_cfg(own: Vec<overlay_proto::capability::Caveat>) -> NodeConfig {
    use overlay_proto::capability::{mint, Caveat, Scope};
    let mut c = cfg();
    c.auth.require_token = true;
    c.unix_base_secs = NOW_UNIX;
    c.auth.keys.insert("k1", "overlay", KEY);
    let mut caveats = vec![Caveat::Method(vec!["overlay".into()])];
    caveats.extend(own);
    let scope = Scope {
        prefix: None,
        methods: Vec::new(),
        max_bytes: None,
    };
    c.auth.own_token = Some(mint(&KEY, "overlay", "k1", scope, caveats).into());
    c
}

#[test]
fn a_token_restricted_to_a_topic_gets_and_gives_that_topic_only() {
    use overlay_proto::capability::Caveat;
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    // A presents a token for /topics/chat only; B's token restricts nothing.
    let a_cfg = token_cfg(vec![Caveat::PathPrefix("/topics/chat".into())]);
    let b_cfg = token_cfg(Vec::new());
    let mut pair = Pair::with(a_cfg, b_cfg);
    assert_eq!(
        pair.b.sessions().len(),
        1,
        "the topic token opens a session"
    );
    for t in [chat, news] {
        pair.input_a(Input::Join(t));
        pair.input_b(Input::Join(t));
    }
    pair.settle();
    // Chat flows both ways.
    let from_a = published(&pair.input_a(publish(chat, 1))).unwrap();
    pair.settle();
    assert!(pair.delivered_at_b(chat).contains(&from_a));
    let from_b = published(&pair.input_b(publish(chat, 2))).unwrap();
    pair.settle();
    let at_a: Vec<MessageId> = pair
        .a_actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(d) => Some(d.id),
            _ => None,
        })
        .collect();
    assert!(at_a.contains(&from_b));
    // News and the default topic: A cannot publish to B, and B sends A nothing of them.
    let b_before = pair.b.stats();
    published(&pair.input_a(publish(news, 3))).unwrap();
    published(&pair.input_a(Input::Broadcast {
        request: 4,
        payload: Bytes::from_static(b"default"),
    }))
    .unwrap();
    pair.settle();
    assert!(pair.delivered_at_b(news).is_empty());
    assert!(pair.delivered_at_b(TopicId::DEFAULT).is_empty());
    assert!(
        pair.b.stats().rejected.get(RejectReason::NotMember)
            > b_before.rejected.get(RejectReason::NotMember)
    );
    let a_before = pair.a.stats().frames_in_by_kind;
    published(&pair.input_b(publish(news, 5))).unwrap();
    published(&pair.input_b(Input::Broadcast {
        request: 6,
        payload: Bytes::from_static(b"default too"),
    }))
    .unwrap();
    pair.settle();
    let a_after = pair.a.stats().frames_in_by_kind;
    for k in [Kind::Gossip, Kind::TopicGossip] {
        assert_eq!(a_after[k.index()], a_before[k.index()], "{k:?} reached A");
    }
}

#[test]
fn a_topics_wide_token_covers_every_topic_and_a_foreign_path_is_refused() {
    use overlay_proto::capability::Caveat;
    // `/topics/` alone: every topic, the default one included.
    let mut pair = Pair::with(
        token_cfg(vec![Caveat::PathPrefix("/topics/".into())]),
        token_cfg(Vec::new()),
    );
    let d = published(&pair.input_a(Input::Broadcast {
        request: 1,
        payload: Bytes::from_static(b"all topics"),
    }))
    .unwrap();
    pair.settle();
    assert!(pair.delivered_at_b(TopicId::DEFAULT).contains(&d));
    // A path outside the session path and /topics/: refused at START as before (403).
    let pair = Pair::with(
        token_cfg(vec![Caveat::PathPrefix("/elsewhere".into())]),
        token_cfg(Vec::new()),
    );
    assert!(pair.b.sessions().is_empty());
    assert_eq!(pair.b.stats().rejected.get(RejectReason::Forbidden), 1);
    // Two topics in one token: no path starts with both, refused.
    let pair = Pair::with(
        token_cfg(vec![
            Caveat::PathPrefix("/topics/a".into()),
            Caveat::PathPrefix("/topics/b".into()),
        ]),
        token_cfg(Vec::new()),
    );
    assert!(pair.b.sessions().is_empty());
}

#[test]
fn a_sparse_topic_finds_its_members_and_reaches_them_all() {
    // 10 % of 150 nodes: with an active view of 9, most members have no member neighbour at
    // first; TOPIC_PEERS finds them members to dial.
    let n = 150;
    let seed = 21;
    let mut m = mesh(n, seed);
    m.run_for(Duration::from_secs(3));
    let topic = TopicId::from_name("sparse");
    let members: Vec<usize> = (0..n).filter(|i| i % 10 == 0).collect();
    for &i in &members {
        m.input(i, Input::Join(topic));
    }
    m.run_for(Duration::from_secs(12));
    assert_eq!(
        reachable(&m, seed, &members, members[0]),
        members,
        "the members are connected among themselves"
    );
    for k in 0..5u8 {
        let from = members[usize::from(k) % members.len()];
        let id = m.publish(from, topic, Bytes::from(vec![k; 64])).unwrap();
        m.run_for(Duration::from_secs(1));
        assert_eq!(deliverers(&m, &id), members);
    }
    // Without the search the same topic is split.
    let mut config = cfg();
    config.topic_min_links = 0;
    let mut m = Mesh::new(MeshConfig {
        nodes: n,
        seed,
        node_config: config,
        ..MeshConfig::default()
    })
    .unwrap();
    m.run_for(Duration::from_secs(3));
    for &i in &members {
        m.input(i, Input::Join(topic));
    }
    m.run_for(Duration::from_secs(12));
    assert!(reachable(&m, seed, &members, members[0]).len() < members.len());
}

#[test]
fn a_topic_peers_answer_nobody_asked_for_is_ignored_and_scored() {
    let mut pair = Pair::new(cfg());
    let chat = TopicId::from_name("chat");
    let mut body = chat.0.to_vec();
    wire::put_shuffle(
        &mut body,
        &[wire::PeerEntry {
            peer: PeerId([9; 32]),
            addr: SocketAddr::from(([127, 0, 0, 9], 9415)),
        }],
    );
    let before = pair.b.stats().rejected.get(RejectReason::ShuffleFlood);
    pair.input_b(Input::Received {
        conn: B_CONN,
        data: event(Kind::TopicPeers, &body),
    });
    assert_eq!(
        pair.b.stats().rejected.get(RejectReason::ShuffleFlood),
        before + 1
    );
    assert!(!pair
        .b_actions
        .iter()
        .any(|a| matches!(a, Action::Connect { .. })));
}

/// The `TopicNeighbor` actions in `actions`, as (topic, peer, change).
fn neighbor_changes(actions: &[Action]) -> Vec<(TopicId, PeerId, NeighborChange)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::TopicNeighbor {
                topic,
                peer,
                change,
            } => Some((*topic, *peer, *change)),
            _ => None,
        })
        .collect()
}

#[test]
fn neighbours_come_and_go_per_topic() {
    let a_id = PeerId([1; 32]);
    let b_id = PeerId([2; 32]);
    let mut pair = Pair::new(cfg());
    // The session opened: each side has the other as a neighbour in the default topic only.
    assert_eq!(
        neighbor_changes(&pair.a_actions),
        vec![(TopicId::DEFAULT, b_id, NeighborChange::Up)]
    );
    assert_eq!(
        neighbor_changes(&pair.b_actions),
        vec![(TopicId::DEFAULT, a_id, NeighborChange::Up)]
    );
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    // A joins chat alone: nobody is a neighbour there yet, on either side.
    let (a0, b0) = (pair.a_actions.len(), pair.b_actions.len());
    assert_eq!(joined(&pair.input_a(Input::Join(chat))), Ok(true));
    pair.settle();
    assert!(neighbor_changes(&pair.a_actions[a0..]).is_empty());
    assert!(neighbor_changes(&pair.b_actions[b0..]).is_empty());
    // B joins chat and news: B's join yields A (already connected, in chat) before the
    // answer; A learns B from B's TOPICS. News has no member besides B.
    let (a0, b0) = (pair.a_actions.len(), pair.b_actions.len());
    let join = pair.input_b(Input::Join(chat));
    let up = join
        .iter()
        .position(|a| matches!(a, Action::TopicNeighbor { .. }))
        .expect("an up for A");
    let answer = join
        .iter()
        .position(|a| matches!(a, Action::Joined { .. }))
        .expect("the join is answered");
    assert!(up < answer, "the members come before the join's answer");
    assert_eq!(joined(&pair.input_b(Input::Join(news))), Ok(true));
    pair.settle();
    assert_eq!(
        neighbor_changes(&pair.b_actions[b0..]),
        vec![(chat, a_id, NeighborChange::Up)]
    );
    assert_eq!(
        neighbor_changes(&pair.a_actions[a0..]),
        vec![(chat, b_id, NeighborChange::Up)]
    );
    // B leaves chat: A is told B left; B's own leave produces nothing (its stream ends).
    let (a0, b0) = (pair.a_actions.len(), pair.b_actions.len());
    assert_eq!(left(&pair.input_b(Input::Leave(chat))), Ok(true));
    pair.settle();
    assert_eq!(
        neighbor_changes(&pair.a_actions[a0..]),
        vec![(chat, b_id, NeighborChange::Down(NeighborDownReason::Left))]
    );
    assert!(neighbor_changes(&pair.b_actions[b0..]).is_empty());
    // B comes back; then the session ends: every topic A shares with B reports it down with
    // the close reason, in topic byte order.
    assert_eq!(joined(&pair.input_b(Input::Join(chat))), Ok(true));
    assert_eq!(joined(&pair.input_a(Input::Join(news))), Ok(true));
    pair.settle();
    let a0 = pair.a_actions.len();
    pair.input_a(Input::ConnectionClosed {
        conn: A_CONN,
        error: None,
    });
    let mut expected: Vec<(TopicId, PeerId, NeighborChange)> = [TopicId::DEFAULT, chat, news]
        .into_iter()
        .map(|t| {
            (
                t,
                b_id,
                NeighborChange::Down(NeighborDownReason::Closed(CloseReason::TransportClosed)),
            )
        })
        .collect();
    expected.sort_by_key(|(t, _, _)| *t);
    assert_eq!(neighbor_changes(&pair.a_actions[a0..]), expected);
    assert_eq!(NeighborDownReason::Left.label(), "left");
    assert_eq!(
        NeighborDownReason::Closed(CloseReason::TransportClosed).label(),
        "transport_closed"
    );
}

#[test]
fn a_topic_the_peers_token_does_not_cover_never_has_it_as_a_neighbour() {
    use overlay_proto::capability::Caveat;
    let a_id = PeerId([1; 32]);
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    // A's token covers the news topic only: B counts A as a neighbour there and nowhere else
    // (not in chat, which both joined, nor in the default topic).
    let mut pair = Pair::with(
        token_cfg(vec![Caveat::PathPrefix("/topics/news".into())]),
        token_cfg(Vec::new()),
    );
    assert_eq!(pair.b.sessions().len(), 1);
    for t in [chat, news] {
        pair.input_a(Input::Join(t));
        pair.input_b(Input::Join(t));
    }
    pair.settle();
    assert_eq!(
        neighbor_changes(&pair.b_actions),
        vec![(news, a_id, NeighborChange::Up)]
    );
}
