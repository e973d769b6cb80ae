//! The command line: `overlay-sim scale …`, `overlay-sim replay …`, `overlay-sim chaos …` and
//! `overlay-sim liveness …`, one subcommand per mode.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::replay::{replay_file, ReplayOptions};
use crate::report;
use crate::scale::{self, Scenario, ScenarioFile, ScenarioKind};
use crate::{SimError, EXIT_FAILED, EXIT_OK};

/// `overlay-sim`: simulations and trace replay for svc-overlay.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "overlay-sim",
    version,
    about = "svc-overlay simulator: large-scale epidemic-broadcast runs of the core, trace replay.",
    after_help = "Every run ends with `digest: <hex>`, a fingerprint of every decision of the \
                  run: the same command gives the same digest. Exit code 0 when the invariants \
                  held (replay: no divergence), 1 when not, 2 on usage or input errors."
)]
pub struct Cli {
    /// The mode.
    #[command(subcommand)]
    pub command: Command,
}

/// The modes.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Large-scale mode: thousands of cores on a discrete-event network in one process
    /// (virtual time, per-connection latency 10–50 ms, no sockets, no TLS).
    Scale(Box<ScaleArgs>),
    /// Replay a trace captured by `svc-overlay --trace-out FILE` and check every action.
    Replay(ReplayArgs),
    /// Chaos mode: the real tokio driver (TLS, sessions, writer tasks) on every host of a
    /// turmoil network under seeded faults (churn, partitions, holds, loss, a saturation burst).
    Chaos(Box<crate::chaos::ChaosArgs>),
    /// Failure detection on the mesh: the mass-kill table with kind and silent kills side by
    /// side, detection times, false positives under loss and jitter.
    Liveness(crate::liveness::LivenessArgs),
}

