//! Property tests of the node: arbitrary input sequences never panic, keep every bound, and
//! replay identically.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::{
    Action, ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, OverlayError, PeerId,
};
use proptest::prelude::*;

fn small_config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = overlay_proto::OriginAuth::None;
    c.max_sessions = 4;
    c.active_target = 3;
    c.seen_capacity = 32;
    c.store_capacity = 8;
    c.max_queue_frames = 4;
    c.credit_window_frames = 4;
    // Peers here grant tiny windows on purpose (queues fill quickly).
    c.min_peer_window_frames = 1;
    c
}

#[derive(Debug, Clone)]
enum Op {
    Up {
        conn: u8,
        peer: u8,
        outbound: bool,
    },
    /// Connection up plus a valid HELLO and START from the peer (tokens not required here).
    Open {
        conn: u8,
        peer: u8,
    },
    Bytes {
        conn: u8,
        data: Vec<u8>,
    },
    /// A syntactically valid frame header with arbitrary fields, then a body.
    Frame {
        conn: u8,
        code: u16,
        flags: u16,
        app: u16,
        body: Vec<u8>,
    },
    Closed {
        conn: u8,
    },
    Tick {
        ms: u16,
    },
    Broadcast {
        len: u16,
    },
    Direct {
        peer: u8,
    },
    Dial {
        port: u16,
    },
    Shutdown,
    /// Join, leave or publish to one of a few topics (0 is the default topic).
    Join {
        topic: u8,
    },
    Leave {
        topic: u8,
    },
    Publish {
        topic: u8,
        len: u16,
    },
    /// A TOPIC_* frame naming one of those topics, then an arbitrary body.
    TopicFrame {
        conn: u8,
        kind: u8,
        topic: u8,
        body: Vec<u8>,
    },
    /// A well-formed TOPICS announcement of a set of those topics.
    Topics {
        conn: u8,
        set: u8,
    },
}

/// Topic `t` of the few the properties use (0: the default topic).
fn topic(t: u8) -> overlay_proto::TopicId {
    match t % 4 {
        0 => overlay_proto::TopicId::DEFAULT,
        k => overlay_proto::TopicId::from_name(&format!("t{k}")),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u8..6, any::<bool>()).prop_map(|(conn, peer, outbound)| Op::Up {
            conn,
            peer,
            outbound
        }),
        (0u8..6, 0u8..6).prop_map(|(conn, peer)| Op::Open { conn, peer }),
        (0u8..6, proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(conn, data)| Op::Bytes { conn, data }),
        (
            0u8..6,
            0x0100u16..0x0111,
            prop_oneof![Just(4u16), any::<u16>()],
            prop_oneof![Just(0x4F56u16), Just(0u16), any::<u16>()],
            proptest::collection::vec(any::<u8>(), 0..120)
        )
            .prop_map(|(conn, code, flags, app, body)| Op::Frame {
                conn,
                code,
                flags,
                app,
                body
            }),
        (0u8..6).prop_map(|conn| Op::Closed { conn }),
        (0u16..20_000).prop_map(|ms| Op::Tick { ms }),
        (0u16..3000).prop_map(|len| Op::Broadcast { len }),
        (0u8..6).prop_map(|peer| Op::Direct { peer }),
        (1u16..10).prop_map(|port| Op::Dial { port }),
        Just(Op::Shutdown),
        (0u8..4).prop_map(|topic| Op::Join { topic }),
        (0u8..4).prop_map(|topic| Op::Leave { topic }),
        (0u8..4, 0u16..600).prop_map(|(topic, len)| Op::Publish { topic, len }),
        (
            0u8..6,
            0u8..4,
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..140)
        )
            .prop_map(|(conn, kind, topic, body)| Op::TopicFrame {
                conn,
                kind,
                topic,
                body
            }),
        (0u8..6, any::<u8>()).prop_map(|(conn, set)| Op::Topics { conn, set }),
    ]
}

fn peer(i: u8) -> PeerId {
    PeerId([i.wrapping_add(1); 32])
}

