//! Client sessions in the core (issue #9): a connection without a certificate runs the
//! reference HELLO and START with a token, then PUBLISH / SUBSCRIBE / DIRECT; the node answers,
//! originates the gossip, delivers to subscribers and reports LAGGED. Every refusal is typed
//! and counted; a client never becomes a gossip peer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

mod support;

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::capability::{peer_caveat, Caveat};
use overlay_proto::client::{
    ClientEvent, ClientRejectReason, CODE_DELIVER, CODE_LAGGED, CODE_PUBLISH, CODE_SUBSCRIBE,
    CODE_UNSUBSCRIBE,
};
use overlay_proto::frame::{flags, Frame, FrameParser};
use overlay_proto::wire::Kind;
use overlay_proto::{
    Action, CloseReason, ConnId, Direction, Input, Instant, MacKey, Node, NodeConfig, NodeIdentity,
    PeerId,
};
use std::collections::BTreeMap;
use support::{encode, node, token, token_with_key, NOW_UNIX};

const APP: u16 = 0x4F56;

fn config() -> NodeConfig {
    support::token_config()
}

fn hello(payload: &str) -> Bytes {
    encode(flags::REQ, 0, 0, 1, &[], payload.as_bytes())
}

fn start(token: &str) -> Bytes {
    encode(flags::START | flags::REQ, 0, APP, 2, token.as_bytes(), &[])
}

fn request(code: u16, corr: u64, payload: &[u8]) -> Bytes {
    encode(flags::REQ, code, APP, corr, &[], payload)
}

fn event(code: u16, payload: &[u8]) -> Bytes {
    encode(flags::EVENT, code, APP, 0, &[], payload)
}

fn credit(frames: u32, bytes: u32) -> Bytes {
    let mut body = frames.to_be_bytes().to_vec();
    body.extend_from_slice(&bytes.to_be_bytes());
    event(Kind::Credit.code(), &body)
}

/// What one client connection saw.
#[derive(Default)]
struct ClientEnd {
    parser: FrameParser,
    frames: Vec<Frame>,
    closed: Option<CloseReason>,
}

/// Nodes joined by peer links, plus client connections; moves bytes until quiet.
struct World {
    nodes: Vec<Node>,
    now: Instant,
    /// (node, conn) → (node, conn) for peer links.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    clients: BTreeMap<(usize, ConnId), ClientEnd>,
    actions: Vec<Vec<Action>>,
}

impl World {
    fn new(configs: Vec<NodeConfig>) -> World {
        let n = configs.len();
        World {
            nodes: configs
                .into_iter()
                .enumerate()
                .map(|(i, c)| node(i as u8 + 1, c))
                .collect(),
            now: Instant::ZERO,
            links: BTreeMap::new(),
            clients: BTreeMap::new(),
            actions: vec![Vec::new(); n],
        }
    }

    /// A peer session: node `a` dials node `b`.
    fn link(&mut self, a: usize, b: usize, conn_a: u64, conn_b: u64) {
        let (ca, cb) = (ConnId(conn_a), ConnId(conn_b));
        self.links.insert((a, ca), (b, cb));
        self.links.insert((b, cb), (a, ca));
        let (ida, idb) = (
            self.nodes[a].identity().peer_id,
            self.nodes[b].identity().peer_id,
        );
        let remote = SocketAddr::from(([127, 0, 0, 50], 50_000));
        self.nodes[b].handle(
            self.now,
            Input::ConnectionUp {
                conn: cb,
                peer: ida,
                direction: Direction::Inbound,
                remote,
                dial: None,
                kx_group: None,
            },
        );
        self.nodes[a].handle(
            self.now,
            Input::ConnectionUp {
                conn: ca,
                peer: idb,
                direction: Direction::Outbound,
                remote,
                dial: None,
                kx_group: None,
            },
        );
        self.pump();
    }

    fn client_up(&mut self, n: usize, conn: u64) -> ConnId {
        let conn = ConnId(conn);
        self.clients.insert((n, conn), ClientEnd::default());
        self.nodes[n].handle(
            self.now,
            Input::ClientConnectionUp {
                conn,
                remote: SocketAddr::from(([127, 0, 0, 99], 40_000 + conn.0 as u16)),
                kx_group: Some("X25519MLKEM768".into()),
            },
        );
        self.pump();
        conn
    }

