//! Session open and per-session authorization: HELLO/START with real capability tokens in both
//! directions, and every rejection path a hostile or misconfigured peer can hit — each with a
//! typed close reason and a counter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

mod support;

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::capability::Caveat;
use overlay_proto::frame::flags;
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{
    Action, CloseReason, ConnId, Direction, Input, Instant, MacKey, Node, NodeConfig, OverlayError,
    PeerId, RejectReason, SessionEvent,
};
use support::{event, node, raw_frame, token, token_with_key, KEY, NOW_UNIX};

fn config(own_token: Option<String>) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.unix_base_secs = NOW_UNIX;
    c.auth.keys.insert("k1", "overlay", KEY);
    c.auth.own_token = own_token.map(Into::into);
    // Fake peer ids without keys: these tests are about the handshake, not origin signatures.
    c.origin_auth = overlay_proto::OriginAuth::None;
    c
}

/// Two nodes joined by one connection: A dialed B.
struct Pair {
    a: Node,
    b: Node,
    now: Instant,
    a_actions: Vec<Action>,
    b_actions: Vec<Action>,
}

const A_CONN: ConnId = ConnId(1);
const B_CONN: ConnId = ConnId(2);

impl Pair {
    fn connect(a_cfg: NodeConfig, b_cfg: NodeConfig) -> Pair {
        let mut p = Pair {
            a: node(1, a_cfg),
            b: node(2, b_cfg),
            now: Instant::ZERO,
            a_actions: Vec::new(),
            b_actions: Vec::new(),
        };
        let (a_id, b_id) = (p.a.identity().peer_id, p.b.identity().peer_id);
        p.b.handle(p.now, up(B_CONN, a_id, Direction::Inbound));
        p.a.handle(p.now, up(A_CONN, b_id, Direction::Outbound));
        p.pump();
        p
    }

    /// Moves bytes between the two nodes until both are quiet.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(action) = self.a.poll_action() {
                moved = true;
                match &action {
                    Action::Transmit { conn, data } if *conn == A_CONN => {
                        self.b.handle(
                            self.now,
                            Input::Received {
                                conn: B_CONN,
                                data: data.to_bytes(),
                            },
                        );
                    }
                    Action::Close { conn, .. } if *conn == A_CONN => {
                        self.b.handle(
                            self.now,
                            Input::ConnectionClosed {
                                conn: B_CONN,
                                error: None,
                            },
                        );
                    }
                    _ => {}
                }
                self.a_actions.push(action);
            }
            while let Some(action) = self.b.poll_action() {
                moved = true;
                match &action {
                    Action::Transmit { conn, data } if *conn == B_CONN => {
                        self.a.handle(
                            self.now,
                            Input::Received {
                                conn: A_CONN,
                                data: data.to_bytes(),
                            },
                        );
                    }
                    Action::Close { conn, .. } if *conn == B_CONN => {
                        self.a.handle(
                            self.now,
                            Input::ConnectionClosed {
                                conn: A_CONN,
                                error: None,
                            },
                        );
                    }
                    _ => {}
                }
                self.b_actions.push(action);
            }
            if !moved {
                return;
            }
        }
    }

    fn up(actions: &[Action]) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, Action::Session(SessionEvent::Up { .. })))
    }

    fn closed_with(actions: &[Action]) -> Option<CloseReason> {
        actions.iter().find_map(|a| match a {
            Action::Close { reason, .. } => Some(*reason),
            _ => None,
        })
    }
}

fn up(conn: ConnId, peer: PeerId, direction: Direction) -> Input {
    Input::ConnectionUp {
        conn,
        peer,
        direction,
        remote: SocketAddr::from(([127, 0, 0, 9], 50_000)),
        dial: None,
        kx_group: Some("X25519MLKEM768".into()),
    }
}

#[test]
fn valid_tokens_both_ways_open_the_session_and_gossip_flows() {
    let t = token(
        vec![
            Caveat::Exp(NOW_UNIX + 3600),
            Caveat::Tenant("overlay".into()),
        ],
        &[],
        None,
    );
    let mut p = Pair::connect(config(Some(t.clone())), config(Some(t)));
    assert!(Pair::up(&p.a_actions) && Pair::up(&p.b_actions));
    p.a.handle(
        p.now,
        Input::Broadcast {
            request: 9,
            payload: Bytes::from_static(b"msg"),
        },
    );
    p.pump();
    let delivered = p
        .b_actions
        .iter()
        .any(|a| matches!(a, Action::Deliver(d) if &d.payload[..] == b"msg" && d.hops == 1));
    assert!(delivered);
    let info = &p.b.sessions()[0];
    assert_eq!(info.kx_group.as_deref(), Some("X25519MLKEM768"));
}

