//! Fuzzes a `Node` with arbitrary sequences of `Input`s: connections up and down (some opened
//! with a valid HELLO/START, whose HELLO says `graft_miss` or not), raw bytes, well-formed frames of every overlay kind with arbitrary
//! bodies, timer wake-ups, broadcasts, direct sends, dials, discovered peers, dial failures and
//! shutdown, and topics: joins, leaves, publishes, well-formed TOPICS and TOPIC_PEERS frames
//! and topic payload / control frames of a few topics — with origin signatures required (the
//! default) or off.
//!
//! Checked after every step, besides "no panic":
//! - running sessions and our own handshaking dials stay within `max_sessions`, inbound
//!   connections before START within the pre-auth budget (`max_preauth`), queues within
//!   `max_queue_frames` per session, the
//!   seen cache and the GRAFT store within their capacities, dials (automatic and operator)
//!   within `max_concurrent_dials`, the passive list (configured, discovered and learned
//!   addresses) within `passive_capacity`, eager + lazy peers within the running sessions;
//! - monotonic counters never go down;
//! - the next timeout never points into the past;
//! - the node is in at most `max_topics` topics, the default one among them;
//! - the neighbours the core reported per topic (`Action::TopicNeighbor`: never up twice,
//!   never down when not up, all of a topic dropped when the node leaves it) are all running
//!   sessions, in topics the node is in.
//!
//! And over the whole sequence: a second node fed the same sequence gives the same actions,
//! bit for bit (determinism).

#![no_main]

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use overlay_proto::frame::flags;
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind, PeerEntry};
use overlay_proto::{
    Action, ConnId, DialId, Direction, Input, Instant, MessageId, NeighborChange, Node,
    NodeConfig, NodeIdentity, NodeStats, OriginAuth, OverlayError, PeerId, SessionState,
    SigningSeed, TopicId, OVERLAY_APP_PROTO_ID,
};
use std::collections::BTreeSet;

/// Longest sequence run (keeps each input fast).
const MAX_STEPS: usize = 256;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A TLS connection is up (no HELLO yet).
    Up { conn: u8, peer: u8, outbound: bool, dial: Option<u8> },
    /// Connection up, then a valid HELLO (saying `graft_miss` or not) and START from the peer.
    Open { conn: u8, peer: u8, graft_miss: bool },
    /// Raw bytes on a connection.
    Bytes { conn: u8, data: Vec<u8> },
    /// One well-formed OAP/1 frame of an overlay kind (or any code) with an arbitrary body and
    /// any combination of the defined flags.
    Frame { conn: u8, kind: u8, code: u16, flags: u8, overlay_app: bool, body: Vec<u8> },
    /// The connection closed.
    Closed { conn: u8, clean: bool },
    /// Time passes, then the timer fires.
    Tick { ms: u16 },
    /// The application broadcasts.
    Broadcast { len: u16 },
    /// The application sends to one peer.
    Direct { peer: u8, len: u8 },
    /// The operator dials.
    Dial { port: u8 },
    /// A dial failed.
    DialFailed { dial: u8 },
    /// Discovery offers addresses.
    Discovered { ports: Vec<u8> },
    /// Graceful shutdown.
    Shutdown,
    /// The application joins a topic.
    Join { topic: u8 },
    /// The application leaves a topic.
    Leave { topic: u8 },
    /// The application publishes to a topic.
    Publish { topic: u8, len: u16 },
    /// A peer announces its topics (a well-formed TOPICS frame; more than `max_peer_topics`
    /// closes the session).
    Topics { conn: u8, topics: Vec<u8> },
    /// A peer asks for (no entry) or answers with (entries) members of a topic.
    TopicPeers { conn: u8, topic: u8, entries: Vec<(u8, u8)> },
    /// A peer's unsigned GOSSIP of a topic.
    TopicGossip { conn: u8, topic: u8, origin: u8, nonce: u8, hops: u8, len: u8 },
    /// A peer's IHAVE (0), GRAFT (1) or PRUNE (2) of a topic, about a few message ids.
    TopicControl { conn: u8, topic: u8, kind: u8, ids: Vec<u8> },
}

fn config(sign: bool) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = if sign { OriginAuth::Sign } else { OriginAuth::None };
    c.max_sessions = 4;
    c.active_target = 3;
    c.max_preauth = 4;
    c.max_preauth_per_ip = 2;
    c.max_concurrent_dials = 2;
    c.passive_capacity = 8;
    c.seen_capacity = 32;
    c.store_capacity = 8;
    c.max_queue_frames = 4;
    c.credit_window_frames = 4;
    // `Open` grants a 4-frame window (credit backpressure on a short leash); the default
    // minimum (16) would refuse every such session before it runs.
    c.min_peer_window_frames = 4;
    c.max_topics = 3;
    c.max_peer_topics = 2;
    // Probe rounds (RUNNING_PEERS requests, probe dials and swaps) run too.
    c.link_optimization = true;
    c
}

