//! The benchmark harness of issue #10: one binary, several modes, each ending with one JSON line.
//!
//! ```text
//! cargo bench -p overlay-driver-tokio --bench overlay_bench -- mesh --nodes 32 --messages 2000 --rate 200 --size 1024 --degree 4 --seed 1
//! cargo bench -p overlay-driver-tokio --bench overlay_bench -- pair --messages 200000 --size 1024
//! cargo bench -p overlay-driver-tokio --bench overlay_bench -- ready
//! cargo bench -p overlay-driver-tokio --bench overlay_bench -- sessions --count 1000
//! ```
//!
//! - `mesh`: N overlays in this process (tokio, workers = cores), real TCP + TLS 1.3 on 127.0.0.1,
//!   each dials D seeded-random others (plus its ring neighbour, so the graph is connected); once
//!   every node has a session, M messages from uniformly random nodes at R msg/s in total. Latency
//!   is measured per (message, receiver ≠ publisher) on one process clock. Keys: `delivered`
//!   (fraction), `p50_ms`, `p95_ms`, `p99_ms`, `max_ms`, `reach_all_p99_ms` (p99 over messages of
//!   the time until the last receiver had it), `max_hops`, `cpu_own_pct` (this process, % of one
//!   core), `cpu_others_pct` (the rest of the machine, % of one core), `peak_rss_kb`; also
//!   `rss_base_kb` (before any node started: binary, runtime, bench), `rss_started_kb` (nodes
//!   listening, no sessions) and `rss_settled_kb` (sessions up, no messages yet), so the peak
//!   can be split into process base, idle nodes, sessions and traffic.
//! - `pair`: node A broadcasts M messages of B bytes as fast as the API accepts them (up to
//!   `--window W` messages in flight, default 128; a refusal for backpressure waits 1 ms and
//!   retries; `--batch N` sends N messages per `Overlay::broadcast_batch` call instead of one
//!   `Overlay::broadcast` call each), node B receives. Keys: `msgs_per_s`, `mb_per_s`,
//!   `p50_ms`, `p99_ms`, `peak_rss_kb`, and `lost` (messages B's subscriber lost by falling
//!   behind its bounded feed; counted, not waited for), `cpu_us_per_msg` (this process's CPU
//!   time over the run per message received: both nodes, TLS and the bench's own tasks),
//!   `cpu_own_pct` and `cpu_others_pct` (as in `mesh`). The sender runs as a task on the
//!   runtime's workers, like an application's (`--sender-thread 1`: on the main thread,
//!   like an application publishing from a thread of its own; `--runtime-b 1`: node B on a
//!   one-worker runtime of its own, as a second daemon would be).
//! - Both take `--signed 1` (default: every broadcast signed, `origin_auth = sign`) or
//!   `--signed 0` (`origin_auth = none`), `--store-ttl-ms T` and `--store-bytes B` (how long
//!   and how many bytes each node keeps messages for GRAFT answers; default: the
//!   `NodeConfig` defaults), `--max-queue-frames F` (frames a session queues beyond the
//!   peer's credit before the node reports busy; default 2048), `--credit-window-frames C`
//!   (frames of credit each node grants its peers; default 512) and `--replay-events N` (deliveries each node keeps for
//!   `Overlay::resume`; default 1024, 0 keeps none). The ring keeps only once a resumable
//!   subscriber exists: `--resumable 1` makes the bench's subscribers resumable (as the
//!   HTTP `GET /v1/gossip` stream is), so the ring's cost is counted; by default they are
//!   plain `Overlay::deliveries` subscribers and the ring holds nothing.
//! - `mesh` also reports `peak_rss_per_node_kb` (the peak over N) and
//!   `peak_above_base_per_node_kb` (the peak less `rss_base_kb`, over N).
//!   `--trace 1` (off by default) also prints to stderr where the deepest deliveries came
//!   from: the hop distribution, the eager graph over time and the deepest paths (module
//!   `overlay_bench/trace.rs`; `--trace-every-ms`, `--trace-deepest`).
//! - `ready`: start the `svc-overlay` daemon process and time process start → `/readyz` 200,
//!   20 times. Key: `ready_ms` (median), plus `min_ms` and `max_ms`.
//! - `sessions`: K idle token-authenticated TLS client sessions (no client certificate) to one
//!   daemon process (module `overlay_bench/sessions.rs`). Keys: `sessions` (opened),
//!   `rss_per_session_bytes` (daemon RSS growth over K), `handshakes_per_s`.
//!
//! Figures go to docs/PERFORMANCE.md; never compare runs from different machines or loads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failure aborts the run