#[test]
fn wrong_key_missing_expired_or_denied_tokens_are_refused_and_counted() {
    let wrong_key = token_with_key(&MacKey([8; 32]), vec![], &[], None);
    let expired = token(vec![Caveat::Exp(NOW_UNIX - 3600)], &[], None);
    let tampered = {
        let mut t = token(vec![], &[], None).into_bytes();
        let last = t.len() - 3;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    let denied = token(vec![Caveat::Tenant("someone-else".into())], &[], None);
    let good = token(vec![], &[], None);
    let cases = [
        (
            Some(wrong_key),
            OverlayError::Unauthorized,
            RejectReason::Unauth,
        ),
        (None, OverlayError::Unauthorized, RejectReason::Unauth),
        (
            Some(expired),
            OverlayError::Unauthorized,
            RejectReason::Unauth,
        ),
        (
            Some(tampered),
            OverlayError::Unauthorized,
            RejectReason::Unauth,
        ),
        (
            Some(denied),
            OverlayError::Forbidden,
            RejectReason::Forbidden,
        ),
    ];
    for (client_token, error, reject) in cases {
        let p = Pair::connect(config(client_token), config(Some(good.clone())));
        assert!(!Pair::up(&p.b_actions), "server must not open the session");
        assert_eq!(
            Pair::closed_with(&p.b_actions),
            Some(CloseReason::Violation(error))
        );
        assert_eq!(p.b.stats().rejected.get(reject), 1);
        assert_eq!(p.b.stats().handshake_failures, 1);
        assert!(p.a.stats().sessions_running == 0);
    }
}

#[test]
fn the_dialer_also_checks_the_servers_token() {
    let good = token(vec![], &[], None);
    let server_bad = token_with_key(&MacKey([9; 32]), vec![], &[], None);
    let p = Pair::connect(config(Some(good)), config(Some(server_bad)));
    assert_eq!(
        Pair::closed_with(&p.a_actions),
        Some(CloseReason::Violation(OverlayError::Unauthorized))
    );
    assert_eq!(p.a.stats().rejected.get(RejectReason::Unauth), 1);
    assert_eq!(p.a.stats().sessions_running, 0);
}

/// A raw peer talking to one node, to send exactly the bytes a test wants.
struct RawPeer {
    node: Node,
    now: Instant,
    actions: Vec<Action>,
}

const RAW: ConnId = ConnId(5);
const RAW_PEER: PeerId = PeerId([0x55; 32]);

impl RawPeer {
    fn new(cfg: NodeConfig) -> RawPeer {
        let mut r = RawPeer {
            node: node(2, cfg),
            now: Instant::ZERO,
            actions: Vec::new(),
        };
        r.node.handle(r.now, up(RAW, RAW_PEER, Direction::Inbound));
        r.drain();
        r
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.node.handle(
            self.now,
            Input::Received {
                conn: RAW,
                data: bytes.into(),
            },
        );
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(a) = self.node.poll_action() {
            self.actions.push(a);
        }
    }

    fn hello(&mut self, credit_frames: u32) {
        let hello = HelloRequestBody {
            ua: Some("raw".into()),
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: RAW_PEER.to_string(),
                listen: None,
                credit_frames,
                credit_bytes: 1 << 24,
                graft_miss: false,
                running_peers: false,
            },
        };
        self.send(raw_frame(
            flags::REQ,
            0,
            0,
            &[],
            &serde_json::to_vec(&hello).unwrap(),
        ));
    }

    fn start(&mut self, token: &str) {
        self.send(raw_frame(
            flags::START | flags::REQ,
            0,
            overlay_proto::OVERLAY_APP_PROTO_ID,
            token.as_bytes(),
            &[],
        ));
    }

    fn open(cfg: NodeConfig, token: &str) -> RawPeer {
        let mut r = RawPeer::new(cfg);
        r.hello(64);
        r.start(token);
        assert!(
            Pair::up(&r.actions),
            "raw peer session should open: {:?}",
            r.actions
        );
        r
    }

    fn closed(&self) -> Option<CloseReason> {
        Pair::closed_with(&self.actions)
    }

    /// The status code of the last error frame the node sent before closing.
    fn last_error_code(&self) -> Option<u16> {
        self.actions.iter().rev().find_map(|a| match a {
            Action::Transmit { data, .. } => {
                let mut buf = bytes::BytesMut::from(&data.to_bytes()[..]);
                let mut last = None;
                while let Ok(Some(f)) = overlay_proto::frame::decode(&mut buf) {
                    if f.header.flags & flags::RESP != 0 && f.header.code >= 400 {
                        last = Some(f.header.code);
                    }
                }
                last
            }
            _ => None,
        })
    }
}