/// The default topic and three others.
fn topic(i: u8) -> TopicId {
    match i % 4 {
        0 => TopicId::DEFAULT,
        1 => TopicId::from_name("a"),
        2 => TopicId::from_name("b"),
        _ => TopicId::from_name("c"),
    }
}

/// A peer's overlay EVENT frame of `kind` in `topic` (topic frames carry the id first).
fn topic_frame(kind: Kind, topic: &TopicId, body: &[u8]) -> Vec<u8> {
    let kind = wire::kind_in_topic(kind, topic);
    let mut full = Vec::with_capacity(TopicId::LEN + body.len());
    if !topic.is_default() {
        full.extend_from_slice(&topic.0);
    }
    full.extend_from_slice(body);
    frame(flags::EVENT, kind.code(), OVERLAY_APP_PROTO_ID, &full)
}

/// The frames of the topic ops, or `None` for any other op.
fn topic_bytes(op: &Op) -> Option<(u8, Vec<u8>)> {
    match op {
        Op::Topics { conn, topics } => {
            let mut ids: Vec<TopicId> = topics.iter().take(8).map(|t| topic(*t)).collect();
            ids.retain(|t| !t.is_default());
            ids.sort();
            ids.dedup();
            let mut body = Vec::new();
            wire::put_topics(&mut body, ids.iter());
            Some((*conn, frame(flags::EVENT, Kind::Topics.code(), OVERLAY_APP_PROTO_ID, &body)))
        }
        Op::TopicPeers { conn, topic: t, entries } => {
            let entries: Vec<PeerEntry> = entries
                .iter()
                .take(20)
                .map(|(p, port)| PeerEntry { peer: peer(*p), addr: addr(*port) })
                .collect();
            let mut body = topic(*t).0.to_vec();
            wire::put_shuffle(&mut body, &entries);
            Some((*conn, frame(flags::EVENT, Kind::TopicPeers.code(), OVERLAY_APP_PROTO_ID, &body)))
        }
        Op::TopicGossip { conn, topic: t, origin, nonce, hops, len } => {
            let (topic, origin, nonce) = (topic(*t), peer(*origin), u64::from(*nonce));
            let payload = vec![5u8; usize::from(*len)];
            // The id binds the topic (what a real member sends; unsigned).
            let id = MessageId::compute_in(&topic, &origin, nonce, &payload);
            let mut body = Vec::new();
            wire::put_gossip_header(&mut body, &id, &origin, nonce, *hops);
            body.extend_from_slice(&payload);
            Some((*conn, topic_frame(Kind::Gossip, &topic, &body)))
        }
        Op::TopicControl { conn, topic: t, kind, ids } => {
            let ids = ids.iter().take(8).map(|i| MessageId([*i; 32]));
            let mut body = Vec::new();
            let kind = match kind % 3 {
                0 => {
                    for id in ids {
                        body.extend_from_slice(&id.0);
                        body.push(1);
                    }
                    Kind::IHave
                }
                1 => {
                    for id in ids {
                        body.extend_from_slice(&id.0);
                    }
                    Kind::Graft
                }
                _ => Kind::Prune,
            };
            Some((*conn, topic_frame(kind, &topic(*t), &body)))
        }
        _ => None,
    }
}

fn peer(i: u8) -> PeerId {
    PeerId([i % 6 + 1; 32])
}

fn conn(i: u8) -> ConnId {
    ConnId(u64::from(i % 6))
}

fn addr(port: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 9000 + u16::from(port % 16)))
}