#[path = "overlay_bench/sessions.rs"]
mod sessions;
#[path = "overlay_bench/trace.rs"]
mod trace;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use overlay_proto::{MessageId, NodeConfig, OriginAuth};
use svc_overlay::api::{Error, Overlay, OverlayError, ReplayBounds};

/// `--name value` arguments after the mode.
#[derive(Clone)]
struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else {
                usage(&format!("unexpected argument {key}"));
            };
            let Some(value) = it.next() else {
                usage(&format!("--{name} needs a value"));
            };
            map.insert(name.to_string(), value.clone());
        }
        Args(map)
    }

    fn get(&self, name: &str, default: u64) -> u64 {
        match self.0.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| usage(&format!("--{name} takes a number, not {v}"))),
        }
    }
}

fn usage(why: &str) -> ! {
    eprintln!("overlay_bench: {why}");
    eprintln!(
        "usage: overlay_bench mesh [--nodes N --messages M --rate R --size B --degree D --seed S --signed 0|1 --store-ttl-ms T --store-bytes B --max-queue-frames F --credit-window-frames C --replay-events N --resumable 0|1 --trace 0|1 --trace-every-ms T --trace-deepest K]\n       overlay_bench pair [--messages M --size B --window W --batch N --signed 0|1 --store-ttl-ms T --store-bytes B --max-queue-frames F --credit-window-frames C --replay-events N --resumable 0|1 --sender-thread 0|1 --runtime-b 0|1]\n       overlay_bench ready [--runs N]\n       overlay_bench sessions [--count K --concurrency C]"
    );
    std::process::exit(2)
}

fn main() {
    // `cargo bench` passes `--bench` (and libtest filters when any); drop them.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some((mode, rest)) = args.split_first() else {
        usage("no mode given");
    };
    let args = Args::parse(rest);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json = match mode.as_str() {
        "mesh" => runtime.block_on(mesh(&args)),
        // On a runtime worker, as an application's task would be: on `block_on`'s own thread
        // every broadcast's answer would cost a thread wake-up (a futex call) of its own.
        // `--sender-thread 1`: on `block_on`'s thread instead (an application publishing from
        // its own thread; with `--batch N` one wake-up per N messages).
        "pair" if args.get("sender-thread", 0) == 1 => runtime.block_on(pair(&args)),
        "pair" => {
            let args = args.clone();
            runtime
                .block_on(runtime.spawn(async move { pair(&args).await }))
                .expect("pair task")
        }
        "ready" => ready(&args),
        "sessions" => runtime.block_on(sessions::sessions(&args)),
        other => usage(&format!("unknown mode {other}")),
    };
    println!("{json}");
}

// ----- measurements from /proc -----

