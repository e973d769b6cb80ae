//! Human-readable reports: one scenario in detail, the suite as tables, the comparison with
//! the reference implementation, failures with the command that reproduces them, and the
//! closing `digest:` line.

use std::io::Write;

use crate::scale::{ScenarioKind, ScenarioReport, SuiteReport, Summary};
use crate::SimError;

/// One figure measured by a well-known HyParView + Plumtree implementation under the same
/// network model (1000 nodes, latency 10–50 ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Scenario name in our suite.
    pub scenario: &'static str,
    /// What is compared.
    pub figure: &'static str,
    /// Their value.
    pub value: f64,
    /// True when a larger value is better.
    pub higher_is_better: bool,
}

/// The reference figures quoted in the issue.
pub const REFERENCE: [Reference; 6] = [
    Reference {
        scenario: "single-1000",
        figure: "RMR",
        value: 0.07,
        higher_is_better: false,
    },
    Reference {
        scenario: "single-1000",
        figure: "LDH",
        value: 13.0,
        higher_is_better: false,
    },
    Reference {
        scenario: "single-1000",
        figure: "last delivery ms",
        value: 361.0,
        higher_is_better: false,
    },
    Reference {
        scenario: "kill-60-1000",
        figure: "first broadcast reliability %",
        value: 88.5,
        higher_is_better: true,
    },
    Reference {
        scenario: "kill-80-1000",
        figure: "first broadcast reliability %",
        value: 34.2,
        higher_is_better: true,
    },
    Reference {
        scenario: "kill-90-1000",
        figure: "first broadcast reliability %",
        value: 1.9,
        higher_is_better: true,
    },
];

/// Our value of a reference figure, from a suite run. Figures of broadcasts without failures
/// are the steady state (the second half of the broadcasts, once the gossip tree has
/// converged); the tables print the first broadcast and all those after it too.
pub fn our_value(r: &Reference, report: &ScenarioReport) -> Option<f64> {
    let s = report
        .steady
        .as_ref()
        .or(report.rest.as_ref())
        .unwrap_or(&report.overall);
    match r.figure {
        "RMR" => s.rmr,
        "LDH" => Some(s.ldh_mean),
        "last delivery ms" => Some(s.last_delivery_mean_ms),
        "first broadcast reliability %" => {
            report.first.as_ref().map(|f| f.reliability_mean * 100.0)
        }
        _ => None,
    }
}

/// `12.34%`.
pub fn pct(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else {
        format!("{:.2}%", v * 100.0)
    }
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".to_string()
    } else {
        format!("{v:.decimals$}")
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| num(v, decimals))
}

fn describe(report: &ScenarioReport) -> String {
    let s = &report.scenario;
    let what = match s.kind {
        ScenarioKind::Single => {
            format!(
                "one sender, {} broadcasts {} ms apart",
                s.messages, s.interval_ms
            )
        }
        ScenarioKind::Random => {
            format!(
                "random senders, {} broadcasts {} ms apart",
                s.messages, s.interval_ms
            )
        }
        ScenarioKind::AllSend => {
            format!(
                "every node broadcasts at once, observed for {} ms",
                s.timeout_ms
            )
        }
        ScenarioKind::Kill => format!(
            "{} broadcasts {} ms apart, then {}% of the nodes killed at once, a broadcast right \
             after and {} more, {} ms each",
            s.prekill_messages, s.interval_ms, s.kill_percent, s.messages, s.timeout_ms
        ),
    };
    format!(
        "{}: {} nodes, seed {}, α={} β={}, active view {}, latency {}–{} ms, loss {}, payload {} \
         bytes, warm-up {} ms; {}",
        s.name,
        s.nodes,
        s.seed,
        s.alpha,
        s.beta,
        s.active_target,
        s.latency_min_ms,
        s.latency_max_ms,
        s.loss,
        s.payload_bytes,
        s.warmup_ms,
        what
    )
}

