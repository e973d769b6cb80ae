//! Scenario definitions: what to run, with which parameters, and how to write it back as the
//! exact command that reproduces it.

use core::fmt;
use core::time::Duration;
use std::path::Path;

use serde::{Deserialize, Serialize};

use overlay_proto::mesh::MeshConfig;
use overlay_proto::{NodeConfig, OriginAuth};

use super::adversary::{AdversaryKind, AttackRates, MIN_PAYLOAD};
use crate::SimError;

/// The kinds of large-scale runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// One node broadcasts `messages` times, one message at a time.
    Single,
    /// `messages` broadcasts, each from a node chosen at random, one at a time.
    Random,
    /// Every node broadcasts once, all at the same virtual instant.
    AllSend,
    /// Kill `kill_percent` % of the nodes at once, broadcast from a survivor immediately, then
    /// `messages` more broadcasts, one every `timeout_ms`.
    Kill,
}

impl ScenarioKind {
    /// The name used on the command line and in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioKind::Single => "single",
            ScenarioKind::Random => "random",
            ScenarioKind::AllSend => "all-send",
            ScenarioKind::Kill => "kill",
        }
    }

    /// Parses a command-line or file name (`single`, `random`, `all-send`, `kill`).
    pub fn parse(s: &str) -> Option<ScenarioKind> {
        match s {
            "single" => Some(ScenarioKind::Single),
            "random" => Some(ScenarioKind::Random),
            "all-send" | "all_send" | "allsend" => Some(ScenarioKind::AllSend),
            "kill" => Some(ScenarioKind::Kill),
            _ => None,
        }
    }
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that determines a large-scale run. Same scenario ⇒ same digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Label in reports.
    pub name: String,
    /// What to run.
    pub kind: ScenarioKind,
    /// Number of nodes in the mesh.
    pub nodes: usize,
    /// Seed of the mesh (identities, node RNGs, latencies) and of the scenario's choices
    /// (senders, victims).
    pub seed: u64,
    /// Plumtree eager fan-out (α).
    pub alpha: usize,
    /// Plumtree lazy fan-out (β).
    pub beta: usize,
    /// Running sessions each node keeps (the active view).
    pub active_target: usize,
    /// Broadcasts: of the sender (`single`), in total (`random`), after the first one that
    /// follows the kill (`kill`). Ignored by `all-send` (every node sends one).
    pub messages: usize,
    /// Application payload of each broadcast, in bytes.
    pub payload_bytes: usize,
    /// Virtual time the mesh runs before the first broadcast, so membership settles.
    pub warmup_ms: u64,
    /// Spacing of consecutive broadcasts in `single` and `random`, and of the broadcasts that
    /// warm the tree before a kill; each broadcast is measured over this window.
    pub interval_ms: u64,
    /// Observation window of each broadcast after a kill, and of the `all-send` burst.
    pub timeout_ms: u64,
    /// Percentage of nodes killed at once (`kill` only).
    pub kill_percent: u32,
    /// Broadcasts from random nodes before the kill, so the gossip tree is in steady state.
    pub prekill_messages: usize,
    /// Smallest one-way latency of a connection.
    pub latency_min_ms: u64,
    /// Largest one-way latency of a connection.
    pub latency_max_ms: u64,
    /// Probability that a transmission is lost once and retransmitted after 200 ms (TCP-like).
    pub loss: f64,
    /// Random other nodes each node is told about at start.
    pub bootstrap_peers: usize,
    /// Invariant: the smallest acceptable reliability of every broadcast (`single`, `random`,
    /// `all-send`), or of the mean over the broadcasts after the first one (`kill`).
    pub min_reliability: f64,
    /// Origin signatures of every node. Default `none`: the scale runs study dissemination,
    /// and `sign` costs one Ed25519 verification per first receipt (about 1000 × messages
    /// verifications per run); `sign` runs the same protocol with signatures.
    #[serde(default = "no_origin_auth")]
    pub origin_auth: OriginAuth,
    /// Attacker behaviour, when the run has attackers.
    #[serde(default)]
    pub adversary: Option<AdversaryKind>,
    /// Percentage of the nodes that attack (with `adversary`), drawn by the seed.
    #[serde(default)]
    pub adversary_percent: u32,
    /// Virtual time at which the attackers start attacking, ms (before it they behave).
    #[serde(default)]
    pub attack_start_ms: u64,
    /// Peer scoring in every core (`NodeConfig::scoring.enabled`; on by default, as in the
    /// core). The other defenses (GRAFT / IHAVE limits, stalled sessions, node-wide
    /// readiness) are not switches and stay on.
    #[serde(default = "scoring_default")]
    pub scoring: bool,
    /// Plumtree's tree optimisation and GRAFT hold in every core, as in the core's defaults
    /// (`optimization_threshold` 2, `graft_timeout_settled` 240 ms). Off sets both to their
    /// off values (threshold 0, no GRAFT put off), for comparison.
    #[serde(default = "tree_optimization_default")]
    pub tree_optimization: bool,
    /// Latency-aware membership in every core (`NodeConfig::link_optimization`: every
    /// `link_optimization_interval` probe one of a running peer's running peers, replace a
    /// link without a tree edge with one clearly faster), as in the core's defaults unless
    /// given.
    #[serde(default = "link_optimization_default")]
    pub link_optimization: bool,
    /// Every core's `link_probation` (how long a new link's first copies are held back from
    /// the established tree links), ms; `None`: the core's default.
    #[serde(default)]
    pub link_probation_ms: Option<u64>,
    /// Every core's `idle_ban_keeps_tree`; `None`: the core's default.
    #[serde(default)]
    pub idle_ban_keeps_tree: Option<bool>,
    /// Every core's `store_ttl` (how long messages are kept for GRAFT answers), ms; `None`:
    /// the core's default.
    #[serde(default)]
    pub store_ttl_ms: Option<u64>,
    /// Every core's `store_bytes` (bytes kept for GRAFT answers); `None`: the core's default.
    #[serde(default)]
    pub store_bytes: Option<usize>,
    /// Topics besides the default one (`random` only; 0: the plain run). Each node joins each
    /// topic with probability `members_percent` %, and every broadcast goes to one topic, from
    /// a random member, measured over that topic's members (see [`super::topics`]).
    #[serde(default)]
    pub topics: usize,
    /// Chance, in %, that a node joins each topic (with `topics`).
    #[serde(default = "members_default")]
    pub members_percent: u32,
}

