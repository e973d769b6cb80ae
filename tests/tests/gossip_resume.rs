//! Two daemons as real processes: a `/v1/gossip` client of node B that reconnects with
//! `Last-Event-ID` gets what it missed (bounded by B's `[http] sse_replay_events`), after a
//! `lagged` event counting what is gone, then live messages.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use base64::Engine as _;
use overlay_e2e::{metric_sum, poll_until, Daemon, DaemonOpts, SseStream, DEADLINE};

/// The next message event: its `id:` and payload text.
async fn message(sse: &mut SseStream) -> (String, String) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ev = sse.next_event(deadline).await.expect("an event");
        if ev.event != "message" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(v["data_b64"].as_str().unwrap())
            .unwrap();
        return (
            ev.id.expect("message events carry an id"),
            String::from_utf8(payload).unwrap(),
        );
    }
}

fn seq(id: &str) -> u64 {
    id.split_once('-').unwrap().1.parse().unwrap()
}

#[tokio::test]
async fn a_gossip_client_resumes_from_its_last_event_id() {
    let a = Daemon::start(DaemonOpts::default()).await;
    let b = Daemon::start(
        DaemonOpts::default()
            .peer(a.addr)
            .config("[http]\nsse_replay_events = 3\n"),
    )
    .await;
    poll_until("a running session", DEADLINE, || async {
        (!b.running_peers().await.is_empty()).then_some(())
    })
    .await;

    let mut sse = b.gossip().await;
    let (status, _) = a.broadcast("first").await;
    assert_eq!(status, 202);
    let (first_id, text) = message(&mut sse).await;
    assert_eq!(text, "first");
    drop(sse);

    // Five more while the client is away; B keeps the last three.
    let mut live = b.gossip().await;
    for n in 0..5 {
        let (status, _) = a.broadcast(format!("away {n}")).await;
        assert_eq!(status, 202);
    }
    let mut last_seen = String::new();
    for n in 0..5 {
        let (id, text) = message(&mut live).await;
        assert_eq!(text, format!("away {n}"));
        last_seen = id;
    }
    assert_eq!(seq(&last_seen), seq(&first_id) + 5);

    let mut resumed = b.gossip_after(Some(&first_id)).await;
    let deadline = Instant::now() + DEADLINE;
    let lagged = resumed.next_event(deadline).await.unwrap();
    assert_eq!(lagged.event, "lagged", "{lagged:?}");
    assert_eq!(lagged.id, None);
    assert_eq!(lagged.data, r#"{"dropped":2}"#);
    for n in 2..5 {
        let (id, text) = message(&mut resumed).await;
        assert_eq!(text, format!("away {n}"));
        assert_eq!(seq(&id), seq(&first_id) + 1 + n);
    }
    // Then live on the same stream.
    let (status, _) = a.broadcast("after").await;
    assert_eq!(status, 202);
    assert_eq!(message(&mut resumed).await.1, "after");

    // A garbage id is refused with a typed 400 and counted.
    let resp = b
        .http()
        .get(b.url("/v1/gossip"))
        .header("last-event-id", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_last_event_id", "{body}");
    // Counted, and the resume's figures exported (the exposition is cached for 500 ms).
    poll_until("replay metrics", DEADLINE, || async {
        let (_, text) = b.get("/metrics").await;
        let got = (
            metric_sum(&text, "rejected_total", "reason=\"http_last_event_id\""),
            metric_sum(&text, "http_sse_resumes_total", ""),
            metric_sum(&text, "http_sse_replayed_total", ""),
            metric_sum(&text, "http_sse_replay_missed_total", ""),
        );
        (got == (Some(1.0), Some(1.0), Some(3.0), Some(2.0))).then_some(())
    })
    .await;
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
