//! Runs the gossip hot path (receive → dedup → forward, 1 KiB, α = 3, β = 6) for a fixed number
//! of messages and prints messages per second of this process's wall time. Meant for profilers
//! (`valgrind --tool=callgrind`, `perf record`): unlike the criterion bench it does no setup
//! work inside the measured loop. Usage: `cargo run --release -p overlay-proto --example
//! gossip_hotpath -- [messages]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // profiling harness

#[path = "../benches/support.rs"]
mod support;

use bytes::{BufMut, Bytes, BytesMut};
use core::time::Duration;
use overlay_proto::frame::flags;
use overlay_proto::wire::{self, Kind};
use overlay_proto::{ConnId, Input, Instant, MessageId, Node, NodeConfig, NodeIdentity, PeerId};

const BATCH: usize = 64;

fn main() {
    let messages: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1 << 20);
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.active_target = 10;
    cfg.seen_capacity = std::env::var("SEEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 * 1024);
    cfg.peer_rate_per_s = u32::MAX;
    cfg.peer_rate_burst = u32::MAX;
    cfg.keepalive_interval = Duration::from_secs(3600);
    cfg.idle_timeout = Duration::from_secs(7200);
    let identity = NodeIdentity {
        peer_id: PeerId([0xC0; 32]),
        listen_addr: None,
    };
    let Ok(mut node) = Node::new(cfg, identity, 1) else {
        return;
    };
    for i in 0..10 {
        support::open_fake_session(&mut node, Instant::ZERO, i);
    }
    let payload = vec![0x5Au8; 1024];
    let origin = support::fake_peer(999);
    // Pre-built unique read buffers, one per batch (a driver hands over fresh buffers).
    let mut batches: Vec<Bytes> = Vec::with_capacity(messages / BATCH);
    let mut buf = BytesMut::new();
    for k in 0..messages {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        let mut header = [0u8; wire::GOSSIP_HEADER_LEN];
        let mut cursor = &mut header[..];
        wire::put_gossip_header(&mut cursor, &MessageId(id), &origin, k as u64, 2);
        buf.put_slice(&support::frame(
            flags::EVENT,
            Kind::Gossip.code(),
            overlay_proto::OVERLAY_APP_PROTO_ID,
            &[],
            &[&header, &payload],
        ));
        if (k + 1) % BATCH == 0 {
            batches.push(Bytes::from(buf.split().to_vec()));
        }
    }
    let started = std::time::Instant::now();
    measured_loop(&mut node, batches);
    let elapsed = started.elapsed();
    let s = node.stats();
    println!(
        "{} messages in {:.3} s: {:.0} msg/s (delivered {}, forwarded {}, ihave ids {})",
        messages,
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        s.gossip_delivered,
        s.gossip_sent,
        s.ihave_sent
    );
}

/// The measured work, kept in one function so profilers can restrict collection to it.
#[inline(never)]
fn measured_loop(node: &mut Node, batches: Vec<Bytes>) {
    let credit = Bytes::from(support::credit_frame(
        (BATCH * 2) as u32,
        (BATCH * 2 * 1200) as u32,
    ));
    let mut now = Instant::ZERO;
    for data in batches {
        now += Duration::from_millis(10);
        node.handle(
            now,
            Input::Received {
                conn: ConnId(0),
                data,
            },
        );
        while node.poll_action().is_some() {}
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
    }
}
