//! The invariants of a chaos run, checked on what the hosts recorded:
//!
//! - **no deadlock**: every running node answers the watchdog's stats probe within
//!   `watchdog` (simulated), and after the network healed every node's `frames_in` keeps
//!   growing (no window of `watchdog` without a received frame);
//! - **delivery after healing**: every broadcast sent after the fault phase ended reaches
//!   every node;
//! - **readiness**: the node flooding during the saturation burst reports not-ready during
//!   the burst and ready again before the end, and every node is ready at the end;
//! - **bounded queues**: queued frames and bytes stay within the per-session bounds, the
//!   message store and seen cache within their capacities;
//! - **no panics**: no panic on the simulation thread, no crashed driver task, no host
//!   software failure, every node starts;
//! - **complete traces**: no trace record dropped (the digest covers every decision);
//! - **hostile peers** (with `hostile` hosts): no honest application ever sees a GOSSIP a
//!   hostile host sent (bad id, forged origin), every hostile host opened a session (the
//!   attack ran), and honest nodes closed its sessions with an error status (the attack
//!   registered);
//! - **silent cuts detected**: every session running across a silent cut when it started
//!   ends on both sides within `cut_detect` (only the core's failure detector can see a
//!   peer that is gone without an RST).

use core::time::Duration;
use std::collections::BTreeSet;

use overlay_proto::NodeConfig;

use super::run::RunData;
use super::ChaosScenario;

/// After the heal, nodes get this long to reconnect before progress is required.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(5);

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (`deadlock`, `delivery`, `readiness`, `queues`, `panic`, `trace`,
    /// `cut`).
    pub invariant: &'static str,
    /// The nodes concerned (their traces are kept).
    pub nodes: Vec<usize>,
    /// What was seen.
    pub detail: String,
}

