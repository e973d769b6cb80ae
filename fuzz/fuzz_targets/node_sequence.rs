//! Fuzzes a `Node` with arbitrary sequences of `Input`s: connections up and down (some opened
//! with a valid HELLO/START), raw bytes, well-formed frames of every overlay kind with arbitrary
//! bodies, timer wake-ups, broadcasts, direct sends, dials, discovered peers, dial failures and
//! shutdown — with origin signatures required (the default) or off.
//!
//! Checked after every step, besides "no panic":
//! - running sessions and our own handshaking dials stay within `max_sessions`, inbound
//!   connections before START within the pre-auth budget (`max_preauth`), queues within
//!   `max_queue_frames` per session, the
//!   seen cache and the GRAFT store within their capacities, dials (automatic and operator)
//!   within `max_concurrent_dials`, the passive list (configured, discovered and learned
//!   addresses) within `passive_capacity`, eager + lazy peers within the running sessions;
//! - monotonic counters never go down;
//! - the next timeout never points into the past.
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
use overlay_proto::wire::{HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{
    Action, ConnId, DialId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, NodeStats,
    OriginAuth, OverlayError, PeerId, SigningSeed, OVERLAY_APP_PROTO_ID,
};

/// Longest sequence run (keeps each input fast).
const MAX_STEPS: usize = 256;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A TLS connection is up (no HELLO yet).
    Up { conn: u8, peer: u8, outbound: bool, dial: Option<u8> },
    /// Connection up, then a valid HELLO and START from the peer.
    Open { conn: u8, peer: u8 },
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
    c
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

fn open_inputs(c: u8, p: u8) -> Vec<Input> {
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: peer(p).to_string(),
            listen: None,
            credit_frames: 4,
            credit_bytes: 1 << 20,
            graft_miss: false,
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
    match op {
        Op::Up { conn: c, peer: p, outbound, dial } => one(Input::ConnectionUp {
            conn: conn(*c),
            peer: peer(*p),
            direction: if *outbound { Direction::Outbound } else { Direction::Inbound },
            remote,
            dial: dial.map(|d| DialId(u64::from(d % 4))),
            kx_group: None,
        }),
        Op::Open { conn: c, peer: p } => (Duration::ZERO, open_inputs(*c, *p)),
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
    // Operator dials (Input::Dial) past the ceiling are refused as Busy.
    assert!(s.dials_in_flight <= cfg.max_concurrent_dials, "dials in flight");
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
    for op in ops.iter().take(MAX_STEPS) {
        let (advance, inputs) = inputs(op);
        now += advance;
        for input in inputs {
            node.handle(now, input);
            while let Some(a) = node.poll_action() {
                actions.push(a);
            }
        }
        stats = check(&node, &cfg, now, &stats);
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
