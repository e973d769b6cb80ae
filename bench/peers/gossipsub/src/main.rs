//! The `mesh` and `pair` modes of `overlay_bench` (overlay-driver-tokio/harness/benches/overlay_bench.rs)
//! run with rust-libp2p gossipsub instead of svc-overlay, printing one JSON line with the same
//! keys, so `bench/compare.sh` can put the two side by side in one run.
//!
//! ```text
//! cargo run --release -- mesh --nodes 32 --messages 2000 --rate 200 --size 1024 --degree 4 --seed 1 --signed 1
//! cargo run --release -- pair --messages 100000 --size 1024 --signed 0
//! ```
//!
//! Each node is one libp2p swarm (TCP on 127.0.0.1, noise, yamux, gossipsub with its default
//! parameters: D = 6, heartbeat 1 s, flood publishing) in one tokio task of this process, all
//! subscribed to one topic. `--signed 1` (the default) uses gossipsub's signed messages
//! (`MessageAuthenticity::Signed`, strict validation: an Ed25519 signature per message, like
//! svc-overlay's `origin_auth = sign`); `--signed 0` sends anonymous messages with ids hashed
//! from the payload (like `origin_auth = none`).
//!
//! - `mesh`: N nodes, each dials D seeded-random others plus its ring neighbour; once every
//!   node has a mesh peer (and 3 heartbeats passed), M messages from uniformly random nodes at
//!   R msg/s in total; latency per (message, receiver ≠ publisher). `max_hops` is `null`:
//!   gossipsub does not carry a hop count.
//! - `pair`: A publishes M messages as fast as `publish` accepts them (up to `--window W`
//!   publishes in flight, default 128; an error, e.g. full send queues, waits 1 ms and
//!   retries), B receives.
//!
//! The `sessions` and `ready` modes have no counterpart here: `sessions` measures svc-overlay's
//! token-authenticated client sessions (gossipsub has no client role), and `ready` times the
//! `svc-overlay` daemon's start to `/readyz` (libp2p is a library without a daemon).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, SwarmBuilder};
use tokio::sync::{mpsc, oneshot};

/// `--name value` arguments after the mode.
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
    eprintln!("gossipsub-peer-bench: {why}");
    eprintln!(
        "usage: gossipsub-peer-bench mesh [--nodes N --messages M --rate R --size B --degree D --seed S --signed 0|1]\n       gossipsub-peer-bench pair [--messages M --size B --window W --signed 0|1]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        "pair" => runtime.block_on(pair(&args)),
        other => usage(&format!("unknown mode {other}")),
    };
    println!("{json}");
}

// ----- measurements from /proc (as in overlay_bench) -----

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks() -> (u64, u64) {
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
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

/// splitmix64, as in overlay_bench, so the same seed picks the same graph and origins.
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

// ----- one node -----

/// What the bench asks a node task to do.
enum Cmd {
    Dial(Multiaddr),
    /// Publish; the answer says whether gossipsub accepted it.
    Publish(Vec<u8>, oneshot::Sender<bool>),
    Stop,
}

/// `(message tag, node index, when)` for every delivery on every node.
type Deliveries = Arc<Mutex<Vec<(u64, usize, Instant)>>>;

/// A running node: its command queue, listen address and mesh size.
struct Node {
    cmds: mpsc::UnboundedSender<Cmd>,
    addr: Multiaddr,
    mesh_peers: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

fn topic() -> IdentTopic {
    IdentTopic::new("overlay-bench")
}

async fn start_node(index: usize, signed: bool, deliveries: Deliveries) -> Node {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| {
            let mut config = gossipsub::ConfigBuilder::default();
            config.max_transmit_size(1 << 20);
            let authenticity = if signed {
                config.validation_mode(ValidationMode::Strict);
                MessageAuthenticity::Signed(key.clone())
            } else {
                config.validation_mode(ValidationMode::Anonymous);
                // No source or sequence number: the id is a hash of the payload.
                config.message_id_fn(|m: &gossipsub::Message| {
                    let mut h = DefaultHasher::new();
                    m.data.hash(&mut h);
                    gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
                });
                MessageAuthenticity::Anonymous
            };
            let config = config.build().expect("gossipsub config");
            gossipsub::Behaviour::<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>::new(authenticity, config)
                .expect("gossipsub behaviour")
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm
        .behaviour_mut()
        .subscribe(&topic())
        .expect("subscribe");
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let (cmds, mut rx) = mpsc::unbounded_channel();
    let mesh_peers = Arc::new(AtomicUsize::new(0));
    let mesh = Arc::clone(&mesh_peers);
    let task = tokio::spawn(async move {
        let hash = topic().hash();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Dial(addr)) => {
                        let _ = swarm.dial(addr);
                    }
                    Some(Cmd::Publish(data, answer)) => {
                        let ok = swarm.behaviour_mut().publish(topic(), data).is_ok();
                        let _ = answer.send(ok);
                    }
                    Some(Cmd::Stop) | None => break,
                },
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                        let at = Instant::now();
                        let mut tag = [0u8; 8];
                        if message.data.len() >= 8 {
                            tag.copy_from_slice(&message.data[..8]);
                        }
                        deliveries
                            .lock()
                            .expect("lock")
                            .push((u64::from_be_bytes(tag), index, at));
                    }
                    mesh.store(swarm.behaviour().mesh_peers(&hash).count(), Ordering::Relaxed);
                }
            }
        }
    });
    Node {
        cmds,
        addr,
        mesh_peers,
        task,
    }
}