fn members_default() -> u32 {
    50
}

fn tree_optimization_default() -> bool {
    NodeConfig::default().optimization_threshold > 0
}

fn link_optimization_default() -> bool {
    NodeConfig::default().link_optimization
}

fn scoring_default() -> bool {
    NodeConfig::default().scoring.enabled
}

/// The scale runs' default origin authentication (`none`).
fn no_origin_auth() -> OriginAuth {
    OriginAuth::None
}

impl Scenario {
    /// A scenario of `kind` with the defaults of that kind.
    pub fn new(kind: ScenarioKind, nodes: usize, seed: u64) -> Scenario {
        let mut s = Scenario {
            name: String::new(),
            kind,
            nodes,
            seed,
            alpha: 1,
            beta: 6,
            active_target: 9,
            messages: 20,
            payload_bytes: 1024,
            warmup_ms: 15_000,
            interval_ms: 1_000,
            timeout_ms: 5_000,
            kill_percent: 0,
            prekill_messages: 0,
            latency_min_ms: 10,
            latency_max_ms: 50,
            loss: 0.0,
            bootstrap_peers: 5,
            min_reliability: 1.0,
            origin_auth: OriginAuth::None,
            adversary: None,
            adversary_percent: 0,
            attack_start_ms: 0,
            scoring: scoring_default(),
            tree_optimization: tree_optimization_default(),
            link_optimization: link_optimization_default(),
            link_probation_ms: None,
            idle_ban_keeps_tree: None,
            store_ttl_ms: None,
            store_bytes: None,
            topics: 0,
            members_percent: members_default(),
        };
        match kind {
            ScenarioKind::Single | ScenarioKind::Random => {}
            ScenarioKind::AllSend => s.messages = 0,
            ScenarioKind::Kill => {
                s.kill_percent = 80;
                s.messages = 10;
                s.prekill_messages = 10;
                s.min_reliability = 0.99;
            }
        }
        s.name = s.default_name();
        s
    }

