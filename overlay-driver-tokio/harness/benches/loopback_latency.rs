//! End-to-end dissemination latency on a loopback mesh with real TLS 1.3 (X25519MLKEM768).
//!
//! Starts `NODES` overlays in this process (each on 127.0.0.1, dev identities), lets each dial
//! a few random others, then broadcasts `RATE` messages per second of `PAYLOAD` bytes from
//! random nodes for `SECONDS`, and records for every (message, receiving node) the time from
//! the `broadcast` call to the subscriber's delivery, on one process clock. Prints p50, p95,
//! p99, max and reliability. Figures go to docs/PERFORMANCE.md.
//!
//! The first `LAT_WARMUP` seconds of traffic (default 2) are reported separately: while the
//! Plumtree tree forms, some deliveries take the IHAVE/GRAFT path.
//!
//! `cargo bench -p overlay-driver-tokio --bench loopback_latency` (defaults: 32 nodes, 200 msg/s,
//! 1 KiB, 10 s). Override with `LAT_NODES`, `LAT_RATE`, `LAT_SECONDS`, `LAT_PAYLOAD`,
//! `LAT_WARMUP`; `LAT_ORIGIN_AUTH=none` runs without origin signatures (default `sign`, the
//! daemon's default).

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use overlay_proto::{NodeConfig, OriginAuth};
use svc_overlay::api::Overlay;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no other arguments.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let nodes = env("LAT_NODES", 32) as usize;
    let rate = env("LAT_RATE", 200);
    let seconds = env("LAT_SECONDS", 10);
    let payload_len = env("LAT_PAYLOAD", 1024) as usize;
    let warmup = env("LAT_WARMUP", 2);

    let origin_auth = match std::env::var("LAT_ORIGIN_AUTH").as_deref() {
        Ok("none") => OriginAuth::None,
        _ => OriginAuth::Sign,
    };
    println!("origin_auth = {}", origin_auth.as_str());
    let cfg = NodeConfig {
        active_target: 6,
        origin_auth,
        ..NodeConfig::default()
    };
    let mut overlays = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let ov = Overlay::builder()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .node_config(cfg.clone())
            .seed(1000 + i as u64)
            .build()
            .await
            .expect("overlay starts");
        overlays.push(ov);
    }
    // Bootstrap: each node learns 4 others at mixed offsets (a connected graph); membership
    // and shuffles fill the active view.
    let addrs: Vec<SocketAddr> = overlays.iter().map(|o| o.local_addr()).collect();
    for (i, ov) in overlays.iter().enumerate() {
        let peers: Vec<SocketAddr> = [1usize, 5, 11, 17]
            .iter()
            .map(|k| addrs[(i + k) % nodes])
            .filter(|a| *a != addrs[i])
            .collect();
        ov.add_peers(peers).await.expect("add peers");
    }
    let settle = Instant::now();
    loop {
        let mut min = usize::MAX;
        for ov in &overlays {
            min = min.min(ov.stats().await.sessions_running);
        }
        if min >= 3 || settle.elapsed() > Duration::from_secs(20) {
            println!(
                "mesh settled in {:?}: min sessions per node {min}",
                settle.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Deliveries are timestamped where they happen and joined with send times afterwards
    // (a delivery can be observed before `broadcast` has returned the id).
    let mut sent: HashMap<overlay_proto::MessageId, Instant> = HashMap::new();
    let mut warm: std::collections::HashSet<overlay_proto::MessageId> = Default::default();
    let delivered: Arc<Mutex<Vec<(overlay_proto::MessageId, Instant, u8)>>> = Arc::default();
    let mut receivers = Vec::new();
    for ov in &overlays {
        let mut sub = ov.deliveries();
        let delivered = delivered.clone();
        receivers.push(tokio::spawn(async move {
            while let Some(d) = sub.recv().await {
                let at = Instant::now();
                delivered.lock().expect("lock").push((d.id, at, d.hops));
            }
        }));
    }

    let warm_total = rate * warmup;
    let total = rate * seconds + warm_total;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let payload = Bytes::from(vec![0x42u8; payload_len]);
    let mut busy = 0u64;
    let started = Instant::now();
    for k in 0..total {
        ticker.tick().await;
        let origin = ((k * 2_654_435_761) % nodes as u64) as usize;
        let at = Instant::now();
        match overlays[origin].broadcast(payload.clone()).await {
            Ok(id) => {
                sent.insert(id, at);
                if k < warm_total {
                    warm.insert(id);
                }
            }
            Err(_) => busy += 1,
        }
    }
    let send_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = delivered.lock().expect("lock").clone();
    let max_hops = records.iter().map(|(_, _, h)| *h).max().unwrap_or(0);
    let mut dropped = 0u64;
    for ov in &overlays {
        dropped += ov.stats().await.rejected.total();
    }
    println!("nodes {nodes}, {rate} msg/s of {payload_len} B, {warmup} s warm-up + {seconds} s measured ({busy} refused, sent in {send_time:?})");
    println!("max hops {max_hops}, core rejects/drops summed over nodes {dropped}");
    for (label, measured) in [("warm-up", true), ("steady state", false)] {
        let ids: usize = sent
            .keys()
            .filter(|id| warm.contains(*id) == measured)
            .count();
        let mut lat: Vec<Duration> = records
            .iter()
            .filter(|(id, _, _)| warm.contains(id) == measured)
            .filter_map(|(id, at, _)| {
                sent.get(id)
                    .map(|start| at.saturating_duration_since(*start))
            })
            .collect();
        lat.sort();
        let expected = ids * (nodes - 1);
        println!(
            "{label}: deliveries {} of {} ({:.3} %), latency p50 {:?} p95 {:?} p99 {:?} max {:?}",
            lat.len(),
            expected,
            100.0 * lat.len() as f64 / expected.max(1) as f64,
            percentile(&lat, 0.50),
            percentile(&lat, 0.95),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default()
        );
    }
    if std::env::var("LAT_DEBUG").is_ok() {
        // Latency by second of the run and by hop count, to tell CPU stalls from slow paths.
        let t0 = sent.values().min().copied().unwrap_or_else(Instant::now);
        let mut by_sec: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
        let mut by_hops: std::collections::BTreeMap<u8, Vec<Duration>> = Default::default();
        for (id, at, hops) in &records {
            if let Some(start) = sent.get(id) {
                let l = at.saturating_duration_since(*start);
                by_sec.entry((*start - t0).as_secs()).or_default().push(l);
                by_hops.entry(*hops).or_default().push(l);
            }
        }
        for (k, mut v) in by_sec {
            v.sort();
            println!(
                "second {k:2}: n {:5} p50 {:?} p99 {:?} max {:?}",
                v.len(),
                percentile(&v, 0.5),
                percentile(&v, 0.99),
                v.last().copied().unwrap_or_default()
            );
        }
        for (k, mut v) in by_hops {
            v.sort();
            println!(
                "hops {k:2}: n {:5} p50 {:?} p99 {:?}",
                v.len(),
                percentile(&v, 0.5),
                percentile(&v, 0.99)
            );
        }
        let mut grafts = 0;
        let mut dups = 0;
        let mut eager = 0;
        for ov in &overlays {
            let s = ov.stats().await;
            grafts += s.grafts_sent;
            dups += s.gossip_duplicates;
            eager += s.eager_peers;
        }
        println!(
            "grafts sent {grafts}, duplicates {dups}, mean eager peers {:.1}",
            eager as f64 / nodes as f64
        );
    }
    for ov in &overlays {
        ov.shutdown().await;
    }
    for r in receivers {
        r.abort();
    }
}
