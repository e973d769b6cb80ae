//! The HTTP side of the overlay port under abuse, over real sockets.
//!
//! Each test runs one stall from 127.0.0.1 against a real node (the same-port HTTP handler
//! behind the runtime's first-byte demultiplexer) and checks that `/healthz` from 127.0.0.2
//! (loopback too) answers 200 within a second while the attack runs, that the node keeps
//! working, and that the attackers' connections are closed within their timeouts.
//!
//! 300 attacking connections need about 600 file descriptors in this process (both ends);
//! the soft limit is raised towards the hard limit first, and the attack is scaled down (with
//! a printed note) only if that is still too low.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svc_overlay::OverlayError;

use bytes::Bytes;
use overlay_proto::{Delivery, MessageId, PeerId};
use svc_overlay::api::{Cursor, CursorError, DeliveryLog, Replay, ReplayBounds, Sequenced};
use svc_overlay::feed;
use svc_overlay::http::{
    router, spawn_listener, GossipSubscription, HttpConfig, HttpCounters, HttpLimits, HttpStats,
    OverlayApi, ReadinessView, RouterSlot,
};
use svc_overlay::Overlay;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Attacking connections per test (the figure).
const ATTACKERS: usize = 300;

/// Limits short enough for a fast test; the attack is bigger than `max_conns`.
fn test_limits() -> HttpLimits {
    HttpLimits {
        max_conns: 128,
        max_conns_per_ip: 1000,
        probe_reserve: 4,
        evict_after: Duration::ZERO,
        header_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_millis(1500),
        body_timeout: Duration::from_millis(1500),
        write_timeout: Duration::from_millis(1500),
        max_pipelined: 16,
    }
}

/// Raises the soft file-descriptor limit as far as allowed; returns how many attacking
/// connections this process can afford.
fn attackers_affordable() -> usize {
    let mut lim = libc_rlimit();
    if lim.0 < lim.1 {
        set_soft_limit(lim.1.min(65_536));
        lim = libc_rlimit();
    }
    // Both ends of every connection live in this process, plus the runtime's own.
    let affordable = usize::try_from(lim.0.saturating_sub(200) / 2).unwrap_or(ATTACKERS);
    if affordable < ATTACKERS {
        println!(
            "NOTE: file-descriptor soft limit {} allows {affordable} attacking connections, not {ATTACKERS}",
            lim.0
        );
    }
    affordable.min(ATTACKERS)
}

fn libc_rlimit() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    for line in text.lines() {
        if line.starts_with("Max open files") {
            let nums: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if nums.len() >= 2 {
                return (nums[0], nums[1]);
            }
        }
    }
    (1024, 1024)
}

fn set_soft_limit(n: u64) {
    // `prlimit` on our own pid; absent tools or permissions just leave the limit as it is.
    let _ = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={n}:"))
        .status();
}

/// A real node serving HTTP on its overlay port with `config`.
struct Node {
    overlay: Overlay,
    counters: HttpCounters,
    renders: Arc<AtomicUsize>,
}

impl Node {
    async fn start(limits: HttpLimits) -> Node {
        Node::start_with(limits, 400).await
    }

    /// A node whose `/metrics` text has `series` lines (about 40 bytes each).
    async fn start_with(limits: HttpLimits, series: usize) -> Node {
        let mut node_cfg = overlay_proto::NodeConfig::default();
        svc_overlay::api::install_dev_auth(&mut node_cfg.auth);
        let renders = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&renders);
        // About 16 KiB, like a busy node's exposition.
        let text: String = (0..series)
            .map(|i| format!("overlay_test_series{{n=\"{i}\"}} {i}\n"))
            .collect();
        let mut cfg = HttpConfig::new(&node_cfg).with_metrics(Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            text.clone()
        }));
        cfg.limits = limits;
        let counters = cfg.counters.clone();
        let slot = RouterSlot::new(cfg.guard());
        let overlay = Overlay::builder()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .node_config(node_cfg)
            .seed(7)
            .http_handler(slot.handler())
            .build()
            .await
            .expect("node starts");
        slot.set(router(overlay.clone(), cfg));
        Node {
            overlay,
            counters,
            renders,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.overlay.local_addr()
    }
}

