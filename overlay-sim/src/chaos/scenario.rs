//! Chaos scenarios: the resolved parameters of a run ([`ChaosScenario`]), the TOML scenario
//! file form ([`ChaosFile`], every key optional), durations written as `60s` / `500ms` / `2m`,
//! and the exact command line that reproduces a run.

use core::time::Duration;
use std::path::Path;

use serde::{Deserialize, Serialize};
use svc_overlay::pq::PqMode;

use crate::SimError;

/// Everything that determines a chaos run. Same scenario ⇒ same digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosScenario {
    /// Label in reports.
    pub name: String,
    /// Simulated hosts, each running the real driver.
    pub nodes: usize,
    /// The one seed every random choice derives from.
    pub seed: u64,
    /// Length of the fault phase (churn, partitions, holds, burst, loss).
    pub duration: Duration,
    /// Time before the fault phase: nodes start and connect.
    pub warmup: Duration,
    /// Time after the fault phase (everything repaired, every node running) in which the
    /// invariants that need a healed network are checked.
    pub settle: Duration,
    /// Quiet end of the settle phase: no new broadcasts, so the last ones can arrive.
    pub drain: Duration,
    /// Plumtree eager fan-out α.
    pub alpha: usize,
    /// Plumtree lazy fan-out β.
    pub beta: usize,
    /// Running sessions each node keeps.
    pub active_target: usize,
    /// Random other nodes each node is given at start.
    pub bootstrap_peers: usize,
    /// Node crashes per simulated second (whole cluster) during the fault phase.
    pub churn: f64,
    /// Most nodes down at once.
    pub max_down: usize,
    /// Shortest time a crashed node stays down.
    pub down_min: Duration,
    /// Longest time a crashed node stays down.
    pub down_max: Duration,
    /// Partitions (a random group split from the rest), one after another.
    pub partitions: usize,
    /// One-way partitions (a random group's outgoing traffic dropped).
    pub oneway: usize,
    /// Held links (one node's links to a random set of peers delayed, then released).
    pub holds: usize,
    /// Silent cuts (one node's traffic dropped both ways, no RST), one after another.
    pub cuts: usize,
    /// Every running session of a cut node must end, on both sides, within this time of the
    /// cut (the failure detector's bound is checked as an invariant).
    pub cut_detect: Duration,
    /// Shortest partition / hold.
    pub fault_min: Duration,
    /// Longest partition / hold.
    pub fault_max: Duration,
    /// Saturation burst: a node's links are held while it floods broadcasts.
    pub burst: bool,
    /// Broadcasts the flooding node attempts.
    pub burst_messages: usize,
    /// How long its links are held.
    pub burst_hold: Duration,
    /// Smallest one-way message latency, ms.
    pub latency_min_ms: u64,
    /// Largest one-way message latency, ms.
    pub latency_max_ms: u64,
    /// Turmoil's per-message probability that a link breaks (all its traffic dropped until
    /// repaired) during the fault phase; 0 = off.
    pub loss: f64,
    /// Per-message probability that a broken link is repaired.
    pub repair: f64,
    /// Planned broadcasts per simulated second (from random running nodes).
    pub rate: f64,
    /// Payload of each planned broadcast, bytes.
    pub payload_bytes: usize,
    /// A running node that leaves a probe unanswered this long is deadlocked.
    pub watchdog: Duration,
    /// Period of the watchdog probes.
    pub probe_interval: Duration,
    /// TLS key exchange (`hybrid`, `hybrid-only`, `classic`).
    pub pq: PqMode,
    /// Simulated time per turmoil step, ms.
    pub tick_ms: u64,
    /// Hostile hosts (hand-driven clients with a valid identity and token that send bad ids,
    /// forged origins, IHAVE and GRAFT floods, and never return credit); 0 = none.
    pub hostile: usize,
}

impl Default for ChaosScenario {
    fn default() -> Self {
        ChaosScenario {
            name: String::new(),
            nodes: 16,
            seed: 1,
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(5),
            settle: Duration::from_secs(25),
            drain: Duration::from_secs(5),
            alpha: 3,
            beta: 6,
            active_target: 9,
            bootstrap_peers: 3,
            churn: 0.2,
            max_down: 0,
            down_min: Duration::from_secs(1),
            down_max: Duration::from_secs(5),
            partitions: 1,
            oneway: 1,
            holds: 1,
            cuts: 0,
            cut_detect: Duration::from_secs(3),
            fault_min: Duration::from_secs(2),
            fault_max: Duration::from_secs(8),
            burst: true,
            burst_messages: 3000,
            burst_hold: Duration::from_secs(3),
            latency_min_ms: 1,
            latency_max_ms: 25,
            loss: 0.0,
            repair: 0.05,
            rate: 4.0,
            payload_bytes: 64,
            watchdog: Duration::from_secs(10),
            probe_interval: Duration::from_secs(1),
            pq: PqMode::Hybrid,
            tick_ms: 1,
            hostile: 0,
        }
    }
}