/// Arguments of `overlay-sim scale`. Exactly one of `--scenario`, `--scenario-file` and
/// `--suite`; the other options override the scenario's (or every suite run's) values.
#[derive(Debug, Clone, Default, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["scenario", "scenario_file", "suite", "adversary_suite"])))]
pub struct ScaleArgs {
    /// Scenario kind (single, random, all-send, kill) or a scenario TOML file
    #[arg(long, value_name = "KIND|FILE")]
    pub scenario: Option<String>,
    /// Scenario TOML file (see overlay-sim/scenarios/)
    #[arg(long, value_name = "FILE")]
    pub scenario_file: Option<PathBuf>,
    /// Run the full table: single n=100 and 1000, random senders, all-send (100 and 1000),
    /// kill 20,30,…,90,95 % of 1000 nodes
    #[arg(long)]
    pub suite: bool,
    /// Report label [default: <kind>-<nodes>]
    #[arg(long, conflicts_with = "suite")]
    pub name: Option<String>,
    /// Nodes in the mesh [default: 1000]; with --suite it replaces 1000 (and caps 100)
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// Seed of the run [default: 1]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Percentage of nodes killed at once, 0..=99 (kill) [default: 80]
    #[arg(long, value_name = "X", conflicts_with = "suite")]
    pub kill_percent: Option<u32>,
    /// Plumtree eager fan-out α [default: 3]
    #[arg(long)]
    pub alpha: Option<usize>,
    /// Plumtree lazy fan-out β [default: 6]
    #[arg(long)]
    pub beta: Option<usize>,
    /// Running sessions per node (active view) [default: 9]
    #[arg(long, value_name = "N")]
    pub active_target: Option<usize>,
    /// Broadcasts (single, random), or broadcasts after the first one following the kill
    /// (kill) [default: 20; kill 10]
    #[arg(long, value_name = "K")]
    pub messages: Option<usize>,
    /// Broadcasts from random nodes before the kill (kill) [default: 10]
    #[arg(long, value_name = "K")]
    pub prekill_messages: Option<usize>,
    /// Payload of each broadcast, bytes [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub payload_bytes: Option<usize>,
    /// Virtual warm-up before the first broadcast, ms [default: 15000]
    #[arg(long, value_name = "MS")]
    pub warmup_ms: Option<u64>,
    /// Spacing (and observation window) of sequential broadcasts, ms [default: 1000]
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<u64>,
    /// Observation window after a kill and of the all-send burst, ms [default: 5000]
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Smallest one-way connection latency, ms [default: 10]
    #[arg(long, value_name = "MS")]
    pub latency_min_ms: Option<u64>,
    /// Largest one-way connection latency, ms [default: 50]
    #[arg(long, value_name = "MS")]
    pub latency_max_ms: Option<u64>,
    /// Probability a transmission is lost once and retransmitted after 200 ms [default: 0]
    #[arg(long, value_name = "P")]
    pub loss: Option<f64>,
    /// Random peers each node is told about at start [default: 5]
    #[arg(long, value_name = "N")]
    pub bootstrap_peers: Option<usize>,
    /// Invariant: smallest acceptable reliability [default: 1.0; kill: 0.99 for the mean after
    /// the first broadcast]
    #[arg(long, value_name = "R")]
    pub min_reliability: Option<f64>,
    /// Origin signatures: none | sign [default: none]
    #[arg(long, value_name = "MODE", value_parser = parse_origin_auth)]
    pub origin_auth: Option<overlay_proto::OriginAuth>,
    /// Attacker behaviour of a share of the nodes: forger, silent, graft-spam, ihave-flood,
    /// eclipse (see docs/SIMULATION.md) [default: none]; with --adversary-suite, only that
    /// kind's rows and the attack-free row
    #[arg(long, value_name = "KIND")]
    pub adversary: Option<crate::scale::AdversaryKind>,
    /// Percentage of the nodes that attack, 0..=99 (with --adversary; in
    /// --adversary-suite: the share of every kind's row) [default: 20]
    #[arg(long, value_name = "P")]
    pub adversary_percent: Option<u32>,
    /// Virtual time at which the attackers start, ms [default: 0]
    #[arg(long, value_name = "MS")]
    pub attack_start_ms: Option<u64>,
    /// Peer scoring in every core: on or off [default: on, the core's default]; with
    /// --adversary-suite: only that column (both by default)
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub scoring: Option<bool>,
    /// Plumtree's tree optimisation and GRAFT hold in every core (optimization_threshold 2,
    /// GRAFTs put off up to 240 ms while settled): on or off [default: on, the core's default]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub tree_optimization: Option<bool>,
    /// Latency-aware membership in every core (every 250 ms ask a running peer for its
    /// running peers and probe one, replace a link without a tree edge with one at least 30 %
    /// faster, 2 swaps per node): on or off [default: the core's, off]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub link_optimization: Option<bool>,
    /// Every core's link_probation (how long a new link's first copies are held back from
    /// the established tree links), ms; 0 turns the rule off [default: the core's]
    #[arg(long, value_name = "MS")]
    pub link_probation_ms: Option<u64>,
    /// Every core's idle_ban_keeps_tree (a ban of a peer that never fed the tree promotes no
    /// lazy link and keeps it settled), on or off [default: the core's]
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub idle_ban_keeps_tree: Option<bool>,
    /// Every core's store_ttl (how long messages are kept for GRAFT answers), ms [default:
    /// the core's]
    #[arg(long, value_name = "MS")]
    pub store_ttl_ms: Option<u64>,
    /// Every core's store_bytes (bytes kept for GRAFT answers) [default: the core's]
    #[arg(long, value_name = "BYTES")]
    pub store_bytes: Option<usize>,
    /// Topics besides the default one (random senders only): each broadcast goes to one
    /// topic, from a random member; reliability is measured over the topic's members and
    /// what non-members receive is counted [default: 0]
    #[arg(long, value_name = "T")]
    pub topics: Option<usize>,
    /// Chance, in %, that a node joins each topic (with --topics), drawn by the seed
    /// [default: 50]
    #[arg(long = "members", value_name = "P")]
    pub members_percent: Option<u32>,
    /// Run the attack table: the attack-free run, every adversary kind at
    /// --adversary-percent (20), and 50 % silent, random senders, over --seeds seeds
    #[arg(long)]
    pub adversary_suite: bool,
    /// Seeds of the attack table, from --seed on [default: 1]
    #[arg(long, value_name = "N", requires = "adversary_suite")]
    pub seeds: Option<u64>,
    /// Print the report as one line of JSON (then the digest line)
    #[arg(long)]
    pub json: bool,
}