/// Checks every invariant; an empty list means the run passed.
pub fn check(s: &ChaosScenario, data: &RunData) -> Vec<Violation> {
    let mut out = Vec::new();
    let heal = data.plan.heal_at;
    let cfg = NodeConfig::default();

    // Incidents found while running: deadlocks and host software failures.
    for inc in &data.incidents {
        let invariant = if inc.what.starts_with("deadlock") {
            "deadlock"
        } else {
            "panic"
        };
        out.push(Violation {
            invariant,
            nodes: inc.node.into_iter().collect(),
            detail: format!("t={:.3}s {}", inc.at.as_secs_f64(), inc.what),
        });
    }
    for p in &data.panics {
        out.push(Violation {
            invariant: "panic",
            nodes: Vec::new(),
            detail: format!("panic: {p}"),
        });
    }

    for (i, rec) in data.journal.nodes.iter().enumerate() {
        for e in &rec.errors {
            out.push(Violation {
                invariant: "panic",
                nodes: vec![i],
                detail: format!("node {i}: {e}"),
            });
        }
        if rec.incarnations == 0 || rec.traces.is_empty() {
            out.push(Violation {
                invariant: "panic",
                nodes: vec![i],
                detail: format!("node {i} never started"),
            });
        }

        // Progress after the heal: frames keep arriving.
        let from = heal + RECONNECT_GRACE;
        let mut last: Option<(Duration, u64, u32)> = None;
        for p in rec.probes.iter().filter(|p| p.at >= from) {
            match last {
                Some((at, frames, inc)) if inc == p.incarnation => {
                    if p.stats.frames_in > frames {
                        last = Some((p.at, p.stats.frames_in, inc));
                    } else if p.at.saturating_sub(at) > s.watchdog {
                        out.push(Violation {
                            invariant: "deadlock",
                            nodes: vec![i],
                            detail: format!(
                                "node {i} received no frame from t={:.1}s to t={:.1}s after \
                                 the network healed",
                                at.as_secs_f64(),
                                p.at.as_secs_f64()
                            ),
                        });
                        last = Some((p.at, p.stats.frames_in, inc));
                    }
                }
                _ => last = Some((p.at, p.stats.frames_in, p.incarnation)),
            }
        }

        // Bounded queues and caches.
        for p in &rec.probes {
            let st = &p.stats;
            let sessions = (st.sessions_running + st.sessions_handshaking).max(1);
            let mut broken = Vec::new();
            if st.queued_frames > cfg.max_queue_frames * sessions {
                broken.push(format!(
                    "queued_frames {} > {} × {sessions}",
                    st.queued_frames, cfg.max_queue_frames
                ));
            }
            if st.queued_bytes > cfg.max_queue_bytes * sessions {
                broken.push(format!(
                    "queued_bytes {} > {} × {sessions}",
                    st.queued_bytes, cfg.max_queue_bytes
                ));
            }
            if st.store_len > cfg.store_capacity || st.store_bytes > cfg.store_bytes_ceiling() {
                broken.push(format!(
                    "store {} msgs / {} B",
                    st.store_len, st.store_bytes
                ));
            }
            if st.seen_len > cfg.seen_capacity {
                broken.push(format!("seen cache {}", st.seen_len));
            }
            if !broken.is_empty() {
                out.push(Violation {
                    invariant: "queues",
                    nodes: vec![i],
                    detail: format!(
                        "node {i} at t={:.1}s: {}",
                        p.at.as_secs_f64(),
                        broken.join(", ")
                    ),
                });
            }
        }

        // Driver: crashed tasks, incomplete traces (last probe of each incarnation).
        let mut last_of_inc: Vec<&super::host::ProbeRecord> = Vec::new();
        for p in &rec.probes {
            match last_of_inc.last() {
                Some(l) if l.incarnation == p.incarnation => {
                    if let Some(slot) = last_of_inc.last_mut() {
                        *slot = p;
                    }
                }
                _ => last_of_inc.push(p),
            }
        }
        for p in last_of_inc {
            let restarts: u64 = p.driver.restarts.values().sum();
            if restarts > 0 {
                out.push(Violation {
                    invariant: "panic",
                    nodes: vec![i],
                    detail: format!(
                        "node {i} incarnation {}: driver tasks crashed: {:?}",
                        p.incarnation, p.driver.restarts
                    ),
                });
            }
            if p.driver.trace_dropped > 0 {
                out.push(Violation {
                    invariant: "trace",
                    nodes: vec![i],
                    detail: format!(
                        "node {i} incarnation {}: {} trace records dropped",
                        p.incarnation, p.driver.trace_dropped
                    ),
                });
            }
        }
    }

    // Every broadcast sent after the heal reaches every node.
    let n = data.journal.nodes.len();
    for sent in &data.journal.sent {
        if sent.at < heal {
            continue;
        }
        // A broadcast the origin refused (busy: backpressure) was never sent; that the node
        // recovers is checked with readiness below.
        let Ok(id) = sent.result else {
            continue;
        };
        let missing: Vec<usize> = (0..n)
            .filter(|&k| k != sent.origin)
            .filter(|&k| !data.journal.nodes[k].deliveries.contains_key(&id))
            .collect();
        if !missing.is_empty() {
            let mut nodes: BTreeSet<usize> = missing.iter().copied().collect();
            nodes.insert(sent.origin);
            out.push(Violation {
                invariant: "delivery",
                nodes: nodes.into_iter().collect(),
                detail: format!(
                    "broadcast #{} from node {} at t={:.3}s (after the heal) missed by {} of {} \
                     nodes: {:?}",
                    sent.seq,
                    sent.origin,
                    sent.at.as_secs_f64(),
                    missing.len(),
                    n - 1,
                    missing
                ),
            });
        }
    }

    // Every session across a silent cut ends on both sides within `cut_detect`.
    for cs in cut_sessions(s, data) {
        let late = match &cs.ended {
            Some((after, _)) => *after > s.cut_detect,
            None => true,
        };
        if late {
            out.push(Violation {
                invariant: "cut",
                nodes: vec![cs.node, cs.peer],
                detail: format!(
                    "node {} kept its session with node {} across the silent cut at t={:.3}s: {}",
                    cs.node,
                    cs.peer,
                    cs.cut_at.as_secs_f64(),
                    match &cs.ended {
                        Some((after, reason)) => format!(
                            "ended after {:.3}s ({reason}), limit {:.1}s",
                            after.as_secs_f64(),
                            s.cut_detect.as_secs_f64()
                        ),
                        None => "never ended while the cut lasted".to_string(),
                    }
                ),
            });
        }
    }

    // Every node is ready at the end of the run (it recovered from whatever degraded it).
    for (i, rec) in data.journal.nodes.iter().enumerate() {
        let last = rec
            .readiness
            .iter()
            .rfind(|c| c.at <= s.total() && !is_stop(&c.missing));
        if let Some(c) = last.filter(|c| !c.ready) {
            out.push(Violation {
                invariant: "readiness",
                nodes: vec![i],
                detail: format!(
                    "node {i} still not ready at the end (since t={:.3}s: {:?})",
                    c.at.as_secs_f64(),
                    c.missing
                ),
            });
        }
    }

    // The burst degrades the flooding node's readiness, which then recovers.
    if let Some((node, start, end)) = data.plan.burst {
        let rec = &data.journal.nodes[node];
        let window_end = end + Duration::from_secs(1);
        let degraded = rec
            .readiness
            .iter()
            .find(|c| !c.ready && c.at >= start && c.at <= window_end && !is_stop(&c.missing));
        match degraded {
            None => out.push(Violation {
                invariant: "readiness",
                nodes: vec![node],
                detail: format!(
                    "node {node} flooded {} broadcasts with its links held (t={:.1}s..{:.1}s) \
                     but never reported not-ready (accepted/refused: {:?})",
                    s.burst_messages,
                    start.as_secs_f64(),
                    end.as_secs_f64(),
                    rec.flood
                ),
            }),
            Some(d) => {
                let recovered = rec
                    .readiness
                    .iter()
                    .any(|c| c.ready && c.at > d.at && c.at <= s.total());
                if !recovered {
                    out.push(Violation {
                        invariant: "readiness",
                        nodes: vec![node],
                        detail: format!(
                            "node {node} became not-ready at t={:.3}s ({:?}) during the burst \
                             and never recovered",
                            d.at.as_secs_f64(),
                            d.missing
                        ),
                    });
                }
            }
        }
    }
    check_hostile(s, data, &mut out);
    out
}