fn gossip_frame(payload_len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    wire::put_gossip_header(
        &mut body,
        &overlay_proto::MessageId([3; 32]),
        &RAW_PEER,
        1,
        0,
    );
    body.extend(std::iter::repeat_n(0xAB, payload_len));
    event(Kind::Gossip, &body)
}

#[test]
fn frames_before_the_token_are_refused_with_401() {
    let mut r = RawPeer::new(config(Some(token(vec![], &[], None))));
    r.send(gossip_frame(10));
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::Unauthorized))
    );
    assert_eq!(r.last_error_code(), Some(401));
    assert_eq!(r.node.stats().rejected.get(RejectReason::Unauth), 1);
}

#[test]
fn oversize_message_is_refused_from_the_header_alone() {
    // The token allows 100-byte messages; the header announces more. Only the 38-byte header
    // is sent: the node decides before any body arrives.
    let client = token(vec![Caveat::BytesLe(100)], &[], None);
    let mut r = RawPeer::open(config(Some(token(vec![], &[], None))), &client);
    // (The header check allows for the 96-byte signature block of a signed GOSSIP, so the
    // unsigned frame announces more than 100 + 96 payload bytes.)
    let frame = gossip_frame(101 + wire::GOSSIP_AUTH_LEN);
    r.send(frame[..38].to_vec());
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::TooLarge))
    );
    assert_eq!(r.last_error_code(), Some(413));
    assert_eq!(r.node.stats().rejected.get(RejectReason::Oversize), 1);
}

#[test]
fn a_u32_max_length_header_is_refused_without_waiting_for_a_body() {
    let mut r = RawPeer::open(
        config(Some(token(vec![], &[], None))),
        &token(vec![], &[], None),
    );
    let mut header = gossip_frame(0)[..38].to_vec();
    header[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    r.send(header);
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::TooLarge))
    );
    assert_eq!(r.node.stats().rejected.get(RejectReason::Oversize), 1);
}

#[test]
fn garbage_and_truncated_frames_are_malformed() {
    let mut r = RawPeer::open(
        config(Some(token(vec![], &[], None))),
        &token(vec![], &[], None),
    );
    r.send(vec![0xFF; 64]);
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::Malformed))
    );
    assert_eq!(r.node.stats().rejected.get(RejectReason::Malformed), 1);
    // A truncated GOSSIP body (shorter than its fixed header) is malformed too.
    let mut r = RawPeer::open(
        config(Some(token(vec![], &[], None))),
        &token(vec![], &[], None),
    );
    r.send(raw_frame(
        flags::EVENT,
        Kind::Gossip.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[1, 2, 3],
    ));
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::Malformed))
    );
}

#[test]
fn sending_past_the_credit_window_is_a_429_violation() {
    let mut cfg = config(Some(token(vec![], &[], None)));
    cfg.credit_window_frames = 4;
    let mut r = RawPeer::open(cfg, &token(vec![], &[], None));
    let ping = raw_frame(
        flags::EVENT,
        Kind::Ping.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[],
    );
    // One frame at a time stays within the window: the node re-grants what it consumed.
    for _ in 0..6 {
        r.send(ping.clone());
    }
    assert_eq!(r.closed(), None, "a peer that respects credit is never cut");
    // A burst of more frames than the outstanding grant (4) is a violation.
    r.send(ping.repeat(5));
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::Quota))
    );
    assert_eq!(r.last_error_code(), Some(429));
    assert_eq!(r.node.stats().rejected.get(RejectReason::Credits), 1);
}

