//! The attack table: the attack-free run, every adversary kind at one share of the nodes, and
//! half the nodes silent, each over several seeds, with the targets of issue #7 checked.

use std::io::Write;

use super::adversary::{AdversaryKind, AttackTally};
use super::metrics::{BroadcastOutcome, Summary};
use super::run::AdversaryReport;
use super::scenario::{Scenario, ScenarioKind};
use super::SuiteReport;
use crate::SimError;

/// Share of silent attackers of the table's last row.
pub const HEAVY_SILENT_PERCENT: u32 = 50;
/// Target: p99 latency under attack at most this multiple of the attack-free p99.
pub const P99_FACTOR_TARGET: f64 = 1.5;
/// Target: mean reliability with [`HEAVY_SILENT_PERCENT`] silent attackers.
pub const HEAVY_SILENT_TARGET: f64 = 0.999;

/// What the attack table runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackTablePlan {
    /// First seed.
    pub first_seed: u64,
    /// Number of seeds (`first_seed`, `first_seed + 1`, …).
    pub seeds: u64,
    /// Nodes in each mesh, attackers included.
    pub nodes: usize,
    /// Share of attackers of each kind's row.
    pub percent: u32,
    /// Peer scoring settings to run every row with (one column each).
    pub scoring: Vec<bool>,
}

impl AttackTablePlan {
    /// The rows, in order: attack-free, each kind at `percent`, silent at 50 %.
    pub fn rows(&self) -> Vec<Attack> {
        let mut rows = vec![None];
        rows.extend(AdversaryKind::ALL.iter().map(|k| Some((*k, self.percent))));
        if self.percent != HEAVY_SILENT_PERCENT {
            rows.push(Some((AdversaryKind::Silent, HEAVY_SILENT_PERCENT)));
        }
        rows
    }

    /// Every run (random senders), scoring setting by setting, row by row, seed by seed.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut v = Vec::new();
        for &scoring in &self.scoring {
            for row in self.rows() {
                for k in 0..self.seeds {
                    let mut s =
                        Scenario::new(ScenarioKind::Random, self.nodes, self.first_seed + k);
                    // Signed origins, as outside dev mode: a forged origin is refused at the
                    // first honest hop (the scale default `none` would deliver it everywhere).
                    s.origin_auth = overlay_proto::OriginAuth::Sign;
                    if let Some((kind, percent)) = row {
                        s.adversary = Some(kind);
                        s.adversary_percent = percent;
                    }
                    s.scoring = scoring;
                    s.name = s.default_name();
                    v.push(s);
                }
            }
        }
        v
    }
}

/// A row's attack: the kind and its share of the nodes (`None`: attack-free).
pub type Attack = Option<(AdversaryKind, u32)>;

/// One row of the table: a kind and share over every seed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackRow {
    /// The attack (`None`: attack-free).
    pub attack: Attack,
    /// Peer scoring on.
    pub scoring: bool,
    /// Runs (seeds).
    pub runs: usize,
    /// Broadcasts over all runs, and the figures over them all.
    pub summary: Summary,
    /// Broadcasts that reached every honest node.
    pub complete: usize,
    /// Broadcasts.
    pub broadcasts: usize,
    /// Refused honest broadcasts.
    pub refused: usize,
    /// Honest nodes not ready at the end, summed over runs.
    pub not_ready: usize,
    /// Bans by honest nodes, summed over runs.
    pub bans: u64,
    /// Mean honest–attacker sessions per honest node at the end (mean over runs).
    pub attacker_sessions: f64,
    /// The tallies, summed.
    pub tally: AttackTally,
    /// Rejects and drops counted by honest nodes, by reason, summed over runs.
    pub rejects: std::collections::BTreeMap<String, u64>,
    /// Runs whose invariants failed (other than reliability, which the table reports).
    pub failed_runs: usize,
}

