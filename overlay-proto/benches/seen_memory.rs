//! Heap memory per remembered message id in the core, measured with dhat's counting
//! allocator.
//!
//! One node, one fake peer that sends 100,000 distinct GOSSIP messages (1-byte payloads) in
//! reads of 64, a GRAFT store of one message: the heap growth over the messages is what the
//! seen-id set costs per id (its map entry and expiry entry, with the map's control bytes
//! and free capacity), plus the one stored message. Prints the figure (issue #10: ~100 bytes
//! per id before the ids were kept as 16-byte fingerprints).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // bench code

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use core::time::Duration;
use overlay_proto::frame::flags;
use overlay_proto::wire::{self, Kind};
use overlay_proto::{ConnId, Input, Instant, Node, NodeConfig, NodeIdentity, PeerId};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const MESSAGES: usize = 100_000;

fn batch(from: usize, count: usize) -> Bytes {
    let origin = PeerId([0x99; 32]);
    let mut buf = BytesMut::new();
    for k in from..from + count {
        let (_, body) = wire::gossip_body(&origin, k as u64, 0, b"x", None);
        buf.put_slice(&support::frame(
            flags::EVENT,
            Kind::Gossip.code(),
            overlay_proto::OVERLAY_APP_PROTO_ID,
            &[],
            &[&body],
        ));
    }
    buf.freeze()
}

fn main() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.origin_auth = overlay_proto::OriginAuth::None;
    cfg.peer_rate_per_s = u32::MAX;
    cfg.peer_rate_burst = u32::MAX;
    cfg.store_capacity = 1;
    cfg.seen_capacity = 1 << 20;
    cfg.keepalive_interval = Duration::from_secs(3600);
    cfg.liveness_timeout = Duration::from_secs(7200);
    cfg.idle_timeout = Duration::from_secs(7200);
    // Build every read first: only the node's own growth is measured.
    let reads: Vec<Bytes> = (0..MESSAGES / 64).map(|i| batch(i * 64, 64)).collect();
    let credit = Bytes::from(support::credit_frame(1 << 20, u32::MAX));
    let _profiler = dhat::Profiler::builder().testing().build();
    let identity = NodeIdentity::new(PeerId([0xC0; 32]), None);
    let mut node = Node::new(cfg, identity, 1).unwrap_or_else(|e| panic!("config: {e}"));
    support::open_fake_session(&mut node, Instant::ZERO, 0);
    let before = dhat::HeapStats::get().curr_bytes;
    let mut now = Instant::ZERO;
    for data in reads {
        now += Duration::from_micros(100);
        node.handle(
            now,
            Input::Received {
                conn: ConnId(0),
                data,
            },
        );
        while node.poll_action().is_some() {}
        node.handle(
            now,
            Input::Received {
                conn: ConnId(0),
                data: credit.clone(),
            },
        );
        while node.poll_action().is_some() {}
    }
    let after = dhat::HeapStats::get().curr_bytes;
    let seen = node.stats().seen_len;
    assert_eq!(seen, MESSAGES / 64 * 64, "every id remembered");
    let per_id = (after.saturating_sub(before)) as f64 / seen as f64;
    println!("ids remembered: {seen}");
    println!("core heap growth: {} bytes", after.saturating_sub(before));
    println!("memory per remembered id: {per_id:.1} bytes");
}