/// Peak resident set size of this process, KiB (`VmHWM`).
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU ticks used by this process (user + system) and by the whole machine (all but idle and
/// iowait), from /proc.
fn cpu_ticks() -> (u64, u64) {
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = own.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let own_ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let all = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = all
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let busy: u64 = cpu
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    (own_ticks, busy)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A small deterministic generator (splitmix64) for the bench's own choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The node configuration of the `mesh` and `pair` modes: the defaults, except
/// `--signed 0` (`origin_auth = none`; the default `1` signs every broadcast) and
/// `--store-ttl-ms T` (how long messages are kept for GRAFT; default 30 s), `--store-bytes B`
/// `--max-queue-frames F` (frames queued per session beyond the peer's credit before the
/// node reports busy; default 2048) and `--credit-window-frames C` (default 512).
fn node_config(args: &Args) -> NodeConfig {
    let mut config = NodeConfig::default();
    if args.get("signed", 1) == 0 {
        config.origin_auth = OriginAuth::None;
    }
    if let Some(ms) = args
        .0
        .get("store-ttl-ms")
        .map(|_| args.get("store-ttl-ms", 0))
    {
        config.store_ttl = Duration::from_millis(ms.max(1));
    }
    if args.0.contains_key("store-bytes") {
        config.store_bytes = args.get("store-bytes", 0) as usize;
    }
    if args.0.contains_key("max-queue-frames") {
        config.max_queue_frames = (args.get("max-queue-frames", 1) as usize).max(1);
    }
    if args.0.contains_key("credit-window-frames") {
        config.credit_window_frames = u32::try_from(args.get("credit-window-frames", 512))
            .unwrap_or(u32::MAX)
            .max(config.min_peer_window_frames);
    }
    config
}

/// Resident set size of this process now, KiB (`VmRSS`).
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The replay ring of each node's delivery log (`Overlay::resume`): the default, or
/// `--replay-events N` messages (0: none kept).
fn replay_bounds(args: &Args) -> ReplayBounds {
    let mut bounds = ReplayBounds::default();
    if args.0.contains_key("replay-events") {
        bounds.events = args.get("replay-events", 0) as usize;
    }
    bounds
}

async fn start_overlays(
    count: usize,
    seed: u64,
    config: &NodeConfig,
    replay: ReplayBounds,
) -> Vec<Overlay> {
    let mut overlays = Vec::with_capacity(count);
    for i in 0..count {
        let ov = Overlay::builder()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .node_config(config.clone())
            .replay(replay)
            .seed(seed.wrapping_mul(1_000_003).wrapping_add(i as u64))
            .build()
            .await
            .expect("overlay starts");
        overlays.push(ov);
    }
    overlays
}

/// One delivery, compact (16 bytes, so the bench's own records weigh little in the RSS it
/// reports): the message (the first 8 bytes of its id), the node, when (µs after `epoch`)
/// and at how many hops.
#[derive(Clone, Copy)]
struct Record {
    message: u64,
    at_us: u32,
    node: u16,
    hops: u8,
}

/// The first 8 bytes of an id: unique among a bench's messages (ids are BLAKE3 outputs).
fn short_id(id: &MessageId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

/// Every delivery on every node (room for `expected` reserved up front).
type Deliveries = Arc<Mutex<Vec<Record>>>;

fn record_deliveries(
    overlays: &[Overlay],
    epoch: Instant,
    expected: usize,
    resumable: bool,
    traced: Option<(trace::NodeIndex, Arc<trace::Trace>)>,
) -> (Deliveries, Vec<tokio::task::JoinHandle<()>>) {
    let delivered: Deliveries = Arc::new(Mutex::new(Vec::with_capacity(expected)));
    let mut tasks = Vec::new();
    for (index, ov) in overlays.iter().enumerate() {
        let mut sub = if resumable {
            ov.resumable_deliveries()
        } else {
            ov.deliveries()
        };
        let delivered = Arc::clone(&delivered);
        let traced = traced.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(d) = sub.recv().await {
                let at_us = epoch.elapsed().as_micros() as u32;
                delivered.lock().expect("lock").push(Record {
                    message: short_id(&d.id),
                    at_us,
                    node: index as u16,
                    hops: d.hops,
                });
                if let Some((peers, trace)) = &traced {
                    trace.hops.lock().expect("lock").push(trace::Hop {
                        message: short_id(&d.id),
                        node: index as u16,
                        from: peers.get(&d.from).copied().unwrap_or(u16::MAX),
                        hops: d.hops,
                        at_us,
                    });
                }
            }
        }));
    }
    (delivered, tasks)
}

// ----- mesh -----