fn frame(flags: u16, code: u16, app: u16, cap: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((38 + cap.len() + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&flags.to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(&app.to_be_bytes());
    f.extend_from_slice(&[0u8; 16]);
    f.extend_from_slice(&(cap.len() as u16).to_be_bytes());
    f.extend_from_slice(&0u64.to_be_bytes());
    f.extend_from_slice(cap);
    f.extend_from_slice(body);
    f
}

fn open_inputs(conn: u8, p: u8) -> Vec<Input> {
    let hello = overlay_proto::wire::HelloRequestBody {
        ua: None,
        overlay: overlay_proto::wire::HelloOverlay {
            overlay: 1,
            peer_id: peer(p).to_string(),
            listen: None,
            credit_frames: 4,
            credit_bytes: 1 << 20,
            graft_miss: false,
            running_peers: false,
        },
    };
    let json = serde_json::to_vec(&hello).unwrap();
    let conn = ConnId(u64::from(conn));
    let mut bytes = frame(0x0001, 0, 0, &[], &json);
    bytes.extend(frame(0x0009, 0, 0x4F56, &[], &[]));
    vec![
        Input::ConnectionUp {
            conn,
            peer: peer(p),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([127, 0, 0, 1], 9000)),
            dial: None,
            kx_group: None,
        },
        Input::Received {
            conn,
            data: bytes.into(),
        },
    ]
}

fn to_inputs(op: &Op) -> Vec<Input> {
    match op {
        Op::Open { conn, peer } => open_inputs(*conn, *peer),
        other => vec![to_input(other)],
    }
}

fn to_input(op: &Op) -> Input {
    let remote = SocketAddr::from(([127, 0, 0, 1], 9000));
    match op.clone() {
        Op::Up {
            conn,
            peer: p,
            outbound,
        } => Input::ConnectionUp {
            conn: ConnId(u64::from(conn)),
            peer: peer(p),
            direction: if outbound {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            remote,
            dial: None,
            kx_group: None,
        },
        Op::Bytes { conn, data } => Input::Received {
            conn: ConnId(u64::from(conn)),
            data: data.into(),
        },
        Op::Frame {
            conn,
            code,
            flags,
            app,
            body,
        } => Input::Received {
            conn: ConnId(u64::from(conn)),
            data: frame(flags, code, app, &[], &body).into(),
        },
        Op::Open { .. } => Input::Timeout,
        Op::Closed { conn } => Input::ConnectionClosed {
            conn: ConnId(u64::from(conn)),
            error: Some(OverlayError::Refused),
        },
        Op::Tick { .. } => Input::Timeout,
        Op::Broadcast { len } => Input::Broadcast {
            request: 1,
            payload: Bytes::from(vec![7u8; len as usize]),
        },
        Op::Direct { peer: p } => Input::SendDirect {
            request: 2,
            peer: peer(p),
            payload: Bytes::from_static(b"d"),
        },
        Op::Dial { port } => Input::Dial {
            request: Some(u64::from(port)),
            addr: SocketAddr::from(([127, 0, 0, 2], port)),
        },
        Op::Shutdown => Input::Shutdown,
        Op::Join { topic: t } => Input::Join(topic(t)),
        Op::Leave { topic: t } => Input::Leave(topic(t)),
        Op::Publish { topic: t, len } => Input::Publish {
            request: 3,
            topic: topic(t),
            payload: Bytes::from(vec![9u8; len as usize]),
        },
        Op::TopicFrame {
            conn,
            kind,
            topic: t,
            body,
        } => {
            use overlay_proto::wire::Kind;
            let kind = [
                Kind::TopicGossip,
                Kind::TopicIHave,
                Kind::TopicGraft,
                Kind::TopicPrune,
            ][usize::from(kind % 4)];
            let mut full = topic(t).0.to_vec();
            full.extend_from_slice(&body);
            Input::Received {
                conn: ConnId(u64::from(conn)),
                data: frame(4, kind.code(), 0x4F56, &[], &full).into(),
            }
        }
        Op::Topics { conn, set } => {
            let mut named: Vec<overlay_proto::TopicId> = (1u8..4)
                .filter(|k| set & (1 << k) != 0)
                .map(topic)
                .collect();
            named.sort();
            let mut body = Vec::new();
            overlay_proto::wire::put_topics(&mut body, named.iter());
            Input::Received {
                conn: ConnId(u64::from(conn)),
                data: frame(
                    4,
                    overlay_proto::wire::Kind::Topics.code(),
                    0x4F56,
                    &[],
                    &body,
                )
                .into(),
            }
        }
    }
}

fn run(ops: &[Op]) -> Vec<Action> {
    let cfg = small_config();
    let identity = NodeIdentity::new(PeerId([0xEE; 32]), None);
    let mut node = Node::new(cfg.clone(), identity, 42).unwrap();
    let mut now = Instant::ZERO;
    let mut all = Vec::new();
    for op in ops {
        if let Op::Tick { ms } = op {
            now += Duration::from_millis(u64::from(*ms));
        }
        for input in to_inputs(op) {
            node.handle(now, input);
            while let Some(a) = node.poll_action() {
                // A topic's message is delivered only while the node is in the topic.
                if let Action::Deliver(d) = &a {
                    assert!(node.is_joined(&d.topic), "delivery outside a joined topic");
                }
                all.push(a);
            }
        }
        let s = node.stats();
        assert!(s.topics_joined >= 1 && s.topics_joined <= cfg.max_topics);
        assert!(node.is_joined(&overlay_proto::TopicId::DEFAULT));
        // Running sessions and our own handshaking dials count toward max_sessions; inbound
        // connections before START live on the pre-auth budget.
        let outbound_handshaking = s.sessions_handshaking - s.preauth_sessions;
        assert!(s.sessions_running + outbound_handshaking <= cfg.max_sessions);
        assert!(s.preauth_sessions <= cfg.max_preauth);
        assert!(s.seen_len <= cfg.seen_capacity);
        assert!(s.store_len <= cfg.store_capacity);
        assert!(s.queued_frames <= cfg.max_queue_frames * cfg.max_sessions);
        for info in node.sessions() {
            assert!(info.queued_frames <= cfg.max_queue_frames);
        }
        if let Some(t) = node.poll_timeout() {
            assert!(
                t >= now || t == Instant::ZERO,
                "timeouts never point into the past"
            );
        }
    }
    all
}

#[test]
fn the_open_op_really_opens_a_session() {
    let actions = run(&[Op::Open { conn: 1, peer: 1 }, Op::Broadcast { len: 10 }]);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Session(overlay_proto::SessionEvent::Up { .. }))));
    assert!(actions.iter().any(|a| matches!(a, Action::Transmit { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_inputs_never_panic_keep_bounds_and_replay_identically(ops in proptest::collection::vec(op(), 0..80)) {
        let first = run(&ops);
        let second = run(&ops);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn random_mesh_operations_keep_invariants(seed in 0u64..1000, steps in proptest::collection::vec((0u8..4, 0usize..8, 1u64..400), 1..25)) {
        let cfg = MeshConfig { nodes: 8, seed, ..MeshConfig::default() };
        let max_queue = cfg.node_config.max_queue_frames;
        let mut m = Mesh::new(cfg).unwrap();
        m.run_for(Duration::from_secs(2));
        for (what, node, ms) in steps {
            match what {
                0 => { let _ = m.broadcast(node, Bytes::from(vec![1u8; 64])); }
                1 => m.kill(node),
                2 => m.set_stalled(node, ms % 2 == 0),
                _ => {}
            }
            m.run_for(Duration::from_millis(ms));
            for i in 0..m.len() {
                if let Some(n) = m.node(i) {
                    for s in n.sessions() {
                        prop_assert!(s.queued_frames <= max_queue);
                    }
                    prop_assert!(n.stats().sessions_running <= n.config().max_sessions);
                }
            }
        }
    }
}
