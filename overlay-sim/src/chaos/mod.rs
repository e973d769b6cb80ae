//! Chaos mode: the **real tokio driver** (`svc_overlay::Overlay`, unchanged: sessions, writer
//! tasks, backpressure, timers, TLS 1.3) on every simulated host, over turmoil's network
//! through the driver's pluggable [`svc_overlay::Net`] ([`net::TurmoilNet`]), under seeded
//! fault injection.
//!
//! Everything random in a run derives from one seed: node identities ([`identity`]), core RNG
//! seeds, turmoil's RNG (latencies, link failures), the fault plan and the broadcasts
//! ([`faults`]). TLS handshakes draw OS randomness (ciphertext bytes), but no overlay decision
//! depends on it: record sizes do not change (Ed25519 signatures have a fixed length).
//!
//! A run ends with a report ([`report`]), the verdict of the invariants ([`invariants`]) and
//! `digest: <hex>`, a BLAKE3 fingerprint of every core decision (each node's trace file: every
//! input and the actions it produced) and of what the applications observed.

pub mod faults;
pub mod host;
pub mod hostile;
pub mod identity;
pub mod invariants;
pub mod net;
pub mod report;
pub mod run;
pub mod scenario;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use overlay_proto::trace::TraceReader;

pub use scenario::{ChaosFile, ChaosScenario};

use crate::SimError;

/// Arguments of `overlay-sim chaos`. Every option overrides the scenario file's value (or the
/// default).
#[derive(Debug, Clone, Default, Args)]
pub struct ChaosArgs {
    /// Scenario TOML file (see overlay-sim/scenarios/chaos-*.toml)
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Report label [default: chaos-<nodes>]
    #[arg(long)]
    pub name: Option<String>,
    /// Simulated hosts, each running the real driver [default: 16]
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// The seed every random choice derives from [default: 1]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Length of the fault phase, e.g. 60s [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Time before the faults start [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// Time after the faults end, everything repaired [default: 25s]
    #[arg(long, value_name = "DURATION")]
    pub settle: Option<String>,
    /// End of the settle phase without new broadcasts [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub drain: Option<String>,
    /// Plumtree eager fan-out α [default: 3]
    #[arg(long)]
    pub alpha: Option<usize>,
    /// Plumtree lazy fan-out β [default: 6]
    #[arg(long)]
    pub beta: Option<usize>,
    /// Running sessions per node [default: 9]
    #[arg(long, value_name = "N")]
    pub active_target: Option<usize>,
    /// Random peers each node is given at start [default: 3]
    #[arg(long, value_name = "N")]
    pub bootstrap_peers: Option<usize>,
    /// Node crashes per simulated second, whole cluster [default: 0.2]
    #[arg(long, value_name = "RATE")]
    pub churn: Option<f64>,
    /// Most nodes down at once [default: nodes/4]
    #[arg(long, value_name = "N")]
    pub max_down: Option<usize>,
    /// Shortest downtime of a crashed node [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub down_min: Option<String>,
    /// Longest downtime of a crashed node [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub down_max: Option<String>,
    /// Partitions (random group split from the rest, then repaired) [default: 1]
    #[arg(long, value_name = "N")]
    pub partitions: Option<usize>,
    /// One-way partitions (a group's outgoing traffic dropped) [default: 1]
    #[arg(long, value_name = "N")]
    pub oneway: Option<usize>,
    /// Held links (delayed, then released) [default: 1]
    #[arg(long, value_name = "N")]
    pub holds: Option<usize>,
    /// Silent cuts: one node's traffic dropped both ways, no RST [default: 0]
    #[arg(long, value_name = "N")]
    pub cuts: Option<usize>,
    /// Sessions of a cut node must end on both sides within this time [default: 3s]
    #[arg(long, value_name = "DURATION")]
    pub cut_detect: Option<String>,
    /// Shortest partition or hold [default: 2s]
    #[arg(long, value_name = "DURATION")]
    pub fault_min: Option<String>,
    /// Longest partition or hold [default: 8s]
    #[arg(long, value_name = "DURATION")]
    pub fault_max: Option<String>,
    /// Saturation burst: a node's links held while it floods broadcasts [default: true]
    #[arg(long, value_name = "BOOL")]
    pub burst: Option<bool>,
    /// Broadcasts of the burst [default: 3000]
    #[arg(long, value_name = "N")]
    pub burst_messages: Option<usize>,
    /// How long the flooding node's links are held [default: 3s]
    #[arg(long, value_name = "DURATION")]
    pub burst_hold: Option<String>,
    /// Smallest one-way latency, ms [default: 1]
    #[arg(long, value_name = "MS")]
    pub latency_min_ms: Option<u64>,
    /// Largest one-way latency, ms [default: 25]
    #[arg(long, value_name = "MS")]
    pub latency_max_ms: Option<u64>,
    /// Per-message probability that a link breaks during the fault phase (turmoil) [default: 0]
    #[arg(long, value_name = "P")]
    pub loss: Option<f64>,
    /// Per-message probability that a broken link is repaired [default: 0.05]
    #[arg(long, value_name = "P")]
    pub repair: Option<f64>,
    /// Planned broadcasts per simulated second [default: 4]
    #[arg(long, value_name = "PER_S")]
    pub rate: Option<f64>,
    /// Payload of each planned broadcast, bytes [default: 64]
    #[arg(long, value_name = "BYTES")]
    pub payload_bytes: Option<usize>,
    /// A node that leaves a stats probe unanswered this long is deadlocked [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub watchdog: Option<String>,
    /// Period of the watchdog probes [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub probe_interval: Option<String>,
    /// TLS key exchange: hybrid, hybrid-only or classic [default: hybrid]
    #[arg(long, value_name = "MODE")]
    pub pq: Option<String>,
    /// Simulated time per turmoil step, ms [default: 1]
    #[arg(long, value_name = "MS")]
    pub tick_ms: Option<u64>,
    /// Hostile hosts: valid identity and token, then bad ids, forged origins, IHAVE/GRAFT
    /// floods and no credit returned (see docs/SIMULATION.md) [default: 0]
    #[arg(long, value_name = "N")]
    pub hostile: Option<usize>,
    /// Where the traces of failing nodes are written [default: chaos-traces]
    #[arg(long, value_name = "DIR")]
    pub traces_dir: Option<PathBuf>,
}

