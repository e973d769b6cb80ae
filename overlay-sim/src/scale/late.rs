//! Why deliveries were late: the path each delivery took, hop by hop, against the eager
//! (push) links every node had when the broadcast started.
//!
//! Before each measured broadcast the run takes a [`Snapshot`] of every node's view of its
//! links (eager or lazy on its side, frames queued for credit, send credit left). After the
//! window, every delivery's path is followed back to the origin through the `from` of each
//! node's first delivery, and its **slowest hop** is classified:
//!
//! - `pushed`: the parent had the receiver as an eager link at the start (a tree edge);
//! - `repaired`: it had not (the receiver got the message by GRAFT after an IHAVE, or over a
//!   link that became eager during the window).
//!
//! For a repaired hop, the receiver's **pushers** at the start (the peers that had it as an
//! eager link) tell why the tree did not bring the message: no pusher at all, only attacker
//! pushers, attacker pushers that never had the message themselves (they got nothing to
//! relay), or honest pushers that were late themselves. The figures are given for the
//! deliveries at or above the run's p99 latency and, for comparison, for all of them.

use std::collections::BTreeMap;

use serde::Serialize;

use overlay_proto::mesh::{Mesh, MessageTrack};
use overlay_proto::{Instant, PeerId};

/// One end's view of a link at the start of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkView {
    eager: bool,
    /// Frames waiting for the peer's credit.
    queued: usize,
    /// Frames we may still send before the peer grants more.
    credit: u32,
}

/// Every node's view of its running links at the start of a broadcast.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per node: peer node → the node's view of the link.
    links: Vec<BTreeMap<usize, LinkView>>,
}

/// Maps peer ids to mesh node indices.
#[derive(Debug, Clone, Default)]
pub struct NodeIndex(BTreeMap<PeerId, usize>);

impl NodeIndex {
    /// The index of a mesh of `n` nodes built with `seed`.
    pub fn new(seed: u64, n: usize) -> Self {
        NodeIndex(
            (0..n)
                .map(|i| (overlay_proto::mesh::node_peer_id(seed, i), i))
                .collect(),
        )
    }

    fn of(&self, peer: &PeerId) -> Option<usize> {
        self.0.get(peer).copied()
    }
}