/// Parses `60s`, `1.5s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: `{text}` (write 60s, 500ms, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("not a duration: `{text}`"));
    }
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in `{text}` (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Writes a duration the way [`parse_duration`] reads it back exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A chaos scenario file (`overlay-sim/scenarios/chaos-*.toml`) or the command line's
/// overrides: every key optional; durations as strings (`"60s"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosFile {
    /// See [`ChaosScenario::name`].
    pub name: Option<String>,
    /// See [`ChaosScenario::nodes`].
    pub nodes: Option<usize>,
    /// See [`ChaosScenario::seed`].
    pub seed: Option<u64>,
    /// See [`ChaosScenario::duration`].
    pub duration: Option<String>,
    /// See [`ChaosScenario::warmup`].
    pub warmup: Option<String>,
    /// See [`ChaosScenario::settle`].
    pub settle: Option<String>,
    /// See [`ChaosScenario::drain`].
    pub drain: Option<String>,
    /// See [`ChaosScenario::alpha`].
    pub alpha: Option<usize>,
    /// See [`ChaosScenario::beta`].
    pub beta: Option<usize>,
    /// See [`ChaosScenario::active_target`].
    pub active_target: Option<usize>,
    /// See [`ChaosScenario::bootstrap_peers`].
    pub bootstrap_peers: Option<usize>,
    /// See [`ChaosScenario::churn`].
    pub churn: Option<f64>,
    /// See [`ChaosScenario::max_down`].
    pub max_down: Option<usize>,
    /// See [`ChaosScenario::down_min`].
    pub down_min: Option<String>,
    /// See [`ChaosScenario::down_max`].
    pub down_max: Option<String>,
    /// See [`ChaosScenario::partitions`].
    pub partitions: Option<usize>,
    /// See [`ChaosScenario::oneway`].
    pub oneway: Option<usize>,
    /// See [`ChaosScenario::holds`].
    pub holds: Option<usize>,
    /// See [`ChaosScenario::cuts`].
    pub cuts: Option<usize>,
    /// See [`ChaosScenario::cut_detect`].
    pub cut_detect: Option<String>,
    /// See [`ChaosScenario::fault_min`].
    pub fault_min: Option<String>,
    /// See [`ChaosScenario::fault_max`].
    pub fault_max: Option<String>,
    /// See [`ChaosScenario::burst`].
    pub burst: Option<bool>,
    /// See [`ChaosScenario::burst_messages`].
    pub burst_messages: Option<usize>,
    /// See [`ChaosScenario::burst_hold`].
    pub burst_hold: Option<String>,
    /// See [`ChaosScenario::latency_min_ms`].
    pub latency_min_ms: Option<u64>,
    /// See [`ChaosScenario::latency_max_ms`].
    pub latency_max_ms: Option<u64>,
    /// See [`ChaosScenario::loss`].
    pub loss: Option<f64>,
    /// See [`ChaosScenario::repair`].
    pub repair: Option<f64>,
    /// See [`ChaosScenario::rate`].
    pub rate: Option<f64>,
    /// See [`ChaosScenario::payload_bytes`].
    pub payload_bytes: Option<usize>,
    /// See [`ChaosScenario::watchdog`].
    pub watchdog: Option<String>,
    /// See [`ChaosScenario::probe_interval`].
    pub probe_interval: Option<String>,
    /// See [`ChaosScenario::pq`] (`hybrid`, `hybrid-only`, `classic`).
    pub pq: Option<String>,
    /// See [`ChaosScenario::tick_ms`].
    pub tick_ms: Option<u64>,
    /// See [`ChaosScenario::hostile`].
    pub hostile: Option<usize>,
}