    /// `single-1000`, `kill-80-1000`, … (used when no name is given).
    pub fn default_name(&self) -> String {
        let base = match self.kind {
            ScenarioKind::Kill => format!("kill-{}-{}", self.kill_percent, self.nodes),
            kind => format!("{}-{}", kind, self.nodes),
        };
        let base = match self.adversary {
            Some(a) => format!("{base}-{a}-{}", self.adversary_percent),
            None => base,
        };
        let base = if self.scoring == scoring_default() {
            base
        } else {
            format!("{base}-scoring-{}", on_off(self.scoring))
        };
        let base = if self.tree_optimization == tree_optimization_default() {
            base
        } else {
            format!(
                "{base}-tree-optimization-{}",
                on_off(self.tree_optimization)
            )
        };
        let base = if self.link_optimization == link_optimization_default() {
            base
        } else {
            format!(
                "{base}-link-optimization-{}",
                on_off(self.link_optimization)
            )
        };
        if self.topics > 0 {
            format!("{base}-topics-{}-{}pct", self.topics, self.members_percent)
        } else {
            base
        }
    }

    /// Nodes that attack (`round(nodes × adversary_percent / 100)`; 0 without an adversary).
    pub fn attackers(&self) -> usize {
        if self.adversary.is_none() {
            return 0;
        }
        (self.nodes * self.adversary_percent as usize + 50) / 100
    }

    /// The attack rates of the run.
    pub fn attack_rates(&self) -> AttackRates {
        AttackRates {
            start_ms: self.attack_start_ms,
            ..AttackRates::default()
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Scenario(m));
        if self.nodes < 2 || self.nodes > 65_536 {
            return bad(format!("nodes must be 2..=65536, got {}", self.nodes));
        }
        if self.kill_percent > 99 {
            return bad(format!(
                "kill_percent must be 0..=99, got {}",
                self.kill_percent
            ));
        }
        if self.kind == ScenarioKind::Kill && self.survivors() < 2 {
            return bad(format!(
                "killing {}% of {} nodes leaves fewer than 2 survivors",
                self.kill_percent, self.nodes
            ));
        }
        if self.latency_min_ms > self.latency_max_ms {
            return bad("latency_min_ms must not exceed latency_max_ms".to_string());
        }
        if !(0.0..1.0).contains(&self.loss) {
            return bad(format!("loss must be in [0, 1), got {}", self.loss));
        }
        if !(0.0..=1.0).contains(&self.min_reliability) {
            return bad(format!(
                "min_reliability must be in [0, 1], got {}",
                self.min_reliability
            ));
        }
        if self.adversary_percent > 99 {
            return bad(format!(
                "adversary_percent must be 0..=99, got {}",
                self.adversary_percent
            ));
        }
        if self.adversary.is_some() {
            if self.nodes - self.attackers() < 2 {
                return bad("the attackers leave fewer than 2 honest nodes".to_string());
            }
            if self.kind == ScenarioKind::AllSend {
                return bad("adversaries run with single, random and kill scenarios".to_string());
            }
            if self.kind == ScenarioKind::Kill && self.survivors() < self.attackers() + 2 {
                return bad("the kill leaves fewer than 2 honest nodes".to_string());
            }
            if self.payload_bytes < MIN_PAYLOAD {
                return bad(format!(
                    "payload_bytes must be at least {MIN_PAYLOAD} with adversaries (room for the \
                     payload self-check)"
                ));
            }
        }
        if self.topics > 0 {
            let max = self.node_config().max_topics - 1;
            if self.topics > max {
                return bad(format!("topics must be 0..={max}, got {}", self.topics));
            }
            if !(1..=100).contains(&self.members_percent) {
                return bad(format!(
                    "members_percent must be 1..=100, got {}",
                    self.members_percent
                ));
            }
            if self.kind != ScenarioKind::Random || self.adversary.is_some() {
                return bad("topics run with the random scenario, without adversaries".into());
            }
        }
        if self.interval_ms == 0 || self.timeout_ms == 0 {
            return bad("interval_ms and timeout_ms must be > 0".to_string());
        }
        if matches!(self.kind, ScenarioKind::Single | ScenarioKind::Random) && self.messages == 0 {
            return bad("messages must be > 0".to_string());
        }
        if self.payload_bytes > overlay_proto::wire::MAX_APP_PAYLOAD {
            return bad(format!(
                "payload_bytes must be at most {}",
                overlay_proto::wire::MAX_APP_PAYLOAD
            ));
        }
        self.node_config().validate()?;
        Ok(())
    }

    /// Nodes left alive by the kill (all nodes for other kinds).
    pub fn survivors(&self) -> usize {
        self.nodes - self.victims()
    }

    /// Nodes the kill removes (`round(nodes × kill_percent / 100)`; 0 for other kinds).
    pub fn victims(&self) -> usize {
        if self.kind != ScenarioKind::Kill {
            return 0;
        }
        (self.nodes * self.kill_percent as usize + 50) / 100
    }

