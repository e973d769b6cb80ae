//! Topics with daemons as real processes: `--topic` joins at start, the HTTP routes join,
//! publish, stream and leave, and a node outside a topic gets none of its messages.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use overlay_e2e::{poll_until, Daemon, DaemonOpts, SseStream, DEADLINE};

async fn put(d: &Daemon, path: &str) -> u16 {
    d.http()
        .put(d.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn publish(d: &Daemon, topic: &str, body: &str) -> u16 {
    d.http()
        .post(d.url(&format!("/v1/topics/{topic}/broadcast")))
        .header("content-type", "application/octet-stream")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn stream(d: &Daemon, topic: &str) -> SseStream {
    let resp = d
        .http()
        .get(d.url(&format!("/v1/topics/{topic}/gossip")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    SseStream::new(resp)
}

/// The payload of the next message event, or `None` by `deadline`.
async fn next_text(sse: &mut SseStream, deadline: Instant) -> Option<String> {
    loop {
        let ev = sse.next_event(deadline).await?;
        if ev.event != "message" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(v["data_b64"].as_str().unwrap())
            .unwrap();
        return Some(String::from_utf8(payload).unwrap());
    }
}

#[tokio::test]
async fn a_topic_joined_by_flag_and_by_http_reaches_members_only() {
    // A is in `chat` from its flag; B joins over HTTP; C never does. A — B, C — B.
    let a = Daemon::start(DaemonOpts::default().args(["--topic", "chat"])).await;
    let b = Daemon::start(DaemonOpts::default().peer(a.addr)).await;
    let c = Daemon::start(DaemonOpts::default().peer(b.addr)).await;
    for d in [&b, &c] {
        poll_until("a running session", DEADLINE, || async {
            (!d.running_peers().await.is_empty()).then_some(())
        })
        .await;
    }
    assert_eq!(put(&a, "/v1/topics/chat").await, 200, "joined by --topic");
    assert_eq!(put(&b, "/v1/topics/chat").await, 201);
    assert_eq!(put(&b, "/v1/topics/a%2Fb").await, 400);
    assert_eq!(publish(&c, "chat", "x").await, 409);
    let mut at_b = stream(&b, "chat").await;
    let mut at_c_default = c.gossip().await;

    // A's TOPICS reaches B asynchronously: publish until B sees one.
    let until = Instant::now() + DEADLINE;
    let got = loop {
        assert!(Instant::now() < until, "b never got a chat message");
        assert_eq!(publish(&a, "chat", "in chat").await, 202);
        if let Some(text) = next_text(&mut at_b, Instant::now() + Duration::from_millis(300)).await
        {
            break text;
        }
    };
    assert_eq!(got, "in chat");
    // A default broadcast reaches C; the topic never does.
    let (status, _) = a.broadcast("for everyone").await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = at_c_default
            .next_message(deadline)
            .await
            .expect("default message at C");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(m["data_b64"].as_str().unwrap())
            .unwrap();
        assert_ne!(payload, b"in chat", "a topic message reached a non-member");
        if payload == b"for everyone" {
            break;
        }
    }
    let (_, stats) = c.get_json("/v1/stats").await;
    assert_eq!(
        stats["frames_in_by_kind"][11], 0,
        "TOPIC_GOSSIP frames at C"
    );

    // B leaves: 204, then 404; its stream of the topic is refused.
    let resp = b
        .http()
        .delete(b.url("/v1/topics/chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = b
        .http()
        .delete(b.url("/v1/topics/chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = b
        .http()
        .get(b.url("/v1/topics/chat/gossip"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}
