//! The figures of a chaos run and its readable report.

use core::fmt::Write as _;
use core::time::Duration;
use std::collections::BTreeMap;

use super::invariants::Violation;
use super::run::RunData;
use super::ChaosScenario;

/// The measured figures of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Planned broadcasts.
    pub planned: usize,
    /// Planned broadcasts the origin accepted.
    pub sent: usize,
    /// Planned broadcasts the origin refused (e.g. busy).
    pub refused: usize,
    /// Planned broadcasts with no running node to send them.
    pub skipped: u64,
    /// Deliveries of accepted planned broadcasts (first per node).
    pub delivered: u64,
    /// Mean over accepted planned broadcasts of delivered / (nodes − 1).
    pub reliability: f64,
    /// Lowest reliability of a planned broadcast.
    pub reliability_min: f64,
    /// Broadcasts sent after the heal.
    pub after_heal: usize,
    /// Mean reliability of the broadcasts sent after the heal.
    pub reliability_after_heal: f64,
    /// Dissemination latency percentiles (simulated ms): p50, p95, p99, max.
    pub latency_ms: [f64; 4],
    /// Mean hops of deliveries.
    pub hops_mean: f64,
    /// Largest hop count.
    pub hops_max: u8,
    /// Deliveries of a message already delivered in an earlier incarnation.
    pub redeliveries: u64,
    /// Sessions opened (sum over nodes and incarnations).
    pub sessions_opened: u64,
    /// Running sessions per node at the end: min, mean, max.
    pub sessions_end: (usize, f64, usize),
    /// Core rejects by reason (sum over nodes and incarnations).
    pub rejects: BTreeMap<String, u64>,
    /// Driver-side counters: TLS handshake failures by reason.
    pub handshake_failures: BTreeMap<String, u64>,
    /// Driver-side rejects (`writer_full`, `max_conns`).
    pub driver_rejects: BTreeMap<String, u64>,
    /// Readiness transitions to not-ready (core counter, summed).
    pub degraded_transitions: u64,
    /// Readiness changes seen by the applications (excluding the final shutdown).
    pub readiness_changes: usize,
    /// Node starts (first starts and restarts).
    pub incarnations: u64,
    /// Flood: accepted and refused broadcasts.
    pub flood: Option<(u64, u64)>,
    /// Sessions across silent cuts (both ends counted), and how many ended during the cut.
    pub cut_sessions: (usize, usize),
    /// Time from a silent cut to the end of each of its sessions (ms): p50, max.
    pub cut_detect_ms: [f64; 2],
    /// Close reasons of the sessions that ended during a silent cut.
    pub cut_reasons: BTreeMap<String, u64>,
    /// Sessions closed by the failure detector (core counter, summed).
    pub peers_unresponsive: u64,
}

