//! Runs the gossip hot path (receive → dedup → forward, 1 KiB, α = 3, β = 6) for a fixed number
//! of messages and prints messages per second of this process's wall time. Meant for profilers
//! (`valgrind --tool=callgrind`, `perf record`): unlike the criterion bench it does no setup
//! work inside the measured loop. Usage: `cargo run --release -p overlay-proto --example
//! gossip_hotpath -- [messages]`; `ORIGIN_AUTH=sign` runs the signed path (default `none`);
//! `FEED=driver` hands each read over as the driver does, as a slice of a larger block that is
//! still held elsewhere (a shared allocation), instead of a uniquely owned buffer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // profiling harness

#[path = "../benches/support.rs"]
mod support;

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::{Instant, Node, OriginAuth};
use support::{forward_round, forwarding_node, gossip_batches, round_credit};

fn main() {
    let messages: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1 << 20);
    let seen = std::env::var("SEEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 * 1024);
    let origin_auth = match std::env::var("ORIGIN_AUTH").as_deref() {
        Ok("sign") => OriginAuth::Sign,
        _ => OriginAuth::None,
    };
    let mut node = forwarding_node(seen, origin_auth);
    let batches = gossip_batches(messages, origin_auth == OriginAuth::Sign);
    let driver_feed = std::env::var("FEED").as_deref() == Ok("driver");
    // With FEED=driver every read is a slice of one block that `_block` keeps alive.
    let (batches, _block) = if driver_feed {
        let total: usize = batches.iter().map(Bytes::len).sum();
        let mut block = bytes::BytesMut::with_capacity(total + 1);
        let slices = batches
            .iter()
            .map(|b| {
                block.extend_from_slice(b);
                block.split().freeze()
            })
            .collect();
        (slices, Some(block))
    } else {
        (batches, None)
    };
    println!(
        "feed: {}",
        if driver_feed {
            "driver block (shared)"
        } else {
            "owned"
        }
    );
    let started = std::time::Instant::now();
    let cpu_started = thread_cpu_ns();
    measured_loop(&mut node, batches);
    let elapsed = started.elapsed();
    if let (Some(a), Some(b)) = (cpu_started, thread_cpu_ns()) {
        // On a shared machine wall time includes waiting for a core; this thread's CPU time
        // does not.
        let cpu = (b - a) as f64 / 1e9;
        println!(
            "thread CPU time {cpu:.3} s: {:.0} msg per CPU-second",
            messages as f64 / cpu
        );
    }
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
    let credit = round_credit();
    let mut now = Instant::ZERO;
    for data in batches {
        now += Duration::from_millis(10);
        forward_round(node, now, data, &credit);
    }
}

/// This thread's CPU time in nanoseconds (Linux `/proc/thread-self/schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