#[test]
fn scope_methods_limit_operations_and_rate_caveat_limits_messages() {
    // Only direct messages allowed: gossip is forbidden.
    let direct_only = token(vec![], &["direct"], None);
    let mut r = RawPeer::open(config(Some(token(vec![], &[], None))), &direct_only);
    r.send(raw_frame(
        flags::EVENT,
        Kind::Direct.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        b"hi",
    ));
    assert!(r
        .actions
        .iter()
        .any(|a| matches!(a, Action::DirectMessage { .. })));
    r.send(gossip_frame(5));
    assert_eq!(
        r.closed(),
        Some(CloseReason::Violation(OverlayError::Forbidden))
    );
    assert_eq!(r.last_error_code(), Some(403));

    // Rate{per_s:1, burst:2}: the third message in the same instant is dropped and counted.
    let limited = token(vec![Caveat::Rate { per_s: 1, burst: 2 }], &[], None);
    let mut r = RawPeer::open(config(Some(token(vec![], &[], None))), &limited);
    for _ in 0..3 {
        r.send(raw_frame(
            flags::EVENT,
            Kind::Direct.code(),
            overlay_proto::OVERLAY_APP_PROTO_ID,
            &[],
            b"x",
        ));
    }
    let delivered = r
        .actions
        .iter()
        .filter(|a| matches!(a, Action::DirectMessage { .. }))
        .count();
    assert_eq!(delivered, 2);
    assert_eq!(r.node.stats().rejected.get(RejectReason::Quota), 1);
    assert_eq!(r.closed(), None, "quota drops do not close the session");
}

#[test]
fn a_slowloris_that_never_finishes_the_handshake_is_cut_at_the_deadline() {
    let mut r = RawPeer::new(config(Some(token(vec![], &[], None))));
    r.hello(64);
    r.now += Duration::from_secs(6);
    r.node.handle(r.now, Input::Timeout);
    r.drain();
    assert_eq!(r.closed(), Some(CloseReason::HandshakeTimeout));
    assert_eq!(r.last_error_code(), Some(408));
    assert_eq!(
        r.node.stats().rejected.get(RejectReason::HandshakeTimeout),
        1
    );
}

#[test]
fn max_sessions_counts_running_sessions_and_refuses_the_next_with_503() {
    let mut cfg = config(None);
    cfg.max_sessions = 2;
    cfg.active_target = 1;
    cfg.auth.require_token = false;
    let mut n = node(2, cfg);
    let hello = |i: u8| {
        let body = HelloRequestBody {
            ua: None,
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: PeerId([i + 10; 32]).to_string(),
                listen: None,
                credit_frames: 64,
                credit_bytes: 1 << 24,
                graft_miss: false,
                running_peers: false,
            },
        };
        raw_frame(flags::REQ, 0, 0, &[], &serde_json::to_vec(&body).unwrap())
    };
    let start = raw_frame(
        flags::START | flags::REQ,
        0,
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[],
    );
    // Four connections up at once: handshaking ones do not count toward max_sessions.
    for i in 0..4u8 {
        n.handle(
            Instant::ZERO,
            up(
                ConnId(u64::from(i)),
                PeerId([i + 10; 32]),
                Direction::Inbound,
            ),
        );
    }
    let mut actions = Vec::new();
    while let Some(a) = n.poll_action() {
        actions.push(a);
    }
    assert_eq!(Pair::closed_with(&actions), None);
    // The first two to finish START run; the third is refused with 503.
    for i in 0..3u8 {
        for bytes in [hello(i), start.clone()] {
            n.handle(
                Instant::ZERO,
                Input::Received {
                    conn: ConnId(u64::from(i)),
                    data: bytes.into(),
                },
            );
        }
    }
    while let Some(a) = n.poll_action() {
        actions.push(a);
    }
    assert_eq!(
        Pair::closed_with(&actions),
        Some(CloseReason::Violation(OverlayError::Refused))
    );
    assert_eq!(n.stats().rejected.get(RejectReason::MaxSessions), 1);
    assert_eq!(n.stats().sessions_running, 2);
    // With max_sessions running, new connections are refused at once.
    n.handle(
        Instant::ZERO,
        up(ConnId(9), PeerId([40; 32]), Direction::Inbound),
    );
    assert_eq!(n.stats().rejected.get(RejectReason::MaxSessions), 2);
}

