//! Arbitrary peer bytes into a node: one session is opened with a valid HELLO/START (its
//! `graft_miss` chosen by the input's first byte), then the
//! input is split into chunks delivered as `Received` on that connection, interleaved with
//! timer wake-ups. The node must never panic and must keep its bounds.

#![no_main]

use core::net::SocketAddr;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use overlay_proto::frame::{flags, Header};
use overlay_proto::wire::{HelloOverlay, HelloRequestBody};
use overlay_proto::{ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, PeerId};

fn frame(flags: u16, app: u16, body: &[u8]) -> Vec<u8> {
    let h = Header {
        len: (38 + body.len()) as u32,
        ver: 1,
        flags,
        code: 0,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.origin_auth = overlay_proto::OriginAuth::None;
    cfg.max_queue_frames = 8;
    cfg.seen_capacity = 64;
    let identity = NodeIdentity::new(PeerId([1; 32]), None);
    let Ok(mut node) = Node::new(cfg.clone(), identity, 7) else { return };
    // First byte picks the chunk size, its lowest bit whether the peer's HELLO says
    // `graft_miss` (then GRAFTs for dropped ids are answered GRAFT_MISS), the next whether it
    // says `running_peers`; the rest is the stream.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let graft_miss = chunk & 1 == 1;
    let running_peers = chunk & 2 == 2;
    let chunk = usize::from(chunk).max(1);
    let peer = PeerId([2; 32]);
    let conn = ConnId(1);
    let mut now = Instant::ZERO;
    node.handle(now, Input::ConnectionUp {
        conn,
        peer,
        direction: Direction::Inbound,
        remote: SocketAddr::from(([127, 0, 0, 1], 1)),
        dial: None,
        kx_group: None,
    });
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay { overlay: 1, peer_id: peer.to_string(), listen: None, credit_frames: 16, credit_bytes: 1 << 20, graft_miss, running_peers },
    };
    let Ok(json) = serde_json::to_vec(&hello) else { return };
    let mut open = frame(flags::REQ, 0, &json);
    open.extend(frame(flags::START | flags::REQ, overlay_proto::OVERLAY_APP_PROTO_ID, &[]));
    node.handle(now, Input::Received { conn, data: open.into() });
    while node.poll_action().is_some() {}
    for piece in rest.chunks(chunk) {
        node.handle(now, Input::Received { conn, data: piece.to_vec().into() });
        now += Duration::from_millis(u64::from(piece[0] % 50));
        node.handle(now, Input::Timeout);
        while node.poll_action().is_some() {}
        let s = node.stats();
        assert!(s.queued_frames <= cfg.max_queue_frames);
        assert!(s.seen_len <= cfg.seen_capacity);
    }
});
