//! Gossip hot path: receive → dedup → check → forward, 1 KiB payloads, α = 3, β = 6.
//!
//! One node with ten running sessions (fake peers opened by feeding HELLO/START). Peer 0
//! sends batches of 64 GOSSIP frames (one 64-KiB-ish read, as a driver would hand over); the
//! node dedups, recomputes each id, (in `sign` mode) verifies the origin signature, stores,
//! delivers, pushes each message to its 3 eager peers and queues IHAVE for 6 lazy peers; the
//! lazy-flush timer fires every batch; peers return credit.
//!
//! Two benchmarks: `origin_auth = none` with unsigned frames, and `origin_auth = sign` with
//! signed frames.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // bench code

mod support;

use core::time::Duration;
use criterion::{BatchSize, Criterion, Throughput};
use overlay_proto::{Instant, OriginAuth};
use support::{forward_round, forwarding_node, gossip_batches, round_credit, BATCH};

/// Distinct messages cycled through (more than the seen cache holds, so every one is new).
const DISTINCT: usize = 96 * 1024;

fn gossip_forward(c: &mut Criterion, origin_auth: OriginAuth) {
    let signed = origin_auth == OriginAuth::Sign;
    let mut node = forwarding_node(64 * 1024, origin_auth);
    let batches = gossip_batches(DISTINCT, signed);
    let credit = round_credit();
    let mut now = Instant::ZERO;
    let mut next = 0usize;
    let mut group = c.benchmark_group("gossip");
    group.throughput(Throughput::Elements(BATCH as u64));
    let name = if signed {
        "receive_dedup_verify_forward_1KiB_a3_b6_signed"
    } else {
        "receive_dedup_forward_1KiB_a3_b6"
    };
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                // A fresh, uniquely owned read buffer, as a socket read would give.
                let batch = &batches[next % batches.len()];
                next += 1;
                bytes::Bytes::from(batch.to_vec())
            },
            |data| {
                now += Duration::from_millis(10);
                forward_round(&mut node, now, data, &credit)
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
    gossip_forward(&mut c, OriginAuth::None);
    gossip_forward(&mut c, OriginAuth::Sign);
    c.final_summary();
}