    /// The configuration every node of the run gets: the core's defaults, tokens off (the
    /// mesh has no TLS), and the scenario's α, β and active view.
    pub fn node_config(&self) -> NodeConfig {
        let mut c = NodeConfig::default();
        c.auth.require_token = false;
        c.alpha = self.alpha;
        c.beta = self.beta;
        c.active_target = self.active_target;
        c.origin_auth = self.origin_auth;
        c.scoring.enabled = self.scoring;
        if !self.tree_optimization {
            c.optimization_threshold = 0;
            c.graft_timeout_settled = c.graft_timeout;
        }
        c.link_optimization = self.link_optimization;
        if let Some(ms) = self.link_probation_ms {
            c.link_probation = std::time::Duration::from_millis(ms);
        }
        if let Some(on) = self.idle_ban_keeps_tree {
            c.idle_ban_keeps_tree = on;
        }
        if let Some(ms) = self.store_ttl_ms {
            c.store_ttl = std::time::Duration::from_millis(ms);
        }
        if let Some(bytes) = self.store_bytes {
            c.store_bytes = bytes;
        }
        c
    }

    /// The mesh parameters of the run.
    pub fn mesh_config(&self) -> MeshConfig {
        MeshConfig {
            nodes: self.nodes,
            seed: self.seed,
            latency_min: Duration::from_millis(self.latency_min_ms),
            latency_max: Duration::from_millis(self.latency_max_ms),
            loss: self.loss,
            rto: Duration::from_millis(200),
            node_config: self.node_config(),
            bootstrap_peers: self.bootstrap_peers,
            track_deliveries: true,
        }
    }

    /// The `overlay-sim scale …` arguments that rebuild exactly this scenario.
    pub fn command_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["scale".into(), "--scenario".into(), self.kind.to_string()];
        let mut push = |flag: &str, value: String| {
            a.push(format!("--{flag}"));
            a.push(value);
        };
        push("name", self.name.clone());
        push("nodes", self.nodes.to_string());
        push("seed", self.seed.to_string());
        if self.kind == ScenarioKind::Kill {
            push("kill-percent", self.kill_percent.to_string());
            push("prekill-messages", self.prekill_messages.to_string());
        }
        push("alpha", self.alpha.to_string());
        push("beta", self.beta.to_string());
        push("active-target", self.active_target.to_string());
        push("messages", self.messages.to_string());
        push("payload-bytes", self.payload_bytes.to_string());
        push("warmup-ms", self.warmup_ms.to_string());
        push("interval-ms", self.interval_ms.to_string());
        push("timeout-ms", self.timeout_ms.to_string());
        push("latency-min-ms", self.latency_min_ms.to_string());
        push("latency-max-ms", self.latency_max_ms.to_string());
        push("loss", self.loss.to_string());
        push("bootstrap-peers", self.bootstrap_peers.to_string());
        push("min-reliability", self.min_reliability.to_string());
        push("origin-auth", self.origin_auth.as_str().to_string());
        if self.scoring != scoring_default() {
            push("scoring", on_off(self.scoring).to_string());
        }
        if self.tree_optimization != tree_optimization_default() {
            push(
                "tree-optimization",
                on_off(self.tree_optimization).to_string(),
            );
        }
        if self.link_optimization != link_optimization_default() {
            push(
                "link-optimization",
                on_off(self.link_optimization).to_string(),
            );
        }
        if let Some(ms) = self.link_probation_ms {
            push("link-probation-ms", ms.to_string());
        }
        if let Some(on) = self.idle_ban_keeps_tree {
            push("idle-ban-keeps-tree", on_off(on).to_string());
        }
        if let Some(ms) = self.store_ttl_ms {
            push("store-ttl-ms", ms.to_string());
        }
        if let Some(bytes) = self.store_bytes {
            push("store-bytes", bytes.to_string());
        }
        if self.topics > 0 {
            push("topics", self.topics.to_string());
            push("members", self.members_percent.to_string());
        }
        if let Some(kind) = self.adversary {
            push("adversary", kind.to_string());
            push("adversary-percent", self.adversary_percent.to_string());
            push("attack-start-ms", self.attack_start_ms.to_string());
        }
        a
    }

    /// The full shell command (from the repository root) that reproduces this run.
    pub fn command_line(&self) -> String {
        let mut s = String::from("cargo run --release -p overlay-sim --");
        for arg in self.command_args() {
            s.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c))
            {
                s.push('\'');
                s.push_str(&arg.replace('\'', "'\\''"));
                s.push('\'');
            } else {
                s.push_str(&arg);
            }
        }
        s
    }
}

