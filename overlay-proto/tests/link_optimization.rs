//! Latency-aware membership (`link_optimization`) on the core's mesh: slow links are replaced
//! by faster ones, no node is cut off and every broadcast still reaches everyone; the margin
//! and the swap budget hold; the burst is spent while nodes join and nothing is swapped after
//! it; the same seed gives the same run; off means no probe at all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use bytes::Bytes;
use core::time::Duration;
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::{NodeStats, OriginAuth};

const NODES: usize = 60;

fn mesh(seed: u64, tune: impl FnOnce(&mut overlay_proto::NodeConfig)) -> Mesh {
    let mut cfg = MeshConfig {
        nodes: NODES,
        seed,
        ..MeshConfig::default()
    };
    cfg.node_config.origin_auth = OriginAuth::None;
    cfg.node_config.link_optimization = true;
    tune(&mut cfg.node_config);
    Mesh::new(cfg).unwrap()
}

fn sum(m: &Mesh, f: impl Fn(&NodeStats) -> u64) -> u64 {
    (0..m.len()).filter_map(|i| m.stats(i)).map(|s| f(&s)).sum()
}

/// Mean one-way latency of the running sessions' connections, ms.
fn mean_latency(m: &Mesh) -> f64 {
    let lat: Vec<f64> = (0..m.len())
        .flat_map(|i| m.link_latencies(i))
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    lat.iter().sum::<f64>() / lat.len() as f64
}

fn every_broadcast_reaches_everyone(m: &mut Mesh, count: usize) {
    for k in 0..count {
        let origin = (k * 7) % m.len();
        let id = m
            .broadcast(origin, Bytes::from(vec![k as u8; 256]))
            .unwrap();
        m.run_for(Duration::from_secs(2));
        let reached = m.track(&id).unwrap().delivered.len();
        assert_eq!(reached, m.len() - 1, "broadcast {k} from {origin}");
    }
}

#[test]
fn slow_links_are_replaced_by_faster_ones_and_nobody_is_cut_off() {
    let mut off = mesh(5, |c| c.link_optimization = false);
    let mut on = mesh(5, |_| {});
    off.run_for(Duration::from_secs(20));
    on.run_for(Duration::from_secs(20));
    let swaps = sum(&on, |s| s.links_optimized);
    assert!(swaps > 0, "no link was optimised");
    assert!(sum(&on, |s| s.link_probes) >= swaps);
    // Every probe was drawn from a running peer's answer to a request of ours.
    assert!(sum(&on, |s| s.link_probe_asks) >= sum(&on, |s| s.link_probes));
    assert_eq!(sum(&off, |s| s.link_probes), 0, "off: no probe at all");
    assert_eq!(
        sum(&off, |s| s.link_probe_asks),
        0,
        "off: no request either"
    );
    let (before, after) = (mean_latency(&off), mean_latency(&on));
    assert!(
        after < before * 0.9,
        "mean link latency {after:.1} ms with the optimisation, {before:.1} ms without"
    );
    for i in 0..on.len() {
        let running = on.stats(i).unwrap().sessions_running;
        assert!(running >= 2, "node {i} has {running} sessions");
    }
    every_broadcast_reaches_everyone(&mut on, 5);
}

#[test]
fn the_margin_is_respected() {
    // Links are 10-50 ms: no probe is 90 % faster than the slowest link it could replace.
    let mut m = mesh(6, |c| c.link_optimization_margin_pct = 90);
    m.run_for(Duration::from_secs(20));
    let probes = sum(&m, |s| s.link_probes);
    assert!(probes > 0);
    assert_eq!(sum(&m, |s| s.links_optimized), 0);
    // Every probe was rejected, but the ones still in flight (one per node at most).
    let rejected = sum(&m, |s| s.link_probes_rejected);
    assert!(
        probes - rejected <= NODES as u64,
        "{probes} probes, {rejected} rejected"
    );
}

#[test]
fn the_swap_budget_bounds_every_node() {
    let mut m = mesh(7, |c| c.link_optimization_swaps = 2);
    // The budget refills one swap per 300 s: none comes back within 30 s.
    m.run_for(Duration::from_secs(30));
    let mut total = 0;
    for i in 0..m.len() {
        let swaps = m.stats(i).unwrap().links_optimized;
        assert!(swaps <= 2, "node {i} swapped {swaps} links");
        total += swaps;
    }
    assert!(total > 0);
}

#[test]
fn the_burst_is_spent_while_nodes_join_and_no_swap_comes_after_it() {
    // 40 rounds of 250 ms: the burst ends 10 s after the start; the first spent swap comes
    // back 300 s later.
    let mut m = mesh(9, |_| {});
    m.run_for(Duration::from_secs(10));
    let (swaps, probes) = (sum(&m, |s| s.links_optimized), sum(&m, |s| s.link_probes));
    assert!(swaps > 0, "the burst swapped nothing");
    // Broadcasts form the tree; links are no longer swapped under it, and no probe is dialed
    // but the ones in flight when the burst ended (one per node at most).
    every_broadcast_reaches_everyone(&mut m, 10);
    m.run_for(Duration::from_secs(30));
    assert_eq!(
        sum(&m, |s| s.links_optimized),
        swaps,
        "a swap after the burst: {swaps} by 10 s"
    );
    let late = sum(&m, |s| s.link_probes) - probes;
    assert!(late <= NODES as u64, "{late} probes after the burst");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut m = mesh(8, |_| {});
        m.run_for(Duration::from_secs(12));
        let id = m.broadcast(3, Bytes::from_static(b"x")).unwrap();
        m.run_for(Duration::from_secs(1));
        assert_eq!(m.track(&id).unwrap().delivered.len(), NODES - 1);
        (m.digest(), sum(&m, |s| s.links_optimized))
    };
    let (a, swaps) = run();
    assert!(swaps > 0);
    assert_eq!(a, run().0);
}
