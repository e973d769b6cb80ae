//! Gossip hot path: receive → dedup → check → forward, 1 KiB payloads, α = 3, β = 6.
//!
//! One node with ten running sessions (fake peers opened by feeding HELLO/START). Peer 0
//! sends batches of 64 GOSSIP frames (one 64-KiB-ish read, as a driver would hand over); the
//! node dedups, recomputes each id, (in `sign` mode) verifies the origin signature, stores,
//! delivers, pushes each message to its 3 eager peers and queues IHAVE for 6 lazy peers; the
//! lazy-flush timer fires every batch; peers return credit.
//!
//! Four benchmarks: `origin_auth = none` with unsigned frames, and `origin_auth = sign` with
//! signed frames, each fed two ways: a uniquely owned buffer per read, and (`_driver_block`)
//! the way the driver hands reads over, a slice of a receive block the reader still holds.
//! Since the core decodes in place, both should cost the same; before, the shared block was
//! copied whole into the session's buffer.

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

/// How a read reaches the core.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// A fresh, uniquely owned buffer per read.
    Owned,
    /// As the driver hands reads over: a slice of a larger receive block that the reader
    /// still holds (`split().freeze()`), so the allocation is shared.
    DriverBlock,
}

fn gossip_forward(c: &mut Criterion, origin_auth: OriginAuth, feed: Feed) {
    let signed = origin_auth == OriginAuth::Sign;
    let mut node = forwarding_node(64 * 1024, origin_auth);
    let batches = gossip_batches(DISTINCT, signed);
    let credit = round_credit();
    let mut now = Instant::ZERO;
    let mut next = 0usize;
    let mut group = c.benchmark_group("gossip");
    group.throughput(Throughput::Elements(BATCH as u64));
    let name = match (signed, feed) {
        (true, Feed::Owned) => "receive_dedup_verify_forward_1KiB_a3_b6_signed",
        (false, Feed::Owned) => "receive_dedup_forward_1KiB_a3_b6",
        (true, Feed::DriverBlock) => "receive_dedup_verify_forward_1KiB_a3_b6_signed_driver_block",
        (false, Feed::DriverBlock) => "receive_dedup_forward_1KiB_a3_b6_driver_block",
    };
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let batch = &batches[next % batches.len()];
                next += 1;
                match feed {
                    Feed::Owned => (bytes::Bytes::from(batch.to_vec()), None),
                    Feed::DriverBlock => {
                        let mut block = bytes::BytesMut::with_capacity(2 * batch.len());
                        block.extend_from_slice(batch);
                        let data = block.split().freeze();
                        // The reader keeps the rest of its block while the core works.
                        (data, Some(block))
                    }
                }
            },
            |(data, held)| {
                now += Duration::from_millis(10);
                let actions = forward_round(&mut node, now, data, &credit);
                drop(held);
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
    gossip_forward(&mut c, OriginAuth::None, Feed::Owned);
    gossip_forward(&mut c, OriginAuth::None, Feed::DriverBlock);
    gossip_forward(&mut c, OriginAuth::Sign, Feed::Owned);
    gossip_forward(&mut c, OriginAuth::Sign, Feed::DriverBlock);
    c.final_summary();
}
