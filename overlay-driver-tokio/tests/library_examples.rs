//! Runs the `bridge` example as its own process: it dials a node of this test, which publishes,
//! and the bridge prints that message as a JSON line on stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runtime_common::*;

/// Builds the example (a no-op when fresh: `cargo test` builds examples, `cargo test --test
/// NAME` does not) and returns its path.
fn example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "svc-overlay", "--example", name])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building example {name}");
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

/// The next JSON line within the step bound.
fn next_line(lines: &mpsc::Receiver<String>, deadline: Instant) -> serde_json::Value {
    let left = deadline.saturating_duration_since(Instant::now());
    let line = lines
        .recv_timeout(left)
        .expect("a line from the bridge in time");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_example_prints_what_another_node_publishes_as_json_lines() {
    let bridge = example("bridge");
    let a = overlay(51).await;
    let mut child = Command::new(bridge)
        .args(["127.0.0.1:0", &a.local_addr().to_string()])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bridge starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + STEP;

    let ready = next_line(&lines, deadline);
    assert_eq!(ready["event"], "ready", "{ready}");
    let bridge_peer = ready["peer_id"].as_str().unwrap().to_string();
    wait_stats(&a, "a runs the bridge's session", |s| {
        s.sessions_running == 1
    })
    .await;

    let id = a
        .broadcast(Bytes::from_static(b"hello bridge"))
        .await
        .unwrap();
    let got = loop {
        let line = next_line(&lines, deadline);
        if line["event"] == "received" {
            break line;
        }
        // Only neighbour changes may come first.
        assert!(
            line["event"].as_str().unwrap().starts_with("neighbor_"),
            "{line}"
        );
    };
    assert_eq!(got["id"], id.to_string());
    assert_eq!(got["origin"], a.peer_id().to_string());
    assert_eq!(got["hops"], 1);
    assert_eq!(got["payload"], "hello bridge");
    assert!(a
        .peers()
        .await
        .iter()
        .any(|s| s.peer.to_string() == bridge_peer));

    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    a.shutdown().await;
}
