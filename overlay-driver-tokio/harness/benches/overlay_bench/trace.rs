//! `mesh --trace 1`: where the deepest deliveries come from (issue #10, max hops).
//!
//! Off by default (it polls every node's sessions and keeps a record per delivery). With it on,
//! the bench keeps, for every delivery, the neighbour it came from, and samples every node's
//! eager links every `--trace-every-ms` (default 100 ms) from the moment the dials start. After
//! the run it prints to stderr:
//!
//! - the distribution of hop counts over all deliveries (and its p99);
//! - the eager graph over time: running sessions, eager links (directed, symmetric, one-sided),
//!   and the directed diameter (the most hops any message needs on the eager links alone;
//!   `inf` while some node cannot reach another);
//! - the deepest deliveries: message index, when it was sent, its origin, the path it took
//!   (node and arrival time per hop) and the eager graph sampled just before it was sent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use overlay_proto::{PeerId, SessionState};
use svc_overlay::api::Overlay;

/// The neighbour a delivery came from (node indices; `u16::MAX`: not one of the bench's nodes).
#[derive(Clone, Copy)]
pub struct Hop {
    pub message: u64,
    pub node: u16,
    pub from: u16,
    pub hops: u8,
    pub at_us: u32,
}

/// One sample of the eager graph: when (µs after the dials started, may precede the epoch of
/// the deliveries), running sessions summed over nodes, and the directed eager links.
pub struct Snapshot {
    pub at: Instant,
    pub running: usize,
    pub eager: Vec<(u16, u16)>,
}

/// Shared records of a traced run.
#[derive(Default)]
pub struct Trace {
    pub hops: Mutex<Vec<Hop>>,
    pub snapshots: Mutex<Vec<Snapshot>>,
}

/// The bench nodes' indices by peer id.
pub type NodeIndex = Arc<HashMap<PeerId, u16>>;

/// Every bench node's index by peer id.
pub fn index_of(overlays: &[Overlay]) -> NodeIndex {
    Arc::new(
        overlays
            .iter()
            .enumerate()
            .map(|(i, ov)| (ov.peer_id(), i as u16))
            .collect(),
    )
}

/// Samples every node's eager links every `every` until aborted.
pub fn sample_eager_graph(
    overlays: Vec<Overlay>,
    index: NodeIndex,
    trace: Arc<Trace>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let at = Instant::now();
            let mut running = 0;
            let mut eager = Vec::new();
            for (i, ov) in overlays.iter().enumerate() {
                for s in ov.peers().await {
                    if s.state != SessionState::Running {
                        continue;
                    }
                    running += 1;
                    if let (true, Some(&j)) = (s.eager, index.get(&s.peer)) {
                        eager.push((i as u16, j));
                    }
                }
            }
            trace
                .snapshots
                .lock()
                .expect("lock")
                .push(Snapshot { at, running, eager });
        }
    })
}

/// Hops from every node to every other over the directed links `edges` (`None`: unreachable).
fn eccentricities(nodes: usize, edges: &[(u16, u16)]) -> Vec<Option<usize>> {
    let mut adj = vec![Vec::new(); nodes];
    for &(a, b) in edges {
        if usize::from(a) < nodes && usize::from(b) < nodes {
            adj[usize::from(a)].push(usize::from(b));
        }
    }
    (0..nodes)
        .map(|s| {
            let mut dist = vec![usize::MAX; nodes];
            dist[s] = 0;
            let mut queue = VecDeque::from([s]);
            while let Some(x) = queue.pop_front() {
                for &y in &adj[x] {
                    if dist[y] == usize::MAX {
                        dist[y] = dist[x] + 1;
                        queue.push_back(y);
                    }
                }
            }
            dist.iter()
                .all(|d| *d != usize::MAX)
                .then(|| dist.into_iter().max().unwrap_or(0))
        })
        .collect()
}

fn describe(nodes: usize, s: &Snapshot) -> String {
    let set: std::collections::BTreeSet<(u16, u16)> = s.eager.iter().copied().collect();
    let symmetric = set.iter().filter(|(a, b)| set.contains(&(*b, *a))).count() / 2;
    let one_sided = set.iter().filter(|(a, b)| !set.contains(&(*b, *a))).count();
    let ecc = eccentricities(nodes, &s.eager);
    let diameter = if ecc.iter().all(Option::is_some) {
        ecc.iter().flatten().max().copied().unwrap_or(0).to_string()
    } else {
        format!(
            "inf ({} nodes reach not all)",
            ecc.iter().filter(|e| e.is_none()).count()
        )
    };
    format!(
        "running sessions {:3}, eager links {:3} directed / {:3} symmetric pairs / {:2} one-sided, directed diameter {diameter}",
        s.running,
        set.len(),
        symmetric,
        one_sided
    )
}

