//! Runs the gossip hot path (receive → dedup → forward, 1 KiB, α = 3, β = 6) for a fixed number
//! of messages and prints messages per second of this process's wall time. Meant for profilers
//! (`valgrind --tool=callgrind`, `perf record`): unlike the criterion bench it does no setup
//! work inside the measured loop. Usage: `cargo run --release -p overlay-proto --example
//! gossip_hotpath -- [messages]`; `ORIGIN_AUTH=sign` runs the signed path (default `none`).
//!
//! By default each read comes with its content-check verdicts, as the driver hands them over
//! (its connection readers run the core's `Prechecker` on other cores): the figure is then the
//! node task's own work. The example first measures what those checks cost per message, once
//! with every read checked as a whole (signatures in batches of 64) and once frame by frame
//! (one signature at a time). `PRECHECK=0` hands the node the bare bytes instead (the node
//! checks inline, as in replay and the simulator).

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
use overlay_proto::{Prechecked, Prechecker};
use support::{
    forward_round_with, forwarding_node, gossip_batches, opening_bytes, prechecked_batches,
    round_credit, BATCH,
};

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
    let precheck = std::env::var("PRECHECK").as_deref() != Ok("0");
    let mut node = forwarding_node(seen, origin_auth);
    let batches = gossip_batches(messages, origin_auth == OriginAuth::Sign);
    let checks = if precheck {
        report_precheck_cost(&batches, origin_auth);
        prechecked_batches(&batches, origin_auth)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; batches.len()]
    };
    println!(
        "node task ({}, {}):",
        origin_auth.as_str(),
        if precheck {
            "verdicts from the readers"
        } else {
            "checked inline"
        }
    );
    let started = std::time::Instant::now();
    let cpu_started = thread_cpu_ns();
    measured_loop(&mut node, batches, checks);
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
fn measured_loop(node: &mut Node, batches: Vec<Bytes>, checks: Vec<Option<Prechecked>>) {
    let credit = round_credit();
    let mut now = Instant::ZERO;
    for (data, checks) in batches.into_iter().zip(checks) {
        now += Duration::from_millis(10);
        forward_round_with(node, now, data, checks, &credit);
    }
}

/// CPU per message of the reader-side content checks: whole reads of [`BATCH`] frames
/// (signatures batch-verified), then one frame per read (one signature at a time).
fn report_precheck_cost(batches: &[Bytes], origin_auth: OriginAuth) {
    let messages = batches.len() * BATCH;
    let per_msg = |cpu_ns: Option<u64>| cpu_ns.map_or(f64::NAN, |ns| ns as f64 / messages as f64);
    let a = thread_cpu_ns();
    let mut checked = 0;
    for v in prechecked_batches(batches, origin_auth) {
        checked += v.len();
    }
    let b = thread_cpu_ns();
    let mut one_by_one = Prechecker::new(origin_auth);
    let _ = one_by_one.scan(&opening_bytes(0));
    let mut checked_single = 0;
    for batch in batches {
        let frame_len = batch.len() / BATCH;
        for frame in batch.chunks(frame_len) {
            checked_single += one_by_one.scan(frame).len();
        }
    }
    let c = thread_cpu_ns();
    assert_eq!(checked, messages);
    assert_eq!(checked_single, messages);
    let batched = per_msg(a.zip(b).map(|(a, b)| b - a));
    let single = per_msg(b.zip(c).map(|(b, c)| c - b));
    println!(
        "precheck ({}): {:.0} ns CPU per message in reads of {BATCH} ({:.0} msg per CPU-second), {:.0} ns one frame per read ({:.0} msg per CPU-second)",
        origin_auth.as_str(),
        batched,
        1e9 / batched,
        single,
        1e9 / single
    );
}

/// This thread's CPU time in nanoseconds (Linux `/proc/thread-self/schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