fn summary_row(out: &mut dyn Write, label: &str, s: &Summary) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<18} {:>6}  {:>8} / {:>8}  {:>6}  {:>5} / {:>3}  {:>7} / {:>7}  {:>6} / {:>6} / {:>6}",
        label,
        s.broadcasts,
        pct(s.reliability_mean),
        pct(s.reliability_min),
        opt(s.rmr, 3),
        num(s.ldh_mean, 1),
        s.ldh_max,
        num(s.last_delivery_mean_ms, 1),
        num(s.last_delivery_max_ms, 1),
        num(s.latency_p50_ms, 1),
        num(s.latency_p90_ms, 1),
        num(s.latency_p99_ms, 1),
    )
}

/// The detailed report of one run (without the digest line).
pub fn write_scenario(out: &mut dyn Write, report: &ScenarioReport) -> Result<(), SimError> {
    writeln!(out, "scenario {}", describe(report))?;
    writeln!(
        out,
        "  live nodes {} of {}, isolated at the end {}, running sessions per live node {:.1}",
        report.live_nodes, report.scenario.nodes, report.isolated_nodes, report.sessions_mean
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "  {:<18} {:>6}  {:>19}  {:>6}  {:>11}  {:>17}  {:>22}",
        "broadcasts",
        "count",
        "reliability mean/min",
        "RMR",
        "LDH mean/max",
        "last delivery ms",
        "latency p50/p90/p99 ms"
    )?;
    let kill = report.scenario.kind == ScenarioKind::Kill;
    if let Some(b) = &report.before {
        summary_row(out, "before the kill", b)?;
    }
    if let Some(f) = &report.first {
        summary_row(out, if kill { "first after kill" } else { "first" }, f)?;
    }
    if let Some(r) = &report.rest {
        let label = if kill {
            format!("next {}", r.broadcasts)
        } else {
            "after the first".into()
        };
        summary_row(out, &label, r)?;
    }
    if let Some(st) = &report.steady {
        summary_row(out, &format!("last {} (steady)", st.broadcasts), st)?;
    }
    summary_row(
        out,
        if kill { "all after kill" } else { "all" },
        &report.overall,
    )?;
    if kill {
        if let Some(o) = report.broadcasts.get(report.scenario.prekill_messages) {
            let curve: Vec<String> = o
                .reliability_by_ms
                .iter()
                .map(|(t, r)| format!("{} by {t} ms", pct(*r)))
                .collect();
            writeln!(
                out,
                "  first broadcast after the kill: {}, {} by the end of its {} ms window",
                curve.join(", "),
                pct(o.reliability),
                report.scenario.timeout_ms
            )?;
        }
    }
    writeln!(out)?;
    if report.drops.is_empty() {
        writeln!(out, "  drops and refusals: none")?;
    } else {
        let list: Vec<String> = report
            .drops
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            out,
            "  drops and refusals (live nodes): {}",
            list.join(", ")
        )?;
    }
    if let Some(a) = &report.adversary {
        crate::scale::table::write_attack_detail(out, a)?;
    }
    if let Some(l) = &report.late {
        writeln!(
            out,
            "  late deliveries (>= p99 {:.1} ms): {}",
            l.threshold_ms,
            l.late.line()
        )?;
        writeln!(out, "  all deliveries: {}", l.all.line())?;
        let c = &l.churn;
        writeln!(
            out,
            "  honest churn in the windows: sessions opened {} closed {}, PRUNE sent {}, GRAFT \
             sent {}, tree swaps {}, messages held from a link on probation {}, tree edges spared {}; sessions down by \
             reason: {}",
            c.sessions_opened,
            c.sessions_closed,
            c.prunes_sent,
            c.grafts_sent,
            c.tree_swaps,
            c.held,
            c.edges_spared,
            c.downs
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    write_speed(out, report)?;
    write_verdict(out, report)?;
    Ok(())
}

fn write_speed(out: &mut dyn Write, report: &ScenarioReport) -> Result<(), SimError> {
    let sp = &report.speed;
    writeln!(
        out,
        "  speed: {} nodes, {:.1} s virtual in {:.2} s wall (setup {:.2} s) = {:.1} simulated s \
         per wall s; {} inputs, {:.0} inputs/s",
        report.scenario.nodes,
        sp.virtual_s,
        sp.wall_ms / 1000.0,
        sp.setup_ms / 1000.0,
        sp.sim_s_per_wall_s,
        sp.inputs,
        sp.inputs_per_wall_s
    )?;
    Ok(())
}

/// `invariants: ok`, or every violation with the seed and the reproducing command.
pub fn write_verdict(out: &mut dyn Write, report: &ScenarioReport) -> Result<(), SimError> {
    if report.passed() {
        writeln!(out, "  invariants: ok")?;
        return Ok(());
    }
    writeln!(
        out,
        "  invariants: FAILED ({} violations)",
        report.violations.len()
    )?;
    for v in report.violations.iter().take(20) {
        writeln!(out, "    - {v}")?;
    }
    if report.violations.len() > 20 {
        writeln!(out, "    - … and {} more", report.violations.len() - 20)?;
    }
    writeln!(out, "  seed: {}", report.scenario.seed)?;
    writeln!(out, "  reproduce: {}", report.scenario.command_line())?;
    Ok(())
}

/// The suite as tables: broadcast figures, kill figures, speed, comparison with the reference,
/// failures (without the digest line).
pub fn write_suite(out: &mut dyn Write, suite: &SuiteReport) -> Result<(), SimError> {
    let (kills, others): (Vec<&ScenarioReport>, Vec<&ScenarioReport>) = suite
        .runs
        .iter()
        .partition(|r| r.scenario.kind == ScenarioKind::Kill);
    if !others.is_empty() {
        writeln!(
            out,
            "Broadcast without failures. Reliability: smallest over every broadcast. RMR first: \
             the first broadcast, which builds the gossip tree; RMR 2nd+: every broadcast after \
             it. The other figures: the steady state, i.e. the second half of the broadcasts \
             (all-send: the whole burst)."
        )?;
        writeln!(
            out,
            "  {:<16} {:>5} {:>6}  {:>8}  {:>9}  {:>8}  {:>6}  {:>5} / {:>3}  {:>7} / {:>7}  {:>6} / {:>6}",
            "scenario",
            "nodes",
            "bcasts",
            "rel. min",
            "RMR first",
            "RMR 2nd+",
            "RMR",
            "LDH",
            "max",
            "last ms",
            "max",
            "p50 ms",
            "p99"
        )?;
        for r in &others {
            let s = r.steady.as_ref().or(r.rest.as_ref()).unwrap_or(&r.overall);
            writeln!(
                out,
                "  {:<16} {:>5} {:>6}  {:>8}  {:>9}  {:>8}  {:>6}  {:>5} / {:>3}  {:>7} / {:>7}  {:>6} / {:>6}",
                r.scenario.name,
                r.scenario.nodes,
                r.overall.broadcasts,
                pct(r.overall.reliability_min),
                opt(r.first.as_ref().and_then(|f| f.rmr), 3),
                opt(r.rest.as_ref().and_then(|f| f.rmr), 3),
                opt(s.rmr, 3),
                num(s.ldh_mean, 1),
                s.ldh_max,
                num(s.last_delivery_mean_ms, 1),
                num(s.last_delivery_max_ms, 1),
                num(s.latency_p50_ms, 1),
                num(s.latency_p99_ms, 1),
            )?;
        }
        writeln!(out)?;
    }
    if !kills.is_empty() {
        let k = &kills[0].scenario;
        writeln!(
            out,
            "Mass failure: kill X% at once, broadcast immediately from a survivor, then {} more; \
             each broadcast observed for {} ms. @0.5 s, @1 s: the first broadcast's reliability \
             by then. Reference: the first broadcast in the reference implementation.",
            k.messages, k.timeout_ms
        )?;
        writeln!(
            out,
            "  {:<16} {:>5} {:>5}  {:>8} {:>8}  {:>9}  {:>6}  {:>5}  {:>8}  {:>10}  {:>9}  {:>9}",
            "scenario",
            "killed",
            "alive",
            "@0.5 s",
            "@1 s",
            "first rel.",
            "RMR",
            "LDH",
            "last ms",
            "later mean",
            "later min",
            "reference"
        )?;
        for r in &kills {
            let f = r.first.as_ref();
            let first_outcome = r.broadcasts.get(r.scenario.prekill_messages);
            let early =
                |t: f64| first_outcome.map_or_else(|| "-".into(), |o| pct(o.reliability_within(t)));
            let reference = REFERENCE
                .iter()
                .find(|x| x.scenario == r.scenario.name)
                .map_or_else(String::new, |x| format!("{:.1}%", x.value));
            writeln!(
                out,
                "  {:<16} {:>5}% {:>5}  {:>8} {:>8}  {:>10}  {:>6}  {:>5}  {:>8}  {:>11}  {:>10}  {:>9}",
                r.scenario.name,
                r.scenario.kill_percent,
                r.live_nodes,
                early(500.0),
                early(1000.0),
                f.map_or_else(|| "-".into(), |f| pct(f.reliability_mean)),
                opt(f.and_then(|f| f.rmr), 3),
                f.map_or_else(|| "-".into(), |f| f.ldh_max.to_string()),
                f.map_or_else(|| "-".into(), |f| num(f.last_delivery_max_ms, 1)),
                r.rest
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| pct(s.reliability_mean)),
                r.rest
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| pct(s.reliability_min)),
                reference
            )?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Speed (release build figures are the meaningful ones)")?;
    writeln!(
        out,
        "  {:<16} {:>5}  {:>9}  {:>8}  {:>12}  {:>10}  {:>12}",
        "scenario", "nodes", "virtual s", "wall s", "sim s/wall s", "inputs", "inputs/s"
    )?;
    for r in &suite.runs {
        let sp = &r.speed;
        writeln!(
            out,
            "  {:<16} {:>5}  {:>9.1}  {:>8.2}  {:>12.1}  {:>10}  {:>12.0}",
            r.scenario.name,
            r.scenario.nodes,
            sp.virtual_s,
            sp.wall_ms / 1000.0,
            sp.sim_s_per_wall_s,
            sp.inputs,
            sp.inputs_per_wall_s
        )?;
    }
    writeln!(out, "  total wall time {:.1} s", suite.wall_ms / 1000.0)?;
    write_comparison(out, suite)?;
    let failed: Vec<&ScenarioReport> = suite.runs.iter().filter(|r| !r.passed()).collect();
    writeln!(out)?;
    if failed.is_empty() {
        writeln!(out, "invariants: ok in all {} runs", suite.runs.len())?;
    } else {
        writeln!(
            out,
            "invariants: FAILED in {} of {} runs",
            failed.len(),
            suite.runs.len()
        )?;
        for r in failed {
            writeln!(out, "{}:", r.scenario.name)?;
            write_verdict(out, r)?;
        }
    }
    Ok(())
}

/// Our figures next to the reference ones, for the suite runs that have a reference.
pub fn write_comparison(out: &mut dyn Write, suite: &SuiteReport) -> Result<(), SimError> {
    let rows: Vec<(&Reference, f64)> = REFERENCE
        .iter()
        .filter_map(|r| {
            let run = suite.runs.iter().find(|x| x.scenario.name == r.scenario)?;
            Some((r, our_value(r, run)?))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "Against the reference HyParView + Plumtree figures (single sender: steady state, i.e. \
         the second half of the broadcasts; LDH and last delivery are means over them)"
    )?;
    writeln!(
        out,
        "  {:<14} {:<30} {:>10} {:>10}  verdict",
        "scenario", "figure", "reference", "ours"
    )?;
    for (r, ours) in rows {
        let better = if r.higher_is_better {
            ours > r.value
        } else {
            ours < r.value
        };
        let verdict = if (ours - r.value).abs() < 1e-9 {
            "equal"
        } else if better {
            "better"
        } else {
            "worse"
        };
        writeln!(
            out,
            "  {:<14} {:<30} {:>10} {:>10}  {}",
            r.scenario,
            r.figure,
            num(r.value, 2),
            num(ours, 2),
            verdict
        )?;
    }
    Ok(())
}

/// The closing line of every run.
pub fn write_digest(out: &mut dyn Write, digest_hex: &str) -> Result<(), SimError> {
    writeln!(out, "digest: {digest_hex}")?;
    Ok(())
}