impl ChaosArgs {
    /// The command-line values as a scenario overlay (absent options are `None`).
    pub fn overrides(&self) -> ChaosFile {
        ChaosFile {
            name: self.name.clone(),
            nodes: self.nodes,
            seed: self.seed,
            duration: self.duration.clone(),
            warmup: self.warmup.clone(),
            settle: self.settle.clone(),
            drain: self.drain.clone(),
            alpha: self.alpha,
            beta: self.beta,
            active_target: self.active_target,
            bootstrap_peers: self.bootstrap_peers,
            churn: self.churn,
            max_down: self.max_down,
            down_min: self.down_min.clone(),
            down_max: self.down_max.clone(),
            partitions: self.partitions,
            oneway: self.oneway,
            holds: self.holds,
            cuts: self.cuts,
            cut_detect: self.cut_detect.clone(),
            fault_min: self.fault_min.clone(),
            fault_max: self.fault_max.clone(),
            burst: self.burst,
            burst_messages: self.burst_messages,
            burst_hold: self.burst_hold.clone(),
            latency_min_ms: self.latency_min_ms,
            latency_max_ms: self.latency_max_ms,
            loss: self.loss,
            repair: self.repair,
            rate: self.rate,
            payload_bytes: self.payload_bytes,
            watchdog: self.watchdog.clone(),
            probe_interval: self.probe_interval.clone(),
            pq: self.pq.clone(),
            tick_ms: self.tick_ms,
            hostile: self.hostile,
        }
    }

    /// The scenario: the file (if any), overridden by the command line, defaults for the rest.
    pub fn scenario(&self) -> Result<ChaosScenario, SimError> {
        let base = match &self.scenario {
            Some(path) => ChaosFile::load(path)?,
            None => ChaosFile::default(),
        };
        base.merge(self.overrides()).resolve()
    }
}