/// A connection to `to` from the local address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// `GET /healthz` from 127.0.0.2: the status line and how long the answer took.
async fn probe(to: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = connect_from([127, 0, 0, 2], to).await?;
        s.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).to_string())
    })
    .await;
    let text = match answer {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "no answer within 5 s".to_string(),
    };
    let status = text.lines().next().unwrap_or("").to_string();
    (status, started.elapsed())
}

/// Probes `n` times from 127.0.0.2; each must answer 200 within a second.
async fn probes_pass(to: SocketAddr, n: usize) {
    for i in 0..n {
        let (status, took) = probe(to).await;
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "probe {i}: {status:?} after {took:?}"
        );
        assert!(took < Duration::from_secs(1), "probe {i} took {took:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the server has no HTTP connection open; returns how long that took.
async fn all_closed(counters: &HttpCounters, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let open = counters.snapshot().open_conns;
        if open == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{open} HTTP connections still open after {within:?}: {:?}",
            counters.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens `n` attacking connections from 127.0.0.1 and writes `prefix` on each; connections
/// the server refuses at once are counted as refused.
async fn attack(to: SocketAddr, n: usize, prefix: &[u8]) -> (Vec<TcpStream>, usize) {
    let mut conns = Vec::with_capacity(n);
    let mut refused = 0;
    for _ in 0..n {
        match connect_from([127, 0, 0, 1], to).await {
            Ok(mut s) => {
                if s.write_all(prefix).await.is_ok() {
                    conns.push(s);
                } else {
                    refused += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    (conns, refused)
}

/// After an attack on `node`: five probes from another address pass, the control API still
/// answers, and every connection is closed within `grace` + 3 s. Prints how long the closing
/// took after the probes (labelled `what`) and returns the counters.
async fn rides_out(node: &Node, grace: Duration, what: &str) -> HttpStats {
    probes_pass(node.addr(), 5).await;
    node_still_works(node).await;
    let took = all_closed(&node.counters, grace + Duration::from_secs(3)).await;
    let stats = node.counters.snapshot();
    println!("{what}: all closed {took:?} after the probes; {stats:?}");
    stats
}

/// The node still does its work: the control API answers from loopback.
async fn node_still_works(node: &Node) {
    let addr = node.addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /v1/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let _ = node.overlay.stats().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_metrics_never_read_do_not_starve_probes() {
    let n = attackers_affordable();
    let limits = test_limits();
    let node = Node::start(limits.clone()).await;
    let to = node.addr();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {to}\r\n\r\n");
    let pipeline = request.repeat(200);
    let started = Instant::now();
    let (conns, _) = attack(to, n, pipeline.as_bytes()).await;
    let stats = rides_out(
        &node,
        limits.write_timeout,
        &format!("pipelined /metrics x{n}"),
    )
    .await;
    assert!(stats.rejected("http_pipeline") > 0, "{stats:?}");
    // The exposition is rendered at most once per cache period however hard it is scraped.
    let renders = node.renders.load(Ordering::Relaxed);
    let periods = started.elapsed().as_millis() / 500 + 2;
    assert!(
        renders as u128 <= periods,
        "{renders} renders in {periods} periods"
    );
    drop(conns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_are_closed_by_the_write_timeout() {
    // Loopback takes about 3 MB per connection into kernel buffers before a write blocks
    // (measured: 2.9 MB with a 4 KiB receive buffer), so this attack uses a 4.4 MB exposition
    // and 20 connections (about 60 MB of kernel memory) rather than 300 (about 900 MB).
    let n = 20;
    let limits = test_limits();
    let node = Node::start_with(limits.clone(), 110_000).await;
    let to = node.addr();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {to}\r\n\r\n");
    let mut conns = Vec::new();
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if let Ok(mut s) = socket.connect(to).await {
            if s.write_all(request.as_bytes()).await.is_ok() {
                conns.push(s);
            }
        }
    }
    let stats = rides_out(
        &node,
        limits.write_timeout,
        &format!("non-reading /metrics x{n}"),
    )
    .await;
    assert!(stats.closed("write_timeout") > 0, "{stats:?}");
    assert_eq!(
        stats.closed("write_timeout") + stats.closed("evicted"),
        conns.len() as u64,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_headers_do_not_starve_probes() {
    let n = attackers_affordable();
    let limits = test_limits();
    let node = Node::start(limits.clone()).await;
    let to = node.addr();
    let (conns, _) = attack(to, n, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    let stats = rides_out(
        &node,
        limits.header_timeout,
        &format!("unfinished headers x{n}"),
    )
    .await;
    assert!(
        stats.closed("header_timeout") + stats.closed("evicted") > 0,
        "{stats:?}"
    );
    // Every attacker sees its connection closed.
    for mut s in conns {
        let mut buf = [0u8; 64];
        let end = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "{end:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_do_not_starve_probes() {
    let n = attackers_affordable();
    let limits = test_limits();
    let node = Node::start(limits.clone()).await;
    let to = node.addr();
    let head = format!(
        "POST /v1/broadcast HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nab"
    );
    let (mut conns, _) = attack(to, n, head.as_bytes()).await;
    // One more byte now and then: never the whole body.
    let dribble = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for s in &mut conns {
                let _ = s.write_all(b"x").await;
            }
        }
        conns
    });
    probes_pass(to, 5).await;
    let took = all_closed(&node.counters, limits.body_timeout + Duration::from_secs(3)).await;
    // (While the attack runs, its requests hold the control slots — at most `body_timeout`
    // each — so the control API answers 503 `busy`; afterwards it is back.)
    node_still_works(&node).await;
    let stats = node.counters.snapshot();
    println!("slow bodies x{n}: all closed {took:?} after the probes; {stats:?}");
    assert!(stats.closed("body_timeout") > 0, "{stats:?}");
    drop(dribble.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_cap_refuses_the_excess_at_once() {
    let n = attackers_affordable();
    let limits = HttpLimits {
        max_conns_per_ip: 32,
        evict_after: Duration::from_secs(3600),
        ..test_limits()
    };
    let node = Node::start(limits.clone()).await;
    let to = node.addr();
    let (conns, _) = attack(to, n, b"GET /healthz HTTP/1.1\r\n").await;
    probes_pass(to, 3).await;
    let stats = node.counters.snapshot();
    assert!(stats.open_conns <= 32, "{stats:?}");
    assert_eq!(
        stats.rejected("http_conns_per_ip"),
        (n - 32) as u64,
        "{stats:?}"
    );
    drop(conns);
    all_closed(&node.counters, Duration::from_secs(3)).await;
    node_still_works(&node).await;
}

// --- SSE: a backend whose deliveries the test injects directly. ---

#[derive(Clone)]
struct Feed {
    deliveries: Arc<DeliveryLog>,
}

struct FeedSub(feed::Receiver<Arc<Sequenced>>);

impl GossipSubscription for FeedSub {
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

impl OverlayApi for Feed {
    type Subscription = FeedSub;
    type TopicSubscription = FeedSub;

    async fn join_topic(&self, _: overlay_proto::TopicId) -> Result<bool, svc_overlay::api::Error> {
        Err(svc_overlay::api::Error::Overlay(OverlayError::Refused))
    }

    async fn leave_topic(
        &self,
        _: overlay_proto::TopicId,
    ) -> Result<bool, svc_overlay::api::Error> {
        Ok(false)
    }

    async fn publish(
        &self,
        _: overlay_proto::TopicId,
        _: Bytes,
    ) -> Result<MessageId, svc_overlay::api::Error> {
        Err(svc_overlay::api::Error::Overlay(OverlayError::NotJoined))
    }

    fn resume_topic(
        &self,
        _: overlay_proto::TopicId,
        _: Option<Cursor>,
    ) -> Option<Result<(FeedSub, Replay), CursorError>> {
        None
    }

    async fn broadcast(&self, _: Bytes) -> Result<MessageId, svc_overlay::api::Error> {
        Ok(MessageId([0; 32]))
    }

    async fn dial(&self, _: String) -> Result<PeerId, svc_overlay::api::Error> {
        Err(svc_overlay::api::Error::Overlay(OverlayError::Refused))
    }

    async fn peers(&self) -> Vec<overlay_proto::SessionInfo> {
        Vec::new()
    }

    async fn stats(&self) -> overlay_proto::NodeStats {
        overlay_proto::NodeStats::default()
    }

    fn readiness(&self) -> ReadinessView {
        ReadinessView {
            ready: true,
            missing: Vec::new(),
        }
    }

    fn subscribe(&self) -> FeedSub {
        FeedSub(self.deliveries.subscribe())
    }

    fn resume(&self, after: Option<Cursor>) -> Result<(FeedSub, Replay), CursorError> {
        let (rx, replay) = self.deliveries.resume(after)?;
        Ok((FeedSub(rx), replay))
    }

    fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9415))
    }

    fn peer_id(&self) -> PeerId {
        PeerId([1; 32])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_non_readers_are_closed() {
    let deliveries = Arc::new(DeliveryLog::new(1, ReplayBounds::default(), 4096));
    let feed = Feed { deliveries };
    let mut node_cfg = overlay_proto::NodeConfig::default();
    svc_overlay::api::install_dev_auth(&mut node_cfg.auth);
    let mut cfg = HttpConfig::new(&node_cfg);
    cfg.limits = test_limits();
    cfg.max_sse_per_ip = 8;
    cfg.sse_buffer_bytes = 64 * 1024;
    let counters = cfg.counters.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = listener.local_addr().unwrap();
    let task = spawn_listener(listener, router(feed.clone(), cfg.clone()), cfg.guard());

    // 20 streams from one address that never read: 8 are served, 12 refused with 503.
    let request = format!("GET /v1/gossip HTTP/1.1\r\nHost: {to}\r\n\r\n");
    let mut streams = Vec::new();
    for _ in 0..20 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(to).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        streams.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while feed.deliveries.receiver_count() < 8 {
        assert!(Instant::now() < deadline, "streams not subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while counters.snapshot().rejected("http_sse_per_ip") < 12 {
        assert!(Instant::now() < deadline, "{:?}", counters.snapshot());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.snapshot().rejected("http_sse_per_ip"), 12);

    // Messages keep coming; nobody reads.
    let payload = Bytes::from(vec![b'x'; 4096]);
    let flood_feed = feed.clone();
    let flood = tokio::spawn(async move {
        for n in 0..4000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            flood_feed.deliveries.publish(Delivery {
                topic: overlay_proto::TopicId::DEFAULT,
                id: MessageId(id),
                origin: PeerId([2; 32]),
                from: PeerId([3; 32]),
                hops: 1,
                payload: payload.clone(),
            });
            if n % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    probes_pass(to, 3).await;
    flood.await.unwrap();
    let limits = test_limits();
    let took = all_closed(&counters, limits.write_timeout + Duration::from_secs(3)).await;
    let stats = counters.snapshot();
    println!("SSE non-readers: all closed {took:?} after the flood; {stats:?}");
    assert!(
        stats.closed("sse_lagged") + stats.closed("write_timeout") >= 8,
        "{stats:?}"
    );
    assert_eq!(
        feed.deliveries.receiver_count(),
        0,
        "subscriptions released"
    );
    task.abort();
}