/// The hostile hosts' frames never reach an application, and honest nodes throw them out.
fn check_hostile(s: &ChaosScenario, data: &RunData, out: &mut Vec<Violation>) {
    for (k, h) in data.hostile.iter().enumerate() {
        let fooled: Vec<usize> = data
            .journal
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, rec)| rec.deliveries.keys().any(|id| h.ids.contains(id)))
            .map(|(i, _)| i)
            .collect();
        if !fooled.is_empty() {
            out.push(Violation {
                invariant: "hostile",
                nodes: fooled.clone(),
                detail: format!(
                    "{} node(s) delivered GOSSIP sent by hostile host {k} (bad id or forged \
                     origin): {fooled:?}",
                    fooled.len()
                ),
            });
        }
        if h.sessions == 0 {
            out.push(Violation {
                invariant: "hostile",
                nodes: Vec::new(),
                detail: format!(
                    "hostile host {k} never opened a session ({} refused): the attack did not run",
                    h.refused
                ),
            });
        } else if !h.closed_by.keys().any(|c| *c >= 400) {
            out.push(Violation {
                invariant: "hostile",
                nodes: Vec::new(),
                detail: format!(
                    "hostile host {k} kept its {} session(s) open to the end: no honest node \
                     closed it for its frames ({:?} sent)",
                    h.sessions, h.frames
                ),
            });
        }
    }
    let _ = s;
}

/// How one session across a silent cut ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutSession {
    /// The node that saw the session (the cut node or its peer).
    pub node: usize,
    /// The other end.
    pub peer: usize,
    /// When the cut started.
    pub cut_at: Duration,
    /// Time from the cut to the session's end, and the close reason, if it ended before the
    /// cut was repaired.
    pub ended: Option<(Duration, String)>,
}

/// Every session running across each silent cut when it started, seen from both ends (sides
/// whose node crashed during the cut are left out), and how it ended.
pub fn cut_sessions(s: &ChaosScenario, data: &RunData) -> Vec<CutSession> {
    let mut out = Vec::new();
    // (time, node, true = crash / false = restart), in time order.
    let life: Vec<(Duration, usize, bool)> = data
        .plan
        .faults
        .iter()
        .filter_map(|(at, f)| match f {
            super::faults::Fault::Crash { node } => Some((*at, *node, true)),
            super::faults::Fault::Restart { node } => Some((*at, *node, false)),
            _ => None,
        })
        .collect();
    let index_of = |p: &overlay_proto::PeerId| data.peer_ids.iter().position(|q| q == p);
    for &(cut, start, end) in &data.plan.cuts {
        let window_end = end.min(start + s.cut_detect);
        // Down when the cut starts, or crashing before the detection window ends.
        let crashed = |n: usize| {
            let down_at_start = life
                .iter()
                .rfind(|(at, m, _)| *m == n && *at <= start)
                .is_some_and(|(_, _, crash)| *crash);
            let crashes_during = life
                .iter()
                .any(|(at, m, crash)| *m == n && *crash && *at > start && *at <= window_end);
            down_at_start || crashes_during
        };
        if crashed(cut) {
            continue;
        }
        for (i, rec) in data.journal.nodes.iter().enumerate() {
            if crashed(i) {
                continue;
            }
            // The peers this node had a running session with when the cut started.
            let mut up: Vec<usize> = Vec::new();
            let mut incarnation = 0;
            for c in rec.sessions.iter().filter(|c| c.at <= start) {
                if c.incarnation != incarnation {
                    // A crash ends every session without events: start over.
                    incarnation = c.incarnation;
                    up.clear();
                }
                let Some(p) = index_of(&c.peer) else {
                    continue;
                };
                match &c.down {
                    None => up.push(p),
                    Some(_) => {
                        if let Some(k) = up.iter().position(|&q| q == p) {
                            up.remove(k);
                        }
                    }
                }
            }
            for p in up {
                if (i == cut) == (p == cut) {
                    continue; // not across the cut
                }
                let ended = rec
                    .sessions
                    .iter()
                    .filter(|c| c.at > start && c.at <= end && index_of(&c.peer) == Some(p))
                    .find_map(|c| c.down.as_ref().map(|r| (c.at - start, r.clone())));
                out.push(CutSession {
                    node: i,
                    peer: p,
                    cut_at: start,
                    ended,
                });
            }
        }
    }
    out
}

/// Not-ready because the node is stopping, not because it is saturated.
fn is_stop(missing: &[String]) -> bool {
    missing
        .iter()
        .any(|m| m == "shutting_down" || m == "stopped")
}
