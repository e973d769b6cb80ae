//! Resuming `GET /v1/gossip` and `GET /v1/topics/{name}/gossip` over real HTTP: every
//! event's `id:`, `Last-Event-ID` replays what a client missed in order, a cursor older than
//! what is kept gets `lagged` with the count, and a garbage cursor is a typed 400 that is
//! counted. Against a backend fed by the test and against real nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use svc_overlay::OverlayError;

use base64::Engine as _;
use bytes::Bytes;
use overlay_proto::{Delivery, MessageId, NodeStats, PeerId, SessionInfo};
use serde_json::Value;
use svc_overlay::api::{Cursor, CursorError, DeliveryLog, Error, Replay, ReplayBounds, Sequenced};
use svc_overlay::feed;
use svc_overlay::http::{
    router, spawn_listener, GossipEvent, GossipSubscription, HttpConfig, HttpCounters, LaggedEvent,
    OverlayApi, ReadinessView,
};
use svc_overlay::Overlay;

/// A node whose deliveries the test publishes into a real [`DeliveryLog`].
#[derive(Clone)]
struct Feed {
    log: Arc<DeliveryLog>,
}

struct FeedSub(feed::Receiver<Arc<Sequenced>>);

impl GossipSubscription for FeedSub {
    async fn recv(&mut self) -> Option<Sequenced> {
        loop {
            match self.0.recv().await {
                Ok(m) => return Some(Arc::unwrap_or_clone(m)),
                Err(feed::RecvError::Lagged(_)) => continue,
                Err(feed::RecvError::Closed) => return None,
            }
        }
    }
}

impl OverlayApi for Feed {
    type Subscription = FeedSub;
    type TopicSubscription = FeedSub;

    async fn join_topic(&self, _: overlay_proto::TopicId) -> Result<bool, Error> {
        Err(Error::Overlay(OverlayError::Refused))
    }

    async fn leave_topic(&self, _: overlay_proto::TopicId) -> Result<bool, Error> {
        Ok(false)
    }

    async fn publish(&self, _: overlay_proto::TopicId, _: Bytes) -> Result<MessageId, Error> {
        Err(Error::Overlay(OverlayError::NotJoined))
    }

    fn resume_topic(
        &self,
        _: overlay_proto::TopicId,
        _: Option<Cursor>,
    ) -> Option<Result<(FeedSub, Replay), CursorError>> {
        None
    }

    async fn broadcast(&self, _: Bytes) -> Result<MessageId, Error> {
        Err(Error::Overlay(OverlayError::Busy))
    }

    async fn dial(&self, _: String) -> Result<PeerId, Error> {
        Err(Error::Overlay(OverlayError::Refused))
    }

    async fn peers(&self) -> Vec<SessionInfo> {
        Vec::new()
    }

    async fn stats(&self) -> NodeStats {
        NodeStats::default()
    }

    fn readiness(&self) -> ReadinessView {
        ReadinessView {
            ready: true,
            missing: Vec::new(),
        }
    }

    fn subscribe(&self) -> FeedSub {
        FeedSub(self.log.subscribe())
    }

    fn resume(&self, after: Option<Cursor>) -> Result<(FeedSub, Replay), CursorError> {
        let (rx, replay) = self.log.resume(after)?;
        Ok((FeedSub(rx), replay))
    }

    fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9415))
    }

    fn peer_id(&self) -> PeerId {
        PeerId([1; 32])
    }
}

impl Feed {
    fn new(bounds: ReplayBounds) -> Feed {
        Feed {
            log: Arc::new(DeliveryLog::new(0x0a0b_0c0d, bounds, 4096)),
        }
    }

    fn deliver(&self, n: u32) {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        self.log.publish(Delivery {
            topic: overlay_proto::TopicId::DEFAULT,
            id: MessageId(id),
            origin: PeerId([2; 32]),
            from: PeerId([3; 32]),
            hops: 1,
            payload: Bytes::from(format!("message {n}")),
        });
    }
}

/// Serves `api` on a loopback listener; returns the base URL and the counters.
async fn serve<O: OverlayApi>(api: O) -> (String, HttpCounters) {
    let mut node_cfg = overlay_proto::NodeConfig::default();
    svc_overlay::api::install_dev_auth(&mut node_cfg.auth);
    let cfg = HttpConfig::new(&node_cfg);
    let counters = cfg.counters.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn_listener(listener, router(api, cfg.clone()), cfg.guard());
    (format!("http://{addr}"), counters)
}