fn parse_origin_auth(s: &str) -> Result<overlay_proto::OriginAuth, String> {
    s.parse()
        .map_err(|()| format!("`{s}`: expected `sign` or `none`"))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("`{s}`: expected `on` or `off`")),
    }
}

/// Arguments of `overlay-sim replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Trace file written by `svc-overlay --trace-out FILE`
    pub file: PathBuf,
    /// Print every input and its actions (a readable timeline)
    #[arg(long, short)]
    pub verbose: bool,
    /// Stop after N inputs
    #[arg(long, value_name = "N")]
    pub until: Option<u64>,
}

impl ScaleArgs {
    /// The command-line values as a scenario overlay (absent flags are `None`).
    pub fn overrides(&self) -> ScenarioFile {
        ScenarioFile {
            name: self.name.clone(),
            kind: None,
            nodes: self.nodes,
            seed: self.seed,
            alpha: self.alpha,
            beta: self.beta,
            active_target: self.active_target,
            messages: self.messages,
            payload_bytes: self.payload_bytes,
            warmup_ms: self.warmup_ms,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            kill_percent: self.kill_percent,
            prekill_messages: self.prekill_messages,
            latency_min_ms: self.latency_min_ms,
            latency_max_ms: self.latency_max_ms,
            loss: self.loss,
            bootstrap_peers: self.bootstrap_peers,
            min_reliability: self.min_reliability,
            origin_auth: self.origin_auth,
            adversary: self.adversary,
            adversary_percent: self.adversary_percent,
            attack_start_ms: self.attack_start_ms,
            scoring: self.scoring,
            tree_optimization: self.tree_optimization,
            link_optimization: self.link_optimization,
            link_probation_ms: self.link_probation_ms,
            idle_ban_keeps_tree: self.idle_ban_keeps_tree,
            store_ttl_ms: self.store_ttl_ms,
            store_bytes: self.store_bytes,
            topics: self.topics,
            members_percent: self.members_percent,
        }
    }

    /// The scenarios to run: one, or the suite.
    pub fn scenarios(&self) -> Result<Vec<Scenario>, SimError> {
        if self.adversary_suite {
            let o = ScenarioFile {
                seed: None,
                adversary: None,
                adversary_percent: None,
                scoring: None,
                ..self.overrides()
            };
            let plan = scale::table::AttackTablePlan {
                first_seed: self.seed.unwrap_or(scale::scenario::DEFAULT_SEED),
                seeds: self.seeds.unwrap_or(1).max(1),
                nodes: self.nodes.unwrap_or(scale::scenario::DEFAULT_NODES),
                percent: self.adversary_percent.unwrap_or(20),
                scoring: match self.scoring {
                    Some(b) => vec![b],
                    None => vec![false, true],
                },
            };
            let mut list = plan.scenarios();
            if let Some(kind) = self.adversary {
                // One kind's rows and the attack-free row they are measured against.
                list.retain(|s| s.adversary.is_none_or(|k| k == kind));
            }
            for s in &mut list {
                let file = ScenarioFile {
                    kind: Some(s.kind),
                    nodes: Some(s.nodes),
                    seed: Some(s.seed),
                    adversary: s.adversary,
                    adversary_percent: Some(s.adversary_percent),
                    origin_auth: Some(s.origin_auth),
                    scoring: Some(s.scoring),
                    ..ScenarioFile::default()
                };
                *s = file.merge(o.clone()).resolve()?;
                if s.adversary.is_some() {
                    // The table measures; its targets are checked when it is printed.
                    s.min_reliability = 0.0;
                }
            }
            return Ok(list);
        }
        if self.suite {
            let mut list = scale::suite(
                self.seed.unwrap_or(scale::scenario::DEFAULT_SEED),
                self.nodes,
            );
            let o = ScenarioFile {
                nodes: None,
                seed: None,
                ..self.overrides()
            };
            for s in &mut list {
                let file = ScenarioFile {
                    kind: Some(s.kind),
                    nodes: Some(s.nodes),
                    seed: Some(s.seed),
                    kill_percent: Some(s.kill_percent),
                    name: Some(s.name.clone()),
                    ..ScenarioFile::default()
                };
                *s = file.merge(o.clone()).resolve()?;
            }
            return Ok(list);
        }
        let base = match (&self.scenario, &self.scenario_file) {
            (_, Some(path)) => ScenarioFile::load(path)?,
            (Some(value), None) => match ScenarioKind::parse(value) {
                Some(kind) => ScenarioFile {
                    kind: Some(kind),
                    ..ScenarioFile::default()
                },
                None if value.ends_with(".toml") || Path::new(value).is_file() => {
                    ScenarioFile::load(Path::new(value))?
                }
                None => {
                    return Err(SimError::Scenario(format!(
                        "unknown scenario `{value}`: expected single, random, all-send, kill or \
                         a .toml file"
                    )))
                }
            },
            (None, None) => {
                return Err(SimError::Scenario(
                    "give --scenario, --scenario-file or --suite".into(),
                ))
            }
        };
        let merged = base.merge(self.overrides());
        // A name from the file no longer fits when the command line changes what runs.
        let merged = if self.name.is_none() && self.changes_identity() {
            ScenarioFile {
                name: None,
                ..merged
            }
        } else {
            merged
        };
        Ok(vec![merged.resolve()?])
    }

