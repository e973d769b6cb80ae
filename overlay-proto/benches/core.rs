//! Gossip hot path: receive → dedup → forward, 1 KiB payloads, α = 3, β = 6.
//!
//! One node with ten running sessions (fake peers opened by feeding HELLO/START). Peer 0
//! sends batches of 64 GOSSIP frames (one 64-KiB-ish read, as a driver would hand over); the
//! node dedups, stores, delivers, pushes each message to its 3 eager peers and queues IHAVE
//! for 6 lazy peers; the lazy-flush timer fires every batch; peers return credit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // bench code

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use core::time::Duration;
use criterion::{BatchSize, Criterion, Throughput};
use overlay_proto::frame::flags;
use overlay_proto::wire::{self, Kind};
use overlay_proto::{ConnId, Input, Instant, MessageId, Node, NodeConfig, NodeIdentity, PeerId};
use support::{credit_frame, fake_peer, frame, open_fake_session};

const BATCH: usize = 64;
const PAYLOAD: usize = 1024;
const DISTINCT: usize = 96 * 1024;

fn setup() -> (Node, Vec<Bytes>, Bytes) {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.alpha = 3;
    cfg.beta = 6;
    cfg.active_target = 10;
    cfg.seen_capacity = 64 * 1024;
    cfg.peer_rate_per_s = u32::MAX;
    cfg.peer_rate_burst = u32::MAX;
    cfg.keepalive_interval = Duration::from_secs(3600);
    cfg.idle_timeout = Duration::from_secs(7200);
    let identity = NodeIdentity {
        peer_id: PeerId([0xC0; 32]),
        listen_addr: None,
    };
    let mut node = Node::new(cfg, identity, 1).unwrap_or_else(|e| panic!("config: {e}"));
    for i in 0..10 {
        open_fake_session(&mut node, Instant::ZERO, i);
    }
    assert_eq!(node.stats().sessions_running, 10);
    // Batches of GOSSIP frames from peer 0, each with a distinct id.
    let payload = vec![0x5Au8; PAYLOAD];
    let origin = fake_peer(999);
    let mut batches = Vec::new();
    let mut buf = BytesMut::new();
    for k in 0..DISTINCT {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(k as u64).to_le_bytes());
        id[8..16].copy_from_slice(&(k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        let mut header = [0u8; wire::GOSSIP_HEADER_LEN];
        let mut cursor = &mut header[..];
        wire::put_gossip_header(&mut cursor, &MessageId(id), &origin, k as u64, 2);
        buf.put_slice(&frame(
            flags::EVENT,
            Kind::Gossip.code(),
            overlay_proto::OVERLAY_APP_PROTO_ID,
            &[],
            &[&header, &payload],
        ));
        if (k + 1) % BATCH == 0 {
            batches.push(buf.split().freeze());
        }
    }
    let credit = Bytes::from(credit_frame((BATCH * 2) as u32, (BATCH * 2 * 1200) as u32));
    (node, batches, credit)
}

fn gossip_forward(c: &mut Criterion) {
    let (mut node, batches, credit) = setup();
    let mut now = Instant::ZERO;
    let mut next = 0usize;
    let mut group = c.benchmark_group("gossip");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("receive_dedup_forward_1KiB_a3_b6", |b| {
        b.iter_batched(
            || {
                // A fresh, uniquely owned read buffer, as a socket read would give.
                let batch = &batches[next % batches.len()];
                next += 1;
                Bytes::from(batch.to_vec())
            },
            |data| {
                now += Duration::from_millis(10);
                node.handle(
                    now,
                    Input::Received {
                        conn: ConnId(0),
                        data,
                    },
                );
                let mut actions = 0usize;
                while let Some(a) = node.poll_action() {
                    actions += 1;
                    drop(a);
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
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let s = node.stats();
    println!(
        "after bench: delivered {} duplicates {} gossip_sent {} ihave_sent {} queued {} rejected {:?}",
        s.gossip_delivered, s.gossip_duplicates, s.gossip_sent, s.ihave_sent, s.queued_frames, s.rejected
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    gossip_forward(&mut c);
    c.final_summary();
}