fn add_tally(sum: &mut AttackTally, t: &AttackTally) {
    for (dst, src) in [
        (&mut sum.injected, &t.injected),
        (&mut sum.dropped, &t.dropped),
        (&mut sum.rewritten, &t.rewritten),
    ] {
        for (k, v) in src {
            *dst.entry(k.clone()).or_default() += v;
        }
    }
    for (k, v) in &t.closed_by_honest {
        *sum.closed_by_honest.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &t.closed_among_attackers {
        *sum.closed_among_attackers.entry(k.clone()).or_default() += v;
    }
    sum.blocked_by_credit += t.blocked_by_credit;
    sum.tampered_deliveries += t.tampered_deliveries;
    sum.forged_deliveries += t.forged_deliveries;
}

/// Groups a suite's runs into table rows (runs in plan order).
pub fn rows(suite: &SuiteReport) -> Vec<AttackRow> {
    let mut out: Vec<AttackRow> = Vec::new();
    let mut groups: Vec<((Attack, bool), Vec<&super::ScenarioReport>)> = Vec::new();
    for r in &suite.runs {
        let attack = r
            .scenario
            .adversary
            .map(|k| (k, r.scenario.adversary_percent));
        let key = (attack, r.scenario.scoring);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    for ((attack, scoring), runs) in groups {
        let all: Vec<BroadcastOutcome> = runs
            .iter()
            .flat_map(|r| r.broadcasts.iter().cloned())
            .collect();
        let mut tally = AttackTally::default();
        let mut refused = 0;
        let mut not_ready = 0;
        let mut bans = 0;
        let mut sessions = 0.0;
        let mut rejects: std::collections::BTreeMap<String, u64> = Default::default();
        for r in &runs {
            for (k, v) in &r.drops {
                *rejects.entry(k.clone()).or_default() += v;
            }
        }
        for a in runs.iter().filter_map(|r| r.adversary.as_ref()) {
            add_tally(&mut tally, &a.tally);
            refused += a.refused_broadcasts;
            not_ready += a.honest_not_ready;
            bans += a.honest_bans;
            sessions += a.attacker_sessions_per_honest;
        }
        let failed_runs = runs
            .iter()
            .filter(|r| {
                r.violations
                    .iter()
                    .any(|v| !v.contains(" reached ") && !v.contains("mean reliability"))
            })
            .count();
        out.push(AttackRow {
            attack,
            scoring,
            runs: runs.len(),
            summary: Summary::of(&all, None),
            complete: all.iter().filter(|o| o.reached == o.expected).count(),
            broadcasts: all.len(),
            refused,
            not_ready,
            bans,
            rejects,
            attacker_sessions: sessions / runs.len().max(1) as f64,
            tally,
            failed_runs,
        });
    }
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// Whether a row meets its target (`None`: the attack-free row).
pub fn target_met(row: &AttackRow, clean_p99: Option<f64>) -> Option<bool> {
    let (kind, percent) = row.attack?;
    if kind == AdversaryKind::Silent && percent >= HEAVY_SILENT_PERCENT {
        return Some(row.summary.reliability_mean >= HEAVY_SILENT_TARGET);
    }
    let p99_ok = clean_p99.is_some_and(|c| row.summary.latency_p99_ms <= P99_FACTOR_TARGET * c);
    Some(row.complete == row.broadcasts && p99_ok && row.tally.tampered_deliveries == 0)
}

/// Prints the attack table and one line per row on what the attack did.
pub fn write_attack_table(out: &mut dyn Write, suite: &SuiteReport) -> Result<(), SimError> {
    let rows = rows(suite);
    let clean_p99 = |scoring: bool| {
        rows.iter()
            .find(|r| r.attack.is_none() && r.scoring == scoring)
            .map(|r| r.summary.latency_p99_ms)
    };
    let nodes = suite.runs.first().map_or(0, |r| r.scenario.nodes);
    writeln!(
        out,
        "Attack table: {nodes} nodes (attackers included), random honest senders, 20 broadcasts \
         per run 1 s apart. Reliability counts honest nodes with an intact payload. p99 x: p99 \
         over the attack-free p99 (same scoring). Target: 20 % rows every broadcast complete and \
         p99 x <= 1.5; 50 % silent: mean >= 0.999."
    )?;
    writeln!(
        out,
        "  {:<18} {:>5} {:>10} {:>9} {:>9} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7}  target",
        "attack",
        "seeds",
        "complete",
        "rel. min",
        "rel. mean",
        "p50 ms",
        "p99 ms",
        "p99 x",
        "RMR",
        "refused",
        "att/hon"
    )?;
    for r in &rows {
        let label = match r.attack {
            None => "none".to_string(),
            Some((k, p)) => format!("{k} {p}%"),
        };
        let clean = clean_p99(r.scoring);
        let ratio = clean
            .filter(|c| *c > 0.0)
            .map(|c| r.summary.latency_p99_ms / c);
        let verdict = match target_met(r, clean) {
            None => "-",
            Some(true) => "met",
            Some(false) => "MISSED",
        };
        writeln!(
            out,
            "  {:<18} {:>7} {:>5} {:>10} {:>8.2}% {:>8.3}% {:>7.1} {:>7.1} {:>6} {:>6} {:>7} {:>7.2}  {}",
            label,
            super::scenario::on_off(r.scoring),
            r.runs,
            format!("{}/{}", r.complete, r.broadcasts),
            r.summary.reliability_min * 100.0,
            r.summary.reliability_mean * 100.0,
            r.summary.latency_p50_ms,
            r.summary.latency_p99_ms,
            opt(ratio, 2),
            opt(r.summary.rmr, 3),
            r.refused,
            r.attacker_sessions,
            verdict
        )?;
    }
    writeln!(out)?;
    writeln!(out, "What the attacks did (sums over the seeds):")?;
    for r in rows.iter().filter(|r| r.attack.is_some()) {
        let Some((k, p)) = r.attack else { continue };
        writeln!(
            out,
            "  {k} {p}%, scoring {}: {}",
            super::scenario::on_off(r.scoring),
            tally_line(&r.tally, r.not_ready)
        )?;
        writeln!(
            out,
            "    honest bans {}; honest rejects: {}",
            r.bans,
            map_line(&r.rejects)
        )?;
        if r.failed_runs > 0 {
            writeln!(out, "    {} run(s) broke other invariants", r.failed_runs)?;
        }
    }
    Ok(())
}

fn map_line<K: std::fmt::Display>(m: &std::collections::BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tally_line(t: &AttackTally, not_ready: usize) -> String {
    format!(
        "injected [{}]; dropped [{}]; rewritten [{}]; blocked by credit {}; honest closes of \
         attacker sessions by code [{}] (among attackers [{}]); tampered deliveries {}; forged \
         deliveries {}; honest not ready at the end {}",
        map_line(&t.injected),
        map_line(&t.dropped),
        map_line(&t.rewritten),
        t.blocked_by_credit,
        map_line(&t.closed_by_honest),
        map_line(&t.closed_among_attackers),
        t.tampered_deliveries,
        t.forged_deliveries,
        not_ready
    )
}

/// The attack section of one run's report.
pub fn write_attack_detail(out: &mut dyn Write, a: &AdversaryReport) -> Result<(), SimError> {
    writeln!(
        out,
        "  attack: {} attackers ({}), {} honest nodes; refused honest broadcasts {}; honest \
         sessions with attackers at the end {} ({:.2} per honest node)",
        a.attackers,
        a.kind,
        a.honest,
        a.refused_broadcasts,
        a.attacker_sessions_end,
        a.attacker_sessions_per_honest
    )?;
    writeln!(out, "    {}", tally_line(&a.tally, a.honest_not_ready))?;
    writeln!(out, "    honest bans {}", a.honest_bans)?;
    Ok(())
}