impl Snapshot {
    /// Every live node's links, now.
    pub fn take(mesh: &Mesh, index: &NodeIndex) -> Self {
        let links = (0..mesh.len())
            .map(|i| {
                mesh.node(i)
                    .map(|node| {
                        node.sessions()
                            .iter()
                            .filter(|s| s.state == overlay_proto::SessionState::Running)
                            .filter_map(|s| {
                                index.of(&s.peer).map(|p| {
                                    (
                                        p,
                                        LinkView {
                                            eager: s.eager,
                                            queued: s.queued_frames,
                                            credit: s.send_credit_frames,
                                        },
                                    )
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        Snapshot { links }
    }

    fn view(&self, node: usize, peer: usize) -> Option<LinkView> {
        self.links.get(node).and_then(|l| l.get(&peer)).copied()
    }
}

/// Hop figures over a set of deliveries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HopStats {
    /// Deliveries counted.
    pub deliveries: u64,
    /// Deliveries whose last hop was a tree edge at the start (pushed).
    pub last_hop_pushed: u64,
    /// Deliveries with an attacker on their path.
    pub via_attacker: u64,
    /// Deliveries whose slowest hop was pushed.
    pub slowest_pushed: u64,
    /// Sum of the slowest hop's delay where it was pushed, ms.
    pub slowest_pushed_ms: f64,
    /// Deliveries whose slowest hop was repaired.
    pub slowest_repaired: u64,
    /// Sum of the slowest hop's delay where it was repaired, ms.
    pub slowest_repaired_ms: f64,
    /// Repaired slowest hops whose receiver had no pusher at the start.
    pub repaired_no_pusher: u64,
    /// Repaired slowest hops whose receiver's pushers were all attackers.
    pub repaired_only_attacker_pushers: u64,
    /// Repaired slowest hops whose receiver had an attacker pusher that never got the message.
    pub repaired_starved_attacker_pusher: u64,
    /// Repaired slowest hops whose receiver had an honest pusher (late itself, or the link
    /// changed during the window).
    pub repaired_honest_pusher: u64,
    /// Of those, hops where an honest pusher had the message more than 60 ms before the
    /// receiver got it (so it did not push: the link changed during the window).
    pub repaired_pusher_early: u64,
    /// Hops on the paths, summed.
    pub path_hops: u64,
    /// Over the slowest hops' receivers: their own eager links to attackers at the start.
    pub receiver_eager_to_attackers: u64,
    /// Of those, links with no send credit left or frames queued (the attacker returns no
    /// credit).
    pub receiver_eager_to_attackers_starved: u64,
    /// Over the slowest hops' receivers: their eager links at the start.
    pub receiver_eager_links: u64,
}

/// Tree and session changes at the honest nodes during the measured windows, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Churn {
    /// Running sessions that ended at honest nodes, by close reason label (as the honest
    /// node reported it).
    pub downs: BTreeMap<String, u64>,
    /// Sessions that reached the running state.
    pub sessions_opened: u64,
    /// Sessions that ended.
    pub sessions_closed: u64,
    /// PRUNE frames sent.
    pub prunes_sent: u64,
    /// GRAFT frames sent (repairs and empty "now eager" GRAFTs).
    pub grafts_sent: u64,
    /// Tree optimisation swaps.
    pub tree_swaps: u64,
    /// New messages that came first over a link on probation and were held back from the
    /// established eager links.
    pub held: u64,
    /// Duplicates over established eager links not taken as redundant (first copy over a
    /// link on probation).
    pub edges_spared: u64,
}

impl Churn {
    /// The counters summed over the nodes with `honest[i]`.
    pub fn of(mesh: &Mesh, honest: &[bool]) -> Churn {
        let mut c = Churn::default();
        for s in (0..mesh.len())
            .filter(|i| honest.get(*i).copied().unwrap_or(false))
            .filter_map(|i| mesh.stats(i))
        {
            c.sessions_opened += s.sessions_opened;
            c.sessions_closed += s.sessions_closed;
            c.prunes_sent += s.prunes_sent;
            c.grafts_sent += s.grafts_sent;
            c.tree_swaps += s.tree_swaps;
            c.held += s.gossip_held;
            c.edges_spared += s.tree_edges_spared;
        }
        c
    }

    fn since(self, earlier: Churn) -> Churn {
        Churn {
            downs: BTreeMap::new(),
            sessions_opened: self.sessions_opened.saturating_sub(earlier.sessions_opened),
            sessions_closed: self.sessions_closed.saturating_sub(earlier.sessions_closed),
            prunes_sent: self.prunes_sent.saturating_sub(earlier.prunes_sent),
            grafts_sent: self.grafts_sent.saturating_sub(earlier.grafts_sent),
            tree_swaps: self.tree_swaps.saturating_sub(earlier.tree_swaps),
            held: self.held.saturating_sub(earlier.held),
            edges_spared: self.edges_spared.saturating_sub(earlier.edges_spared),
        }
    }

    fn add(&mut self, o: Churn) {
        for (k, v) in o.downs {
            *self.downs.entry(k).or_default() += v;
        }
        self.sessions_opened += o.sessions_opened;
        self.sessions_closed += o.sessions_closed;
        self.prunes_sent += o.prunes_sent;
        self.grafts_sent += o.grafts_sent;
        self.tree_swaps += o.tree_swaps;
        self.held += o.held;
        self.edges_spared += o.edges_spared;
    }
}

/// The late-delivery analysis of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LateReport {
    /// Tree and session changes at the honest nodes during the measured windows.
    pub churn: Churn,
    /// The run's p99 delivery latency: deliveries at or above it are "late", ms.
    pub threshold_ms: f64,
    /// Deliveries at or above the threshold.
    pub late: HopStats,
    /// Every honest delivery.
    pub all: HopStats,
}

/// Collects the hop figures of each broadcast of a run.
#[derive(Debug, Clone, Default)]
pub struct LateTracer {
    /// `(latency ms, figures of that one delivery)`.
    samples: Vec<(f64, HopStats)>,
    churn: Churn,
}

impl LateTracer {
    /// Adds the churn of one window (`before` and `after` from [`Churn::of`]) and the
    /// sessions that ended at honest nodes in it (`downs`).
    pub fn add_churn(
        &mut self,
        before: Churn,
        after: Churn,
        downs: &[overlay_proto::mesh::SessionDown],
        honest: &[bool],
    ) {
        let mut c = after.since(before);
        for d in downs
            .iter()
            .filter(|d| honest.get(d.node).copied().unwrap_or(false))
        {
            let peer = match d.peer.map(|p| honest.get(p).copied().unwrap_or(false)) {
                Some(true) => "honest",
                Some(false) => "attacker",
                None => "unknown",
            };
            *c.downs
                .entry(format!("{} ({peer})", d.reason.label()))
                .or_default() += 1;
        }
        self.churn.add(c);
    }

    /// Adds the deliveries of one broadcast at honest nodes (`honest[i]`), `snapshot` taken
    /// when it was sent.
    pub fn add(
        &mut self,
        track: &MessageTrack,
        snapshot: &Snapshot,
        index: &NodeIndex,
        honest: &[bool],
    ) {
        let n = snapshot.links.len();
        let mut at: Vec<Option<Instant>> = vec![None; n];
        let mut parent: Vec<Option<usize>> = vec![None; n];
        if let Some(t) = at.get_mut(track.origin) {
            *t = Some(track.sent_at);
        }
        for (&(node, t, _), from) in track.delivered.iter().zip(&track.delivered_from) {
            if let (Some(slot), Some(p)) = (at.get_mut(node), parent.get_mut(node)) {
                if slot.is_none() {
                    *slot = Some(t);
                    *p = index.of(from);
                }
            }
        }
        let is_attacker = |i: usize| !honest.get(i).copied().unwrap_or(true);
        for &(node, t, _) in &track.delivered {
            if is_attacker(node) || node == track.origin {
                continue;
            }
            let mut s = HopStats {
                deliveries: 1,
                ..HopStats::default()
            };
            // Walk to the origin; the slowest hop is (receiver, parent, delay).
            let mut slowest: Option<(usize, usize, f64)> = None;
            let mut cur = node;
            for step in 0..256 {
                let (Some(p), Some(tc)) = (
                    parent.get(cur).copied().flatten(),
                    at.get(cur).copied().flatten(),
                ) else {
                    break;
                };
                let Some(tp) = at.get(p).copied().flatten() else {
                    break;
                };
                let delay = (tc - tp).as_secs_f64() * 1000.0;
                if step == 0 && snapshot.view(p, cur).is_some_and(|v| v.eager) {
                    s.last_hop_pushed = 1;
                }
                if is_attacker(p) {
                    s.via_attacker = 1;
                }
                s.path_hops += 1;
                if slowest.is_none_or(|(_, _, d)| delay > d) {
                    slowest = Some((cur, p, delay));
                }
                if p == track.origin {
                    break;
                }
                cur = p;
            }
            if let Some((r, p, delay)) = slowest {
                if snapshot.view(p, r).is_some_and(|v| v.eager) {
                    s.slowest_pushed = 1;
                    s.slowest_pushed_ms = delay;
                } else {
                    s.slowest_repaired = 1;
                    s.slowest_repaired_ms = delay;
                    let pushers: Vec<usize> = snapshot
                        .links
                        .get(r)
                        .map(|l| l.keys().copied().collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|q| snapshot.view(*q, r).is_some_and(|v| v.eager))
                        .collect();
                    if pushers.is_empty() {
                        s.repaired_no_pusher = 1;
                    } else if pushers.iter().all(|q| is_attacker(*q)) {
                        s.repaired_only_attacker_pushers = 1;
                    }
                    if pushers
                        .iter()
                        .any(|q| is_attacker(*q) && at.get(*q).copied().flatten().is_none())
                    {
                        s.repaired_starved_attacker_pusher = 1;
                    }
                    if pushers.iter().any(|q| !is_attacker(*q)) {
                        s.repaired_honest_pusher = 1;
                    }
                    let tr = at.get(r).copied().flatten();
                    if pushers.iter().any(|q| {
                        !is_attacker(*q)
                            && match (at.get(*q).copied().flatten(), tr) {
                                (Some(tq), Some(tr)) => {
                                    tq < tr && (tr - tq).as_secs_f64() * 1000.0 > 60.0
                                }
                                _ => false,
                            }
                    }) {
                        s.repaired_pusher_early = 1;
                    }
                }
                if let Some(links) = snapshot.links.get(r) {
                    for (q, v) in links.iter().filter(|(_, v)| v.eager) {
                        s.receiver_eager_links += 1;
                        if is_attacker(*q) {
                            s.receiver_eager_to_attackers += 1;
                            if v.credit == 0 || v.queued > 0 {
                                s.receiver_eager_to_attackers_starved += 1;
                            }
                        }
                    }
                }
            }
            let latency = (t - track.sent_at).as_secs_f64() * 1000.0;
            self.samples.push((latency, s));
        }
    }

    /// The report: deliveries at or above `threshold_ms` (the run's p99) against all.
    pub fn report(&self, threshold_ms: f64) -> LateReport {
        let mut out = LateReport {
            churn: self.churn.clone(),
            threshold_ms,
            ..LateReport::default()
        };
        for (latency, s) in &self.samples {
            out.all.add(s);
            if *latency >= threshold_ms {
                out.late.add(s);
            }
        }
        out
    }
}

impl HopStats {
    fn add(&mut self, o: &HopStats) {
        self.deliveries += o.deliveries;
        self.last_hop_pushed += o.last_hop_pushed;
        self.via_attacker += o.via_attacker;
        self.slowest_pushed += o.slowest_pushed;
        self.slowest_pushed_ms += o.slowest_pushed_ms;
        self.slowest_repaired += o.slowest_repaired;
        self.slowest_repaired_ms += o.slowest_repaired_ms;
        self.repaired_no_pusher += o.repaired_no_pusher;
        self.repaired_only_attacker_pushers += o.repaired_only_attacker_pushers;
        self.repaired_starved_attacker_pusher += o.repaired_starved_attacker_pusher;
        self.repaired_honest_pusher += o.repaired_honest_pusher;
        self.repaired_pusher_early += o.repaired_pusher_early;
        self.path_hops += o.path_hops;
        self.receiver_eager_to_attackers += o.receiver_eager_to_attackers;
        self.receiver_eager_to_attackers_starved += o.receiver_eager_to_attackers_starved;
        self.receiver_eager_links += o.receiver_eager_links;
    }

    /// One readable line.
    pub fn line(&self) -> String {
        let pct = |a: u64| {
            if self.deliveries == 0 {
                0.0
            } else {
                a as f64 * 100.0 / self.deliveries as f64
            }
        };
        let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
        format!(
            "{} deliveries, {:.1} hops; last hop pushed {:.1}%; via an attacker {:.1}%; slowest hop pushed \
             {:.1}% (mean {:.0} ms), repaired {:.1}% (mean {:.0} ms); of the repaired: no \
             pusher {}, only attacker pushers {}, a starved attacker pusher {}, an honest \
             pusher {} (one with the message > 60 ms earlier {}); receivers' eager links {} of which to attackers {} ({} without credit)",
            self.deliveries,
            mean(self.path_hops as f64, self.deliveries),
            pct(self.last_hop_pushed),
            pct(self.via_attacker),
            pct(self.slowest_pushed),
            mean(self.slowest_pushed_ms, self.slowest_pushed),
            pct(self.slowest_repaired),
            mean(self.slowest_repaired_ms, self.slowest_repaired),
            self.repaired_no_pusher,
            self.repaired_only_attacker_pushers,
            self.repaired_starved_attacker_pusher,
            self.repaired_honest_pusher,
            self.repaired_pusher_early,
            self.receiver_eager_links,
            self.receiver_eager_to_attackers,
            self.receiver_eager_to_attackers_starved,
        )
    }
}