async fn mesh(args: &Args) -> String {
    let nodes = args.get("nodes", 32).max(2) as usize;
    let messages = args.get("messages", 2000);
    let rate = args.get("rate", 200).max(1);
    let size = args.get("size", 1024) as usize;
    let degree = args.get("degree", 4) as usize;
    let seed = args.get("seed", 1);
    let signed = args.get("signed", 1) != 0;
    let config = node_config(args);
    let store_ttl_ms = config.store_ttl.as_millis();
    let store_bytes = config.store_bytes;
    let mut rng = Rng(seed);

    let rss_before = rss_kb();
    let replay = replay_bounds(args);
    let overlays = start_overlays(nodes, seed, &config, replay).await;
    let rss_started = rss_kb();
    let addrs: Vec<SocketAddr> = overlays.iter().map(Overlay::local_addr).collect();
    // `--trace 1`: where the deepest deliveries come from (overlay_bench/trace.rs).
    let traced = (args.get("trace", 0) == 1).then(|| {
        let trace = Arc::new(trace::Trace::default());
        let index = trace::index_of(&overlays);
        let sampler = trace::sample_eager_graph(
            overlays.clone(),
            Arc::clone(&index),
            Arc::clone(&trace),
            Duration::from_millis(args.get("trace-every-ms", 100).max(10)),
        );
        (index, trace, sampler)
    });
    let dials_at = Instant::now();
    for (i, ov) in overlays.iter().enumerate() {
        // The ring neighbour keeps the graph connected; D more are seeded-random.
        let mut peers = vec![addrs[(i + 1) % nodes]];
        while peers.len() < degree.min(nodes - 1) + 1 {
            let j = rng.below(nodes);
            if j != i && !peers.contains(&addrs[j]) {
                peers.push(addrs[j]);
            }
        }
        ov.add_peers(peers).await.expect("add peers");
    }
    let settle = Instant::now();
    loop {
        let mut min = usize::MAX;
        for ov in &overlays {
            min = min.min(ov.stats().await.sessions_running);
        }
        if min >= 1 && settle.elapsed() > Duration::from_millis(500) {
            break;
        }
        if settle.elapsed() > Duration::from_secs(30) {
            eprintln!("mesh: some node has no session after 30 s; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("mesh: {nodes} nodes settled in {:?}", settle.elapsed());
    let rss_settled = rss_kb();

    let epoch = Instant::now();
    let (delivered, tasks) = record_deliveries(
        &overlays,
        epoch,
        messages as usize * nodes + nodes,
        args.get("resumable", 0) != 0,
        traced
            .as_ref()
            .map(|(index, trace, _)| (Arc::clone(index), Arc::clone(trace))),
    );
    let mut order: HashMap<u64, usize> = HashMap::new();
    let payload = Bytes::from(vec![0x42u8; size]);
    let mut sent: HashMap<u64, (Instant, usize)> = HashMap::with_capacity(messages as usize);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (own0, all0) = cpu_ticks();
    let wall0 = Instant::now();
    let mut refused = 0u64;
    for _ in 0..messages {
        ticker.tick().await;
        let origin = rng.below(nodes);
        let at = Instant::now();
        match overlays[origin].broadcast(payload.clone()).await {
            Ok(id) => {
                if traced.is_some() {
                    order.insert(short_id(&id), sent.len());
                }
                sent.insert(short_id(&id), (at, origin));
            }
            Err(_) => refused += 1,
        }
    }
    // Let the last messages spread (and the IHAVE/GRAFT repair path finish).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (own1, all1) = cpu_ticks();
    let wall = wall0.elapsed().as_secs_f64();
    let hz = 100.0; // USER_HZ on Linux
    let cpu_own_pct = 100.0 * (own1 - own0) as f64 / hz / wall;
    let cpu_all_pct = 100.0 * (all1 - all0) as f64 / hz / wall;

    // The peak is read before the analysis below allocates.
    let rss_end = rss_kb();
    let peak = peak_rss_kb();
    let records = std::mem::take(&mut *delivered.lock().expect("lock"));
    let mut latencies = Vec::with_capacity(records.len());
    let mut last_per_msg: HashMap<u64, Duration> = HashMap::new();
    let mut receivers: HashMap<u64, usize> = HashMap::new();
    let mut max_hops = 0u8;
    for r in &records {
        let Some((start, origin)) = sent.get(&r.message) else {
            continue;
        };
        if usize::from(r.node) == *origin {
            continue;
        }
        let at = epoch + Duration::from_micros(u64::from(r.at_us));
        let lat = at.saturating_duration_since(*start);
        latencies.push(lat);
        max_hops = max_hops.max(r.hops);
        let last = last_per_msg.entry(r.message).or_default();
        *last = (*last).max(lat);
        *receivers.entry(r.message).or_default() += 1;
    }
    latencies.sort();
    let expected = sent.len() * (nodes - 1);
    // A message that did not reach everyone has no "reach all" time: count it as never.
    let mut reach_all: Vec<Duration> = sent
        .keys()
        .map(|id| {
            if receivers.get(id).copied().unwrap_or(0) >= nodes - 1 {
                last_per_msg.get(id).copied().unwrap_or(Duration::MAX)
            } else {
                Duration::MAX
            }
        })
        .collect();
    reach_all.sort();
    let reach_all_p99 = percentile(&reach_all, 0.99);
    if let Some((_, trace, sampler)) = &traced {
        sampler.abort();
        let deepest = args.get("trace-deepest", 8) as usize;
        trace::report(nodes, epoch, dials_at, &sent, &order, trace, deepest);
    }
    for ov in &overlays {
        ov.shutdown().await;
    }
    for t in tasks {
        t.abort();
    }
    eprintln!(
        "mesh: {} sent, {refused} refused by backpressure; RSS KiB: before the nodes {rss_before}, \
         nodes started {rss_started}, sessions up {rss_settled}, after the messages {rss_end}",
        sent.len()
    );
    format!(
        "{{\"mode\":\"mesh\",\"nodes\":{nodes},\"messages\":{messages},\"rate\":{rate},\"size\":{size},\"degree\":{degree},\"seed\":{seed},\"signed\":{signed},\"store_ttl_ms\":{store_ttl_ms},\"store_bytes\":{store_bytes},\"replay_events\":{},\"delivered\":{:.6},\"p50_ms\":{},\"p95_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"reach_all_p99_ms\":{},\"max_hops\":{max_hops},\"cpu_own_pct\":{:.1},\"cpu_others_pct\":{:.1},\"peak_rss_kb\":{peak},\"peak_rss_per_node_kb\":{},\"peak_above_base_per_node_kb\":{},\"rss_base_kb\":{rss_before},\"rss_started_kb\":{rss_started},\"rss_settled_kb\":{rss_settled}}}",
        replay.events,
        latencies.len() as f64 / expected.max(1) as f64,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        if reach_all_p99 == Duration::MAX { "null".to_string() } else { ms(reach_all_p99).to_string() },
        cpu_own_pct,
        (cpu_all_pct - cpu_own_pct).max(0.0),
        peak / nodes as u64,
        peak.saturating_sub(rss_before) / nodes as u64,
    )
}

// ----- pair -----

async fn pair(args: &Args) -> String {
    let messages = args.get("messages", 100_000);
    let size = args.get("size", 1024) as usize;
    let signed = args.get("signed", 1) != 0;
    // `--runtime-b 1`: node B on a runtime of its own (one worker thread), as a second
    // daemon would be, instead of sharing the bench's runtime with A.
    let own_runtime = (args.get("runtime-b", 0) == 1).then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("B's runtime")
    });
    let overlays = match &own_runtime {
        None => {
            start_overlays(
                2,
                args.get("seed", 7),
                &node_config(args),
                replay_bounds(args),
            )
            .await
        }
        Some(rt) => {
            let seed = args.get("seed", 7);
            let mut a = start_overlays(1, seed, &node_config(args), replay_bounds(args)).await;
            let (config, replay) = (node_config(args), replay_bounds(args));
            let b = rt
                .spawn(
                    async move { start_overlays(1, seed.wrapping_add(1), &config, replay).await },
                )
                .await
                .expect("B starts");
            a.extend(b);
            a
        }
    };
    overlays[0]
        .dial(overlays[1].local_addr())
        .await
        .expect("A dials B");
    let (a, b) = (&overlays[0], &overlays[1]);
    let mut sub = b.deliveries();
    let want = messages;
    // Ends once every message arrived or was lost by this subscriber falling behind (the
    // delivery feed is bounded: a slow subscriber loses the oldest, counted in `lost`). It
    // keeps its own records (no lock per message); they are matched with the send times
    // after the run, outside the measured window.
    let arrived = Arc::new(AtomicU64::new(0));
    let arrivals = Arc::clone(&arrived);
    let receiver = tokio::spawn(async move {
        let mut received: Vec<(u64, Instant)> = Vec::with_capacity(want as usize);
        while let Some(d) = sub.recv().await {
            received.push((short_id(&d.id), Instant::now()));
            arrivals.store(received.len() as u64, Ordering::Relaxed);
            if received.len() as u64 + sub.lost() >= want {
                break;
            }
        }
        (received, sub.lost())
    });
    let payload = Bytes::from(vec![0x42u8; size]);
    let mut sent: Vec<(u64, Instant)> = Vec::with_capacity(messages as usize);
    let window = args.get("window", 128).max(1) as usize;
    // `--batch N` > 1: `Overlay::broadcast_batch` of N messages per call (one round trip to
    // the node for N), `window / N` calls in flight; 1 (default): one `broadcast` per message.
    let batch = (args.get("batch", 1).max(1) as usize).min(window);
    let (own0, all0) = cpu_ticks();
    let start = Instant::now();
    let mut refusals = 0u64;
    // Up to `window` broadcasts in flight (the API takes concurrent calls); a refusal for
    // backpressure waits 1 ms and retries that message.
    let attempt = |count: usize, delay: bool| {
        let payload = payload.clone();
        async move {
            if delay {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let at = Instant::now();
            let results = if batch == 1 {
                vec![a.broadcast(payload).await]
            } else {
                match a.broadcast_batch(std::iter::repeat_n(payload, count)).await {
                    Ok(results) => results,
                    Err(e) => vec![Err(e)],
                }
            };
            (results, count, at)
        }
    };
    let mut inflight = FuturesUnordered::new();
    let mut issued = 0u64;
    let mut accepted = 0u64;
    while accepted < messages {
        while inflight.len() * batch < window && issued < messages {
            let count = batch.min((messages - issued) as usize);
            inflight.push(attempt(count, false));
            issued += count as u64;
        }
        let Some((results, count, at)) = inflight.next().await else {
            break;
        };
        let mut retry = 0;
        for result in results {
            match result {
                Ok(id) => {
                    sent.push((short_id(&id), at));
                    accepted += 1;
                }
                Err(Error::Overlay(OverlayError::ShuttingDown)) => {
                    panic!("pair: node A stopped during the run")
                }
                Err(_) => retry += 1,
            }
        }
        debug_assert!(retry <= count);
        if retry > 0 {
            refusals += retry as u64;
            inflight.push(attempt(retry, true));
        }
    }
    let finished = tokio::time::timeout(Duration::from_secs(60), receiver).await;
    let elapsed = start.elapsed();
    let (own1, all1) = cpu_ticks();
    let (records, lost) = match finished {
        Ok(Ok(done)) => done,
        _ => {
            eprintln!(
                "pair: B did not receive every message within 60 s of the last send ({} did)",
                arrived.load(Ordering::Relaxed)
            );
            (Vec::new(), 0)
        }
    };
    let sent: HashMap<u64, Instant> = sent.into_iter().collect();
    let mut latencies: Vec<Duration> = records
        .iter()
        .filter_map(|(id, at)| sent.get(id).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    let got = records.len() as f64;
    // Ticks are 10 ms; CPU per message is what a loaded machine does not distort much.
    let tick_ms = 10.0;
    let wall_ms = elapsed.as_secs_f64() * 1e3;
    let own_ms = (own1 - own0) as f64 * tick_ms;
    let others_ms = (all1 - all0).saturating_sub(own1 - own0) as f64 * tick_ms;
    let cpu_us_per_msg = own_ms * 1e3 / got.max(1.0);
    for ov in &overlays {
        ov.shutdown().await;
    }
    if let Some(rt) = own_runtime {
        rt.shutdown_background();
    }
    eprintln!(
        "pair: {} of {messages} received, {lost} lost by the subscriber, {refusals} backpressure refusals",
        records.len()
    );
    format!(
        "{{\"mode\":\"pair\",\"messages\":{messages},\"size\":{size},\"signed\":{signed},\"received\":{},\"lost\":{lost},\"msgs_per_s\":{:.0},\"mb_per_s\":{:.1},\"p50_ms\":{},\"p99_ms\":{},\"peak_rss_kb\":{},\"cpu_us_per_msg\":{:.2},\"cpu_own_pct\":{:.0},\"cpu_others_pct\":{:.0}}}",
        records.len(),
        got / elapsed.as_secs_f64(),
        got * size as f64 / elapsed.as_secs_f64() / 1e6,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        peak_rss_kb(),
        cpu_us_per_msg,
        own_ms / wall_ms * 100.0,
        others_ms / wall_ms * 100.0,
    )
}

// ----- ready -----

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn readyz_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn ready(args: &Args) -> String {
    let runs = args.get("runs", 20).max(1);
    // The daemon next to this bench (`<target>/release/svc-overlay`), built when missing or
    // older than its sources; `SVC_OVERLAY_BIN` picks another.
    let bin = overlay_e2e::daemon_binary();
    let mut times = Vec::new();
    for _ in 0..runs {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(bin)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start svc-overlay");
        let ok = loop {
            if readyz_ok(port) {
                break true;
            }
            if started.elapsed() > Duration::from_secs(10) {
                break false;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let took = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        if !ok {
            eprintln!("ready: the daemon was not ready within 10 s");
            continue;
        }
        times.push(took);
    }
    times.sort();
    format!(
        "{{\"mode\":\"ready\",\"runs\":{},\"ready_ms\":{},\"min_ms\":{},\"max_ms\":{}}}",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(times.first().copied().unwrap_or_default()),
        ms(times.last().copied().unwrap_or_default()),
    )
}