#[test]
fn simultaneous_dials_keep_exactly_one_session() {
    let t = token(vec![], &[], None);
    let mut a = node(1, config(Some(t.clone())));
    let mut b = node(2, config(Some(t)));
    // a→b is conn 1 on a / conn 2 on b; b→a is conn 3 on b / conn 4 on a.
    a.handle(
        Instant::ZERO,
        up(ConnId(1), b.identity().peer_id, Direction::Outbound),
    );
    b.handle(
        Instant::ZERO,
        up(ConnId(2), a.identity().peer_id, Direction::Inbound),
    );
    b.handle(
        Instant::ZERO,
        up(ConnId(3), a.identity().peer_id, Direction::Outbound),
    );
    a.handle(
        Instant::ZERO,
        up(ConnId(4), b.identity().peer_id, Direction::Inbound),
    );
    let route = |conn: ConnId| match conn.0 {
        1 => (false, ConnId(2)),
        2 => (true, ConnId(1)),
        3 => (true, ConnId(4)),
        _ => (false, ConnId(3)),
    };
    for _ in 0..32 {
        let mut moved = false;
        for from_a in [true, false] {
            let (src, dst) = if from_a {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let mut out = Vec::new();
            while let Some(act) = src.poll_action() {
                out.push(act);
            }
            for act in out {
                moved = true;
                match act {
                    Action::Transmit { conn, data } => {
                        let (_, peer_conn) = route(conn);
                        dst.handle(
                            Instant::ZERO,
                            Input::Received {
                                conn: peer_conn,
                                data: data.to_bytes(),
                            },
                        );
                    }
                    Action::Close { conn, .. } => {
                        let (_, peer_conn) = route(conn);
                        dst.handle(
                            Instant::ZERO,
                            Input::ConnectionClosed {
                                conn: peer_conn,
                                error: None,
                            },
                        );
                    }
                    _ => {}
                }
            }
        }
        if !moved {
            break;
        }
    }
    assert_eq!(a.stats().sessions_running, 1);
    assert_eq!(b.stats().sessions_running, 1);
    // Both kept the connection dialed by the smaller peer id (a = [1; 32]).
    assert_eq!(a.sessions()[0].direction, Direction::Outbound);
    assert_eq!(b.sessions()[0].direction, Direction::Inbound);
}

#[test]
fn every_operator_dial_gets_an_answer_from_the_core() {
    use overlay_proto::DialOutcome;
    let mut n = node(2, config(None));
    let own = n.identity().listen_addr.unwrap();
    let other = SocketAddr::from(([127, 0, 0, 3], 9415));
    let answer = |n: &mut Node, addr| {
        n.handle(
            Instant::ZERO,
            Input::Dial {
                request: None,
                addr,
            },
        );
        let mut actions = Vec::new();
        while let Some(a) = n.poll_action() {
            actions.push(a);
        }
        let answers: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::DialAnswer {
                    addr: at, outcome, ..
                } if *at == addr => Some(*outcome),
                _ => None,
            })
            .collect();
        assert_eq!(answers.len(), 1, "exactly one answer: {actions:?}");
        (answers[0], actions)
    };
    let (outcome, _) = answer(&mut n, own);
    assert_eq!(outcome, DialOutcome::Refused(OverlayError::Refused));
    let (outcome, actions) = answer(&mut n, other);
    let DialOutcome::Dialing(dial) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Connect { dial: d, .. } if *d == dial)));
    // Asked again while the dial is in flight: the same dial, no second connection.
    let (outcome, actions) = answer(&mut n, other);
    assert_eq!(outcome, DialOutcome::Dialing(dial));
    assert!(!actions.iter().any(|a| matches!(a, Action::Connect { .. })));
    // Once the connection is up, the answer names it.
    n.handle(
        Instant::ZERO,
        Input::ConnectionUp {
            conn: ConnId(7),
            peer: PeerId([3; 32]),
            direction: Direction::Outbound,
            remote: other,
            dial: Some(dial),
            kx_group: None,
        },
    );
    while n.poll_action().is_some() {}
    let (outcome, _) = answer(&mut n, other);
    assert_eq!(outcome, DialOutcome::Handshaking(ConnId(7)));
    n.handle(Instant::ZERO, Input::Shutdown);
    while n.poll_action().is_some() {}
    let (outcome, _) = answer(&mut n, other);
    assert_eq!(outcome, DialOutcome::Refused(OverlayError::ShuttingDown));
}

