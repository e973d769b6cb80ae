//! Probe of the gossip tree on the core's mesh (a development tool for issue #10; the
//! figures in docs/SIMULATION.md come from `overlay-sim`).
//!
//! `cargo run --release -p overlay-proto --example tree_probe -- wan|lan [seed]`
//!
//! - `wan`: 1000 nodes, 10–50 ms links, 15 s warm-up, then 20 broadcasts 1 s apart from
//!   random nodes (`SINGLE=1`: one node); prints RMR, LDH, last delivery, GRAFTs and swaps
//!   per broadcast and the steady state (second half).
//! - `lan`: 32 nodes, 50–300 µs links (a loopback-like mesh, no processing time), 500 ms
//!   warm-up, then 2000 broadcasts 5 ms apart from random nodes (overlapping, as in
//!   `overlay_bench mesh`); prints p50/p99, reach-all p99, max hops and the eager graph.
//!
//! Settings from the environment: THR (`optimization_threshold`), SAMPLES
//! (`optimization_samples`), HOLD_MS (`optimization_hold`), PROBATION_MS (`link_probation`), SETTLED_MS
//! (`graft_timeout_settled`), PRUNE_N (`prune_after_duplicates`), ALPHA, NODES, MSGS,
//! WARM_MS (`lan`), TRACE=1 (`lan`: print messages deeper than 8 hops), JITTER_US (`lan`: up
//! to this much extra delay per transmission, like a loaded process), DIAMETERS=1 (`lan`: the
//! eager graph's directed diameter every 100 messages).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{node_peer_id, Mesh, MeshConfig};
use overlay_proto::{MessageId, OriginAuth, PeerId};
use std::collections::{BTreeMap, BTreeSet};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn config(nodes: usize, seed: u64, lmin: Duration, lmax: Duration) -> MeshConfig {
    let mut cfg = MeshConfig {
        nodes,
        seed,
        latency_min: lmin,
        latency_max: lmax,
        ..MeshConfig::default()
    };
    let c = &mut cfg.node_config;
    c.origin_auth = OriginAuth::None;
    if let Some(v) = env("THR") {
        c.optimization_threshold = v;
    }
    if let Some(v) = env::<u64>("SETTLED_MS") {
        c.graft_timeout_settled = Duration::from_millis(v);
    }
    if let Some(v) = env("PRUNE_N") {
        c.prune_after_duplicates = v;
    }
    if let Some(v) = env("SAMPLES") {
        c.optimization_samples = v;
    }
    if let Some(v) = env::<u64>("HOLD_MS") {
        c.optimization_hold = Duration::from_millis(v);
    }
    if let Some(v) = env::<u64>("PROBATION_MS") {
        c.link_probation = Duration::from_millis(v);
    }
    if let Some(v) = env("ALPHA") {
        c.alpha = v;
    }
    if let Some(v) = env::<u8>("XBOT") {
        c.link_optimization = v == 1;
    }
    if let Some(v) = env("XBOT_SWAPS") {
        c.link_optimization_swaps = v;
    }
    if let Some(v) = env("XBOT_MARGIN") {
        c.link_optimization_margin_pct = v;
    }
    if let Some(v) = env::<u64>("XBOT_MS") {
        c.link_optimization_interval = Duration::from_millis(v);
    }
    cfg
}

fn received(m: &Mesh) -> u64 {
    (0..m.len())
        .filter_map(|i| m.stats(i))
        .map(|s| s.gossip_delivered + s.gossip_duplicates)
        .sum()
}

fn sum_stat(m: &Mesh, f: impl Fn(&overlay_proto::NodeStats) -> u64) -> u64 {
    (0..m.len()).filter_map(|i| m.stats(i)).map(|s| f(&s)).sum()
}

fn tree_shape(m: &Mesh, seed: u64) -> String {
    let index: BTreeMap<PeerId, usize> = (0..m.len()).map(|i| (node_peer_id(seed, i), i)).collect();
    let mut links = BTreeSet::new();
    let mut hist = BTreeMap::new();
    for i in (0..m.len()).filter(|i| m.is_alive(*i)) {
        let mut e = 0;
        for s in m.node(i).unwrap().sessions() {
            if s.eager {
                links.insert((i, index[&s.peer]));
                e += 1;
            }
        }
        *hist.entry(e).or_insert(0) += 1;
    }
    let one_sided = links
        .iter()
        .filter(|(a, b)| !links.contains(&(*b, *a)))
        .count();
    let alive = (0..m.len()).filter(|i| m.is_alive(*i)).count();
    // Components of the symmetric part.
    let mut adj: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (a, b) in &links {
        if links.contains(&(*b, *a)) {
            adj.entry(*a).or_default().push(*b);
        }
    }
    let mut seen = BTreeSet::new();
    let mut comps = 0;
    for i in (0..m.len()).filter(|i| m.is_alive(*i)) {
        if seen.insert(i) {
            comps += 1;
            let mut st = vec![i];
            while let Some(x) = st.pop() {
                for &y in adj.get(&x).map(|v| v.as_slice()).unwrap_or(&[]) {
                    if seen.insert(y) {
                        st.push(y);
                    }
                }
            }
        }
    }
    format!(
        "eager edges {} (tree needs {}), one-sided {one_sided}, components {comps}, directed diameter {}, eager-degree histogram {hist:?}",
        (links.len() - one_sided) / 2,
        alive - 1,
        diameter(m, &links).map_or("inf".to_string(), |d| d.to_string()),
    )
}