fn frame(flags: u16, code: u16, app: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(38 + body.len());
    f.extend_from_slice(&((38 + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&flags.to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(&app.to_be_bytes());
    f.extend_from_slice(&[0u8; 16]);
    f.extend_from_slice(&0u16.to_be_bytes());
    f.extend_from_slice(&0u64.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn open_inputs(c: u8, p: u8, graft_miss: bool) -> Vec<Input> {
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: peer(p).to_string(),
            listen: None,
            credit_frames: 4,
            credit_bytes: 1 << 20,
            graft_miss,
            // A peer of this build: it answers RUNNING_PEERS when it says GRAFT_MISS.
            running_peers: graft_miss,
        },
    };
    let Ok(json) = serde_json::to_vec(&hello) else {
        return Vec::new();
    };
    let mut bytes = frame(flags::REQ, 0, 0, &json);
    bytes.extend(frame(flags::START | flags::REQ, 0, OVERLAY_APP_PROTO_ID, &[]));
    vec![
        Input::ConnectionUp {
            conn: conn(c),
            peer: peer(p),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([127, 0, 0, 1], 9000)),
            dial: None,
            kx_group: None,
        },
        Input::Received { conn: conn(c), data: bytes.into() },
    ]
}

/// The inputs of one op, and how far the clock moves before them.
fn inputs(op: &Op) -> (Duration, Vec<Input>) {
    let remote = SocketAddr::from(([127, 0, 0, 1], 9000));
    let one = |input| (Duration::ZERO, vec![input]);
    if let Some((c, data)) = topic_bytes(op) {
        return one(Input::Received { conn: conn(c), data: data.into() });
    }
    match op {
        Op::Up { conn: c, peer: p, outbound, dial } => one(Input::ConnectionUp {
            conn: conn(*c),
            peer: peer(*p),
            direction: if *outbound { Direction::Outbound } else { Direction::Inbound },
            remote,
            dial: dial.map(|d| DialId(u64::from(d % 4))),
            kx_group: None,
        }),
        Op::Open { conn: c, peer: p, graft_miss } => {
            (Duration::ZERO, open_inputs(*c, *p, *graft_miss))
        }
        Op::Bytes { conn: c, data } => {
            one(Input::Received { conn: conn(*c), data: Bytes::copy_from_slice(data) })
        }
        Op::Frame { conn: c, kind, code, flags, overlay_app, body } => {
            // Mostly real overlay kinds, sometimes any code.
            let code = match Kind::ALL.get(usize::from(*kind)) {
                Some(k) => k.code(),
                None => *code,
            };
            let app = if *overlay_app { OVERLAY_APP_PROTO_ID } else { 0 };
            one(Input::Received { conn: conn(*c), data: frame(u16::from(*flags), code, app, body).into() })
        }
        Op::Closed { conn: c, clean } => one(Input::ConnectionClosed {
            conn: conn(*c),
            error: if *clean { None } else { Some(OverlayError::Refused) },
        }),
        Op::Tick { ms } => (Duration::from_millis(u64::from(*ms)), vec![Input::Timeout]),
        Op::Broadcast { len } => one(Input::Broadcast {
            request: u64::from(*len),
            payload: Bytes::from(vec![7u8; usize::from(*len % 4096)]),
        }),
        Op::Direct { peer: p, len } => one(Input::SendDirect {
            request: u64::from(*len),
            peer: peer(*p),
            payload: Bytes::from(vec![9u8; usize::from(*len)]),
        }),
        Op::Dial { port } => one(Input::Dial {
            request: Some(u64::from(*port)),
            addr: addr(*port),
        }),
        Op::DialFailed { dial } => one(Input::DialFailed {
            dial: DialId(u64::from(dial % 4)),
            error: OverlayError::Refused,
        }),
        Op::Discovered { ports } => one(Input::PeersDiscovered {
            addrs: ports.iter().take(16).map(|p| addr(*p)).collect(),
        }),
        Op::Shutdown => one(Input::Shutdown),
        Op::Join { topic: t } => one(Input::Join(topic(*t))),
        Op::Leave { topic: t } => one(Input::Leave(topic(*t))),
        Op::Publish { topic: t, len } => one(Input::Publish {
            request: u64::from(*len),
            topic: topic(*t),
            payload: Bytes::from(vec![3u8; usize::from(*len % 4096)]),
        }),
        Op::Topics { .. }
        | Op::TopicPeers { .. }
        | Op::TopicGossip { .. }
        | Op::TopicControl { .. } => (Duration::ZERO, Vec::new()),
    }
}

/// The neighbours the core reported, per topic: `actions` applied to `neighbors`, checking
/// that nobody comes up twice or goes down without being up.
fn track_neighbors(neighbors: &mut BTreeSet<(TopicId, PeerId)>, actions: &[Action]) {
    for a in actions {
        match a {
            Action::TopicNeighbor { topic, peer, change: NeighborChange::Up } => {
                assert!(neighbors.insert((*topic, *peer)), "up twice: {topic:?} {peer}");
            }
            Action::TopicNeighbor { topic, peer, change: NeighborChange::Down(_) } => {
                assert!(neighbors.remove(&(*topic, *peer)), "down without up: {topic:?} {peer}");
            }
            Action::Left { topic, result: Ok(true) } => neighbors.retain(|(t, _)| t != topic),
            _ => {}
        }
    }
}

/// The reported neighbours are running sessions in topics the node is in; the node's topics
/// stay within `max_topics`, the default one among them.
fn check_topics(node: &Node, cfg: &NodeConfig, neighbors: &BTreeSet<(TopicId, PeerId)>) {
    let topics = node.topics();
    assert!(topics.len() <= cfg.max_topics, "over max_topics: {topics:?}");
    assert!(topics.contains(&TopicId::DEFAULT), "the default topic was left");
    assert_eq!(node.stats().topics_joined, topics.len());
    let running: BTreeSet<PeerId> = node
        .sessions()
        .iter()
        .filter(|s| s.state == SessionState::Running)
        .map(|s| s.peer)
        .collect();
    for (t, p) in neighbors {
        assert!(node.is_joined(t), "a neighbour in a topic the node left: {t:?}");
        assert!(running.contains(p), "a neighbour without a running session: {p}");
    }
}

/// Counters that may only grow.
fn monotonic(s: &NodeStats) -> [u64; 14] {
    [
        s.sessions_opened,
        s.sessions_closed,
        s.handshake_failures,
        s.dials_started,
        s.dials_failed,
        s.dials_refused,
        s.passive_dropped,
        s.frames_in,
        s.frames_out,
        s.bytes_in,
        s.bytes_out,
        s.gossip_delivered,
        s.gossip_sent,
        s.rejected.total(),
    ]
}

fn check(node: &Node, cfg: &NodeConfig, now: Instant, before: &NodeStats) -> NodeStats {
    let s = node.stats();
    // Inbound connections before START live on the pre-auth budget, not on `max_sessions`
    // (fuzz_regressions.rs: handshaking_sessions_stay_within_max_sessions_plus_the_preauth_budget).
    assert!(s.preauth_sessions <= cfg.max_preauth, "pre-auth budget: {s:?}");
    assert!(
        s.sessions_running + s.sessions_handshaking <= cfg.max_sessions + s.preauth_sessions,
        "{s:?}"
    );
    assert!(s.seen_len <= cfg.seen_capacity, "seen cache over capacity");
    assert!(s.store_len <= cfg.store_capacity, "GRAFT store over capacity");
    assert!(
        s.queued_frames <= cfg.max_queue_frames * (cfg.max_sessions + cfg.max_preauth),
        "queued frames"
    );
    // Operator dials (Input::Dial) past the ceiling are refused as Busy; a nearly isolated
    // node whose dials keep failing may have up to four times `max_concurrent_dials`.
    assert!(s.dials_in_flight <= cfg.max_dials_in_flight(), "dials in flight");
    // Discovered and dialed addresses count against the capacity like learned ones.
    assert!(s.passive_peers <= cfg.passive_capacity, "passive list over capacity");
    assert!(s.eager_peers + s.lazy_peers <= s.sessions_running, "tree peers without sessions");
    for info in node.sessions() {
        assert!(info.queued_frames <= cfg.max_queue_frames, "session queue over its bound");
    }
    for (old, new) in monotonic(before).iter().zip(monotonic(&s).iter()) {
        assert!(new >= old, "a counter went down: {before:?} -> {s:?}");
    }
    if let Some(t) = node.poll_timeout() {
        assert!(t >= now || t == Instant::ZERO, "timeout in the past");
    }
    s
}

fn run(sign: bool, ops: &[Op]) -> Vec<Action> {
    let cfg = config(sign);
    let identity = if sign {
        NodeIdentity::from_signing_seed(SigningSeed([0xEE; 32]), None)
    } else {
        NodeIdentity::new(PeerId([0xEE; 32]), None)
    };
    let Ok(mut node) = Node::new(cfg.clone(), identity, 42) else {
        panic!("the fuzz configuration is valid");
    };
    let mut now = Instant::ZERO;
    let mut actions = Vec::new();
    let mut stats = node.stats();
    let mut neighbors = BTreeSet::new();
    for op in ops.iter().take(MAX_STEPS) {
        let (advance, inputs) = inputs(op);
        now += advance;
        let from = actions.len();
        for input in inputs {
            node.handle(now, input);
            while let Some(a) = node.poll_action() {
                actions.push(a);
            }
        }
        stats = check(&node, &cfg, now, &stats);
        track_neighbors(&mut neighbors, actions.get(from..).unwrap_or_default());
        check_topics(&node, &cfg, &neighbors);
    }
    actions
}

// `sign`: the node signs its broadcasts and requires signed GOSSIP (the default), or runs
// with origin authentication off, where the fuzzer's unsigned GOSSIP reaches the tree logic.
fuzz_target!(|input: (bool, Vec<Op>)| {
    let (sign, ops) = input;
    let first = run(sign, &ops);
    let second = run(sign, &ops);
    assert!(first == second, "the same sequence gave different actions");
});