/// A GOSSIP frame with a correct (content-derived) id.
fn valid_gossip_frame(nonce: u64, payload: &[u8]) -> Vec<u8> {
    let id = overlay_proto::MessageId::compute(&RAW_PEER, nonce, payload);
    let mut body = Vec::new();
    wire::put_gossip_header(&mut body, &id, &RAW_PEER, nonce, 0);
    body.extend_from_slice(payload);
    event(Kind::Gossip, &body)
}

fn delivered_payloads(actions: &[Action]) -> Vec<Bytes> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(d) => Some(d.payload.clone()),
            _ => None,
        })
        .collect()
}

fn three_gossip_frames() -> (Vec<u8>, Vec<Vec<u8>>) {
    let payloads: Vec<Vec<u8>> = (1..=3u8).map(|n| vec![n; 300 + 200 * n as usize]).collect();
    let mut wire = Vec::new();
    for (nonce, p) in payloads.iter().enumerate() {
        wire.extend(valid_gossip_frame(nonce as u64 + 1, p));
    }
    (wire, payloads)
}

#[test]
fn frames_are_decoded_in_place_from_a_read_block_the_driver_still_holds() {
    let t = token(vec![], &[], None);
    let mut r = RawPeer::open(config(Some(t.clone())), &t);
    let (mut wire, payloads) = three_gossip_frames();
    let direct = vec![9u8; 700];
    wire.extend(raw_frame(
        flags::EVENT,
        Kind::Direct.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &direct,
    ));
    // The driver keeps its receive block while the core has the read (a shared allocation).
    let block = Bytes::from(wire);
    r.actions.clear();
    r.node.handle(
        r.now,
        Input::Received {
            conn: RAW,
            data: block.clone(),
        },
    );
    r.drain();
    let inside = block.as_ptr_range();
    // A direct message is a slice of the block: nothing was copied to decode it.
    let directs: Vec<Bytes> = r
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DirectMessage { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(directs, vec![direct]);
    assert!(
        inside.contains(&directs[0].as_ptr()),
        "the direct message was copied out of the read block"
    );
    // Gossip payloads are delivered (and forwarded) as the GRAFT store's exact-size copy,
    // made once per new message: holding them does not pin the driver's receive block.
    let delivered = delivered_payloads(&r.actions);
    assert_eq!(delivered, payloads);
    for p in &delivered {
        assert!(
            !inside.contains(&p.as_ptr()),
            "a delivered gossip payload pins the read block"
        );
    }
    assert_eq!(r.closed(), None);
}

#[test]
fn frames_split_across_reads_at_any_point_are_decoded_the_same() {
    let t = token(vec![], &[], None);
    let (wire, payloads) = three_gossip_frames();
    let mut cases: Vec<Vec<usize>> = (1..wire.len()).step_by(7).map(|cut| vec![cut]).collect();
    // Fixed-size pieces, including ones shorter than a header and ones cutting a header.
    for piece in [1, 2, 5, 37, 38, 39, 100, 777] {
        cases.push((piece..wire.len()).step_by(piece).collect());
    }
    for cuts in cases {
        let mut r = RawPeer::open(config(Some(t.clone())), &t);
        r.actions.clear();
        let mut start = 0;
        for end in cuts.iter().copied().chain([wire.len()]) {
            r.send(wire[start..end].to_vec());
            start = end;
        }
        assert_eq!(delivered_payloads(&r.actions), payloads, "cuts {cuts:?}");
        assert_eq!(r.closed(), None, "cuts {cuts:?}");
    }
}

#[test]
fn a_bad_header_after_a_split_read_is_refused_before_its_body_arrives() {
    let t = token(vec![], &[], None);
    let mut r = RawPeer::open(config(Some(t.clone())), &t);
    let mut huge = gossip_frame(10);
    huge[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
    // The first 20 bytes of the header, then the rest of it: refused with no body sent.
    r.send(huge[..20].to_vec());
    assert_eq!(r.closed(), None);
    r.send(huge[20..38].to_vec());
    assert!(r.closed().is_some(), "{:?}", r.actions);
}