/// The most hops any message needs over the directed eager links `links` among the live
/// nodes (None: some live node cannot reach another).
fn diameter(m: &Mesh, links: &BTreeSet<(usize, usize)>) -> Option<usize> {
    let alive: Vec<usize> = (0..m.len()).filter(|i| m.is_alive(*i)).collect();
    let mut adj: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (a, b) in links {
        adj.entry(*a).or_default().push(*b);
    }
    let mut worst = 0;
    for &s in &alive {
        let mut dist: BTreeMap<usize, usize> = BTreeMap::from([(s, 0)]);
        let mut queue = std::collections::VecDeque::from([s]);
        while let Some(x) = queue.pop_front() {
            let d = dist[&x];
            for &y in adj.get(&x).map(|v| v.as_slice()).unwrap_or(&[]) {
                if let std::collections::btree_map::Entry::Vacant(e) = dist.entry(y) {
                    e.insert(d + 1);
                    queue.push_back(y);
                }
            }
        }
        if alive.iter().any(|i| !dist.contains_key(i)) {
            return None;
        }
        worst = worst.max(dist.values().copied().max().unwrap_or(0));
    }
    Some(worst)
}

struct Out {
    ldh: u8,
    last_ms: f64,
    lat: Vec<f64>,
    reached: usize,
}

fn measure(m: &Mesh, id: &MessageId, expected: usize) -> Out {
    let t = m.track(id).unwrap();
    let mut o = Out {
        ldh: 0,
        last_ms: 0.0,
        lat: Vec::new(),
        reached: 0,
    };
    for &(_, at, hops) in &t.delivered {
        let l = (at - t.sent_at).as_secs_f64() * 1e3;
        o.ldh = o.ldh.max(hops);
        o.last_ms = o.last_ms.max(l);
        o.lat.push(l);
        o.reached += 1;
    }
    let _ = expected;
    o
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let k = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[k]
}

fn wan(seed: u64) {
    let nodes = env("NODES").unwrap_or(1000);
    let msgs: usize = env("MSGS").unwrap_or(20);
    let single = env::<u8>("SINGLE").unwrap_or(0) == 1;
    let mut m = Mesh::new(config(
        nodes,
        seed,
        Duration::from_millis(10),
        Duration::from_millis(50),
    ))
    .unwrap();
    let warm: u64 = env("WARM_S").unwrap_or(15);
    for t in 0..warm {
        m.run_for(Duration::from_secs(1));
        if env::<u8>("XBOT").is_some() {
            let lat: Vec<f64> = (0..m.len())
                .flat_map(|i| m.link_latencies(i))
                .map(|d| d.as_secs_f64() * 1e3)
                .collect();
            let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
            println!(
                "t={:>3}s links {:>6} mean one-way {mean:.1} ms, probes {} rejected {} swaps {}",
                t + 1,
                lat.len(),
                sum_stat(&m, |s| s.link_probes),
                sum_stat(&m, |s| s.link_probes_rejected),
                sum_stat(&m, |s| s.links_optimized),
            );
        }
    }
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let sender = next(nodes);
    let mut rows = Vec::new();
    for k in 0..msgs {
        let origin = if single { sender } else { next(nodes) };
        let before = received(&m);
        let g0 = sum_stat(&m, |s| s.grafts_sent);
        let s0 = sum_stat(&m, |s| s.tree_swaps);
        let c0 = sum_stat(&m, |s| s.sessions_closed);
        let id = m
            .broadcast(origin, Bytes::from(vec![k as u8; 1024]))
            .unwrap();
        m.run_for(Duration::from_secs(1));
        let got = received(&m) - before;
        let o = measure(&m, &id, nodes - 1);
        let n = o.reached as f64 + 1.0;
        let rmr = got as f64 / (n - 1.0) - 1.0;
        rows.push((
            rmr,
            o.ldh,
            o.last_ms,
            o.reached,
            sum_stat(&m, |s| s.grafts_sent) - g0,
            sum_stat(&m, |s| s.tree_swaps) - s0,
            got,
            sum_stat(&m, |s| s.sessions_closed) - c0,
        ));
    }
    for (k, r) in rows.iter().enumerate() {
        println!(
            "#{k:2} rmr {:.3} ldh {:2} last {:6.1} ms reached {} grafts {} swaps {} closed {}",
            r.0, r.1, r.2, r.3, r.4, r.5, r.7
        );
    }
    let steady = &rows[rows.len() / 2..];
    let payload: u64 = steady.iter().map(|r| r.6).sum();
    let denom: usize = steady.iter().map(|r| r.3).sum();
    let rmr = payload as f64 / denom as f64 - 1.0;
    let ldh = steady.iter().map(|r| r.1 as f64).sum::<f64>() / steady.len() as f64;
    let ldh_max = steady.iter().map(|r| r.1).max().unwrap();
    let last = steady.iter().map(|r| r.2).sum::<f64>() / steady.len() as f64;
    let last_max = steady.iter().map(|r| r.2).fold(0.0, f64::max);
    let rel = steady.iter().map(|r| r.3).min().unwrap();
    println!(
        "SUMMARY seed {seed} {}: steady RMR {rmr:.3} LDH {ldh:.1}/{ldh_max} last {last:.1}/{last_max:.1} ms min reached {rel}/{}",
        if single { "single" } else { "random" },
        nodes - 1
    );
    println!("{}", tree_shape(&m, seed));
}