/// One SSE event: its `event:` name (`message` when absent), `id:` and `data:`.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    name: String,
    id: Option<String>,
    data: String,
}

/// A streaming SSE client over reqwest.
struct SseClient {
    resp: reqwest::Response,
    buf: String,
}

impl SseClient {
    async fn connect(base: &str, last_event_id: Option<&str>) -> reqwest::Response {
        SseClient::connect_to(base, "/v1/gossip", last_event_id).await
    }

    async fn connect_to(base: &str, path: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let client = reqwest::Client::new();
        let mut req = client.get(format!("{base}{path}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.unwrap()
    }

    async fn open(base: &str, last_event_id: Option<&str>) -> SseClient {
        SseClient::open_at(base, "/v1/gossip", last_event_id).await
    }

    async fn open_at(base: &str, path: &str, last_event_id: Option<&str>) -> SseClient {
        let resp = SseClient::connect_to(base, path, last_event_id).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        SseClient {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), within 10 s.
    async fn next(&mut self) -> SseEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent {
                    name: "message".to_string(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.name = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data = v.trim().to_string();
                        any = true;
                    }
                }
                if any {
                    return event;
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream goes on");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, which must be a message; its id and payload text.
    async fn message(&mut self) -> (String, String) {
        let e = self.next().await;
        assert_eq!(e.name, "message", "{e:?}");
        let body: GossipEvent = serde_json::from_str(&e.data).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(body.data_b64)
            .unwrap();
        (
            e.id.expect("every message event has an id"),
            String::from_utf8(payload).unwrap(),
        )
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn reconnecting_with_last_event_id_replays_exactly_the_missed_messages_in_order() {
    let feed = Feed::new(ReplayBounds::default());
    let (base, counters) = serve(feed.clone()).await;
    let mut sse = SseClient::open(&base, None).await;
    wait_until("subscriber", || feed.log.receiver_count() == 1).await;
    for n in 1..=3 {
        feed.deliver(n);
    }
    let mut ids = Vec::new();
    for n in 1..=3 {
        let (id, text) = sse.message().await;
        assert_eq!(text, format!("message {n}"));
        ids.push(id);
    }
    assert_eq!(ids, ["0a0b0c0d-1", "0a0b0c0d-2", "0a0b0c0d-3"]);
    drop(sse);
    wait_until("unsubscribed", || feed.log.receiver_count() == 0).await;

    // Five messages while the client is away.
    for n in 4..=8 {
        feed.deliver(n);
    }
    let mut sse = SseClient::open(&base, Some(&ids[2])).await;
    for n in 4..=8 {
        let (id, text) = sse.message().await;
        assert_eq!(
            (id, text),
            (format!("0a0b0c0d-{n}"), format!("message {n}"))
        );
    }
    // Then live, on the same stream.
    feed.deliver(9);
    assert_eq!(
        sse.message().await,
        ("0a0b0c0d-9".to_string(), "message 9".to_string())
    );
    let stats = counters.snapshot();
    assert_eq!(
        (
            stats.sse_resumes,
            stats.sse_replayed,
            stats.sse_replay_missed
        ),
        (1, 5, 0),
        "{stats:?}"
    );
    assert_eq!(stats.sse_replayed_bytes, 5 * "message 4".len() as u64);
}

#[tokio::test]
async fn a_cursor_older_than_what_is_kept_gets_lagged_with_the_count_then_the_rest() {
    let feed = Feed::new(ReplayBounds {
        events: 4,
        bytes: 1 << 20,
    });
    let (base, counters) = serve(feed.clone()).await;
    let mut sse = SseClient::open(&base, None).await;
    wait_until("subscriber", || feed.log.receiver_count() == 1).await;
    feed.deliver(1);
    let (first, _) = sse.message().await;
    drop(sse);
    wait_until("unsubscribed", || feed.log.receiver_count() == 0).await;

    // Ten more; the node keeps the last four (8..=11).
    for n in 2..=11 {
        feed.deliver(n);
    }
    let mut sse = SseClient::open(&base, Some(&first)).await;
    let lagged = sse.next().await;
    assert_eq!(lagged.name, "lagged");
    assert_eq!(lagged.id, None, "lagged moves no cursor");
    let body: LaggedEvent = serde_json::from_str(&lagged.data).unwrap();
    assert_eq!(body, LaggedEvent { dropped: 6 }, "2..=7 are gone");
    for n in 8..=11 {
        assert_eq!(sse.message().await.1, format!("message {n}"));
    }
    feed.deliver(12);
    assert_eq!(
        sse.message().await,
        ("0a0b0c0d-12".to_string(), "message 12".to_string())
    );
    let stats = counters.snapshot();
    assert_eq!((stats.sse_replayed, stats.sse_replay_missed), (4, 6));
    // The stream went on after `lagged`: nothing was closed.
    assert_eq!(stats.closed("sse_lagged"), 0);
}

#[tokio::test]
async fn a_garbage_last_event_id_is_a_typed_400_and_counted() {
    let feed = Feed::new(ReplayBounds::default());
    let (base, counters) = serve(feed.clone()).await;
    feed.deliver(1);
    for (bad, what) in [
        ("garbage", "not an event id"),
        ("0a0b0c0d-", "not an event id"),
        ("0a0b0c0d-1-2", "not an event id"),
        ("0a0b0c0d-99", "never issued"),
    ] {
        let resp = SseClient::connect(&base, Some(bad)).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "bad_last_event_id", "{bad}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(what), "{bad}: {detail}");
    }
    assert_eq!(counters.snapshot().rejected("http_last_event_id"), 4);
    assert_eq!(counters.snapshot().sse_resumes, 0);
    // An empty id means "none" (the SSE standard): a fresh stream from now on.
    let mut sse = SseClient::open(&base, Some("")).await;
    wait_until("subscriber", || feed.log.receiver_count() == 1).await;
    feed.deliver(2);
    assert_eq!(sse.message().await.1, "message 2");
    // A cursor of an earlier run of the node resumes from the start of this one.
    drop(sse);
    let mut sse = SseClient::open(&base, Some("ffffffff-7")).await;
    assert_eq!(sse.message().await.1, "message 1");
    assert_eq!(sse.message().await.1, "message 2");
}

async fn node() -> Overlay {
    Overlay::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .replay(ReplayBounds {
            events: 3,
            bytes: 1 << 20,
        })
        .build()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_numbers_its_deliveries_and_resumes_a_client() {
    let (a, b) = (node().await, node().await);
    a.dial(b.local_addr()).await.unwrap();
    let (base, _) = serve(b.clone()).await;
    let mut sse = SseClient::open(&base, None).await;
    // The stream is subscribed once a message sent after it shows up.
    let mut last = None;
    for k in 0..50 {
        a.broadcast(Bytes::from(format!("probe {k}")))
            .await
            .unwrap();
        let e = tokio::time::timeout(Duration::from_millis(200), sse.next()).await;
        if let Ok(e) = e {
            last = e.id;
            break;
        }
    }
    let last = last.expect("a delivery reaches the stream");
    drop(sse);
    let seq = |id: &str| -> u64 { id.split_once('-').unwrap().1.parse().unwrap() };
    let mut sub = b.deliveries();
    let mut expected = Vec::new();
    for n in 0..5 {
        let text = format!("while away {n}");
        a.broadcast(Bytes::from(text.clone())).await.unwrap();
        expected.push(text);
    }
    // Wait until B has delivered all five (its own subscription sees them).
    let mut seen = 0;
    while seen < 5 {
        let got = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .unwrap()
            .unwrap();
        if String::from_utf8_lossy(&got.payload).starts_with("while away") {
            seen += 1;
        }
    }
    // B keeps three: the client is told two are gone, then gets the last three in order.
    let mut sse = SseClient::open(&base, Some(&last)).await;
    let lagged = sse.next().await;
    assert_eq!(lagged.name, "lagged", "{lagged:?}");
    let dropped: LaggedEvent = serde_json::from_str(&lagged.data).unwrap();
    let mut replayed = Vec::new();
    let mut prev = seq(&last);
    for _ in 0..3 {
        let (id, text) = sse.message().await;
        assert!(seq(&id) > prev, "{id} after {prev}");
        prev = seq(&id);
        replayed.push(text);
    }
    assert_eq!(replayed, expected[2..]);
    // Everything after the cursor is accounted for: missed + replayed.
    assert_eq!(dropped.dropped + 3, prev - seq(&last));
    a.shutdown().await;
    b.shutdown().await;
}

/// The sequence number of an event id.
fn seq_of(id: &str) -> u64 {
    id.split_once('-').unwrap().1.parse().unwrap()
}

/// Waits until `events` has received `n` deliveries whose payload starts with `prefix`.
async fn delivered(events: &mut svc_overlay::EventStream, prefix: &str, n: usize) {
    let mut seen = 0;
    while seen < n {
        let got = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("delivered within 10 s")
            .expect("stream open");
        if let svc_overlay::Event::Received(d) = got {
            if String::from_utf8_lossy(&d.payload).starts_with(prefix) {
                seen += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_stream_resumes_with_its_own_cursors_and_reports_what_is_no_longer_kept() {
    let (a, b) = (node().await, node().await);
    let chat = overlay_proto::TopicId::from_name("chat");
    assert!(a.join(chat).await.unwrap());
    assert!(b.join(chat).await.unwrap());
    let (_, mut b_events) = b.subscribe(chat).await.unwrap().split();
    a.dial(b.local_addr()).await.unwrap();
    let (base, counters) = serve(b.clone()).await;
    let path = "/v1/topics/chat/gossip";
    // Not a member elsewhere: 409, cursor or not.
    let resp = SseClient::connect_to(&base, "/v1/topics/news/gossip", Some("0a0b0c0d-1")).await;
    assert_eq!(resp.status(), 409);
    let mut sse = SseClient::open_at(&base, path, None).await;
    // B's TOPICS must reach A before A's messages reach B: probe until one shows up.
    let mut first = None;
    let mut probes = 0;
    for k in 0..50 {
        a.publish(chat, Bytes::from(format!("probe {k}")))
            .await
            .unwrap();
        probes += 1;
        if let Ok(e) = tokio::time::timeout(Duration::from_millis(200), sse.next()).await {
            first = e.id;
            break;
        }
    }
    let first = first.expect("a topic delivery reaches the stream");
    // Probes published before the link carried the topic come later (catch-up IHAVE, then
    // GRAFT): wait until B has them all, then read the stream up to the last one.
    delivered(&mut b_events, "probe", probes).await;
    let mut last = first.clone();
    for _ in 1..probes {
        let e = tokio::time::timeout(Duration::from_secs(10), sse.next())
            .await
            .expect("every probe reaches the stream");
        last = e.id.expect("message events have ids");
    }
    drop(sse);

    // Two while away (B keeps three): a reconnect gets exactly them, numbered on from the
    // cursor, then live messages on the same stream.
    for n in 0..2 {
        a.publish(chat, Bytes::from(format!("away {n}")))
            .await
            .unwrap();
    }
    delivered(&mut b_events, "away", 2).await;
    let mut sse = SseClient::open_at(&base, path, Some(&last)).await;
    let mut prev = seq_of(&last);
    for n in 0..2 {
        let (id, text) = sse.message().await;
        assert_eq!(seq_of(&id), prev + 1, "{id} right after {prev}");
        assert_eq!(text, format!("away {n}"));
        prev = seq_of(&id);
    }
    a.publish(chat, Bytes::from_static(b"live")).await.unwrap();
    let (id, text) = sse.message().await;
    assert_eq!((seq_of(&id), text.as_str()), (prev + 1, "live"));
    let snapshot = counters.snapshot();
    assert_eq!(
        (
            snapshot.sse_resumes,
            snapshot.sse_replayed,
            snapshot.sse_replay_missed
        ),
        (1, 2, 0)
    );
    drop(sse);

    // Five more while away: from the first cursor, what is no longer kept is one `lagged`
    // count, then the three kept, oldest first; every message after the cursor is accounted.
    for n in 0..5 {
        a.publish(chat, Bytes::from(format!("gone {n}")))
            .await
            .unwrap();
    }
    delivered(&mut b_events, "gone", 5).await;
    let mut sse = SseClient::open_at(&base, path, Some(&first)).await;
    let lagged = sse.next().await;
    assert_eq!(lagged.name, "lagged", "{lagged:?}");
    let dropped: LaggedEvent = serde_json::from_str(&lagged.data).unwrap();
    let mut replayed = Vec::new();
    let mut prev = seq_of(&first);
    for _ in 0..3 {
        let (id, text) = sse.message().await;
        assert!(seq_of(&id) > prev);
        prev = seq_of(&id);
        replayed.push(text);
    }
    assert_eq!(replayed, ["gone 2", "gone 3", "gone 4"]);
    assert_eq!(dropped.dropped + 3, prev - seq_of(&first));
    // A cursor of this topic's numbering it never issued is a typed 400.
    let ahead = format!("{}-{}", &first[..8], prev + 1000);
    let resp = SseClient::connect_to(&base, path, Some(&ahead)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_last_event_id");
    // Leaving the topic ends its stream.
    drop(b_events);
    // (The dropped handle's own leave may get there first: either way the node is out.)
    b.leave(chat).await.unwrap();
    assert!(!b.topics().await.contains(&chat));
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sse.resp.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream ends when the node leaves the topic"
    );
    a.shutdown().await;
    b.shutdown().await;
}