impl ChaosFile {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<ChaosFile, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SimError::ScenarioFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// `self` with every key that `over` sets replaced by `over`'s value.
    pub fn merge(self, over: ChaosFile) -> ChaosFile {
        macro_rules! pick {
            ($($f:ident),*) => { ChaosFile { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            name,
            nodes,
            seed,
            duration,
            warmup,
            settle,
            drain,
            alpha,
            beta,
            active_target,
            bootstrap_peers,
            churn,
            max_down,
            down_min,
            down_max,
            partitions,
            oneway,
            holds,
            cuts,
            cut_detect,
            fault_min,
            fault_max,
            burst,
            burst_messages,
            burst_hold,
            latency_min_ms,
            latency_max_ms,
            loss,
            repair,
            rate,
            payload_bytes,
            watchdog,
            probe_interval,
            pq,
            tick_ms,
            hostile
        )
    }

    /// The scenario: defaults for absent keys, then range checks.
    pub fn resolve(&self) -> Result<ChaosScenario, SimError> {
        let d = ChaosScenario::default();
        let dur =
            |v: &Option<String>, default: Duration, key: &str| -> Result<Duration, SimError> {
                match v {
                    None => Ok(default),
                    Some(text) => {
                        parse_duration(text).map_err(|e| SimError::Scenario(format!("{key}: {e}")))
                    }
                }
            };
        let pq = match &self.pq {
            None => d.pq,
            Some(text) => text
                .parse::<PqMode>()
                .map_err(|e| SimError::Scenario(e.to_string()))?,
        };
        let nodes = self.nodes.unwrap_or(d.nodes);
        let mut s = ChaosScenario {
            name: String::new(),
            nodes,
            seed: self.seed.unwrap_or(d.seed),
            duration: dur(&self.duration, d.duration, "duration")?,
            warmup: dur(&self.warmup, d.warmup, "warmup")?,
            settle: dur(&self.settle, d.settle, "settle")?,
            drain: dur(&self.drain, d.drain, "drain")?,
            alpha: self.alpha.unwrap_or(d.alpha),
            beta: self.beta.unwrap_or(d.beta),
            active_target: self.active_target.unwrap_or(d.active_target),
            bootstrap_peers: self.bootstrap_peers.unwrap_or(d.bootstrap_peers),
            churn: self.churn.unwrap_or(d.churn),
            max_down: self.max_down.unwrap_or((nodes / 4).max(1)),
            down_min: dur(&self.down_min, d.down_min, "down_min")?,
            down_max: dur(&self.down_max, d.down_max, "down_max")?,
            partitions: self.partitions.unwrap_or(d.partitions),
            oneway: self.oneway.unwrap_or(d.oneway),
            holds: self.holds.unwrap_or(d.holds),
            cuts: self.cuts.unwrap_or(d.cuts),
            cut_detect: dur(&self.cut_detect, d.cut_detect, "cut_detect")?,
            fault_min: dur(&self.fault_min, d.fault_min, "fault_min")?,
            fault_max: dur(&self.fault_max, d.fault_max, "fault_max")?,
            burst: self.burst.unwrap_or(d.burst),
            burst_messages: self.burst_messages.unwrap_or(d.burst_messages),
            burst_hold: dur(&self.burst_hold, d.burst_hold, "burst_hold")?,
            latency_min_ms: self.latency_min_ms.unwrap_or(d.latency_min_ms),
            latency_max_ms: self.latency_max_ms.unwrap_or(d.latency_max_ms),
            loss: self.loss.unwrap_or(d.loss),
            repair: self.repair.unwrap_or(d.repair),
            rate: self.rate.unwrap_or(d.rate),
            payload_bytes: self.payload_bytes.unwrap_or(d.payload_bytes),
            watchdog: dur(&self.watchdog, d.watchdog, "watchdog")?,
            probe_interval: dur(&self.probe_interval, d.probe_interval, "probe_interval")?,
            pq,
            tick_ms: self.tick_ms.unwrap_or(d.tick_ms),
            hostile: self.hostile.unwrap_or(d.hostile),
        };
        s.name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("chaos-{}", s.nodes));
        s.validate()?;
        Ok(s)
    }
}

impl ChaosScenario {
    /// Range checks.
    pub fn validate(&self) -> Result<(), SimError> {
        let fail = |m: String| Err(SimError::Scenario(m));
        if !(2..=1000).contains(&self.nodes) {
            return fail(format!("nodes must be 2..=1000, not {}", self.nodes));
        }
        if !(1..=64).contains(&self.alpha) {
            return fail(format!("alpha must be 1..=64, not {}", self.alpha));
        }
        if self.beta > 256 {
            return fail(format!("beta must be 0..=256, not {}", self.beta));
        }
        if self.active_target == 0 {
            return fail("active_target must be at least 1".into());
        }
        if self.bootstrap_peers == 0 {
            return fail("bootstrap_peers must be at least 1".into());
        }
        for (key, v) in [("churn", self.churn), ("rate", self.rate)] {
            if !v.is_finite() || v < 0.0 {
                return fail(format!("{key} must be a number >= 0"));
            }
        }
        for (key, v) in [("loss", self.loss), ("repair", self.repair)] {
            if !(0.0..=1.0).contains(&v) {
                return fail(format!("{key} must be in 0..=1"));
            }
        }
        if self.loss > 0.0 && self.repair == 0.0 {
            return fail("loss needs repair > 0 (broken links would never heal)".into());
        }
        if self.down_min > self.down_max {
            return fail("down_min must not exceed down_max".into());
        }
        if self.cut_detect.is_zero() {
            return fail("cut_detect must be > 0".into());
        }
        if self.fault_min > self.fault_max {
            return fail("fault_min must not exceed fault_max".into());
        }
        if self.latency_min_ms > self.latency_max_ms {
            return fail("latency_min_ms must not exceed latency_max_ms".into());
        }
        if self.max_down == 0 || self.max_down >= self.nodes {
            return fail(format!(
                "max_down must be 1..{} (fewer than the nodes)",
                self.nodes
            ));
        }
        if self.settle <= self.drain {
            return fail("settle must be longer than drain".into());
        }
        if self.tick_ms == 0 || self.tick_ms > 100 {
            return fail("tick_ms must be 1..=100".into());
        }
        if self.watchdog < self.probe_interval || self.probe_interval.is_zero() {
            return fail("probe_interval must be > 0 and at most the watchdog".into());
        }
        if self.payload_bytes > 1 << 20 {
            return fail("payload_bytes must be at most 1 MiB".into());
        }
        if self.hostile > 16 {
            return fail(format!("hostile must be 0..=16, got {}", self.hostile));
        }
        Ok(())
    }