/// A scenario file (`overlay-sim/scenarios/*.toml`): `kind` is required, every other key is
/// optional and defaults as for [`Scenario::new`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// See [`Scenario::name`].
    pub name: Option<String>,
    /// See [`Scenario::kind`].
    pub kind: Option<ScenarioKind>,
    /// See [`Scenario::nodes`].
    pub nodes: Option<usize>,
    /// See [`Scenario::seed`].
    pub seed: Option<u64>,
    /// See [`Scenario::alpha`].
    pub alpha: Option<usize>,
    /// See [`Scenario::beta`].
    pub beta: Option<usize>,
    /// See [`Scenario::active_target`].
    pub active_target: Option<usize>,
    /// See [`Scenario::messages`].
    pub messages: Option<usize>,
    /// See [`Scenario::payload_bytes`].
    pub payload_bytes: Option<usize>,
    /// See [`Scenario::warmup_ms`].
    pub warmup_ms: Option<u64>,
    /// See [`Scenario::interval_ms`].
    pub interval_ms: Option<u64>,
    /// See [`Scenario::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Scenario::kill_percent`].
    pub kill_percent: Option<u32>,
    /// See [`Scenario::prekill_messages`].
    pub prekill_messages: Option<usize>,
    /// See [`Scenario::latency_min_ms`].
    pub latency_min_ms: Option<u64>,
    /// See [`Scenario::latency_max_ms`].
    pub latency_max_ms: Option<u64>,
    /// See [`Scenario::loss`].
    pub loss: Option<f64>,
    /// See [`Scenario::bootstrap_peers`].
    pub bootstrap_peers: Option<usize>,
    /// See [`Scenario::min_reliability`].
    pub min_reliability: Option<f64>,
    /// See [`Scenario::origin_auth`] (`"sign"` or `"none"`).
    pub origin_auth: Option<OriginAuth>,
    /// See [`Scenario::adversary`].
    pub adversary: Option<AdversaryKind>,
    /// See [`Scenario::adversary_percent`].
    pub adversary_percent: Option<u32>,
    /// See [`Scenario::attack_start_ms`].
    pub attack_start_ms: Option<u64>,
    /// See [`Scenario::scoring`].
    pub scoring: Option<bool>,
    /// See [`Scenario::tree_optimization`].
    pub tree_optimization: Option<bool>,
    /// See [`Scenario::link_optimization`].
    pub link_optimization: Option<bool>,
    /// See [`Scenario::link_probation_ms`].
    pub link_probation_ms: Option<u64>,
    /// See [`Scenario::idle_ban_keeps_tree`].
    pub idle_ban_keeps_tree: Option<bool>,
    /// See [`Scenario::store_ttl_ms`].
    pub store_ttl_ms: Option<u64>,
    /// See [`Scenario::store_bytes`].
    pub store_bytes: Option<usize>,
    /// See [`Scenario::topics`].
    pub topics: Option<usize>,
    /// See [`Scenario::members_percent`].
    pub members_percent: Option<u32>,
}

/// `on` / `off`.
pub fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Default node count when neither the file nor the command line gives one.
pub const DEFAULT_NODES: usize = 1000;
/// Default seed when neither the file nor the command line gives one.
pub const DEFAULT_SEED: u64 = 1;

