#![allow(dead_code)] // each bench uses a subset
//! Shared helpers for the core benchmarks: fake peers that open sessions with a node by
//! feeding it HELLO and START frames directly (no second node needed).

use bytes::{BufMut, Bytes, BytesMut};
use core::net::SocketAddr;
use overlay_proto::frame::{flags, Header};
use overlay_proto::wire::{HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{ConnId, Direction, Input, Instant, Node, PeerId};

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
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: fake_peer(i).to_string(),
            listen: None,
            credit_frames: u32::MAX,
            credit_bytes: u32::MAX,
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
    node.handle(
        now,
        Input::Received {
            conn,
            data: Bytes::from(bytes),
        },
    );
    while node.poll_action().is_some() {}
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