/// Prints the trace's findings (see the module documentation).
#[allow(clippy::too_many_arguments)]
pub fn report(
    nodes: usize,
    epoch: Instant,
    dials_at: Instant,
    sent: &HashMap<u64, (Instant, usize)>,
    order: &HashMap<u64, usize>,
    trace: &Trace,
    deepest: usize,
) {
    let hops = trace.hops.lock().expect("lock");
    let snapshots = trace.snapshots.lock().expect("lock");
    let ms_after =
        |t: Instant, base: Instant| t.saturating_duration_since(base).as_secs_f64() * 1e3;

    // Hop distribution over the measured deliveries (receiver ≠ origin).
    let mut hist: BTreeMap<u8, usize> = BTreeMap::new();
    let mut per_message_max: HashMap<u64, u8> = HashMap::new();
    for h in hops.iter() {
        let Some((_, origin)) = sent.get(&h.message) else {
            continue;
        };
        if usize::from(h.node) == *origin {
            continue;
        }
        *hist.entry(h.hops).or_default() += 1;
        let m = per_message_max.entry(h.message).or_default();
        *m = (*m).max(h.hops);
    }
    let total: usize = hist.values().sum();
    let mut acc = 0;
    let mut p99 = 0;
    for (&h, &n) in &hist {
        acc += n;
        if acc * 100 >= total * 99 {
            p99 = h;
            break;
        }
    }
    eprintln!("trace: hops over {total} deliveries {hist:?}, p99 {p99}");
    // Deepest message per tenth of the run: early or steady state?
    let count = order.len().max(1);
    let mut by_tenth = [0u8; 10];
    for (id, m) in &per_message_max {
        if let Some(&k) = order.get(id) {
            let t = (k * 10 / count).min(9);
            by_tenth[t] = by_tenth[t].max(*m);
        }
    }
    eprintln!("trace: max hops per tenth of the messages (in send order) {by_tenth:?}");

    eprintln!(
        "trace: eager graph over time (ms after the dials; epoch of the messages at {:.0} ms)",
        ms_after(epoch, dials_at)
    );
    let mut last_line = String::new();
    for s in snapshots.iter() {
        let line = describe(nodes, s);
        if line != last_line {
            eprintln!("  {:8.0} ms  {line}", ms_after(s.at, dials_at));
            last_line = line;
        }
    }

    // The deepest deliveries and their paths.
    let mut by_key: HashMap<(u64, u16), Hop> = HashMap::new();
    for h in hops.iter() {
        by_key.entry((h.message, h.node)).or_insert(*h);
    }
    let mut deep: Vec<&Hop> = hops
        .iter()
        .filter(|h| {
            sent.get(&h.message)
                .is_some_and(|(_, o)| usize::from(h.node) != *o)
        })
        .collect();
    deep.sort_by(|a, b| b.hops.cmp(&a.hops).then(a.message.cmp(&b.message)));
    let mut shown_messages = Vec::new();
    for h in deep {
        if shown_messages.len() >= deepest {
            break;
        }
        if shown_messages.contains(&h.message) {
            continue;
        }
        shown_messages.push(h.message);
        let Some(&(sent_at, origin)) = sent.get(&h.message) else {
            continue;
        };
        let k = order.get(&h.message).copied().unwrap_or(usize::MAX);
        let mut path = Vec::new();
        let mut at = *h;
        loop {
            path.push(format!(
                "{}@{:.2}",
                at.node,
                ms_after(epoch + Duration::from_micros(u64::from(at.at_us)), sent_at)
            ));
            if usize::from(at.from) == origin || path.len() > 40 {
                break;
            }
            match by_key.get(&(h.message, at.from)) {
                Some(prev) => at = *prev,
                None => {
                    path.push(format!("?{}", at.from));
                    break;
                }
            }
        }
        path.push(format!("{origin}(origin)"));
        path.reverse();
        let before = snapshots.iter().rev().find(|s| s.at <= sent_at);
        eprintln!(
            "trace: message #{k} sent at {:.0} ms by node {origin}: {} hops to node {}: {}",
            ms_after(sent_at, epoch),
            h.hops,
            h.node,
            path.join(" -> ")
        );
        if let Some(s) = before {
            eprintln!(
                "        eager graph {:.0} ms before: {}",
                ms_after(sent_at, s.at),
                describe(nodes, s)
            );
            let ecc = eccentricities(nodes, &s.eager);
            if let Some(e) = ecc.get(origin) {
                eprintln!("        origin's eccentricity on it: {e:?}");
            }
        }
    }
}
