//! Router-level tests of the HTTP layer against a fake node.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use svc_overlay::OverlayError;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use futures_util::StreamExt as _;
use overlay_proto::capability::{control_caveat, mint, Caveat, Scope};
use overlay_proto::score::{PeerScore, ScoreComponents, Standing};
use overlay_proto::{
    ConnId, Delivery, Direction, MacKey, MessageId, NodeConfig, NodeStats, PeerId, SessionInfo,
    SessionState,
};
use serde_json::Value;
use svc_overlay::api::Error;
use svc_overlay::api::{Cursor, CursorError, DeliveryLog, Replay, ReplayBounds, Sequenced};
use svc_overlay::feed;
use svc_overlay::http::{
    router, router_with, ConnMeta, GossipSubscription, HttpConfig, OverlayApi, ReadinessView,
    RouterSlot, Routes,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;

#[derive(Clone)]
struct Fake {
    inner: Arc<Inner>,
}

struct Inner {
    ready: Mutex<ReadinessView>,
    broadcasts: Mutex<Vec<Bytes>>,
    broadcast_err: Mutex<Option<Error>>,
    dial: Mutex<Result<PeerId, Error>>,
    dialed: Mutex<Vec<String>>,
    hold_dials: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    deliveries: Arc<DeliveryLog>,
    topics: Mutex<std::collections::BTreeSet<overlay_proto::TopicId>>,
}

struct FakeSub(feed::Receiver<Arc<Sequenced>>);

impl GossipSubscription for FakeSub {
    async fn recv(&mut self) -> Option<Sequenced> {
        loop {
            match self.0.recv().await {
                Ok(d) => return Some(Arc::unwrap_or_clone(d)),
                Err(feed::RecvError::Lagged(_)) => continue,
                Err(feed::RecvError::Closed) => return None,
            }
        }
    }
}

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

impl Fake {
    fn new() -> Self {
        let deliveries = Arc::new(DeliveryLog::new(0x5eed, ReplayBounds::default(), 4096));
        Fake {
            inner: Arc::new(Inner {
                ready: Mutex::new(ReadinessView {
                    ready: true,
                    missing: Vec::new(),
                }),
                broadcasts: Mutex::new(Vec::new()),
                broadcast_err: Mutex::new(None),
                dial: Mutex::new(Ok(peer(7))),
                dialed: Mutex::new(Vec::new()),
                hold_dials: Mutex::new(None),
                deliveries,
                topics: Mutex::new(std::collections::BTreeSet::new()),
            }),
        }
    }

    fn deliver(&self, n: u8, payload: &'static [u8]) {
        let d = Delivery {
            topic: overlay_proto::TopicId::DEFAULT,
            id: MessageId([n; 32]),
            origin: peer(1),
            from: peer(2),
            hops: 2,
            payload: Bytes::from_static(payload),
        };
        self.inner.deliveries.publish(d);
    }
}

impl OverlayApi for Fake {
    type Subscription = FakeSub;
    type TopicSubscription = FakeSub;

    async fn join_topic(&self, topic: overlay_proto::TopicId) -> Result<bool, Error> {
        Ok(topic != overlay_proto::TopicId::DEFAULT
            && self.inner.topics.lock().unwrap().insert(topic))
    }

    async fn leave_topic(&self, topic: overlay_proto::TopicId) -> Result<bool, Error> {
        if topic == overlay_proto::TopicId::DEFAULT {
            return Err(Error::Overlay(OverlayError::NotJoined));
        }
        Ok(self.inner.topics.lock().unwrap().remove(&topic))
    }

    async fn publish(
        &self,
        topic: overlay_proto::TopicId,
        payload: Bytes,
    ) -> Result<MessageId, Error> {
        if !self.inner.topics.lock().unwrap().contains(&topic) {
            return Err(Error::Overlay(OverlayError::NotJoined));
        }
        self.inner.broadcasts.lock().unwrap().push(payload);
        Ok(MessageId([0xcd; 32]))
    }

    fn resume_topic(
        &self,
        topic: overlay_proto::TopicId,
        after: Option<Cursor>,
    ) -> Option<Result<(FakeSub, Replay), CursorError>> {
        if !self.inner.topics.lock().unwrap().contains(&topic) {
            return None;
        }
        Some(
            self.inner
                .deliveries
                .resume(after)
                .map(|(rx, replay)| (FakeSub(rx), replay)),
        )
    }

    async fn broadcast(&self, payload: Bytes) -> Result<MessageId, Error> {
        if let Some(e) = self.inner.broadcast_err.lock().unwrap().clone() {
            return Err(e);
        }
        self.inner.broadcasts.lock().unwrap().push(payload);
        Ok(MessageId([0xab; 32]))
    }

    async fn dial(&self, addr: String) -> Result<PeerId, Error> {
        self.inner.dialed.lock().unwrap().push(addr);
        let hold = self.inner.hold_dials.lock().unwrap().clone();
        if let Some(hold) = hold {
            let _ = hold.acquire().await;
        }
        self.inner.dial.lock().unwrap().clone()
    }

    async fn peers(&self) -> Vec<SessionInfo> {
        vec![SessionInfo {
            listen: Some("127.0.0.1:9416".parse().unwrap()),
            conn: ConnId(3),
            peer: peer(9),
            remote: "127.0.0.1:4000".parse().unwrap(),
            direction: Direction::Outbound,
            state: SessionState::Running,
            kx_group: Some("X25519MLKEM768".to_string()),
            send_credit_frames: 500,
            queued_frames: 1,
            inflight_frames: 12,
            eager: true,
            score: PeerScore {
                score: -1.5,
                standing: Standing::Good,
                components: ScoreComponents {
                    first_deliveries: 5.0,
                    penalties: [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                },
            },
        }]
    }

    async fn stats(&self) -> NodeStats {
        NodeStats {
            sessions_running: 1,
            ..NodeStats::default()
        }
    }

    fn readiness(&self) -> ReadinessView {
        self.inner.ready.lock().unwrap().clone()
    }

    fn subscribe(&self) -> FakeSub {
        FakeSub(self.inner.deliveries.subscribe())
    }

    fn resume(&self, after: Option<Cursor>) -> Result<(FakeSub, Replay), CursorError> {
        let (rx, replay) = self.inner.deliveries.resume(after)?;
        Ok((FakeSub(rx), replay))
    }

    fn local_addr(&self) -> SocketAddr {
        "127.0.0.1:9415".parse().unwrap()
    }

    fn peer_id(&self) -> PeerId {
        peer(1)
    }
}

fn config() -> HttpConfig {
    let mut node = NodeConfig::default();
    node.auth.keys.insert("dev", "overlay", MacKey::DEV);
    node.max_message_bytes = 1000;
    HttpConfig::new(&node).with_metrics(Arc::new(|| {
        "# TYPE overlay_sessions_active gauge\noverlay_sessions_active 3\n".to_string()
    }))
}

fn app(fake: &Fake) -> Router {
    router(fake.clone(), config())
}

const LOOPBACK: &str = "127.0.0.1:5555";
const REMOTE: &str = "192.0.2.10:5555";

/// What the fake's listener is (`Fake::local_addr`): the `Host` a legitimate client names.
const HOST: &str = "127.0.0.1:9415";

/// A request as a command-line client sends it: `Host` names the listener, a `POST` carries
/// a non-simple content type.
fn req(method: &str, uri: &str, from: &str, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST);
    if method == "POST" {
        b = b.header(header::CONTENT_TYPE, "application/octet-stream");
    }
    let mut r = b.body(body.into()).unwrap();
    let addr: SocketAddr = from.parse().unwrap();
    r.extensions_mut().insert(ConnectInfo(addr));
    r
}

async fn send(app: &Router, r: Request<Body>) -> Response {
    app.clone().oneshot(r).await.unwrap()
}

async fn send_owned(app: Router, r: Request<Body>) -> Response {
    app.oneshot(r).await.unwrap()
}

async fn body_bytes(resp: Response) -> Bytes {
    axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap()
}

async fn json(resp: Response) -> Value {
    serde_json::from_slice(&body_bytes(resp).await).unwrap()
}

#[tokio::test]
async fn healthz_answers_ok_with_a_request_id() {
    let fake = Fake::new();
    let resp = send(&app(&fake), req("GET", "/healthz", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(id.len(), 16);
    assert_eq!(&body_bytes(resp).await[..], b"ok");
}

#[tokio::test]
async fn readyz_follows_the_node_readiness() {
    let fake = Fake::new();
    let app = app(&fake);
    let resp = send(&app, req("GET", "/readyz", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await, serde_json::json!({"ready": true}));

    *fake.inner.ready.lock().unwrap() = ReadinessView {
        ready: false,
        missing: vec!["send_queue".to_string()],
    };
    let resp = send(&app, req("GET", "/readyz", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    assert_eq!(
        json(resp).await,
        serde_json::json!({"ready": false, "degraded": true, "missing": ["send_queue"], "retry_after": 1})
    );

    fake.inner.ready.lock().unwrap().ready = true;
    let resp = send(&app, req("GET", "/readyz", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_is_prometheus_text() {
    let fake = Fake::new();
    let resp = send(&app(&fake), req("GET", "/metrics", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4"
    );
    let text = body_bytes(resp).await;
    assert!(std::str::from_utf8(&text)
        .unwrap()
        .contains("overlay_sessions_active 3"));
}

#[tokio::test]
async fn broadcast_from_loopback_is_accepted() {
    let fake = Fake::new();
    let resp = send(&app(&fake), req("POST", "/v1/broadcast", LOOPBACK, "hello")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(json(resp).await["id"], "ab".repeat(32));
    assert_eq!(
        fake.inner.broadcasts.lock().unwrap().as_slice(),
        &[Bytes::from_static(b"hello")]
    );
}

#[tokio::test]
async fn topic_routes_join_publish_stream_and_leave() {
    let fake = Fake::new();
    let app = app(&fake);
    let chat_id = overlay_proto::TopicId::from_name("chat").to_hex();
    // Not joined: publish and stream are 409, leave is 404.
    let resp = send(
        &app,
        req("POST", "/v1/topics/chat/broadcast", LOOPBACK, "x"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(json(resp).await["error"], "not_joined");
    let resp = send(
        &app,
        req("GET", "/v1/topics/chat/gossip", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let resp = send(
        &app,
        req("DELETE", "/v1/topics/chat", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Join: 201, then 200.
    let resp = send(&app, req("PUT", "/v1/topics/chat", LOOPBACK, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        json(resp).await,
        serde_json::json!({"topic": "chat", "id": chat_id})
    );
    let resp = send(&app, req("PUT", "/v1/topics/chat", LOOPBACK, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The default topic is always joined, never left.
    let resp = send(
        &app,
        req("PUT", "/v1/topics/default", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(
        &app,
        req("DELETE", "/v1/topics/default", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    // Publish: 202 with the id; over the limit 413.
    let resp = send(
        &app,
        req("POST", "/v1/topics/chat/broadcast", LOOPBACK, "hi"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(json(resp).await["id"], "cd".repeat(32));
    let resp = send(
        &app,
        req(
            "POST",
            "/v1/topics/chat/broadcast",
            LOOPBACK,
            vec![0u8; 1001],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The stream answers with SSE.
    let resp = send(
        &app,
        req("GET", "/v1/topics/chat/gossip", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(resp);
    // Bad names: typed 400.
    for bad in ["a%2Fb", "a%20b", &"x".repeat(65), "%C3%A9"] {
        let resp = send(
            &app,
            req("PUT", &format!("/v1/topics/{bad}"), LOOPBACK, Body::empty()),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json(resp).await["error"], "bad_request");
    }
    // Leave: 204, then 404; control rules apply.
    let resp = send(
        &app,
        req("DELETE", "/v1/topics/chat", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = send(
        &app,
        req("DELETE", "/v1/topics/chat", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&app, req("PUT", "/v1/topics/chat", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn broadcast_limits_and_busy() {
    let fake = Fake::new();
    let app = app(&fake);
    let resp = send(
        &app,
        req("POST", "/v1/broadcast", LOOPBACK, vec![0u8; 1001]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(resp).await["error"], "too_large");

    // A body without a length that grows past the limit.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 100]))),
    );
    let resp = send(
        &app,
        req("POST", "/v1/broadcast", LOOPBACK, Body::from_stream(chunks)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fake.inner.broadcasts.lock().unwrap().is_empty());

    // Exactly the limit is fine.
    let resp = send(
        &app,
        req("POST", "/v1/broadcast", LOOPBACK, vec![0u8; 1000]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    *fake.inner.broadcast_err.lock().unwrap() = Some(Error::Overlay(OverlayError::Busy));
    let resp = send(&app, req("POST", "/v1/broadcast", LOOPBACK, "x")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    assert_eq!(
        json(resp).await,
        serde_json::json!({"error": "busy", "retry_after": 1})
    );

    *fake.inner.broadcast_err.lock().unwrap() = Some(Error::Overlay(OverlayError::ShuttingDown));
    let resp = send(&app, req("POST", "/v1/broadcast", LOOPBACK, "x")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(resp).await["error"], "shutting_down");
}

/// A control token (the `overlay`/`control` caveat) under the dev key with more caveats.
fn control_token(scope: Scope, caveats: Vec<Caveat>) -> String {
    let mut all = vec![control_caveat()];
    all.extend(caveats);
    mint(&MacKey::DEV, "overlay", "dev", scope, all)
}

/// `req` with a bearer token.
fn with_token(
    method: &str,
    path: &str,
    from: &str,
    token: &str,
    body: &'static str,
) -> Request<Body> {
    let mut r = req(method, path, from, body);
    r.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    r
}

/// Marks a request as arriving over TLS on the fake's listener.
fn over_tls(mut r: Request<Body>) -> Request<Body> {
    r.extensions_mut().insert(ConnMeta {
        local: HOST.parse().unwrap(),
        tls: true,
    });
    r
}

#[tokio::test]
async fn control_api_needs_loopback_or_a_control_token() {
    let fake = Fake::new();
    let app = app(&fake);
    for (method, path) in [
        ("POST", "/v1/broadcast"),
        ("GET", "/v1/peers"),
        ("GET", "/v1/stats"),
        ("POST", "/v1/dial"),
        ("GET", "/v1/gossip"),
    ] {
        let resp = send(&app, req(method, path, REMOTE, "x")).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(json(resp).await["error"], "forbidden");
    }
    // No connection info at all counts as remote.
    let r = Request::builder()
        .uri("/v1/peers")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, r).await.status(), StatusCode::FORBIDDEN);
    // Health and metrics are open.
    let resp = send(&app, req("GET", "/metrics", REMOTE, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let token = control_token(Scope::default(), Vec::new());
    // Over plain HTTP from a remote address a token is refused (it would travel in clear)…
    let resp = send(&app, with_token("GET", "/v1/peers", REMOTE, &token, "")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(json(resp).await["detail"]
        .as_str()
        .unwrap()
        .contains("plain HTTP"));
    // …accepted over TLS, from loopback, or when the listener allows plaintext tokens.
    let resp = send(
        &app,
        over_tls(with_token("GET", "/v1/peers", REMOTE, &token, "")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&app, with_token("GET", "/v1/peers", LOOPBACK, &token, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut cfg = config();
    cfg.auth.plaintext_tokens = true;
    let lenient = router(fake.clone(), cfg.clone());
    let resp = send(&lenient, with_token("GET", "/v1/peers", REMOTE, &token, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // A token under a key the node does not hold, garbage, a wrong tenant.
    let foreign = mint(
        &MacKey([9; 32]),
        "overlay",
        "dev",
        Scope::default(),
        vec![control_caveat()],
    );
    let other_tenant = control_token(Scope::default(), vec![Caveat::Tenant("acme".to_string())]);
    for bad in [foreign.as_str(), "not-a-token!", other_tenant.as_str()] {
        let resp = send(&lenient, with_token("GET", "/v1/peers", REMOTE, bad, "")).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{bad}");
    }
    // IPv4-mapped loopback counts as loopback.
    let resp = send(&app, req("GET", "/v1/peers", "[::ffff:127.0.0.1]:80", "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let stats = cfg.counters.snapshot();
    assert_eq!(stats.rejected("http_control_auth"), 3, "{stats:?}");
}

#[tokio::test]
async fn peer_session_tokens_are_not_control_credentials() {
    let fake = Fake::new();
    let cfg = config();
    let app = router(fake.clone(), cfg.clone());
    // A valid token under the node's key, as peers use for sessions: no control caveat.
    let session = mint(&MacKey::DEV, "overlay", "dev", Scope::default(), Vec::new());
    for from in [REMOTE, LOOPBACK] {
        let resp = send(
            &app,
            over_tls(with_token("GET", "/v1/peers", from, &session, "")),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{from}");
        let body = json(resp).await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("not a control token"),
            "{body}"
        );
    }
    // A malformed control caveat is not a control token either.
    let malformed = mint(
        &MacKey::DEV,
        "overlay",
        "dev",
        Scope::default(),
        vec![Caveat::Custom {
            ns: "overlay".to_string(),
            name: "control".to_string(),
            cbor: overlay_proto::capability::CborValue::Bool(false),
        }],
    );
    let resp = send(
        &app,
        over_tls(with_token("GET", "/v1/peers", REMOTE, &malformed, "")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(cfg.counters.snapshot().rejected("http_control_auth"), 3);
}

#[tokio::test]
async fn control_token_scope_is_enforced_per_route() {
    let fake = Fake::new();
    let app = app(&fake);
    let call = |method: &'static str, path: &'static str, token: &str, body: &'static str| {
        over_tls(with_token(method, path, REMOTE, token, body))
    };
    // Caveats: the verifier checks method and path from the request context.
    let post_broadcast = control_token(
        Scope::default(),
        vec![
            Caveat::Method(vec!["post".to_string()]),
            Caveat::PathPrefix("/v1/broadcast".to_string()),
        ],
    );
    let resp = send(&app, call("POST", "/v1/broadcast", &post_broadcast, "msg")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for (method, path) in [
        ("GET", "/v1/peers"),
        ("POST", "/v1/dial"),
        ("GET", "/v1/gossip"),
    ] {
        let resp = send(&app, call(method, path, &post_broadcast, "")).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Scope: methods and prefix enforced by the host.
    let read_peers = control_token(
        Scope {
            prefix: Some("/v1/peers".to_string()),
            methods: vec!["GET".to_string()],
            max_bytes: None,
        },
        Vec::new(),
    );
    let resp = send(&app, call("GET", "/v1/peers", &read_peers, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&app, call("GET", "/v1/stats", &read_peers, "")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let read_only = control_token(
        Scope {
            methods: vec!["get".to_string()],
            ..Scope::default()
        },
        Vec::new(),
    );
    let resp = send(&app, call("GET", "/v1/stats", &read_only, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&app, call("POST", "/v1/broadcast", &read_only, "m")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Scope: max_bytes against the declared body length.
    let small = control_token(
        Scope {
            max_bytes: Some(3),
            ..Scope::default()
        },
        Vec::new(),
    );
    let mut r = call("POST", "/v1/broadcast", &small, "abc");
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, "3".parse().unwrap());
    assert_eq!(send(&app, r).await.status(), StatusCode::ACCEPTED);
    let mut r = call("POST", "/v1/broadcast", &small, "abcd");
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, "4".parse().unwrap());
    assert_eq!(send(&app, r).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(fake.inner.broadcasts.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn browser_requests_cannot_drive_the_node() {
    let fake = Fake::new();
    let cfg = config();
    let app = router(fake.clone(), cfg.clone());
    // Any Origin header (a page's fetch, a form post) is refused, token or not.
    let mut r = req("GET", "/v1/peers", LOOPBACK, "");
    r.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(send(&app, r).await.status(), StatusCode::FORBIDDEN);
    let token = control_token(Scope::default(), Vec::new());
    let mut r = with_token("GET", "/v1/peers", LOOPBACK, &token, "");
    r.headers_mut()
        .insert(header::ORIGIN, "null".parse().unwrap());
    assert_eq!(send(&app, r).await.status(), StatusCode::FORBIDDEN);
    // DNS rebinding: the page's own host name reaches us through loopback.
    for host in ["evil.example:9415", "127.0.0.1:9999", "10.0.0.1:9415"] {
        let mut r = req("GET", "/v1/peers", LOOPBACK, "");
        r.headers_mut().insert(header::HOST, host.parse().unwrap());
        assert_eq!(
            send(&app, r).await.status(),
            StatusCode::FORBIDDEN,
            "{host}"
        );
    }
    let mut r = req("GET", "/v1/peers", LOOPBACK, "");
    r.headers_mut().remove(header::HOST);
    assert_eq!(
        send(&app, r).await.status(),
        StatusCode::FORBIDDEN,
        "no Host"
    );
    for host in ["localhost:9415", "127.0.0.1:9415"] {
        let mut r = req("GET", "/v1/peers", LOOPBACK, "");
        r.headers_mut().insert(header::HOST, host.parse().unwrap());
        assert_eq!(send(&app, r).await.status(), StatusCode::OK, "{host}");
    }
    // A no-cors POST can only carry a simple content type (or none).
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut r = req("POST", "/v1/broadcast", LOOPBACK, "x");
        match ct {
            Some(ct) => r
                .headers_mut()
                .insert(header::CONTENT_TYPE, ct.parse().unwrap()),
            None => r.headers_mut().remove(header::CONTENT_TYPE),
        };
        let resp = send(&app, r).await;
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(json(resp).await["error"], "unsupported_media_type");
    }
    assert!(fake.inner.broadcasts.lock().unwrap().is_empty());
    // With a token the content type does not matter.
    let mut r = with_token("POST", "/v1/broadcast", LOOPBACK, &token, "x");
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    assert_eq!(send(&app, r).await.status(), StatusCode::ACCEPTED);
    // Probes and metrics are not the control API: an Origin does not matter there.
    let mut r = req("GET", "/healthz", LOOPBACK, "");
    r.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(send(&app, r).await.status(), StatusCode::OK);
    let stats = cfg.counters.snapshot();
    assert_eq!(stats.rejected("http_origin"), 2, "{stats:?}");
    assert_eq!(stats.rejected("http_host"), 4, "{stats:?}");
    assert_eq!(stats.rejected("http_content_type"), 4, "{stats:?}");
}

#[tokio::test]
async fn loopback_trust_can_be_turned_off() {
    let fake = Fake::new();
    let mut cfg = config();
    cfg.auth.trust_loopback = false;
    let app = router(fake.clone(), cfg);
    let resp = send(&app, req("GET", "/v1/peers", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let token = control_token(Scope::default(), Vec::new());
    let resp = send(&app, with_token("GET", "/v1/peers", LOOPBACK, &token, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn routes_are_split_between_listeners() {
    let fake = Fake::new();
    let public = router_with(fake.clone(), config(), Routes::Public);
    let control = router_with(fake.clone(), config(), Routes::Control);
    for app in [&public, &control] {
        let resp = send(app, req("GET", "/healthz", LOOPBACK, "")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = send(&public, req("GET", "/metrics", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&public, req("GET", "/v1/peers", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&control, req("GET", "/v1/peers", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&control, req("GET", "/metrics", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_text_is_rendered_once_per_cache_period() {
    let fake = Fake::new();
    let renders = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&renders);
    let mut cfg = config().with_metrics(Arc::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        "overlay_sessions_active 3\n".to_string()
    }));
    cfg.metrics_cache = Duration::from_secs(3600);
    let app = router(fake.clone(), cfg.clone());
    for _ in 0..50 {
        let resp = send(&app, req("GET", "/metrics", REMOTE, "")).await;
        assert_eq!(&body_bytes(resp).await[..], b"overlay_sessions_active 3\n");
    }
    assert_eq!(renders.load(Ordering::Relaxed), 1);
    cfg.metrics_cache = Duration::ZERO;
    let app = router(fake, cfg);
    for _ in 0..10 {
        send(&app, req("GET", "/metrics", REMOTE, "")).await;
    }
    assert_eq!(renders.load(Ordering::Relaxed), 11);
}

#[tokio::test]
async fn control_requests_are_capped() {
    let fake = Fake::new();
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    *fake.inner.hold_dials.lock().unwrap() = Some(Arc::clone(&hold));
    let mut cfg = config();
    cfg.max_control_inflight = 1;
    let app = router(fake.clone(), cfg.clone());
    let dial = || {
        let mut r = req("POST", "/v1/dial", LOOPBACK, r#"{"addr":"127.0.0.1:1"}"#);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        r
    };
    let first = tokio::spawn(send_owned(app.clone(), dial()));
    wait_until("first dial running", || {
        !fake.inner.dialed.lock().unwrap().is_empty()
    })
    .await;
    let resp = send(&app, req("GET", "/v1/peers", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(resp).await["error"], "busy");
    // Probes are not control requests.
    let resp = send(&app, req("GET", "/healthz", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    hold.add_permits(1);
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    let resp = send(&app, req("GET", "/v1/peers", LOOPBACK, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(cfg.counters.snapshot().rejected("http_control_busy"), 1);
}

#[tokio::test]
async fn peers_lists_sessions() {
    let fake = Fake::new();
    let resp = send(
        &app(&fake),
        req("GET", "/v1/peers", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let rows = json(resp).await;
    assert_eq!(
        rows,
        serde_json::json!([{
            "peer_id": peer(9).to_string(),
            "addr": "127.0.0.1:4000",
            "listen": "127.0.0.1:9416",
            "direction": "outbound",
            "state": "running",
            "kx_group": "X25519MLKEM768",
            "credits": 500,
            "inflight": 12,
            "queued": 1,
            "eager": true,
            "score": {
                "score": -1.5,
                "standing": "good",
                "first_deliveries": 5.0,
                "penalties": {
                    "invalid_message": 0.0,
                    "violation": 0.0,
                    "broken_promise": 1.0,
                    "graft_flood": 0.0,
                    "ihave_flood": 0.0,
                    "duplicate_flood": 0.0,
                    "shuffle_flood": 0.0,
                    "validation_rejected": 0.0
                }
            }
        }])
    );
    let resp = send(
        &app(&fake),
        req("GET", "/v1/stats", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(json(resp).await["sessions_running"], 1);
}

#[tokio::test]
async fn dial_maps_errors() {
    let fake = Fake::new();
    let app = app(&fake);
    let dial = |body: &str| {
        let mut r = req("POST", "/v1/dial", LOOPBACK, body.to_string());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        r
    };
    let resp = send(&app, dial(r#"{"addr":"127.0.0.1:9999"}"#)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await["peer_id"], peer(7).to_string());
    assert_eq!(
        fake.inner.dialed.lock().unwrap().as_slice(),
        ["127.0.0.1:9999"]
    );

    for (err, status, kind) in [
        (
            Error::Overlay(OverlayError::Timeout),
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
        ),
        (
            Error::Overlay(OverlayError::Refused),
            StatusCode::BAD_GATEWAY,
            "refused",
        ),
        (
            Error::Overlay(OverlayError::Crypto),
            StatusCode::BAD_GATEWAY,
            "crypto",
        ),
        (
            Error::Overlay(OverlayError::Unauthorized),
            StatusCode::BAD_GATEWAY,
            "unauthorized",
        ),
        (
            Error::Overlay(OverlayError::Busy),
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
        ),
        (
            Error::Config("not a socket address".to_string()),
            StatusCode::BAD_REQUEST,
            "config",
        ),
    ] {
        *fake.inner.dial.lock().unwrap() = Err(err);
        let resp = send(&app, dial(r#"{"addr":"127.0.0.1:9999"}"#)).await;
        assert_eq!(resp.status(), status, "{kind}");
        assert_eq!(json(resp).await["error"], kind);
    }

    let resp = send(&app, dial(r#"{"addr":"#)).await;
    assert!(resp.status().is_client_error());
    assert_eq!(json(resp).await["error"], "bad_request");
    let resp = send(&app, dial(r#"{"addr":"nocolon"}"#)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Bodies of the other routes are bounded too.
    let big = format!(r#"{{"addr":"{}"}}"#, "a".repeat(100_000));
    let resp = send(&app, dial(&big)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let fake = Fake::new();
    let app = app(&fake);
    let resp = send(&app, req("GET", "/nope", LOOPBACK, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(resp).await["error"], "not_found");
    let resp = send(&app, req("DELETE", "/healthz", LOOPBACK, Body::empty())).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(resp).await["error"], "method_not_allowed");
}

/// Reads SSE events (blank-line separated blocks) from a body stream.
struct SseReader {
    stream: axum::body::BodyDataStream,
    buf: String,
}

impl SseReader {
    fn new(resp: Response) -> Self {
        SseReader {
            stream: resp.into_body().into_data_stream(),
            buf: String::new(),
        }
    }

    async fn next_block(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block = self.buf[..end].to_string();
                self.buf.drain(..end + 2);
                return block;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("sse timed out")
                .expect("sse ended")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Whether the stream ends (after what is buffered, within 10 s).
    async fn ended(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(Ok(chunk))) => {
                    let text = String::from_utf8_lossy(&chunk).to_string();
                    if text.contains("data:") {
                        return false;
                    }
                }
                Ok(Some(Err(_))) => return true,
            }
        }
    }

    /// The next non-comment event as (event name, data).
    async fn next_event(&mut self) -> (String, String) {
        loop {
            let block = self.next_block().await;
            let mut name = "message".to_string();
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(v.trim().to_string());
                }
            }
            if let Some(data) = data {
                return (name, data);
            }
        }
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
async fn gossip_streams_deliveries_as_sse() {
    let fake = Fake::new();
    let resp = send(
        &app(&fake),
        req("GET", "/v1/gossip", LOOPBACK, Body::empty()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut sse = SseReader::new(resp);
    wait_until("subscriber", || fake.inner.deliveries.receiver_count() == 1).await;
    fake.deliver(1, b"hello world");
    let (name, data) = sse.next_event().await;
    assert_eq!(name, "message");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["id"], "01".repeat(32));
    assert_eq!(v["origin"], peer(1).to_string());
    assert_eq!(v["hops"], 2);
    let payload = base64::engine::general_purpose::STANDARD
        .decode(v["data_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, b"hello world");

    // The subscription ends when the client goes away.
    drop(sse);
    fake.deliver(2, b"after");
    wait_until("unsubscribe", || {
        fake.inner.deliveries.receiver_count() == 0
    })
    .await;
}

#[tokio::test]
async fn gossip_keep_alive_comments() {
    let fake = Fake::new();
    let mut cfg = config();
    cfg.sse_keep_alive = Duration::from_millis(20);
    let app = router(fake.clone(), cfg);
    let resp = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
    let mut sse = SseReader::new(resp);
    let block = sse.next_block().await;
    assert!(block.starts_with(':'), "{block:?}");
}

#[tokio::test]
async fn a_gossip_client_behind_by_events_gets_lagged_and_is_closed() {
    let fake = Fake::new();
    let mut cfg = config();
    cfg.sse_buffer = 4;
    let app = router(fake.clone(), cfg.clone());
    let resp = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
    assert_eq!(resp.headers()[header::CONNECTION], "close");
    let mut sse = SseReader::new(resp);
    wait_until("subscriber", || fake.inner.deliveries.receiver_count() == 1).await;
    for n in 0..100u8 {
        fake.deliver(n, b"m");
    }
    // The fifth message finds the queue full: the client is dropped from the node at once.
    wait_until("unsubscribed", || {
        fake.inner.deliveries.receiver_count() == 0
    })
    .await;
    let (name, data) = sse.next_event().await;
    assert_eq!(name, "lagged");
    assert_eq!(data, r#"{"dropped":5}"#);
    assert!(sse.ended().await, "the stream ends after `lagged`");
    assert_eq!(cfg.counters.snapshot().closed("sse_lagged"), 1);
}

#[tokio::test]
async fn a_gossip_client_behind_by_bytes_gets_lagged_and_is_closed() {
    let fake = Fake::new();
    let mut cfg = config();
    cfg.sse_buffer = 1000;
    cfg.sse_buffer_bytes = 1500;
    let app = router(fake.clone(), cfg);
    let resp = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
    let mut sse = SseReader::new(resp);
    wait_until("subscriber", || fake.inner.deliveries.receiver_count() == 1).await;
    static BIG: [u8; 600] = [7u8; 600];
    for n in 0..3u8 {
        fake.deliver(n, &BIG);
    }
    wait_until("unsubscribed", || {
        fake.inner.deliveries.receiver_count() == 0
    })
    .await;
    let (name, data) = sse.next_event().await;
    assert_eq!(name, "lagged");
    assert_eq!(
        data, r#"{"dropped":2}"#,
        "one queued (~900 bytes), the next did not fit"
    );
    assert!(sse.ended().await);
}

#[tokio::test]
async fn gossip_streams_are_capped_per_address() {
    let fake = Fake::new();
    let mut cfg = config();
    cfg.max_sse_per_ip = 2;
    let app = router(fake.clone(), cfg.clone());
    let a = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
    let b = send(
        &app,
        req("GET", "/v1/gossip", "127.0.0.1:6000", Body::empty()),
    )
    .await;
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let c = send(
        &app,
        req("GET", "/v1/gossip", "127.0.0.1:6001", Body::empty()),
    )
    .await;
    assert_eq!(c.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Another address still gets one.
    let d = send(
        &app,
        req("GET", "/v1/gossip", "127.0.0.2:6000", Body::empty()),
    )
    .await;
    assert_eq!(d.status(), StatusCode::OK);
    assert_eq!(cfg.counters.snapshot().rejected("http_sse_per_ip"), 1);
}

#[tokio::test]
async fn gossip_subscribers_are_bounded() {
    let fake = Fake::new();
    let mut cfg = config();
    cfg.max_sse_clients = 1;
    let app = router(fake.clone(), cfg);
    let first = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(first);
    fake.deliver(1, b"x");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = send(&app, req("GET", "/v1/gossip", LOOPBACK, Body::empty())).await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn same_port_handler_serves_connections_from_the_slot() {
    let fake = Fake::new();
    let slot = RouterSlot::new(config().guard());
    let handler = slot.handler();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, remote) = listener.accept().await.unwrap();
            handler(stream, remote);
        }
    });
    // A connection that arrives before the router is installed waits for it.
    let early = tokio::spawn(raw_http(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    slot.set(app(&fake));
    let text = early.await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"), "{text}");

    // The real peer address reaches the control check (loopback here).
    let text = raw_http(
        addr,
        &format!("POST /v1/broadcast HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
}

#[tokio::test]
async fn separate_listener_serves_the_router() {
    let fake = Fake::new();
    let listener = svc_overlay::http::bind_listener("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = svc_overlay::http::spawn_listener(listener, app(&fake), config().guard());
    let text = raw_http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(text.contains("overlay_sessions_active 3"), "{text}");
    // Two requests on one kept-alive connection.
    let text = raw_http(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    task.abort();
}

// --- The OpenAPI description (docs/openapi.json) against the code. ---

mod openapi {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use svc_overlay::http::handlers::{
        BroadcastAccepted, DialDone, DialRequest, PeerRow, ReadyBody, TopicJoined, OPENAPI_JSON,
    };
    use svc_overlay::http::{Endpoint, ErrorBody, GossipEvent, LaggedEvent, HTTP_ERROR_KINDS};

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json is JSON")
    }

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// (METHOD, path) of every documented operation.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// Follows a local `$ref`.
    fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.strip_prefix('#').expect("local $ref");
                let target = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}"));
                resolve(doc, target)
            }
            None => v,
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| collect_refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn it_is_openapi_3_1_and_names_exactly_the_routes_of_the_code() {
        let doc = doc();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            doc["openapi"]
        );
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let code: BTreeSet<(String, String)> = Endpoint::ALL
            .iter()
            .map(|e| (e.method().to_string(), e.path().to_string()))
            .collect();
        assert_eq!(documented(&doc), code, "docs/openapi.json vs Endpoint::ALL");
        // Control routes name the bearer scheme, with the loopback alternative; probes none.
        for e in Endpoint::ALL {
            let op = &doc["paths"][e.path()][e.method().as_str().to_lowercase()];
            let expected = if e.is_control() {
                serde_json::json!([{"controlToken": []}, {}])
            } else {
                serde_json::json!([])
            };
            assert_eq!(op["security"], expected, "{e:?}");
            assert!(!op["responses"].as_object().unwrap().is_empty(), "{e:?}");
        }
        let scheme = &doc["components"]["securitySchemes"]["controlToken"];
        assert_eq!(
            (&scheme["type"], &scheme["scheme"]),
            (&serde_json::json!("http"), &serde_json::json!("bearer"))
        );
        // Every reference resolves.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 20, "{refs:?}");
        for r in &refs {
            let target = doc.pointer(r.strip_prefix('#').unwrap());
            assert!(target.is_some(), "dangling {r}");
        }
    }

    #[tokio::test]
    async fn the_router_serves_every_documented_route_with_documented_statuses() {
        let doc = doc();
        let fake = Fake::new();
        let app = app(&fake);
        for (method, path) in documented(&doc) {
            let body = if method == "POST" {
                Body::from("x")
            } else {
                Body::empty()
            };
            let resp = send(&app, req(&method, &path, LOOPBACK, body)).await;
            let status = resp.status();
            let op = &doc["paths"][&path][method.to_lowercase()];
            assert!(
                op["responses"].get(status.as_str()).is_some(),
                "{method} {path} answered {status}, not documented"
            );
            assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
            // Another method on the same path: 405 with the error body.
            let other = if method == "GET" { "DELETE" } else { "GET" };
            let resp = send(&app, req(other, &path, LOOPBACK, Body::empty())).await;
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{other} {path}"
            );
            let body: ErrorBody = serde_json::from_value(json(resp).await).unwrap();
            assert_eq!(body.error, "method_not_allowed");
        }
        let resp = send(&app, req("GET", "/v1/nothing", LOOPBACK, Body::empty())).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_served_description_is_the_docs_file() {
        let fake = Fake::new();
        let resp = send(
            &app(&fake),
            req("GET", "/v1/openapi.json", LOOPBACK, Body::empty()),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let file = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
        )
        .unwrap();
        assert_eq!(&body_bytes(resp).await[..], &file[..]);
        // Like every control route, it is behind the control check.
        let resp = send(
            &app(&fake),
            req("GET", "/v1/openapi.json", REMOTE, Body::empty()),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }

    /// Deserializes `v` into `T` and back; the JSON must be unchanged.
    fn round_trip<T: DeserializeOwned + Serialize>(what: &str, v: &Value) {
        let typed: T = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{what}: example does not fit the code's type: {e}\n{v}"));
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(&back, v, "{what}: example changes through the code's type");
    }

    /// Round-trips an example of component schema `name`; returns the schemas it covers.
    fn check_example(name: &str, v: &Value) -> Vec<&'static str> {
        match name {
            "Error" => round_trip::<ErrorBody>(name, v),
            "Ready" => round_trip::<ReadyBody>(name, v),
            "BroadcastAccepted" => round_trip::<BroadcastAccepted>(name, v),
            "DialRequest" => round_trip::<DialRequest>(name, v),
            "DialDone" => round_trip::<DialDone>(name, v),
            "PeerRow" => {
                round_trip::<PeerRow>(name, v);
                return vec!["PeerRow", "ScoreRow"];
            }
            "NodeStats" => round_trip::<NodeStats>(name, v),
            "GossipEvent" => round_trip::<GossipEvent>(name, v),
            "LaggedEvent" => round_trip::<LaggedEvent>(name, v),
            "TopicJoined" => round_trip::<TopicJoined>(name, v),
            other => panic!("schema {other} has no Rust type in this test"),
        }
        match name {
            "Error" => vec!["Error"],
            "Ready" => vec!["Ready"],
            "BroadcastAccepted" => vec!["BroadcastAccepted"],
            "DialRequest" => vec!["DialRequest"],
            "DialDone" => vec!["DialDone"],
            "NodeStats" => vec!["NodeStats"],
            "GossipEvent" => vec!["GossipEvent"],
            "TopicJoined" => vec!["TopicJoined"],
            _ => vec!["LaggedEvent"],
        }
    }

    /// The component a media schema names: `$ref`, or an array of `$ref`.
    fn component_of(schema: &Value) -> Option<(String, bool)> {
        let name = |r: &Value| {
            r.as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .map(str::to_string)
        };
        if let Some(n) = name(&schema["$ref"]) {
            return Some((n, false));
        }
        if schema["type"] == "array" {
            return name(&schema["items"]["$ref"]).map(|n| (n, true));
        }
        None
    }

    #[test]
    fn every_example_round_trips_through_the_handlers_types() {
        let doc = doc();
        let mut covered: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut note = |names: Vec<&'static str>| {
            for n in names {
                *covered.entry(n).or_default() += 1;
            }
        };
        // Examples inside the component schemas.
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            for ex in schema["examples"].as_array().into_iter().flatten() {
                note(check_example(name, ex));
            }
        }
        // Examples of request and response bodies.
        let mut media = Vec::new();
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                if let Some(c) = op["requestBody"]["content"].as_object() {
                    media.extend(c.values());
                }
                for (_, r) in op["responses"].as_object().unwrap() {
                    if let Some(c) = resolve(&doc, r)["content"].as_object() {
                        media.extend(c.values());
                    }
                }
            }
        }
        for m in media {
            let Some((name, array)) = component_of(&m["schema"]) else {
                continue;
            };
            for (_, ex) in m["examples"].as_object().into_iter().flatten() {
                let value = &ex["value"];
                if array {
                    for item in value.as_array().expect("an array example") {
                        note(check_example(&name, item));
                    }
                } else {
                    note(check_example(&name, value));
                }
            }
        }
        let schemas: BTreeSet<&str> = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let checked: BTreeSet<&str> = covered.keys().copied().collect();
        assert_eq!(
            checked, schemas,
            "every schema has an example checked: {covered:?}"
        );
        assert!(covered["Error"] >= 10, "{covered:?}");
    }

    #[tokio::test]
    async fn the_schemas_name_every_field_of_the_code() {
        let doc = doc();
        let props = |name: &str| -> BTreeSet<String> {
            doc["components"]["schemas"][name]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        let keys =
            |v: Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        let stats = serde_json::to_value(NodeStats::default()).unwrap();
        assert_eq!(
            props("NodeStats"),
            keys(stats),
            "docs/openapi.json is out of date with overlay_proto::NodeStats: add the field to \
             components.schemas.NodeStats (properties, required) and to its examples"
        );
        let peers = Fake::new().peers().await;
        let row = serde_json::to_value(PeerRow::from(&peers[0])).unwrap();
        let hint = "docs/openapi.json is out of date with http::handlers::PeerRow / ScoreRow";
        assert_eq!(props("ScoreRow"), keys(row["score"].clone()), "{hint}");
        assert_eq!(props("PeerRow"), keys(row), "{hint}");
        let ready = ReadyBody {
            ready: false,
            degraded: true,
            missing: vec!["x".into()],
            retry_after: Some(1),
        };
        assert_eq!(props("Ready"), keys(serde_json::to_value(ready).unwrap()));
        let err = ErrorBody {
            error: "busy".into(),
            retry_after: Some(1),
            detail: Some("d".into()),
        };
        assert_eq!(props("Error"), keys(serde_json::to_value(err).unwrap()));
    }

    /// Every label of the node's errors (exhaustive: a new variant fails to compile here).
    fn core_labels() -> Vec<&'static str> {
        use overlay_proto::OverlayError as E;
        let all = [
            E::Timeout,
            E::Refused,
            E::Crypto,
            E::Busy,
            E::Malformed,
            E::TooLarge,
            E::Unauthorized,
            E::Forbidden,
            E::Quota,
            E::NotConnected,
            E::ShuttingDown,
            E::NotJoined,
            E::TooManyTopics,
        ];
        for e in all {
            match e {
                E::Timeout
                | E::Refused
                | E::Crypto
                | E::Busy
                | E::Malformed
                | E::TooLarge
                | E::Unauthorized
                | E::Forbidden
                | E::Quota
                | E::NotConnected
                | E::ShuttingDown
                | E::NotJoined
                | E::TooManyTopics => {}
            }
        }
        all.iter().map(|e| e.label()).collect()
    }

    #[test]
    fn the_error_labels_are_the_ones_the_code_returns() {
        let doc = doc();
        let documented: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]
            ["error"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let mut code: BTreeSet<String> = HTTP_ERROR_KINDS.iter().map(|s| s.to_string()).collect();
        code.extend(core_labels().into_iter().map(String::from));
        let io = Error::Io(Arc::new(std::io::Error::other("x")));
        let config = Error::Config("x".into());
        code.extend([io.label(), config.label()].map(String::from));
        // `tls` (driver TLS failures) and `other` (a library error without a core kind).
        code.extend(["tls", "other"].map(String::from));
        assert_eq!(documented, code);
    }
}
