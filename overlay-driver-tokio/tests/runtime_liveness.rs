//! Liveness is the core's decision: a peer that opens its session and then goes silent (a
//! frozen process; its kernel still keeps the TCP connection up) is closed by the core's
//! failure detector with 408 `peer_unresponsive`, long before the driver's 60 s read
//! timeout, and a live but idle peer is kept alive by heartbeats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::time::{Duration, Instant};

use overlay_proto::wire::Kind;
use runtime_common::*;
use svc_overlay::Timeouts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_silent_after_start_is_closed_by_the_core_not_the_read_timeout() {
    let server = overlay(31).await;
    assert_eq!(Timeouts::default().read, Duration::from_secs(60));
    let mut c = RawClient::open(&server).await;
    let opened = Instant::now();
    // The client reads but never writes: the server hears nothing from it.
    let frames = c.until_closed().await;
    let took = opened.elapsed();
    println!("closed {took:?} after the session opened");
    let heartbeats = frames
        .iter()
        .filter(|f| f.header.code == Kind::Credit.code() || f.header.code == Kind::Ping.code())
        .count();
    assert!(heartbeats >= 2, "the server kept sending heartbeats");
    assert_eq!(last_error_code(&frames), Some(408));
    let last = frames.last().unwrap();
    let body = last.payload.clone().unwrap_or_default();
    assert_eq!(&body[..], br#"{"error":"peer_unresponsive"}"#);
    let stats = wait_stats(&server, "counted", |s| s.peers_unresponsive == 1).await;
    assert_eq!(stats.sessions_running, 0);
    // The driver's read timeout did not decide.
    assert!(!server
        .driver_stats()
        .errors
        .contains_key(&("read".to_string(), "timeout".to_string())));
    bounded("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_between_live_nodes_stays_up_on_heartbeats() {
    let a = overlay(32).await;
    let b = overlay(33).await;
    bounded("dial", b.dial(a.local_addr())).await.unwrap();
    // Well over two silence limits without a word from the application.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let sa = a.stats().await;
    let sb = b.stats().await;
    assert_eq!((sa.sessions_running, sb.sessions_running), (1, 1));
    assert_eq!(sa.peers_unresponsive + sb.peers_unresponsive, 0);
    assert!(
        sa.heartbeats_sent >= 5 && sb.heartbeats_sent >= 5,
        "{sa:?} {sb:?}"
    );
    bounded("shutdown", a.shutdown()).await;
    bounded("shutdown", b.shutdown()).await;
}