async fn publish(node: &Node, data: Vec<u8>) -> bool {
    let (tx, rx) = oneshot::channel();
    if node.cmds.send(Cmd::Publish(data, tx)).is_err() {
        return false;
    }
    rx.await.unwrap_or(false)
}

/// A payload of `size` bytes (at least 8) starting with its tag.
fn tagged(tag: u64, size: usize) -> Vec<u8> {
    let mut data = vec![0x42u8; size.max(8)];
    data[..8].copy_from_slice(&tag.to_be_bytes());
    data
}

async fn wait_for_mesh(nodes: &[Node]) {
    let settle = Instant::now();
    loop {
        let min = nodes
            .iter()
            .map(|n| n.mesh_peers.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        // Three heartbeats (1 s each) let the mesh fill up towards D after the first GRAFTs.
        if min >= 1 && settle.elapsed() > Duration::from_secs(3) {
            break;
        }
        if settle.elapsed() > Duration::from_secs(30) {
            eprintln!("gossipsub: some node has no mesh peer after 30 s; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "gossipsub: {} nodes settled in {:?}",
        nodes.len(),
        settle.elapsed()
    );
}

async fn stop(nodes: Vec<Node>) {
    for n in &nodes {
        let _ = n.cmds.send(Cmd::Stop);
    }
    for n in nodes {
        let _ = n.task.await;
    }
}

// ----- mesh -----

async fn mesh(args: &Args) -> String {
    let count = args.get("nodes", 32).max(2) as usize;
    let messages = args.get("messages", 2000);
    let rate = args.get("rate", 200).max(1);
    let size = args.get("size", 1024) as usize;
    let degree = args.get("degree", 4) as usize;
    let seed = args.get("seed", 1);
    let signed = args.get("signed", 1) != 0;
    let mut rng = Rng(seed);
    let deliveries: Deliveries = Arc::default();
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        nodes.push(start_node(i, signed, Arc::clone(&deliveries)).await);
    }
    for i in 0..count {
        let mut peers = vec![(i + 1) % count];
        while peers.len() < degree.min(count - 1) + 1 {
            let j = rng.below(count);
            if j != i && !peers.contains(&j) {
                peers.push(j);
            }
        }
        for j in peers {
            let _ = nodes[i].cmds.send(Cmd::Dial(nodes[j].addr.clone()));
        }
    }
    wait_for_mesh(&nodes).await;
    deliveries.lock().expect("lock").clear();

    let mut sent: HashMap<u64, (Instant, usize)> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (own0, all0) = cpu_ticks();
    let wall0 = Instant::now();
    let mut refused = 0u64;
    for tag in 0..messages {
        ticker.tick().await;
        let origin = rng.below(count);
        let at = Instant::now();
        if publish(&nodes[origin], tagged(tag, size)).await {
            sent.insert(tag, (at, origin));
        } else {
            refused += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (own1, all1) = cpu_ticks();
    let wall = wall0.elapsed().as_secs_f64();
    let hz = 100.0;
    let cpu_own_pct = 100.0 * (own1 - own0) as f64 / hz / wall;
    let cpu_all_pct = 100.0 * (all1 - all0) as f64 / hz / wall;

    let records = deliveries.lock().expect("lock").clone();
    let mut latencies = Vec::with_capacity(records.len());
    let mut last: HashMap<u64, (Duration, usize)> = HashMap::new();
    for (tag, node, at) in &records {
        let Some((start, origin)) = sent.get(tag) else {
            continue;
        };
        if node == origin {
            continue;
        }
        let lat = at.saturating_duration_since(*start);
        latencies.push(lat);
        let e = last.entry(*tag).or_default();
        e.0 = e.0.max(lat);
        e.1 += 1;
    }
    latencies.sort();
    let expected = sent.len() * (count - 1);
    let mut reach_all: Vec<Duration> = sent
        .keys()
        .map(|tag| match last.get(tag) {
            Some((lat, receivers)) if *receivers >= count - 1 => *lat,
            _ => Duration::MAX,
        })
        .collect();
    reach_all.sort();
    let reach_all_p99 = percentile(&reach_all, 0.99);
    let rss = peak_rss_kb();
    stop(nodes).await;
    eprintln!("gossipsub mesh: {} sent, {refused} refused", sent.len());
    format!(
        "{{\"impl\":\"gossipsub\",\"mode\":\"mesh\",\"nodes\":{count},\"messages\":{messages},\"rate\":{rate},\"size\":{size},\"degree\":{degree},\"seed\":{seed},\"signed\":{signed},\"delivered\":{:.6},\"p50_ms\":{},\"p95_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"reach_all_p99_ms\":{},\"max_hops\":null,\"cpu_own_pct\":{:.1},\"cpu_others_pct\":{:.1},\"peak_rss_kb\":{rss}}}",
        latencies.len() as f64 / expected.max(1) as f64,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        if reach_all_p99 == Duration::MAX { "null".to_string() } else { ms(reach_all_p99).to_string() },
        cpu_own_pct,
        (cpu_all_pct - cpu_own_pct).max(0.0),
    )
}

// ----- pair -----

async fn pair(args: &Args) -> String {
    let messages = args.get("messages", 100_000);
    let size = args.get("size", 1024) as usize;
    let signed = args.get("signed", 1) != 0;
    let deliveries: Deliveries = Arc::default();
    let a = start_node(0, signed, Arc::clone(&deliveries)).await;
    let b = start_node(1, signed, Arc::clone(&deliveries)).await;
    let _ = a.cmds.send(Cmd::Dial(b.addr.clone()));
    let nodes = vec![a, b];
    wait_for_mesh(&nodes).await;
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(messages as usize);
    let window = args.get("window", 128).max(1) as usize;
    let start = Instant::now();
    let mut refusals = 0u64;
    // Up to `window` publishes in flight, as overlay_bench does; a refusal waits 1 ms and
    // retries that message.
    let publisher = &nodes[0];
    let attempt = |tag: u64, delay: bool| async move {
        if delay {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at = Instant::now();
        (publish(publisher, tagged(tag, size)).await, tag, at)
    };
    let mut inflight = FuturesUnordered::new();
    let mut issued = 0u64;
    let mut accepted = 0u64;
    // Every attempt gets a fresh tag: gossipsub remembers the id of a refused message, so
    // retrying the same bytes would be refused as a duplicate forever.
    let mut next_tag = 0u64;
    while accepted < messages {
        while inflight.len() < window && issued < messages {
            inflight.push(attempt(next_tag, false));
            next_tag += 1;
            issued += 1;
        }
        match inflight.next().await {
            Some((true, tag, at)) => {
                sent.insert(tag, at);
                accepted += 1;
            }
            Some((false, _, _)) => {
                refusals += 1;
                inflight.push(attempt(next_tag, true));
                next_tag += 1;
            }
            None => break,
        }
    }
    drop(inflight);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = deliveries.lock().expect("lock").len();
        if got as u64 >= messages || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let records = deliveries.lock().expect("lock").clone();
    let mut latencies: Vec<Duration> = records
        .iter()
        .filter_map(|(tag, _, at)| sent.get(tag).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    let got = records.len() as f64;
    let rss = peak_rss_kb();
    stop(nodes).await;
    eprintln!(
        "gossipsub pair: {} of {messages} received, {refusals} refusals",
        records.len()
    );
    format!(
        "{{\"impl\":\"gossipsub\",\"mode\":\"pair\",\"messages\":{messages},\"size\":{size},\"signed\":{signed},\"received\":{},\"msgs_per_s\":{:.0},\"mb_per_s\":{:.1},\"p50_ms\":{},\"p99_ms\":{},\"peak_rss_kb\":{rss}}}",
        records.len(),
        got / elapsed.as_secs_f64(),
        got * size as f64 / elapsed.as_secs_f64() / 1e6,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
    )
}
