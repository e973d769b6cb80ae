//! Property tests of client sessions: arbitrary bytes (whole frames of every client kind with
//! arbitrary headers and bodies, and raw garbage, split anywhere) from several clients never
//! panic, keep every client queue within its bound, account buffered bytes without leaks, never make a client a peer, and replay
//! to the same actions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

mod support;

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::frame;
use overlay_proto::trace::ActionDigest;
use overlay_proto::{ConnId, Input, Instant, Node, NodeConfig, NodeIdentity, PeerId};
use proptest::prelude::*;

fn config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = overlay_proto::OriginAuth::None;
    c.clients.max_clients = 2;
    c.clients.queue_frames = 3;
    c.clients.window_frames = 4;
    c.clients.rate_per_s = 5;
    c.clients.rate_burst = 5;
    c
}

#[derive(Debug, Clone)]
enum Op {
    Up(u8),
    /// Up, reference HELLO and START (no token needed in this config): a running client.
    Open(u8),
    /// A well-formed frame (flags, code, corr, payload) on client `conn`, split at `split`.
    Frame {
        conn: u8,
        flags: u16,
        code: u16,
        app: bool,
        corr: u64,
        cap: Vec<u8>,
        payload: Vec<u8>,
        split: usize,
    },
    Raw(u8, Vec<u8>),
    Broadcast(Vec<u8>),
    SendTo(u8, Vec<u8>),
    Advance(u16),
    Close(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let codes = prop_oneof![
        Just(0u16),
        Just(0x0105),
        Just(0x0106),
        Just(0x0109),
        Just(0x010A),
        Just(0x0110),
        Just(0x0111),
        Just(0x0112),
        Just(0x0113),
        any::<u16>(),
    ];
    let flags = prop_oneof![
        Just(0x0001u16),
        Just(0x0004),
        Just(0x0009),
        Just(0x0002),
        Just(0x0012),
        0u16..0x100,
    ];
    let payload = prop_oneof![
        Just(br#"{"ua":"x"}"#.to_vec()),
        Just(br#"{"ua":"x","credit_frames":16,"credit_bytes":65536}"#.to_vec()),
        Just(vec![0, 0, 0, 2, 0, 1, 0, 0]),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    prop_oneof![
        (0u8..4).prop_map(Op::Up),
        (0u8..4).prop_map(Op::Open),
        (0u8..4).prop_map(Op::Open),
        (
            0u8..4,
            flags,
            codes,
            any::<bool>(),
            0u64..6,
            proptest::collection::vec(any::<u8>(), 0..4),
            payload,
            0usize..80
        )
            .prop_map(
                |(conn, flags, code, app, corr, cap, payload, split)| Op::Frame {
                    conn,
                    flags,
                    code,
                    app,
                    corr,
                    cap,
                    payload,
                    split
                }
            ),
        (0u8..4, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(c, b)| Op::Raw(c, b)),
        proptest::collection::vec(any::<u8>(), 1..200).prop_map(Op::Broadcast),
        (0u8..4, proptest::collection::vec(any::<u8>(), 0..50)).prop_map(|(c, b)| Op::SendTo(c, b)),
        (1u16..3000).prop_map(Op::Advance),
        (0u8..4).prop_map(Op::Close),
    ]
}

fn encode(flags: u16, code: u16, app: u16, corr: u64, cap: &[u8], payload: &[u8]) -> Bytes {
    let header = support::header(flags, code, app, corr);
    let mut out = BytesMut::new();
    // Frames the encoder refuses (a cap without START) become raw bytes of the same shape.
    if frame::encode(&header, cap, payload, &mut out).is_err() {
        out.clear();
        frame::encode(&header, &[], payload, &mut out).unwrap();
    }
    out.freeze()
}

/// Runs `ops`; returns the digest of every action.
fn run(ops: &[Op]) -> [u8; 32] {
    let identity = NodeIdentity::new(PeerId([1; 32]), None);
    let mut node = Node::new(config(), identity, 7).unwrap();
    let mut now = Instant::ZERO;
    let mut digest = ActionDigest::new();
    let mut request = 0u64;
    for op in ops {
        let inputs: Vec<Input> = match op {
            Op::Up(c) => vec![Input::ClientConnectionUp {
                conn: ConnId(u64::from(*c)),
                remote: SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(*c))),
                kx_group: None,
            }],
            Op::Open(c) => {
                let conn = ConnId(u64::from(*c));
                vec![
                    Input::ClientConnectionUp {
                        conn,
                        remote: SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(*c))),
                        kx_group: None,
                    },
                    Input::Received {
                        conn,
                        data: encode(0x0001, 0, 0, 1, &[], br#"{"ua":"p"}"#),
                    },
                    Input::Received {
                        conn,
                        data: encode(0x0009, 0, 0x4F56, 2, &[], &[]),
                    },
                ]
            }
            Op::Frame {
                conn,
                flags,
                code,
                app,
                corr,
                cap,
                payload,
                split,
            } => {
                let app = if *app { 0x4F56 } else { 0 };
                let bytes = encode(*flags, *code, app, *corr, cap, payload);
                let at = (*split).min(bytes.len());
                let conn = ConnId(u64::from(*conn));
                vec![
                    Input::Received {
                        conn,
                        data: bytes.slice(..at),
                    },
                    Input::Received {
                        conn,
                        data: bytes.slice(at..),
                    },
                ]
            }
            Op::Raw(c, b) => vec![Input::Received {
                conn: ConnId(u64::from(*c)),
                data: Bytes::from(b.clone()),
            }],
            Op::Broadcast(p) => {
                request += 1;
                vec![Input::Broadcast {
                    request,
                    payload: Bytes::from(p.clone()),
                }]
            }
            Op::SendTo(c, p) => {
                request += 1;
                vec![Input::SendToClient {
                    request,
                    client: ConnId(u64::from(*c)),
                    payload: Bytes::from(p.clone()),
                }]
            }
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(*ms));
                vec![Input::Timeout]
            }
            Op::Close(c) => vec![Input::ConnectionClosed {
                conn: ConnId(u64::from(*c)),
                error: None,
            }],
        };
        for input in inputs {
            node.handle(now, input);
            while let Some(action) = node.poll_action() {
                digest.update(&action);
            }
            let stats = node.stats();
            assert!(stats.clients.sessions <= 2, "max_clients holds");
            assert_eq!(stats.sessions_running, 0, "a client never becomes a peer");
            let clients = node.clients();
            if clients.is_empty() {
                assert_eq!(stats.clients.buffered_bytes, 0, "no buffered bytes leak");
            }
            assert!(stats.clients.buffered_bytes <= 1 << 20);
            for c in clients {
                // Answers and PONG may exceed the delivery bound by what the client's window
                // lets it ask for (4 frames), plus one LAGGED.
                assert!(c.queued_frames <= 3 + 4 + 1, "queue bound: {c:?}");
            }
        }
    }
    digest.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_client_bytes_never_panic_and_replay_identically(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let first = run(&ops);
        prop_assert_eq!(first, run(&ops));
    }
}