/// The result of a chaos run.
#[derive(Debug, Clone)]
pub struct ChaosOutcome {
    /// The scenario that ran.
    pub scenario: ChaosScenario,
    /// The readable report, ending with the verdict (without the digest line).
    pub report: String,
    /// BLAKE3 fingerprint of every decision of the run, hex.
    pub digest: String,
    /// True when every invariant held.
    pub passed: bool,
    /// The broken invariants.
    pub violations: Vec<invariants::Violation>,
    /// The exact command that reproduces the run.
    pub reproduce: String,
    /// Where the failing nodes' traces were written (failed runs only).
    pub traces: Option<PathBuf>,
    /// The measured figures.
    pub figures: report::Figures,
    /// Simulated seconds of the run.
    pub sim_secs: f64,
    /// Wall-clock seconds of the simulation.
    pub wall_secs: f64,
    /// What each hostile host did (`--hostile`).
    pub hostile: Vec<hostile::HostileRecord>,
}

impl ChaosOutcome {
    /// The full text: report, on failure the seed, the reproducing command and the traces'
    /// directory, then `digest: <hex>` as the last line.
    pub fn text(&self) -> String {
        let mut out = self.report.clone();
        if !self.passed {
            out.push_str(&format!("\nFAILED: seed {}\n", self.scenario.seed));
            out.push_str(&format!("reproduce: {}\n", self.reproduce));
            if let Some(dir) = &self.traces {
                out.push_str(&format!(
                    "traces of the failing nodes: {} (replay: overlay-sim replay FILE)\n",
                    dir.display()
                ));
            }
        }
        out.push_str(&format!("digest: {}\n", self.digest));
        out
    }
}

/// When this environment variable is set, the run's temporary directory with every node's
/// trace is kept (and its path printed on stderr), for debugging.
pub const KEEP_ENV: &str = "OVERLAY_SIM_CHAOS_KEEP_TRACES";

/// Runs the chaos scenario described by `args`.
///
/// # Errors
/// `SimError` for invalid arguments or an unreadable scenario file, or when the run itself
/// could not be set up (no temporary directory).
pub fn run_chaos(args: &ChaosArgs) -> Result<ChaosOutcome, SimError> {
    let s = args.scenario()?;
    run_scenario(&s, args.traces_dir.as_deref())
}

/// Runs one resolved scenario; failing nodes' traces go under `traces_dir` (default
/// `chaos-traces`) `/<seed>/`.
pub fn run_scenario(
    s: &ChaosScenario,
    traces_dir: Option<&Path>,
) -> Result<ChaosOutcome, SimError> {
    let data = run::simulate(s)?;
    let mut violations = invariants::check(s, &data);
    let digest = digest(s, &data, &mut violations);
    let figures = report::figures(s, &data);
    let passed = violations.is_empty();
    let mut traces = None;
    if !passed {
        let dir = traces_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("chaos-traces"))
            .join(s.seed.to_string());
        match keep_traces(&data, &violations, &dir) {
            Ok(()) => traces = Some(dir),
            Err(e) => violations.push(invariants::Violation {
                invariant: "trace",
                nodes: Vec::new(),
                detail: format!("could not write the failing nodes' traces: {e}"),
            }),
        }
    }
    let report = report::write(s, &data, &figures, &violations, digest.1);
    if std::env::var_os(KEEP_ENV).is_some() {
        eprintln!("chaos: traces kept in {}", data.trace_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&data.trace_dir);
    }
    Ok(ChaosOutcome {
        scenario: s.clone(),
        report,
        digest: digest.0,
        passed,
        violations,
        reproduce: s.command(),
        traces,
        figures,
        sim_secs: data.sim_end.as_secs_f64(),
        wall_secs: data.wall_secs,
        hostile: data.hostile.clone(),
    })
}

