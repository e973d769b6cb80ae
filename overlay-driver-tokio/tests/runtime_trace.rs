//! Trace capture from live overlays replays with zero divergences.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use bytes::Bytes;
use overlay_proto::trace::{Replayer, TraceReader};
use overlay_proto::{Input, NodeConfig};
use runtime_common::*;
use svc_overlay::Overlay;

async fn traced(path: &Path, seed: u64) -> Overlay {
    Overlay::builder()
        .bind(loopback())
        .node_config(NodeConfig::default())
        .seed(seed)
        .trace_out(path)
        .build()
        .await
        .unwrap()
}

/// Replays a trace file; returns (records, inputs by kind seen).
fn replay(path: &Path, expect_seed: u64) -> (u64, Vec<&'static str>) {
    let (mut reader, header) =
        TraceReader::open(BufReader::new(File::open(path).unwrap())).unwrap();
    assert_eq!(header.seed, expect_seed);
    let mut replayer = Replayer::new(&header).unwrap();
    let mut kinds = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        if let Err(d) = replayer.step(&record) {
            panic!(
                "divergence at record {} ({:?}): expected {:?}, got {:?}",
                d.seq, d.input, d.expected, d.actual
            );
        }
        if !kinds.contains(&record.input.kind()) {
            kinds.push(record.input.kind());
        }
    }
    (replayer.inputs(), kinds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_of_two_live_overlays_replay_without_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.trace"), dir.path().join("b.trace"));
    let a = traced(&pa, 21).await;
    let b = traced(&pb, 22).await;
    let mut sub = b.deliveries();
    let session = bounded("dial", a.dial(b.local_addr())).await.unwrap();
    for i in 0..5u8 {
        let id = bounded(
            "broadcast",
            a.broadcast(Bytes::from(vec![i; 100 * usize::from(i) + 1])),
        )
        .await
        .unwrap();
        assert_eq!(bounded("delivery", sub.recv()).await.unwrap().id, id);
    }
    bounded("direct", session.send("direct")).await.unwrap();
    // Kill one side; the other sees its session drop, then shuts down too.
    bounded("shutdown b", b.shutdown()).await;
    wait_stats(&a, "a sees the session end", |s| s.sessions_running == 0).await;
    bounded("shutdown a", a.shutdown()).await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pa).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a trace holds secrets");
    }
    let (records_a, kinds_a) = replay(&pa, 21);
    let (records_b, kinds_b) = replay(&pb, 22);
    assert!(
        records_a > 10 && records_b > 10,
        "{records_a} / {records_b}"
    );
    for kind in [
        "connection_up",
        "received",
        "broadcast",
        "send_direct",
        "shutdown",
    ] {
        assert!(
            kinds_a.contains(&kind),
            "a: {kind} missing from {kinds_a:?}"
        );
    }
    for kind in ["connection_up", "received", "shutdown"] {
        assert!(
            kinds_b.contains(&kind),
            "b: {kind} missing from {kinds_b:?}"
        );
    }
    assert!(kinds_a.contains(&Input::Timeout.kind()));
    assert_eq!(a.driver_stats().trace_dropped, 0);
}