    fn changes_identity(&self) -> bool {
        self.nodes.is_some()
            || self.kill_percent.is_some()
            || self.adversary.is_some()
            || self.adversary_percent.is_some()
            || self.scoring.is_some()
            || self.tree_optimization.is_some()
            || self.link_optimization.is_some()
            || self.topics.is_some()
            || self.members_percent.is_some()
    }
}

/// Runs the parsed command, writing the report to `out`. Returns the process exit code
/// ([`EXIT_OK`] or [`EXIT_FAILED`]); errors map to [`crate::EXIT_ERROR`].
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<u8, SimError> {
    match &cli.command {
        Command::Scale(args) => run_scale(args, out),
        Command::Chaos(args) => {
            let outcome = crate::chaos::run_chaos(args)?;
            out.write_all(outcome.text().as_bytes())?;
            Ok(if outcome.passed { EXIT_OK } else { EXIT_FAILED })
        }
        Command::Liveness(args) => {
            let (text, passed) = crate::liveness::run(args, |line| eprintln!("{line}"))?;
            out.write_all(text.as_bytes())?;
            Ok(if passed { EXIT_OK } else { EXIT_FAILED })
        }
        Command::Replay(args) => {
            let options = ReplayOptions {
                verbose: args.verbose,
                until: args.until,
            };
            let outcome = replay_file(&args.file, &options, out)?;
            Ok(if outcome.passed() {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
    }
}

fn run_scale(args: &ScaleArgs, out: &mut dyn Write) -> Result<u8, SimError> {
    let scenarios = args.scenarios()?;
    if args.suite || args.adversary_suite {
        let total = scenarios.len();
        let mut done = 0usize;
        let suite = scale::run_suite(&scenarios, |r| {
            done += 1;
            // Progress goes to stderr so stdout stays the report.
            eprintln!(
                "[{done}/{total}] {} {} in {:.1} s",
                r.scenario.name,
                if r.passed() { "ok" } else { "FAILED" },
                r.speed.wall_ms / 1000.0
            );
            Ok(())
        })?;
        if args.json {
            serde_json::to_writer(&mut *out, &suite)?;
            writeln!(out)?;
        } else if args.adversary_suite {
            scale::table::write_attack_table(out, &suite)?;
        } else {
            report::write_suite(out, &suite)?;
        }
        report::write_digest(out, &suite.digest)?;
        return Ok(if suite.passed() { EXIT_OK } else { EXIT_FAILED });
    }
    let mut code = EXIT_OK;
    for s in &scenarios {
        if s.topics > 0 {
            let r = scale::topics::run_topics(s)?;
            if args.json {
                serde_json::to_writer(&mut *out, &r)?;
                writeln!(out)?;
            } else {
                scale::topics::write_report(out, &r)?;
            }
            report::write_digest(out, &r.digest)?;
            if !r.passed() {
                code = EXIT_FAILED;
            }
            continue;
        }
        let r = scale::run_scenario(s)?;
        if args.json {
            serde_json::to_writer(&mut *out, &r)?;
            writeln!(out)?;
        } else {
            report::write_scenario(out, &r)?;
        }
        report::write_digest(out, &r.digest)?;
        if !r.passed() {
            code = EXIT_FAILED;
        }
    }
    Ok(code)
}