    /// HELLO (reference form) and START with `tok`.
    fn open_client(&mut self, n: usize, conn: u64, tok: &str) -> ConnId {
        let conn = self.client_up(n, conn);
        self.send(n, conn, hello(r#"{"ua":"test-client/1"}"#));
        self.send(n, conn, start(tok));
        conn
    }

    fn send(&mut self, n: usize, conn: ConnId, data: Bytes) {
        self.nodes[n].handle(self.now, Input::Received { conn, data });
        self.pump();
    }

    fn input(&mut self, n: usize, input: Input) {
        self.nodes[n].handle(self.now, input);
        self.pump();
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(50);
            for n in 0..self.nodes.len() {
                self.nodes[n].handle(self.now, Input::Timeout);
            }
            self.pump();
        }
    }

    fn pump(&mut self) {
        for _ in 0..256 {
            let mut moved = false;
            for n in 0..self.nodes.len() {
                while let Some(action) = self.nodes[n].poll_action() {
                    moved = true;
                    match &action {
                        Action::Transmit { conn, data } => {
                            if let Some(&(m, other)) = self.links.get(&(n, *conn)) {
                                self.nodes[m].handle(
                                    self.now,
                                    Input::Received {
                                        conn: other,
                                        data: data.to_bytes(),
                                    },
                                );
                            } else if let Some(end) = self.clients.get_mut(&(n, *conn)) {
                                end.parser.push(&data.to_bytes()).unwrap();
                                end.frames.extend(end.parser.drain().unwrap());
                            }
                        }
                        Action::Close { conn, reason, .. } => {
                            if let Some(&(m, other)) = self.links.get(&(n, *conn)) {
                                self.nodes[m].handle(
                                    self.now,
                                    Input::ConnectionClosed {
                                        conn: other,
                                        error: None,
                                    },
                                );
                            } else if let Some(end) = self.clients.get_mut(&(n, *conn)) {
                                end.closed = Some(*reason);
                            }
                        }
                        _ => {}
                    }
                    self.actions[n].push(action);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn frames(&self, n: usize, conn: ConnId) -> &[Frame] {
        &self.clients[&(n, conn)].frames
    }

    fn closed(&self, n: usize, conn: ConnId) -> Option<CloseReason> {
        self.clients[&(n, conn)].closed
    }

    /// The answer to request `corr`: (code, payload text).
    fn answer(&self, n: usize, conn: ConnId, corr: u64) -> Option<(u16, String)> {
        self.frames(n, conn).iter().find_map(|f| {
            (f.header.flags & flags::RESP != 0 && f.header.corr_id == corr).then(|| {
                (
                    f.header.code,
                    String::from_utf8(f.payload.clone().unwrap_or_default().to_vec()).unwrap(),
                )
            })
        })
    }

    fn deliveries(&self, n: usize, conn: ConnId) -> Vec<(PeerId, u8, Bytes)> {
        self.frames(n, conn)
            .iter()
            .filter(|f| f.header.flags == flags::EVENT && f.header.code == CODE_DELIVER)
            .map(|f| {
                let body = f.payload.clone().unwrap();
                let mut origin = [0u8; 32];
                origin.copy_from_slice(&body[32..64]);
                (PeerId(origin), body[64], body.slice(65..))
            })
            .collect()
    }

    /// The last frame the client saw: an error close's code and label.
    fn error_close(&self, n: usize, conn: ConnId) -> Option<(u16, String)> {
        let f = self.frames(n, conn).last()?;
        (f.header.flags == flags::RESP | flags::END).then(|| {
            (
                f.header.code,
                String::from_utf8(f.payload.clone().unwrap_or_default().to_vec()).unwrap(),
            )
        })
    }
}

fn open_token() -> String {
    token(vec![Caveat::Exp(NOW_UNIX + 3600)], &[], None)
}

#[test]
fn reference_hello_is_answered_with_the_reference_keys_then_ours() {
    let mut w = World::new(vec![config()]);
    let c = w.client_up(0, 10);
    w.send(0, c, hello(r#"{"ua":"ref/1","something_new":[1,2]}"#));
    let reply = &w.frames(0, c)[0];
    assert_eq!(reply.header.flags, flags::RESP);
    assert_eq!(reply.header.code, 200);
    assert_eq!(reply.header.corr_id, 1);
    assert_eq!(reply.header.app_proto_id, 0);
    let text = String::from_utf8(reply.payload.clone().unwrap().to_vec()).unwrap();
    let expected = format!(
        "{{\"max_frame\":1048576,\"max_inflight\":256,\"flags_supported\":255,\"versions\":[1],\
         \"transports\":[\"tcp+tls\"],\"credit_bytes\":4194304,\"credit_frames\":256,\"overlay\":1,\
         \"peer_id\":\"{}\",\"session\":\"client\"}}",
        PeerId([1; 32])
    );
    assert_eq!(text, expected);
}

#[test]
fn start_with_a_token_opens_a_client_that_is_never_a_peer() {
    let mut w = World::new(vec![config()]);
    let c = w.open_client(0, 10, &open_token());
    let started = &w.frames(0, c)[1];
    assert_eq!(started.header.flags, flags::START | flags::RESP);
    assert_eq!((started.header.code, started.header.corr_id), (200, 2));
    assert!(started.cap.is_none());
    assert!(w.actions[0]
        .iter()
        .any(|a| matches!(a, Action::Client(ClientEvent::Up { conn, .. }) if *conn == c)));
    let stats = w.nodes[0].stats();
    assert_eq!((stats.clients.sessions, stats.clients.opened), (1, 1));
    assert_eq!(stats.sessions_running, 0);
    assert_eq!(stats.preauth_sessions, 0);
    assert!(w.nodes[0].sessions().is_empty());
    assert!(w.nodes[0].running_peers().is_empty());
    assert_eq!(w.nodes[0].clients().len(), 1);
    // Idle clients get no heartbeats from the node.
    let before = w.frames(0, c).len();
    w.advance(Duration::from_secs(5));
    assert_eq!(w.frames(0, c).len(), before);
}

#[test]
fn bad_tokens_are_refused_with_typed_errors() {
    let peer_bound = token(vec![peer_caveat(&PeerId([9; 32]))], &[], None);
    let wrong_key = token_with_key(&MacKey([8; 32]), vec![], &[], None);
    let expired = token(vec![Caveat::Exp(NOW_UNIX - 3600)], &[], None);
    let cases = [
        (peer_bound.as_str(), 403, "wrong_peer"),
        (wrong_key.as_str(), 401, "unauth"),
        (expired.as_str(), 401, "unauth"),
        ("", 401, "unauth"),
    ];
    for (i, (tok, code, label)) in cases.into_iter().enumerate() {
        let mut w = World::new(vec![config()]);
        let c = w.open_client(0, 10 + i as u64, tok);
        assert_eq!(
            w.error_close(0, c),
            Some((code, format!("{{\"error\":\"{label}\"}}"))),
            "case {i}"
        );
        assert!(w.closed(0, c).is_some());
        assert_eq!(w.nodes[0].stats().clients.sessions, 0);
        assert_eq!(w.nodes[0].stats().preauth_sessions, 0);
    }
}

#[test]
fn a_peer_hello_without_a_certificate_is_refused() {
    let mut w = World::new(vec![config()]);
    let c = w.client_up(0, 10);
    let body = format!(
        r#"{{"ua":"x","overlay":1,"peer_id":"{}","credit_frames":512,"credit_bytes":8388608}}"#,
        PeerId([5; 32])
    );
    w.send(0, c, hello(&body));
    assert_eq!(
        w.error_close(0, c),
        Some((401, r#"{"error":"certificate_required"}"#.into()))
    );
}

#[test]
fn publish_originates_gossip_that_reaches_a_subscriber_on_another_node() {
    let mut w = World::new(vec![config(), config()]);
    w.link(0, 1, 1, 2);
    let tok = open_token();
    let publisher = w.open_client(0, 10, &tok);
    let subscriber = w.open_client(1, 20, &tok);
    let local = w.open_client(0, 11, &tok);
    w.send(1, subscriber, request(CODE_SUBSCRIBE, 3, b""));
    w.send(0, local, request(CODE_SUBSCRIBE, 3, b""));
    assert_eq!(w.answer(1, subscriber, 3), Some((200, "{}".into())));
    w.send(0, publisher, request(CODE_PUBLISH, 3, b"hello clients"));
    let (code, body) = w.answer(0, publisher, 3).unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    // Node B delivered it (hops 1, origin node A) to its application and to its client.
    let a_id = PeerId([1; 32]);
    assert!(w.actions[1].iter().any(|a| matches!(a,
        Action::Deliver(d) if d.origin == a_id && &d.payload[..] == b"hello clients")));
    assert_eq!(
        w.deliveries(1, subscriber),
        vec![(a_id, 1, Bytes::from_static(b"hello clients"))]
    );
    // The other client of node A gets it too (hops 0); the publisher does not.
    assert_eq!(
        w.deliveries(0, local),
        vec![(a_id, 0, Bytes::from_static(b"hello clients"))]
    );
    assert!(w.deliveries(0, publisher).is_empty());
    let stats = w.nodes[0].stats();
    assert_eq!((stats.clients.published, stats.gossip_originated), (1, 1));
    // The node's own application broadcasts reach subscribers too; UNSUBSCRIBE stops them.
    w.send(1, subscriber, request(CODE_UNSUBSCRIBE, 4, b""));
    w.input(
        0,
        Input::Broadcast {
            request: 1,
            payload: Bytes::from_static(b"from the app"),
        },
    );
    assert_eq!(w.deliveries(1, subscriber).len(), 1);
    assert_eq!(w.deliveries(0, local).len(), 2);
}

#[test]
fn subscribers_share_one_copy_of_a_delivered_payload() {
    let mut w = World::new(vec![config()]);
    let tok = open_token();
    let a = w.open_client(0, 10, &tok);
    let b = w.open_client(0, 11, &tok);
    for c in [a, b] {
        w.send(0, c, request(CODE_SUBSCRIBE, 3, b""));
        assert_eq!(w.answer(0, c, 3), Some((200, "{}".into())));
    }
    w.actions[0].clear();
    let payload = Bytes::from(vec![0x42; 1024]);
    w.input(
        0,
        Input::Broadcast {
            request: 1,
            payload: payload.clone(),
        },
    );
    // Each subscriber's transmit carries the payload as a piece, and it is the same
    // allocation for both (no copy per subscriber).
    let piece = |conn: ConnId| {
        w.actions[0]
            .iter()
            .filter_map(|act| match act {
                Action::Transmit { conn: c, data } if *c == conn => Some(data.pieces().to_vec()),
                _ => None,
            })
            .flatten()
            .find(|p| p[..] == payload[..])
            .map(|p| p.as_ptr())
    };
    let (pa, pb) = (piece(a), piece(b));
    assert!(pa.is_some(), "the payload is a piece of the transmit");
    assert_eq!(pa, pb);
    let origin = PeerId([1; 32]);
    for c in [a, b] {
        assert_eq!(w.deliveries(0, c), vec![(origin, 0, payload.clone())]);
    }
}

#[test]
fn token_methods_limit_what_a_client_may_do_and_errors_keep_the_session() {
    let mut w = World::new(vec![config()]);
    let tok = token(vec![], &["subscribe"], None);
    let c = w.open_client(0, 10, &tok);
    w.send(0, c, request(CODE_PUBLISH, 3, b"nope"));
    assert_eq!(
        w.answer(0, c, 3),
        Some((403, r#"{"error":"forbidden"}"#.into()))
    );
    w.send(0, c, request(CODE_SUBSCRIBE, 4, b""));
    assert_eq!(w.answer(0, c, 4), Some((200, "{}".into())));
    assert!(w.closed(0, c).is_none());
    // DIRECT is not allowed either: an event has no answer, so it closes.
    w.send(0, c, event(Kind::Direct.code(), b"x"));
    assert_eq!(
        w.error_close(0, c),
        Some((403, r#"{"error":"forbidden"}"#.into()))
    );
    let stats = w.nodes[0].stats().clients;
    assert_eq!(stats.rejected.get(ClientRejectReason::Forbidden), 2);
}

#[test]
fn a_token_for_another_topic_allows_neither_publish_nor_subscribe() {
    // Client sessions publish and subscribe in the default topic; a token that names only
    // another topic (`PathPrefix("/topics/chat")`) opens a session that may do neither.
    let mut w = World::new(vec![config()]);
    let tok = token(vec![Caveat::PathPrefix("/topics/chat".into())], &[], None);
    let c = w.open_client(0, 10, &tok);
    for (code, corr) in [(CODE_PUBLISH, 3), (CODE_SUBSCRIBE, 4)] {
        w.send(0, c, request(code, corr, b"x"));
        assert_eq!(
            w.answer(0, c, corr),
            Some((403, r#"{"error":"forbidden"}"#.into()))
        );
    }
    // A token for the default topic's path allows both.
    let tok = token(
        vec![Caveat::PathPrefix("/topics/default".into())],
        &[],
        None,
    );
    let c = w.open_client(0, 11, &tok);
    w.send(0, c, request(CODE_SUBSCRIBE, 5, b""));
    assert_eq!(w.answer(0, c, 5), Some((200, "{}".into())));
}

#[test]
fn oversized_publish_is_answered_413_without_buffering_and_the_session_goes_on() {
    let mut w = World::new(vec![config()]);
    let tok = token(vec![Caveat::BytesLe(100)], &[], Some(1000));
    let c = w.open_client(0, 10, &tok);
    let big = request(CODE_PUBLISH, 3, &[7u8; 4000]);
    // In three pieces: the header decides, the rest is dropped as it arrives.
    w.send(0, c, big.slice(..50));
    assert_eq!(
        w.answer(0, c, 3),
        Some((413, r#"{"error":"too_large"}"#.into()))
    );
    w.send(0, c, big.slice(50..2000));
    let mut tail = big.slice(2000..).to_vec();
    tail.extend_from_slice(&request(CODE_PUBLISH, 4, &[1u8; 100]));
    w.send(0, c, Bytes::from(tail));
    assert_eq!(w.answer(0, c, 4).map(|a| a.0), Some(200));
    assert!(w.closed(0, c).is_none());
}

#[test]
fn rate_caveat_limits_publishes_with_429() {
    let mut w = World::new(vec![config()]);
    let tok = token(vec![Caveat::Rate { per_s: 1, burst: 1 }], &[], None);
    let c = w.open_client(0, 10, &tok);
    w.send(0, c, request(CODE_PUBLISH, 3, b"a"));
    w.send(0, c, request(CODE_PUBLISH, 4, b"b"));
    assert_eq!(w.answer(0, c, 3).map(|a| a.0), Some(200));
    assert_eq!(w.answer(0, c, 4), Some((429, r#"{"error":"rate"}"#.into())));
    w.advance(Duration::from_millis(1100));
    w.send(0, c, request(CODE_PUBLISH, 5, b"c"));
    assert_eq!(w.answer(0, c, 5).map(|a| a.0), Some(200));
}

#[test]
fn a_token_that_expires_mid_session_closes_it_401() {
    let mut cfg = config();
    cfg.clients.idle_timeout = Duration::from_secs(600);
    let mut w = World::new(vec![cfg]);
    let tok = token(vec![Caveat::Exp(NOW_UNIX + 2)], &[], None);
    let c = w.open_client(0, 10, &tok);
    w.send(0, c, request(CODE_SUBSCRIBE, 3, b""));
    assert!(w.closed(0, c).is_none());
    w.advance(Duration::from_secs(70));
    assert_eq!(
        w.error_close(0, c),
        Some((401, r#"{"error":"expired"}"#.into()))
    );
    assert!(w.actions[0].iter().any(|a| matches!(
        a,
        Action::Client(ClientEvent::Down {
            reason: CloseReason::TokenExpired,
            ..
        })
    )));
}

#[test]
fn a_slow_subscriber_gets_lagged_instead_of_unbounded_queues() {
    let mut cfg = config();
    cfg.clients.queue_frames = 4;
    let mut w = World::new(vec![cfg]);
    let c = w.client_up(0, 10);
    // The client grants the minimum window: 16 frames.
    w.send(
        0,
        c,
        hello(r#"{"ua":"slow","credit_frames":16,"credit_bytes":65536}"#),
    );
    w.send(0, c, start(&open_token()));
    w.send(0, c, request(CODE_SUBSCRIBE, 3, b""));
    for i in 0..40u8 {
        w.input(
            0,
            Input::Broadcast {
                request: u64::from(i),
                payload: Bytes::from(vec![i; 10]),
            },
        );
    }
    // 16 frames of window: START is not counted; the SUBSCRIBE answer and 15 deliveries went
    // out, 4 are queued, the rest dropped.
    assert_eq!(w.deliveries(0, c).len(), 15);
    let lagged = w.nodes[0].stats().clients.lagged;
    assert_eq!(lagged, 40 - 15 - 4);
    w.send(0, c, credit(16, 65536));
    let frames = w.frames(0, c);
    let lag = frames
        .iter()
        .find(|f| f.header.code == CODE_LAGGED)
        .expect("LAGGED after credit");
    assert_eq!(lag.payload.as_deref(), Some(&lagged.to_be_bytes()[..]));
    assert_eq!(w.deliveries(0, c).len(), 19);
    // The next delivery follows the LAGGED report.
    w.input(
        0,
        Input::Broadcast {
            request: 99,
            payload: Bytes::from_static(b"after"),
        },
    );
    assert_eq!(
        w.deliveries(0, c).last().unwrap().2,
        Bytes::from_static(b"after")
    );
}

#[test]
fn max_clients_refuses_the_next_start_with_503() {
    let mut cfg = config();
    cfg.clients.max_clients = 1;
    let mut w = World::new(vec![cfg]);
    let tok = open_token();
    let first = w.open_client(0, 10, &tok);
    let second = w.open_client(0, 11, &tok);
    assert!(w.closed(0, first).is_none());
    assert_eq!(
        w.error_close(0, second),
        Some((503, r#"{"error":"max_clients"}"#.into()))
    );
}

#[test]
fn direct_both_ways_and_ping() {
    let mut w = World::new(vec![config()]);
    let c = w.open_client(0, 10, &open_token());
    w.send(0, c, event(Kind::Direct.code(), b"to the node"));
    assert!(w.actions[0].iter().any(|a| matches!(a,
        Action::ClientMessage { client, payload } if *client == c && &payload[..] == b"to the node")));
    w.input(
        0,
        Input::SendToClient {
            request: 5,
            client: c,
            payload: Bytes::from_static(b"to the client"),
        },
    );
    assert!(w.actions[0].iter().any(|a| matches!(
        a,
        Action::SendResult {
            request: 5,
            result: Ok(())
        }
    )));
    let direct = w
        .frames(0, c)
        .iter()
        .find(|f| f.header.code == Kind::Direct.code())
        .unwrap();
    assert_eq!(direct.header.flags, flags::EVENT);
    assert_eq!(direct.payload.as_deref(), Some(&b"to the client"[..]));
    w.input(
        0,
        Input::SendToClient {
            request: 6,
            client: ConnId(77),
            payload: Bytes::from_static(b"x"),
        },
    );
    assert!(w.actions[0].iter().any(|a| matches!(
        a,
        Action::SendResult {
            request: 6,
            result: Err(overlay_proto::OverlayError::NotConnected)
        }
    )));
    w.send(0, c, event(Kind::Ping.code(), b""));
    assert_eq!(
        w.frames(0, c).last().unwrap().header.code,
        Kind::Pong.code()
    );
}

#[test]
fn idle_clients_are_closed_and_credit_violations_are_fatal() {
    let mut w = World::new(vec![config()]);
    let c = w.open_client(0, 10, &open_token());
    w.advance(Duration::from_secs(61));
    assert_eq!(
        w.error_close(0, c),
        Some((408, r#"{"error":"idle"}"#.into()))
    );
    // The node grants 2 frames; three frames in one read exceed it before any CREDIT.
    let mut cfg = config();
    cfg.clients.window_frames = 2;
    let mut w = World::new(vec![cfg]);
    let c = w.open_client(0, 12, &open_token());
    let ping = event(Kind::Ping.code(), b"");
    w.send(0, c, ping.clone());
    w.send(0, c, ping.clone());
    assert!(
        w.closed(0, c).is_none(),
        "credit comes back once half is used"
    );
    let three: Vec<u8> = [&ping[..], &ping[..], &ping[..]].concat();
    w.send(0, c, Bytes::from(three));
    assert_eq!(
        w.error_close(0, c),
        Some((429, r#"{"error":"credit_violation"}"#.into()))
    );
    let stats = w.nodes[0].stats().clients;
    assert_eq!(stats.rejected.get(ClientRejectReason::Credits), 1);
}

#[test]
fn handshake_timeout_and_frames_before_start() {
    let mut w = World::new(vec![config()]);
    let c = w.client_up(0, 10);
    w.advance(Duration::from_secs(6));
    assert_eq!(
        w.error_close(0, c),
        Some((408, r#"{"error":"handshake_timeout"}"#.into()))
    );
    assert_eq!(w.nodes[0].stats().preauth_sessions, 0);
    let c = w.client_up(0, 11);
    w.send(0, c, hello(r#"{"ua":null}"#));
    w.send(0, c, request(CODE_PUBLISH, 3, b"early"));
    assert_eq!(
        w.error_close(0, c),
        Some((401, r#"{"error":"unauth"}"#.into()))
    );
}

#[test]
fn shutdown_closes_clients_with_503() {
    let mut w = World::new(vec![config()]);
    let c = w.open_client(0, 10, &open_token());
    w.input(0, Input::Shutdown);
    assert_eq!(
        w.error_close(0, c),
        Some((503, r#"{"error":"shutdown"}"#.into()))
    );
    assert!(w.actions[0]
        .iter()
        .any(|a| matches!(a, Action::ShutdownComplete)));
}

#[test]
fn a_reference_hello_on_a_connection_with_a_certificate_makes_a_client_session() {
    let mut w = World::new(vec![config()]);
    let conn = ConnId(30);
    w.clients.insert((0, conn), ClientEnd::default());
    w.input(
        0,
        Input::ConnectionUp {
            conn,
            peer: PeerId([42; 32]),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([127, 0, 0, 42], 40_000)),
            dial: None,
            kx_group: None,
        },
    );
    // HELLO split across two reads, START in the second one.
    let hello = hello(r#"{"ua":"reference-client/1"}"#);
    w.send(0, conn, hello.slice(..20));
    let mut rest = hello.slice(20..).to_vec();
    rest.extend_from_slice(&start(&open_token()));
    rest.extend_from_slice(&request(CODE_SUBSCRIBE, 3, b""));
    w.send(0, conn, Bytes::from(rest));
    let reply = String::from_utf8(w.frames(0, conn)[0].payload.clone().unwrap().to_vec()).unwrap();
    assert!(reply.ends_with(r#""session":"client"}"#), "{reply}");
    assert_eq!(w.answer(0, conn, 3), Some((200, "{}".into())));
    let stats = w.nodes[0].stats();
    assert_eq!(stats.clients.sessions, 1);
    assert_eq!(stats.clients.from_certificate, 1);
    assert_eq!(stats.preauth_sessions, 0);
    assert!(w.nodes[0].sessions().is_empty(), "not a peer");
    // A peer HELLO on such a connection still opens a peer session (covered in handshake.rs);
    // here: bytes that are not a HELLO at all stay on the peer path and are refused.
    let other = ConnId(31);
    w.clients.insert((0, other), ClientEnd::default());
    w.input(
        0,
        Input::ConnectionUp {
            conn: other,
            peer: PeerId([43; 32]),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([127, 0, 0, 43], 40_000)),
            dial: None,
            kx_group: None,
        },
    );
    w.send(0, other, request(CODE_PUBLISH, 3, b"x"));
    assert!(w.closed(0, other).is_some());
    assert_eq!(w.nodes[0].stats().clients.from_certificate, 1);
}

#[test]
fn a_trace_with_client_sessions_replays_and_version_2_traces_still_open() {
    use overlay_proto::trace::{
        Replayer, TraceHeader, TraceReader, TraceWriter, TRACE_FORMAT_VERSION,
    };
    let header = TraceHeader::new(config(), NodeIdentity::new(PeerId([1; 32]), None), 5);
    assert_eq!(header.format_version, TRACE_FORMAT_VERSION);
    let mut writer = TraceWriter::new(Vec::new(), &header).unwrap();
    let mut node = header.build_node().unwrap();
    let mut now = Instant::ZERO;
    let conn = ConnId(3);
    let mut inputs = vec![
        Input::ClientConnectionUp {
            conn,
            remote: SocketAddr::from(([127, 0, 0, 9], 4000)),
            kx_group: None,
        },
        Input::Received {
            conn,
            data: hello(r#"{"ua":"t"}"#),
        },
        Input::Received {
            conn,
            data: start(&open_token()),
        },
        Input::Received {
            conn,
            data: request(CODE_SUBSCRIBE, 3, b""),
        },
        Input::Received {
            conn,
            data: request(CODE_PUBLISH, 4, b"traced"),
        },
        Input::SendToClient {
            request: 1,
            client: conn,
            payload: Bytes::from_static(b"direct"),
        },
        Input::Broadcast {
            request: 2,
            payload: Bytes::from_static(b"app"),
        },
    ];
    inputs.push(Input::Timeout);
    let mut clients_up = 0;
    for input in inputs {
        now += Duration::from_millis(5);
        node.handle(now, input.clone());
        let mut actions = Vec::new();
        while let Some(a) = node.poll_action() {
            clients_up += usize::from(matches!(a, Action::Client(ClientEvent::Up { .. })));
            actions.push(a);
        }
        writer.record(now, &input, &actions).unwrap();
    }
    assert_eq!(clients_up, 1);
    let bytes = writer.into_inner();
    let (mut reader, header) = TraceReader::open(&bytes[..]).unwrap();
    let mut replayer = Replayer::new(&header).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        replayer.step(&record).unwrap();
    }
    assert_eq!(replayer.inputs(), 8);
    // A version-2 header (written before client sessions existed) is refused: this build's
    // HELLO differs from the one that recorded it (see TRACE_FORMAT_OLDEST).
    let mut old = header.clone();
    old.format_version = 2;
    let v2 = TraceWriter::new(Vec::new(), &old).unwrap().into_inner();
    assert!(TraceReader::open(&v2[..]).is_err());
    let mut future = header;
    future.format_version = TRACE_FORMAT_VERSION + 1;
    let v_next = TraceWriter::new(Vec::new(), &future).unwrap().into_inner();
    assert!(TraceReader::open(&v_next[..]).is_err());
}

#[test]
fn half_sent_frames_of_all_clients_share_one_byte_budget() {
    let mut cfg = config();
    cfg.clients.max_buffered_bytes = 1 << 20;
    let mut w = World::new(vec![cfg]);
    let tok = open_token();
    let a = w.open_client(0, 10, &tok);
    let b = w.open_client(0, 11, &tok);
    let big_a = request(CODE_PUBLISH, 3, &vec![1u8; 800_000]);
    let big_b = request(CODE_PUBLISH, 3, &vec![2u8; 800_000]);
    // A holds 700 kB of a frame: within the budget.
    w.send(0, a, big_a.slice(..700_000));
    assert!(w.closed(0, a).is_none());
    assert_eq!(w.nodes[0].stats().clients.buffered_bytes, 700_000);
    // B's 400 kB would take the total past 1 MiB: B is closed, A goes on.
    w.send(0, b, big_b.slice(..400_000));
    assert_eq!(
        w.error_close(0, b),
        Some((503, r#"{"error":"busy"}"#.into()))
    );
    assert_eq!(w.nodes[0].stats().clients.buffered_bytes, 700_000);
    w.send(0, a, big_a.slice(700_000..));
    assert_eq!(w.answer(0, a, 3).map(|x| x.0), Some(200));
    assert_eq!(w.nodes[0].stats().clients.buffered_bytes, 0);
    assert!(w.closed(0, a).is_none());
}

/// `svc-overlay token mint --method overlay` (docs/DEPLOY.md) puts `overlay` in the scope's
/// methods and in a `Method` caveat (the reference verifier needs it there for a session to
/// open): it names no operation, so it restricts none. Naming operations restricts to them.
#[test]
fn methods_that_name_no_operation_restrict_nothing() {
    let mut c = config();
    c.auth.own_token = Some(
        token(
            vec![Caveat::Method(vec!["overlay".into()])],
            &["overlay"],
            None,
        )
        .into(),
    );
    let mut w = World::new(vec![c.clone(), c]);
    w.link(0, 1, 1, 2);
    w.input(
        0,
        Input::Broadcast {
            request: 1,
            payload: Bytes::from_static(b"x"),
        },
    );
    assert!(w.actions[1].iter().any(|a| matches!(a, Action::Deliver(_))));
    assert!(!w.actions[1]
        .iter()
        .any(|a| matches!(a, Action::Close { .. })));
    // A client token minted with `--method overlay --method publish`: publish only.
    let tok = token(
        vec![Caveat::Method(vec!["overlay".into(), "publish".into()])],
        &["overlay", "publish"],
        None,
    );
    let cl = w.open_client(0, 10, &tok);
    w.send(0, cl, request(CODE_PUBLISH, 3, b"ok"));
    assert_eq!(w.answer(0, cl, 3).map(|a| a.0), Some(200));
    w.send(0, cl, request(CODE_SUBSCRIBE, 4, b""));
    assert_eq!(w.answer(0, cl, 4).map(|a| a.0), Some(403));
}
