//! Four daemons as real processes form a mesh over loopback; a broadcast posted to one
//! reaches every other node's `/v1/gossip` stream; `/metrics` carries the golden metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use base64::Engine as _;
use overlay_e2e::{metric_sum, poll_until, Daemon, DaemonOpts, DEADLINE};
use tokio::io::AsyncWriteExt as _;

/// Metrics every daemon must export after some traffic (name, label fragment).
const GOLDEN: &[(&str, &str)] = &[
    ("overlay_sessions_active", ""),
    ("overlay_gossip_latency_seconds_bucket", "stage="),
    ("overlay_gossip_latency_seconds_count", ""),
    ("bus_queue_depth", ""),
    ("service_restarts_total", "task="),
    ("errors_total", "stage="),
    ("rejected_total", "reason="),
    ("overlay_handshake_failures_total", "reason="),
    ("overlay_frames_total", "direction=\"in\",kind=\"gossip\""),
    ("overlay_frames_total", "direction=\"out\",kind=\"gossip\""),
    ("overlay_kx_group_total", "group="),
];

#[tokio::test]
async fn four_daemons_mesh_broadcast_reaches_every_gossip_stream() {
    let t0 = Instant::now();
    let hub = Daemon::start(DaemonOpts::default()).await;
    let opts = DaemonOpts::default().peer(hub.addr);
    let (a, b, c) = tokio::join!(
        Daemon::start(opts.clone()),
        Daemon::start(opts.clone()),
        Daemon::start(opts.clone()),
    );
    let nodes = [hub, a, b, c];
    for (i, d) in nodes.iter().enumerate() {
        println!(
            "node {i}: {} {} start-to-ready {:.1} ms",
            d.addr,
            d.peer_id,
            d.start_to_ready.as_secs_f64() * 1e3
        );
    }

    // The mesh: every leaf has a running session, the hub has all three.
    for d in &nodes {
        let want = if d.addr == nodes[0].addr { 3 } else { 1 };
        poll_until("running sessions", DEADLINE, || async {
            (d.running_peers().await.len() >= want).then_some(())
        })
        .await;
    }
    let hub_peers = nodes[0].running_peers().await;
    for leaf in &nodes[1..] {
        let row = hub_peers
            .iter()
            .find(|p| p["peer_id"] == leaf.peer_id.as_str())
            .unwrap_or_else(|| panic!("hub does not list {}: {hub_peers:?}", leaf.peer_id));
        // The leaf advertised its listen address in HELLO.
        assert_eq!(row["listen"], leaf.addr.to_string().as_str(), "{row}");
    }
    let kx = hub_peers[0]["kx_group"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!(
        "mesh formed after {:.0} ms; kx group {kx}",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(kx, "X25519MLKEM768");

    // Subscribe everywhere except the sender, then broadcast from a leaf.
    let sender = &nodes[3];
    let mut streams = Vec::new();
    for d in &nodes[..3] {
        streams.push(d.gossip().await);
    }
    let payload = b"hello from the edge \x00\xff".to_vec();
    let (status, body) = sender.broadcast(payload.clone()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    let deadline = Instant::now() + DEADLINE;
    for (i, sse) in streams.iter_mut().enumerate() {
        let msg = loop {
            let m = sse
                .next_message(deadline)
                .await
                .unwrap_or_else(|| panic!("node {i} never got the message"));
            if m["id"] == id.as_str() {
                break m;
            }
        };
        assert_eq!(msg["origin"], sender.peer_id.as_str());
        let data = base64::engine::general_purpose::STANDARD
            .decode(msg["data_b64"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, payload);
        let hops = msg["hops"].as_u64().unwrap();
        assert!((1..=3).contains(&hops), "node {i}: hops {hops}");
        println!("node {i} got {} after {hops} hop(s)", &id[..16]);
    }

    // A few more messages from every node, all delivered everywhere.
    let mut ids = Vec::new();
    for (i, d) in nodes.iter().enumerate() {
        let (status, body) = d.broadcast(format!("round two from {i}")).await;
        assert_eq!(status, 202, "{body}");
        if i < 3 {
            ids.push((i, body["id"].as_str().unwrap().to_string()));
        }
    }
    for (i, sse) in streams.iter_mut().enumerate() {
        let mut want: Vec<&str> = ids
            .iter()
            .filter(|(from, _)| *from != i)
            .map(|(_, id)| id.as_str())
            .collect();
        while !want.is_empty() {
            let m = sse
                .next_message(deadline)
                .await
                .unwrap_or_else(|| panic!("node {i} is missing {want:?}"));
            want.retain(|w| m["id"] != *w);
        }
    }

    // A TLS handshake that fails (garbage after the TLS record byte) is counted.
    let mut junk = tokio::net::TcpStream::connect(nodes[0].addr).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    drop(junk);

    // The hub's three sessions are polled for too, not read once: under heavy CPU load the
    // hub was seen with another count for a moment (a session ending and a leaf dialing
    // again); what is checked is that the mesh comes back to one session per leaf.
    let hub = &nodes[0];
    let text = poll_until("golden metrics and 3 hub sessions", DEADLINE, || async {
        let resp = hub
            .http()
            .get(hub.metrics_url("/metrics"))
            .send()
            .await
            .ok()?;
        let text = resp.text().await.ok()?;
        let complete = GOLDEN
            .iter()
            .all(|(name, labels)| metric_sum(&text, name, labels).is_some())
            && metric_sum(&text, "overlay_handshake_failures_total", "").unwrap_or(0.0) >= 1.0
            && metric_sum(&text, "overlay_sessions_active", "") == Some(3.0);
        complete.then_some(text)
    })
    .await;
    assert_eq!(
        metric_sum(&text, "overlay_sessions_active", ""),
        Some(3.0),
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "overlay_frames_total",
            "direction=\"out\",kind=\"gossip\""
        )
        .unwrap()
            >= 3.0,
        "{text}"
    );
    assert!(metric_sum(&text, "overlay_kx_group_total", "X25519MLKEM768").unwrap() >= 3.0);
    assert!(metric_sum(&text, "overlay_gossip_latency_seconds_count", "").unwrap() >= 1.0);
    assert!(
        text.contains("# TYPE overlay_gossip_latency_seconds histogram"),
        "{text}"
    );
    for (name, labels) in GOLDEN {
        println!(
            "{name}{{{labels}..}} = {}",
            metric_sum(&text, name, labels).unwrap_or(f64::NAN)
        );
    }
}