fn lan(seed: u64) {
    let nodes = env("NODES").unwrap_or(32);
    let msgs: usize = env("MSGS").unwrap_or(2000);
    let mut cfg = config(
        nodes,
        seed,
        Duration::from_micros(50),
        Duration::from_micros(300),
    );
    cfg.bootstrap_peers = 5;
    let mut m = Mesh::new(cfg).unwrap();
    if let Some(us) = env::<u64>("JITTER_US") {
        m.set_jitter(Duration::from_micros(us));
    }
    m.run_for(Duration::from_millis(env("WARM_MS").unwrap_or(500)));
    println!("start: {}", tree_shape(&m, seed));
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut ids = Vec::new();
    let g0 = sum_stat(&m, |s| s.grafts_sent);
    for k in 0..msgs {
        let origin = next(nodes);
        let id = m
            .broadcast(origin, Bytes::from(vec![k as u8; 1024]))
            .unwrap();
        ids.push(id);
        m.run_for(Duration::from_millis(5));
        if k == msgs / 2 {
            println!("mid: {}", tree_shape(&m, seed));
        }
        if k % env::<usize>("DIAMETER_EVERY").unwrap_or(100) == 0
            && env::<u8>("DIAMETERS") == Some(1)
        {
            let links = m.eager_links();
            println!(
                "after message {k}: {} directed eager links, directed diameter {:?}, running sessions {}",
                links.len(),
                diameter(&m, &links),
                sum_stat(&m, |s| s.sessions_running as u64),
            );
        }
    }
    m.run_for(Duration::from_secs(2));
    let mut lat = Vec::new();
    let mut reach = Vec::new();
    let mut max_hops = 0;
    let mut hop_hist: BTreeMap<u8, usize> = BTreeMap::new();
    let mut late_hops = 0;
    for (k, id) in ids.iter().enumerate() {
        let o = measure(&m, id, nodes - 1);
        if k >= msgs / 2 {
            late_hops = late_hops.max(o.ldh);
        }
        max_hops = max_hops.max(o.ldh);
        if env::<u8>("TRACE") == Some(1) && o.ldh > 8 {
            println!(
                "msg {k} at {:.0} ms: ldh {} last {:.2} ms",
                k as f64 * 5.0,
                o.ldh,
                o.last_ms
            );
        }
        *hop_hist.entry(o.ldh).or_default() += 1;
        reach.push(if o.reached == nodes - 1 {
            o.last_ms
        } else {
            1e9
        });
        lat.extend(o.lat);
    }
    let delivered = lat.len() as f64 / (ids.len() * (nodes - 1)) as f64;
    let dups = sum_stat(&m, |s| s.gossip_duplicates);
    let deliv = sum_stat(&m, |s| s.gossip_delivered);
    println!(
        "SUMMARY lan seed {seed}: delivered {delivered:.4} p50 {:.2} p99 {:.2} max {:.2} ms reach-all p99 {:.2} ms max hops {max_hops} (2nd half {late_hops}) dup ratio {:.4} grafts {} swaps {} prunes {}",
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat.clone(), 0.99),
        pct(&mut lat, 1.0),
        pct(&mut reach, 0.99),
        dups as f64 / deliv as f64,
        sum_stat(&m, |s| s.grafts_sent) - g0,
        sum_stat(&m, |s| s.tree_swaps),
        sum_stat(&m, |s| s.prunes_sent),
    );
    println!("LDH histogram per message {hop_hist:?}");
    println!("end: {}", tree_shape(&m, seed));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    match args.get(1).map(String::as_str) {
        Some("wan") => wan(seed),
        Some("lan") => lan(seed),
        _ => eprintln!("usage: tree_probe wan|lan [seed]"),
    }
}