impl ScenarioFile {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<ScenarioFile, SimError> {
        toml::from_str(text).map_err(|e| SimError::ScenarioFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<ScenarioFile, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Overlays `other`'s values on this one (values in `other` win).
    pub fn merge(self, other: ScenarioFile) -> ScenarioFile {
        ScenarioFile {
            name: other.name.or(self.name),
            kind: other.kind.or(self.kind),
            nodes: other.nodes.or(self.nodes),
            seed: other.seed.or(self.seed),
            alpha: other.alpha.or(self.alpha),
            beta: other.beta.or(self.beta),
            active_target: other.active_target.or(self.active_target),
            messages: other.messages.or(self.messages),
            payload_bytes: other.payload_bytes.or(self.payload_bytes),
            warmup_ms: other.warmup_ms.or(self.warmup_ms),
            interval_ms: other.interval_ms.or(self.interval_ms),
            timeout_ms: other.timeout_ms.or(self.timeout_ms),
            kill_percent: other.kill_percent.or(self.kill_percent),
            prekill_messages: other.prekill_messages.or(self.prekill_messages),
            latency_min_ms: other.latency_min_ms.or(self.latency_min_ms),
            latency_max_ms: other.latency_max_ms.or(self.latency_max_ms),
            loss: other.loss.or(self.loss),
            bootstrap_peers: other.bootstrap_peers.or(self.bootstrap_peers),
            min_reliability: other.min_reliability.or(self.min_reliability),
            origin_auth: other.origin_auth.or(self.origin_auth),
            adversary: other.adversary.or(self.adversary),
            adversary_percent: other.adversary_percent.or(self.adversary_percent),
            attack_start_ms: other.attack_start_ms.or(self.attack_start_ms),
            scoring: other.scoring.or(self.scoring),
            tree_optimization: other.tree_optimization.or(self.tree_optimization),
            link_optimization: other.link_optimization.or(self.link_optimization),
            link_probation_ms: other.link_probation_ms.or(self.link_probation_ms),
            idle_ban_keeps_tree: other.idle_ban_keeps_tree.or(self.idle_ban_keeps_tree),
            store_ttl_ms: other.store_ttl_ms.or(self.store_ttl_ms),
            store_bytes: other.store_bytes.or(self.store_bytes),
            topics: other.topics.or(self.topics),
            members_percent: other.members_percent.or(self.members_percent),
        }
    }

    /// The scenario: the kind's defaults with every given value applied. The name defaults
    /// to [`Scenario::default_name`] of the result.
    pub fn resolve(&self) -> Result<Scenario, SimError> {
        let kind = self
            .kind
            .ok_or_else(|| SimError::Scenario("no scenario kind given (`kind = ...`)".into()))?;
        let mut s = Scenario::new(
            kind,
            self.nodes.unwrap_or(DEFAULT_NODES),
            self.seed.unwrap_or(DEFAULT_SEED),
        );
        macro_rules! apply {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { s.$field = v; } )* };
        }
        apply!(
            alpha,
            beta,
            active_target,
            messages,
            payload_bytes,
            warmup_ms,
            interval_ms,
            timeout_ms,
            kill_percent,
            prekill_messages,
            latency_min_ms,
            latency_max_ms,
            loss,
            bootstrap_peers,
            min_reliability,
            origin_auth,
            adversary_percent,
            attack_start_ms,
            scoring,
            tree_optimization,
            link_optimization,
            topics,
            members_percent
        );
        if self.link_probation_ms.is_some() {
            s.link_probation_ms = self.link_probation_ms;
        }
        if self.idle_ban_keeps_tree.is_some() {
            s.idle_ban_keeps_tree = self.idle_ban_keeps_tree;
        }
        if self.store_ttl_ms.is_some() {
            s.store_ttl_ms = self.store_ttl_ms;
        }
        if self.store_bytes.is_some() {
            s.store_bytes = self.store_bytes;
        }
        if self.adversary.is_some() {
            s.adversary = self.adversary;
            if self.adversary_percent.is_none() {
                s.adversary_percent = 20;
            }
        }
        s.name = match &self.name {
            Some(name) => name.clone(),
            None => s.default_name(),
        };
        s.validate()?;
        Ok(s)
    }
}

/// The table: single sender with 100 and 1000 nodes, random senders, all nodes
/// sending at once, and killing 20, 30, …, 90 and 95 % of 1000 nodes. `nodes` replaces 1000
/// (and caps 100) for a scaled-down suite.
pub fn suite(seed: u64, nodes: Option<usize>) -> Vec<Scenario> {
    let big = nodes.unwrap_or(DEFAULT_NODES);
    let small = big.min(100);
    let mut v = Vec::new();
    if small < big {
        v.push(Scenario::new(ScenarioKind::Single, small, seed));
    }
    v.push(Scenario::new(ScenarioKind::Single, big, seed));
    v.push(Scenario::new(ScenarioKind::Random, big, seed));
    if small < big {
        v.push(Scenario::new(ScenarioKind::AllSend, small, seed));
    }
    v.push(Scenario::new(ScenarioKind::AllSend, big, seed));
    for x in [20u32, 30, 40, 50, 60, 70, 80, 90, 95] {
        let mut s = Scenario::new(ScenarioKind::Kill, big, seed);
        s.kill_percent = x;
        s.name = s.default_name();
        v.push(s);
    }
    v
}