/// Percentile `p` (0..=1) of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Computes the figures from what the hosts recorded.
pub fn figures(s: &ChaosScenario, data: &RunData) -> Figures {
    let j = &data.journal;
    let n = j.nodes.len();
    let heal = data.plan.heal_at;
    let mut f = Figures {
        planned: data.plan.broadcasts.len(),
        skipped: data.skipped_broadcasts,
        ..Figures::default()
    };
    let mut latencies = Vec::new();
    let mut hops_sum = 0u64;
    let mut rel_sum = 0.0;
    let mut rel_min: f64 = 1.0;
    let mut heal_sum = 0.0;
    for sent in &j.sent {
        let Ok(id) = &sent.result else {
            f.refused += 1;
            continue;
        };
        f.sent += 1;
        let mut got = 0u64;
        for (k, rec) in j.nodes.iter().enumerate() {
            if k == sent.origin {
                continue;
            }
            if let Some((at, hops, _)) = rec.deliveries.get(id) {
                got += 1;
                latencies.push(at.saturating_sub(sent.at).as_secs_f64() * 1000.0);
                hops_sum += u64::from(*hops);
                f.hops_max = f.hops_max.max(*hops);
            }
        }
        f.delivered += got;
        let rel = got as f64 / (n.saturating_sub(1)).max(1) as f64;
        rel_sum += rel;
        rel_min = rel_min.min(rel);
        if sent.at >= heal {
            f.after_heal += 1;
            heal_sum += rel;
        }
    }
    if f.sent > 0 {
        f.reliability = rel_sum / f.sent as f64;
        f.reliability_min = rel_min;
    }
    if f.after_heal > 0 {
        f.reliability_after_heal = heal_sum / f.after_heal as f64;
    }
    latencies.sort_by(f64::total_cmp);
    f.latency_ms = [
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
    ];
    if f.delivered > 0 {
        f.hops_mean = hops_sum as f64 / f.delivered as f64;
    }

    let mut end_sessions = Vec::new();
    for rec in &j.nodes {
        f.redeliveries += rec.redeliveries;
        f.incarnations += u64::from(rec.incarnations);
        if rec.flood.is_some() {
            f.flood = rec.flood;
        }
        f.readiness_changes += rec
            .readiness
            .iter()
            .filter(|c| c.at <= s.total())
            .count()
            .saturating_sub(1);
        // The last probe of each incarnation holds its final counters.
        let mut last: BTreeMap<u32, &super::host::ProbeRecord> = BTreeMap::new();
        for p in &rec.probes {
            last.insert(p.incarnation, p);
        }
        for p in last.values() {
            let st = &p.stats;
            f.sessions_opened += st.sessions_opened;
            f.peers_unresponsive += st.peers_unresponsive;
            f.degraded_transitions += st.degraded_transitions;
            for (reason, count) in st.rejected.iter() {
                if count > 0 {
                    *f.rejects.entry(reason.label().to_string()).or_default() += count;
                }
            }
            for (reason, count) in &p.driver.handshake_failures {
                *f.handshake_failures.entry(reason.clone()).or_default() += count;
            }
            for (reason, count) in &p.driver.rejected {
                *f.driver_rejects.entry(reason.clone()).or_default() += count;
            }
        }
        if let Some(p) = rec.probes.last() {
            end_sessions.push(p.stats.sessions_running);
        }
    }
    let cut = super::invariants::cut_sessions(s, data);
    let mut detect: Vec<f64> = Vec::new();
    for cs in &cut {
        if let Some((after, reason)) = &cs.ended {
            detect.push(after.as_secs_f64() * 1000.0);
            *f.cut_reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    f.cut_sessions = (cut.len(), detect.len());
    detect.sort_by(f64::total_cmp);
    f.cut_detect_ms = [
        percentile(&detect, 0.5),
        detect.last().copied().unwrap_or(0.0),
    ];
    if !end_sessions.is_empty() {
        let min = end_sessions.iter().copied().min().unwrap_or(0);
        let max = end_sessions.iter().copied().max().unwrap_or(0);
        let mean = end_sessions.iter().sum::<usize>() as f64 / end_sessions.len() as f64;
        f.sessions_end = (min, mean, max);
    }
    f
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The readable report (without the final `digest:` line).
pub fn write(
    s: &ChaosScenario,
    data: &RunData,
    f: &Figures,
    violations: &[Violation],
    decisions: u64,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "chaos run `{}`: {} nodes (real svc-overlay driver over turmoil, TLS 1.3 {}), seed {}",
        s.name, s.nodes, s.pq, s.seed
    );
    let _ = writeln!(
        o,
        "  phases: warm-up {}, faults {}, settle {} (last {} without new broadcasts); \
         heal at t={}",
        secs(s.warmup),
        secs(s.duration),
        secs(s.settle),
        secs(s.drain),
        secs(data.plan.heal_at)
    );
    let _ = writeln!(
        o,
        "  faults: churn {}/s (≤{} down, {}–{} each), {} partitions, {} one-way, {} holds, \
         {} silent cuts ({}–{}), burst {}, latency {}–{} ms, loss {}",
        s.churn,
        s.max_down,
        secs(s.down_min),
        secs(s.down_max),
        s.partitions,
        s.oneway,
        s.holds,
        s.cuts,
        secs(s.fault_min),
        secs(s.fault_max),
        if s.burst {
            format!("{} msgs / {} hold", s.burst_messages, secs(s.burst_hold))
        } else {
            "off".to_string()
        },
        s.latency_min_ms,
        s.latency_max_ms,
        s.loss
    );
    let _ = writeln!(
        o,
        "  plumtree: α={} β={} active={}",
        s.alpha, s.beta, s.active_target
    );
    for (k, h) in data.hostile.iter().enumerate() {
        let frames: Vec<String> = h.frames.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let closed: Vec<String> = h
            .closed_by
            .iter()
            .map(|(c, v)| format!("{c}×{v}"))
            .collect();
        let _ =
            writeln!(
            o,
            "  hostile host {k}: {} sessions, {} refused; sent {}; closed by honest nodes with {}",
            h.sessions,
            h.refused,
            if frames.is_empty() { "nothing".to_string() } else { frames.join(", ") },
            if closed.is_empty() { "nothing".to_string() } else { closed.join(", ") }
        );
    }
    let _ = writeln!(o);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, what) in &data.applied {
        let kind = what.split(':').next().unwrap_or(what);
        let kind = kind
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let key: &str = match kind.as_str() {
            "crash node" => "crashes",
            "restart node" => "restarts",
            k if k.starts_with("partition") => "partitions",
            k if k.starts_with("one-way") => "one-way partitions",
            "hold links" => "holds",
            "silent cut" => "silent cuts",
            "burst" => "bursts",
            _ => continue,
        };
        *kinds.entry(key).or_default() += 1;
    }
    let applied: Vec<String> = kinds.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        o,
        "faults applied:      {} (node starts {})",
        if applied.is_empty() {
            "none".to_string()
        } else {
            applied.join(", ")
        },
        f.incarnations
    );
    let _ = writeln!(
        o,
        "broadcasts:          {} planned, {} sent, {} refused, {} skipped (no node running)",
        f.planned, f.sent, f.refused, f.skipped
    );
    let _ = writeln!(
        o,
        "delivered:           {} (of {} possible), {} repeated after a restart",
        f.delivered,
        f.sent * s.nodes.saturating_sub(1),
        f.redeliveries
    );
    let _ = writeln!(
        o,
        "reliability:         mean {:.2}%, min {:.2}%; after the heal {:.2}% over {} broadcasts",
        f.reliability * 100.0,
        f.reliability_min * 100.0,
        f.reliability_after_heal * 100.0,
        f.after_heal
    );
    let _ = writeln!(
        o,
        "latency (simulated): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        f.latency_ms[0], f.latency_ms[1], f.latency_ms[2], f.latency_ms[3]
    );
    let _ = writeln!(
        o,
        "hops:                mean {:.2}, max {}",
        f.hops_mean, f.hops_max
    );
    let _ = writeln!(
        o,
        "sessions:            {} opened; running per node at the end min {} / mean {:.1} / max {}",
        f.sessions_opened, f.sessions_end.0, f.sessions_end.1, f.sessions_end.2
    );
    let rejects: Vec<String> = f.rejects.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        o,
        "rejects (core):      {}",
        if rejects.is_empty() {
            "none".to_string()
        } else {
            rejects.join(", ")
        }
    );
    let mut driver: Vec<String> = f
        .handshake_failures
        .iter()
        .map(|(k, v)| format!("tls_{k} {v}"))
        .collect();
    driver.extend(f.driver_rejects.iter().map(|(k, v)| format!("{k} {v}")));
    let _ = writeln!(
        o,
        "driver:              {}",
        if driver.is_empty() {
            "no handshake failures or driver rejects".to_string()
        } else {
            driver.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "failure detector:    {} sessions closed as peer_unresponsive",
        f.peers_unresponsive
    );
    if s.cuts > 0 {
        let reasons: Vec<String> = f
            .cut_reasons
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            o,
            "silent cuts:         {} sessions across {} cuts, {} ended during the cut ({}); \
             time to end p50 {:.0} ms, max {:.0} ms (limit {})",
            f.cut_sessions.0,
            data.plan.cuts.len(),
            f.cut_sessions.1,
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            },
            f.cut_detect_ms[0],
            f.cut_detect_ms[1],
            secs(s.cut_detect)
        );
    }
    let _ = writeln!(
        o,
        "readiness:           {} changes, {} degradations",
        f.readiness_changes, f.degraded_transitions
    );
    if let Some((node, start, end)) = data.plan.burst {
        let rec = &data.journal.nodes[node];
        let changes: Vec<String> = rec
            .readiness
            .iter()
            .filter(|c| c.at >= start && c.at <= s.total())
            .map(|c| {
                if c.ready {
                    format!("t={:.3}s ready", c.at.as_secs_f64())
                } else {
                    format!(
                        "t={:.3}s not ready ({})",
                        c.at.as_secs_f64(),
                        c.missing.join(",")
                    )
                }
            })
            .collect();
        let (acc, refd) = rec.flood.unwrap_or((0, 0));
        let _ = writeln!(
            o,
            "burst:               node {node}, links held t={:.1}s..{:.1}s, {acc} broadcasts \
             accepted, {refd} refused; {}",
            start.as_secs_f64(),
            end.as_secs_f64(),
            if changes.is_empty() {
                "no readiness change".to_string()
            } else {
                changes.join(" → ")
            }
        );
    }
    let speed = if data.wall_secs > 0.0 {
        data.sim_end.as_secs_f64() / data.wall_secs
    } else {
        0.0
    };
    let _ = writeln!(
        o,
        "simulated:           {:.1} s in {:.1} s wall ({:.2} simulated s per wall s); {} core \
         decisions traced",
        data.sim_end.as_secs_f64(),
        data.wall_secs,
        speed,
        decisions
    );
    let _ = writeln!(o);
    if violations.is_empty() {
        let _ = writeln!(
            o,
            "invariants: all held (no deadlock, delivery after the heal, readiness under the \
             burst, bounded queues, no panics, complete traces, silent cuts detected)"
        );
    } else {
        let _ = writeln!(o, "invariants: {} violated", violations.len());
        for v in violations.iter().take(40) {
            let _ = writeln!(o, "  [{}] {}", v.invariant, v.detail);
        }
        if violations.len() > 40 {
            let _ = writeln!(o, "  … and {} more", violations.len() - 40);
        }
    }
    o
}
