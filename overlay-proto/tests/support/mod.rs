//! Helpers shared by overlay-proto's integration tests: raw OAP/1 frames, capability tokens and
//! nodes with fake identities. A test file takes it with `mod support;` and uses what it needs;
//! each test binary compiles its own copy, so the helpers one file leaves unused are dead code
//! there (hence the allow).

#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use overlay_proto::capability::{mint, Caveat, Scope};
use overlay_proto::frame::{self, flags, Header};
use overlay_proto::wire::{HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{MacKey, Node, NodeConfig, NodeIdentity, PeerId};

/// The wall-clock second the tests' nodes start at (`NodeConfig::unix_base_secs`).
pub const NOW_UNIX: u64 = 1_700_000_000;

/// The capability key `k1` of tenant `overlay` that tests mint and nodes verify with.
pub const KEY: MacKey = MacKey([7; 32]);

/// A header with `flags`, `code`, `app` and `corr`, tenant 0, no capability and `len` 0 (the
/// encoder fills it in).
pub fn header(flags: u16, code: u16, app: u16, corr: u64) -> Header {
    Header {
        len: 0,
        ver: 1,
        flags,
        code,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: corr,
    }
}

/// One frame with the header written as given (correlation id 0), without the encoder's
/// checks, so also frames a correct peer would never send.
pub fn raw_frame(flags: u16, code: u16, app: u16, cap: &[u8], body: &[u8]) -> Vec<u8> {
    let h = Header {
        len: (frame::HEADER_LEN + cap.len() + body.len()) as u32,
        cap_len: cap.len() as u16,
        ..header(flags, code, app, 0)
    };
    let mut out = BytesMut::new();
    h.write(&mut out);
    out.extend_from_slice(cap);
    out.extend_from_slice(body);
    out.to_vec()
}

/// An overlay EVENT frame of `kind` (GOSSIP, IHAVE, …).
pub fn event(kind: Kind, body: &[u8]) -> Vec<u8> {
    raw_frame(
        flags::EVENT,
        kind.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        body,
    )
}

/// One frame through the encoder (`frame::encode`), which must accept it.
pub fn encode(flags: u16, code: u16, app: u16, corr: u64, cap: &[u8], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    frame::encode(&header(flags, code, app, corr), cap, payload, &mut out).unwrap();
    out.freeze()
}

/// A token of tenant `overlay` under key `k1` ([`KEY`]) with `caveats`, for `methods` (all when
/// empty), at most `max_bytes` per message.
pub fn token(caveats: Vec<Caveat>, methods: &[&str], max_bytes: Option<u64>) -> String {
    token_with_key(&KEY, caveats, methods, max_bytes)
}

/// As [`token`], but MACed with `key` under the name `k1` (a wrong key when it is not [`KEY`]).
pub fn token_with_key(
    key: &MacKey,
    caveats: Vec<Caveat>,
    methods: &[&str],
    max_bytes: Option<u64>,
) -> String {
    let scope = Scope {
        prefix: None,
        methods: methods.iter().map(|m| m.to_string()).collect(),
        max_bytes,
    };
    mint(key, "overlay", "k1", scope, caveats)
}

/// Node `id`: PeerId `[id; 32]`, listening at `127.0.0.id:9415`, RNG seed `id`.
pub fn node(id: u8, cfg: NodeConfig) -> Node {
    let identity = NodeIdentity::new(
        PeerId([id; 32]),
        Some(SocketAddr::from(([127, 0, 0, id], 9415))),
    );
    Node::new(cfg, identity, u64::from(id)).unwrap()
}

/// The opening a peer with `peer_id` sends on an inbound session: HELLO (overlay 1, no listen
/// address, credit 1024 frames / 64 MiB) and START, without tokens.
pub fn peer_opening(peer_id: &PeerId) -> Vec<u8> {
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: peer_id.to_string(),
            listen: None,
            credit_frames: 1024,
            credit_bytes: 64 << 20,
            graft_miss: false,
        },
    };
    let mut bytes = raw_frame(flags::REQ, 0, 0, &[], &serde_json::to_vec(&hello).unwrap());
    bytes.extend(raw_frame(
        flags::START | flags::REQ,
        0,
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[],
    ));
    bytes
}

/// Bodies of the EVENT frames of `kind` in the `Transmit` actions on connection `conn`, in order.
pub fn event_bodies(actions: &[overlay_proto::Action], conn: u64, kind: Kind) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for a in actions {
        if let overlay_proto::Action::Transmit { conn: c, data } = a {
            if *c != overlay_proto::ConnId(conn) {
                continue;
            }
            let mut buf = BytesMut::from(&data.to_bytes()[..]);
            while let Ok(Some(f)) = frame::decode(&mut buf) {
                if f.header.flags & flags::EVENT != 0 && f.header.code == kind.code() {
                    out.push(f.payload.map(|p| p.to_vec()).unwrap_or_default());
                }
            }
        }
    }
    out
}
