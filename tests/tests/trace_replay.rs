//! A trace captured by a real `svc-overlay --trace-out` process (three daemons on loopback,
//! broadcasts both ways, one peer killed) replays into a fresh core with 0 divergences, using
//! the same code as `overlay-sim replay`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use overlay_e2e::{poll_until, Daemon, DaemonOpts, DEADLINE};
use overlay_sim::replay::{replay_file, ReplayOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_from_a_real_daemon_replays_with_zero_divergences() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("a.trace");
    let a = Daemon::start(DaemonOpts::default().args([
        "--trace-out",
        trace.to_str().unwrap(),
        "--trace-out-despite-amnesia",
    ]))
    .await;
    let opts = DaemonOpts::default().peer(a.addr);
    let (b, c) = tokio::join!(Daemon::start(opts.clone()), Daemon::start(opts.clone()));
    poll_until("a has two sessions", DEADLINE, || async {
        (a.running_peers().await.len() >= 2).then_some(())
    })
    .await;

    for i in 0..3 {
        let (status, body) = a.broadcast(format!("from a #{i}")).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = b.broadcast("from b").await;
    assert_eq!(status, 202, "{body}");
    poll_until("a delivered b's message", DEADLINE, || async {
        let (_, stats) = a.get_json("/v1/stats").await;
        (stats["gossip_delivered"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;

    // Kill one peer outright (SIGKILL): a sees the connection drop.
    drop(c);
    poll_until("a lost the killed peer", DEADLINE, || async {
        (a.running_peers().await.len() == 1).then_some(())
    })
    .await;
    let (status, body) = a.broadcast("after the kill").await;
    assert_eq!(status, 202, "{body}");

    // A graceful stop flushes the trace.
    assert!(a.terminate().success());
    drop(b);

    let mut report = Vec::new();
    let outcome = replay_file(&trace, &ReplayOptions::default(), &mut report).unwrap();
    let report = String::from_utf8_lossy(&report);
    println!("{report}");
    assert!(outcome.passed(), "divergence:\n{report}");
    assert!(!outcome.truncated, "a graceful stop writes whole records");
    assert!(report.contains(" 0 divergences"), "{report}");

    // The trace holds what this test made happen.
    let file = std::fs::File::open(&trace).unwrap();
    let (mut reader, _) =
        overlay_proto::trace::TraceReader::open(std::io::BufReader::new(file)).unwrap();
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    while let Some(record) = reader.next_record().unwrap() {
        *kinds.entry(record.input.kind()).or_default() += 1;
    }
    assert_eq!(outcome.inputs, kinds.values().sum::<u64>());
    assert!(
        kinds.get("connection_up").copied().unwrap_or(0) >= 2,
        "{kinds:?}"
    );
    assert_eq!(kinds.get("broadcast").copied(), Some(4), "{kinds:?}");
    assert!(
        kinds.get("connection_closed").copied().unwrap_or(0) >= 1,
        "{kinds:?}"
    );
    assert!(
        kinds.get("received").copied().unwrap_or(0) >= 4,
        "{kinds:?}"
    );
}
