#![allow(dead_code)] // each bench uses a subset
//! Shared helpers for the core benchmarks: fake peers that open sessions with a node by
//! feeding it HELLO and START frames directly (no second node needed).

use bytes::{BufMut, Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::frame::{flags, Header};
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{
    ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, OriginAuth, OriginSigner,
    PeerId, Prechecked, Prechecker, SigningSeed,
};

/// A frame with the given fields.
pub fn frame(flags: u16, code: u16, app: u16, cap: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let h = Header {
        len: (38 + cap.len() + body) as u32,
        ver: 1,
        flags,
        code,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: cap.len() as u16,
        corr_id: 0,
    };
    let mut out = BytesMut::new();
    h.write(&mut out);
    out.put_slice(cap);
    for p in parts {
        out.put_slice(p);
    }
    out.to_vec()
}

/// Peer id of fake peer `i`.
pub fn fake_peer(i: u32) -> PeerId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id[4] = 0xAB;
    PeerId(id)
}

/// Opens an inbound session from fake peer `i` on connection `i` (tokens not required).
pub fn open_fake_session(node: &mut Node, now: Instant, i: u32) {
    let conn = ConnId(u64::from(i));
    node.handle(
        now,
        Input::ConnectionUp {
            conn,
            peer: fake_peer(i),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 40_000)),
            dial: None,
            kx_group: None,
        },
    );
    node.handle(
        now,
        Input::Received {
            conn,
            data: Bytes::from(opening_bytes(i)),
        },
    );
    while node.poll_action().is_some() {}
}

/// The first bytes fake peer `i` sends: HELLO and START.
pub fn opening_bytes(i: u32) -> Vec<u8> {
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: fake_peer(i).to_string(),
            listen: None,
            credit_frames: u32::MAX,
            credit_bytes: u32::MAX,
            graft_miss: false,
            running_peers: false,
        },
    };
    let json = serde_json::to_vec(&hello).unwrap_or_default();
    let mut bytes = frame(flags::REQ, 0, 0, &[], &[&json]);
    bytes.extend(frame(
        flags::START | flags::REQ,
        0,
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[],
    ));
    bytes
}

/// The verdicts a connection reader would hand the node with each of `batches` (the reads of
/// fake peer 0 after its opening), computed by the core's `Prechecker`.
pub fn prechecked_batches(batches: &[Bytes], origin_auth: OriginAuth) -> Vec<Prechecked> {
    let mut checker = Prechecker::new(origin_auth);
    let _ = checker.scan(&opening_bytes(0));
    batches.iter().map(|b| checker.scan(b)).collect()
}

/// A CREDIT frame granting `frames` and `bytes`.
pub fn credit_frame(frames: u32, bytes: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&frames.to_be_bytes());
    body.extend_from_slice(&bytes.to_be_bytes());
    frame(
        flags::EVENT,
        Kind::Credit.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[&body],
    )
}

/// Messages per read handed to the node in the gossip benchmarks.
pub const BATCH: usize = 64;

/// A node with ten running sessions (fake peers 0..10), α = 3, β = 6, no quota, a seen
/// cache of `seen_capacity` ids and the given origin authentication: the forwarding node of
/// the gossip benchmarks.
pub fn forwarding_node(seen_capacity: usize, origin_auth: OriginAuth) -> Node {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.origin_auth = origin_auth;
    cfg.alpha = 3;
    cfg.beta = 6;
    cfg.active_target = 10;
    cfg.seen_capacity = seen_capacity;
    cfg.peer_rate_per_s = u32::MAX;
    cfg.peer_rate_burst = u32::MAX;
    // The fake peers never answer: keep heartbeats and the failure detector out of the way.
    cfg.keepalive_interval = Duration::from_secs(3600);
    cfg.liveness_timeout = Duration::from_secs(7200);
    cfg.idle_timeout = Duration::from_secs(7200);
    let identity = NodeIdentity::from_signing_seed(SigningSeed([0xC0; 32]), None);
    let mut node = Node::new(cfg, identity, 1).unwrap_or_else(|e| panic!("config: {e}"));
    for i in 0..10 {
        open_fake_session(&mut node, Instant::ZERO, i);
    }
    assert_eq!(node.stats().sessions_running, 10);
    node
}

/// `messages` GOSSIP frames with distinct, correctly computed ids and 1 KiB payloads from
/// one origin (signed by it when `signed`), grouped in reads of [`BATCH`] frames, each read
/// a uniquely owned buffer.
pub fn gossip_batches(messages: usize, signed: bool) -> Vec<Bytes> {
    let payload = vec![0x5Au8; 1024];
    let signer = OriginSigner::new(&SigningSeed([0x99; 32]));
    let origin = signer.peer_id();
    let mut batches = Vec::with_capacity(messages / BATCH);
    let mut buf = BytesMut::new();
    for k in 0..messages {
        let (_, body) =
            wire::gossip_body(&origin, k as u64, 2, &payload, signed.then_some(&signer));
        buf.put_slice(&frame(
            flags::EVENT,
            Kind::Gossip.code(),
            overlay_proto::OVERLAY_APP_PROTO_ID,
            &[],
            &[&body],
        ));
        if (k + 1) % BATCH == 0 {
            batches.push(Bytes::from(buf.split().to_vec()));
        }
    }
    batches
}

/// One forwarding round: hand `data` (from peer 0) to the node, fire the lazy-flush timer, and
/// let peers 1..10 return credit. Returns the number of actions drained after the read.
pub fn forward_round(node: &mut Node, now: Instant, data: Bytes, credit: &Bytes) -> usize {
    forward_round_with(node, now, data, None, credit)
}

/// [`forward_round`], with the read's content-check verdicts when given (as the driver hands
/// them over after its reader ran the `Prechecker`).
pub fn forward_round_with(
    node: &mut Node,
    now: Instant,
    data: Bytes,
    checks: Option<Prechecked>,
    credit: &Bytes,
) -> usize {
    let conn = ConnId(0);
    let input = match checks {
        Some(checks) => Input::ReceivedPrechecked { conn, data, checks },
        None => Input::Received { conn, data },
    };
    node.handle(now, input);
    let mut actions = 0;
    while node.poll_action().is_some() {
        actions += 1;
    }
    node.handle(now, Input::Timeout);
    while node.poll_action().is_some() {}
    for peer in 1..10u64 {
        node.handle(
            now,
            Input::Received {
                conn: ConnId(peer),
                data: credit.clone(),
            },
        );
        while node.poll_action().is_some() {}
    }
    actions
}

/// The CREDIT frame peers return after each round.
pub fn round_credit() -> Bytes {
    Bytes::from(credit_frame((BATCH * 2) as u32, (BATCH * 2 * 1200) as u32))
}
