//! Heap memory per idle session in the core, measured with dhat's counting allocator.
//!
//! Opens 1000 inbound sessions on one node (fake peers feeding HELLO/START), lets the
//! maintenance tick release idle buffers, and divides the node's heap growth by the number of
//! sessions. Prints the figure; the target is ≤ 2 KiB per idle session.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // bench code

mod support;

use core::time::Duration;
use overlay_proto::{Input, Instant, Node, NodeConfig, NodeIdentity, PeerId};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const SESSIONS: u32 = 1000;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.origin_auth = overlay_proto::OriginAuth::None;
    cfg.max_sessions = 2048;
    cfg.active_target = 9;
    let identity = NodeIdentity::new(PeerId([0xC0; 32]), None);
    let mut node = Node::new(cfg, identity, 1).unwrap_or_else(|e| panic!("config: {e}"));
    // Warm up one session so lazily created structures exist before measuring.
    support::open_fake_session(&mut node, Instant::ZERO, 100_000);
    let before = dhat::HeapStats::get().curr_bytes;
    for i in 0..SESSIONS {
        support::open_fake_session(&mut node, Instant::ZERO, i);
    }
    let now = Instant::ZERO + Duration::from_millis(200);
    node.handle(now, Input::Timeout);
    while node.poll_action().is_some() {}
    let after = dhat::HeapStats::get().curr_bytes;
    let running = node.stats().sessions_running;
    assert_eq!(running, SESSIONS as usize + 1, "all sessions running");
    let per_session = (after.saturating_sub(before)) as f64 / f64::from(SESSIONS);
    println!("idle sessions: {SESSIONS}");
    println!("core heap growth: {} bytes", after.saturating_sub(before));
    println!("memory per idle session: {per_session:.0} bytes (target <= 2048)");
    println!(
        "size_of::<Session>() = {} bytes",
        std::mem::size_of::<overlay_proto::session::Session>()
    );
}
