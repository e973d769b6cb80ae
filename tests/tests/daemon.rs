//! One daemon as a real process: start-to-ready, health and metrics on both listeners, the
//! control API, readiness under a connection flood, graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use overlay_e2e::{poll_until, Daemon, DaemonOpts, DEADLINE};
use svc_overlay::tls::{client_config, server_name, Identity, TlsOptions};
use tokio::net::TcpStream;

#[tokio::test]
async fn starts_ready_serves_health_metrics_and_control_then_stops_cleanly() {
    let d = Daemon::start(DaemonOpts::default()).await;
    println!(
        "start-to-ready: {:.1} ms (spawn to first /readyz 200)",
        d.start_to_ready.as_secs_f64() * 1e3
    );
    let own = d
        .log
        .text()
        .lines()
        .find(|l| l.contains("ready in "))
        .map(str::to_string);
    println!(
        "daemon reports: {}",
        own.as_deref().unwrap_or("(no ready line yet)")
    );
    assert!(d.start_to_ready < DEADLINE);
    assert!(
        d.peer_id.starts_with("peer:") && d.peer_id.len() == 69,
        "{}",
        d.peer_id
    );
    assert!(d.log.text().contains("(dev mode)"));

    // Same port as the overlay, and the metrics listener.
    for base in [d.url(""), d.metrics_url("")] {
        let resp = d
            .http()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
        let resp = d.http().get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), r#"{"ready":true}"#);
        let resp = d
            .http()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
        let text = resp.text().await.unwrap();
        assert!(text.contains("http_requests_total"), "{text}");
    }

    // Control API from loopback.
    let (status, peers) = d.get_json("/v1/peers").await;
    assert_eq!(status, 200);
    assert_eq!(peers, serde_json::json!([]));
    let (status, body) = d.broadcast("nobody listens").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"].as_str().unwrap().len(), 64);
    let resp = d
        .http()
        .post(d.url("/v1/broadcast"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 1_048_401])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A dial to a port nobody listens on fails with a gateway error, not a hang.
    let closed = overlay_e2e::free_port();
    let resp = d
        .http()
        .post(d.url("/v1/dial"))
        .json(&serde_json::json!({"addr": format!("127.0.0.1:{closed}")}))
        .send()
        .await
        .unwrap();
    assert!(
        [502, 504].contains(&resp.status().as_u16()),
        "{}",
        resp.status()
    );
    let err: serde_json::Value = resp.json().await.unwrap();
    assert!(err["error"].is_string(), "{err}");

    // An open gossip stream does not hold the shutdown up.
    let mut sse = d.gossip().await;
    let stopping = Instant::now();
    let status = d.terminate();
    assert!(status.success(), "exit status {status}");
    println!(
        "stopped {:.0} ms after SIGTERM",
        stopping.elapsed().as_secs_f64() * 1e3
    );
    // The stream ended with the process.
    assert!(sse
        .next_event(Instant::now() + std::time::Duration::from_secs(5))
        .await
        .is_none());
}

/// Opens a TLS session to `addr` with a fresh identity and then sends nothing: the daemon
/// holds it as a handshaking session until the handshake deadline.
async fn stalled_session(addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let identity = Identity::generate_dev().unwrap();
    let config = client_config(&identity, &TlsOptions::default(), None).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(server_name(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn readyz_ignores_a_pre_auth_flood_and_goes_503_when_sessions_fill_then_recovers() {
    // Tiny session ceiling: three running sessions out of four is above the 0.5 degrade ratio.
    let config = "\
[membership]
active_target = 1

[limits]
max_sessions = 4
handshake_ms = 30000
degrade_ratio = 0.5
recover_ratio = 0.3
";
    let d = Daemon::start(DaemonOpts::default().config(config)).await;
    let (status, _) = d.get("/readyz").await;
    assert_eq!(status, 200);

    // Connections that never finish START live on the pre-auth budget: readiness ignores them.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_session(d.addr).await);
    }
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            d.get("/readyz").await.0,
            200,
            "a pre-auth flood must not degrade"
        );
    }
    drop(stalled);

    // Three peers that finish START fill the session ceiling.
    let mut flood = Vec::new();
    for _ in 0..3 {
        let peer = svc_overlay::Overlay::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        peer.dial(d.addr).await.expect("session opens");
        flood.push(peer);
    }
    let body = poll_until("/readyz 503", DEADLINE, || async {
        let resp = d.http().get(d.url("/readyz")).send().await.ok()?;
        if resp.status() != 503 {
            return None;
        }
        let retry = resp
            .headers()
            .get("retry-after")?
            .to_str()
            .ok()?
            .to_string();
        let body: serde_json::Value = resp.json().await.ok()?;
        Some((retry, body))
    })
    .await;
    let (retry, body) = body;
    assert!(retry.parse::<u64>().unwrap() >= 1);
    assert_eq!(body["ready"], false);
    assert_eq!(body["degraded"], true);
    assert!(
        body["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "sessions"),
        "{body}"
    );
    assert!(body["retry_after"].as_u64().unwrap() >= 1);

    // While degraded, new work is refused with a retry hint.
    let resp = d
        .http()
        .post(d.url("/v1/broadcast"))
        .header("content-type", "application/octet-stream")
        .body("during the flood")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "busy");

    // The flood ends; readiness comes back.
    for peer in &flood {
        peer.shutdown().await;
    }
    drop(flood);
    let started = Instant::now();
    poll_until("/readyz 200 again", DEADLINE, || async {
        let resp = d.http().get(d.url("/readyz")).send().await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    println!(
        "recovered {:.0} ms after the flood ended",
        started.elapsed().as_secs_f64() * 1e3
    );
    // The runtime mirrors the core's counters periodically.
    poll_until(
        "overlay_degraded_transitions_total >= 1",
        DEADLINE,
        || async {
            let text = d.get("/metrics").await.1;
            let n = overlay_e2e::metric_sum(&text, "overlay_degraded_transitions_total", "")?;
            (n >= 1.0).then_some(())
        },
    )
    .await;
}