/// Reads a whole trace once its writer thread has finished: the file must parse to a clean
/// end. Writers of crashed incarnations finish on their own shortly after the crash, so a
/// truncated file is read again for a little while. Returns the bytes and the record count.
fn read_trace(path: &Path) -> Result<(Vec<u8>, u64), String> {
    let mut last_error = String::new();
    for attempt in 0..100 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut bytes = Vec::new();
        let opened = File::open(path).and_then(|f| BufReader::new(f).read_to_end(&mut bytes));
        if let Err(e) = opened {
            last_error = e.to_string();
            continue;
        }
        let parsed = TraceReader::open(bytes.as_slice()).and_then(|(mut reader, _)| {
            let mut n = 0u64;
            while reader.next_record()?.is_some() {
                n += 1;
            }
            Ok(n)
        });
        match parsed {
            Ok(n) => return Ok((bytes, n)),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(format!("{}: {last_error}", path.display()))
}

/// The run's digest: every node's trace files (all inputs and actions), then what the
/// applications observed (broadcast outcomes, deliveries, readiness) and the faults applied.
/// Unreadable traces become violations. Returns the hex digest and the traced records.
fn digest(
    s: &ChaosScenario,
    data: &run::RunData,
    violations: &mut Vec<invariants::Violation>,
) -> (String, u64) {
    let mut h = blake3::Hasher::new();
    let mut records = 0u64;
    h.update(s.command().as_bytes());
    for (i, rec) in data.journal.nodes.iter().enumerate() {
        h.update(b"node");
        h.update(&(i as u64).to_be_bytes());
        for path in &rec.traces {
            match read_trace(path) {
                Ok((bytes, n)) => {
                    records += n;
                    h.update(&(bytes.len() as u64).to_be_bytes());
                    h.update(&bytes);
                }
                Err(e) => violations.push(invariants::Violation {
                    invariant: "trace",
                    nodes: vec![i],
                    detail: format!("unreadable trace: {e}"),
                }),
            }
        }
        // What the applications saw up to the end of the run; the graceful shutdown after it
        // waits for each trace writer thread in real time, so later timestamps may vary.
        let end = s.total();
        for (id, (at, hops, inc)) in rec.deliveries.iter().filter(|(_, d)| d.0 <= end) {
            h.update(&id.0);
            h.update(&(at.as_nanos() as u64).to_be_bytes());
            h.update(&[*hops]);
            h.update(&inc.to_be_bytes());
        }
        h.update(&rec.redeliveries.to_be_bytes());
        for c in rec.readiness.iter().filter(|c| c.at <= end) {
            h.update(&(c.at.as_nanos() as u64).to_be_bytes());
            h.update(&[u8::from(c.ready)]);
            h.update(c.missing.join(",").as_bytes());
        }
    }
    let mut sent: Vec<&host::SentRecord> = data.journal.sent.iter().collect();
    sent.sort_by_key(|r| r.seq);
    for r in sent {
        h.update(&r.seq.to_be_bytes());
        h.update(&(r.origin as u64).to_be_bytes());
        h.update(&(r.at.as_nanos() as u64).to_be_bytes());
        match &r.result {
            Ok(id) => h.update(&id.0),
            Err(e) => h.update(e.as_bytes()),
        };
    }
    for (at, what) in &data.applied {
        h.update(&(at.as_nanos() as u64).to_be_bytes());
        h.update(what.as_bytes());
    }
    (h.finalize().to_hex().to_string(), records)
}

/// Copies the trace files of the nodes named by the violations (all nodes when none is
/// named) to `dir/node-<i>.<incarnation>.trace`
/// (their names in the run's temporary directory).
fn keep_traces(
    data: &run::RunData,
    violations: &[invariants::Violation],
    dir: &Path,
) -> std::io::Result<()> {
    let mut nodes: Vec<usize> = violations.iter().flat_map(|v| v.nodes.clone()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        nodes = (0..data.journal.nodes.len()).collect();
    }
    std::fs::create_dir_all(dir)?;
    for i in nodes {
        let Some(rec) = data.journal.nodes.get(i) else {
            continue;
        };
        for path in &rec.traces {
            if let Some(name) = path.file_name() {
                std::fs::copy(path, dir.join(name))?;
            }
        }
    }
    Ok(())
}