    /// Total simulated time of the run.
    pub fn total(&self) -> Duration {
        self.warmup + self.duration + self.settle
    }

    /// The command that reproduces this run exactly (every parameter spelled out).
    pub fn command(&self) -> String {
        let d = format_duration;
        format!(
            "cargo run --release -p overlay-sim -- chaos --name {} --nodes {} --seed {} \
             --duration {} --warmup {} --settle {} --drain {} --alpha {} --beta {} \
             --active-target {} --bootstrap-peers {} --churn {} --max-down {} --down-min {} \
             --down-max {} --partitions {} --oneway {} --holds {} --cuts {} --cut-detect {} \
             --fault-min {} --fault-max {} \
             --burst {} --burst-messages {} --burst-hold {} --latency-min-ms {} \
             --latency-max-ms {} --loss {} --repair {} --rate {} --payload-bytes {} \
             --watchdog {} --probe-interval {} --pq {} --tick-ms {}{}",
            shell_word(&self.name),
            self.nodes,
            self.seed,
            d(self.duration),
            d(self.warmup),
            d(self.settle),
            d(self.drain),
            self.alpha,
            self.beta,
            self.active_target,
            self.bootstrap_peers,
            self.churn,
            self.max_down,
            d(self.down_min),
            d(self.down_max),
            self.partitions,
            self.oneway,
            self.holds,
            self.cuts,
            d(self.cut_detect),
            d(self.fault_min),
            d(self.fault_max),
            self.burst,
            self.burst_messages,
            d(self.burst_hold),
            self.latency_min_ms,
            self.latency_max_ms,
            self.loss,
            self.repair,
            self.rate,
            self.payload_bytes,
            d(self.watchdog),
            d(self.probe_interval),
            self.pq,
            self.tick_ms,
            if self.hostile > 0 {
                format!(" --hostile {}", self.hostile)
            } else {
                String::new()
            },
        )
    }
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/:=+".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn durations_round_trip() {
        for text in ["60s", "500ms", "1500ms", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3parsecs").is_err());
    }

    #[test]
    fn merge_prefers_the_override() {
        let base = ChaosFile {
            nodes: Some(8),
            seed: Some(3),
            ..ChaosFile::default()
        };
        let over = ChaosFile {
            seed: Some(9),
            ..ChaosFile::default()
        };
        let s = base.merge(over).resolve().unwrap();
        assert_eq!((s.nodes, s.seed), (8, 9));
        assert_eq!(s.max_down, 2);
    }
}
