//! Runs one scenario on the core's discrete-event mesh and checks its invariants.

use core::time::Duration;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use overlay_proto::mesh::Mesh;
use overlay_proto::{Instant, MessageId};

use super::adversary::{self, AdversaryKind, AttackTally, SharedTally};
use super::late::{Churn, LateReport, LateTracer, NodeIndex, Snapshot};
use super::metrics::{BroadcastOutcome, Summary};
use super::scenario::{Scenario, ScenarioKind};
use crate::progress::Progress;
use crate::SimError;

/// How fast the run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Speed {
    /// Wall time to build the mesh (allocating every node), ms.
    pub setup_ms: f64,
    /// Wall time of the whole run, setup included, ms.
    pub wall_ms: f64,
    /// Virtual time simulated, s.
    pub virtual_s: f64,
    /// Virtual seconds per wall-clock second (setup included).
    pub sim_s_per_wall_s: f64,
    /// Inputs handled by all nodes.
    pub inputs: u64,
    /// Inputs per wall-clock second.
    pub inputs_per_wall_s: f64,
}

/// What the attackers of a run did and how the honest nodes fared against them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdversaryReport {
    /// The attackers' behaviour.
    pub kind: AdversaryKind,
    /// Attacking nodes.
    pub attackers: usize,
    /// Honest nodes.
    pub honest: usize,
    /// Honest broadcasts the sender's core refused (counted as reaching nobody).
    pub refused_broadcasts: usize,
    /// Honest nodes not ready at the end.
    pub honest_not_ready: usize,
    /// Running honest–attacker sessions at the end (seen from the honest side).
    pub attacker_sessions_end: usize,
    /// Mean running sessions per honest node with attackers at the end.
    pub attacker_sessions_per_honest: f64,
    /// Peers the honest nodes banned (their score fell below the ban threshold), summed.
    pub honest_bans: u64,
    /// What the attackers did and what the witnesses saw.
    pub tally: AttackTally,
}

/// Everything a scale run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// What ran.
    pub scenario: Scenario,
    /// Nodes alive at the end.
    pub live_nodes: usize,
    /// `kill`: the broadcasts that warmed the tree before the kill.
    pub before: Option<Summary>,
    /// The first broadcast (`single`, `random`), or the first one right after the kill.
    pub first: Option<Summary>,
    /// The broadcasts after the first one.
    pub rest: Option<Summary>,
    /// `single`, `random`: the second half of the broadcasts — the steady state, once the
    /// gossip tree has converged (`None` with fewer than 4 broadcasts).
    pub steady: Option<Summary>,
    /// Every measured broadcast (`kill`: those after the kill).
    pub overall: Summary,
    /// Per-broadcast figures, in order (`kill`: warm-up broadcasts first).
    pub broadcasts: Vec<BroadcastOutcome>,
    /// Drops and refusals counted by the live honest nodes, by reason (non-zero ones).
    pub drops: BTreeMap<String, u64>,
    /// Live honest nodes without any running session at the end.
    pub isolated_nodes: usize,
    /// Mean running sessions per live honest node at the end.
    pub sessions_mean: f64,
    /// The attack, when the run had attackers.
    pub adversary: Option<AdversaryReport>,
    /// Why deliveries were late (sequential broadcasts: `single`, `random`, `kill`).
    pub late: Option<LateReport>,
    /// Broken invariants (empty when the run passed).
    pub violations: Vec<String>,
    /// Wall-clock figures.
    pub speed: Speed,
    /// `Mesh::digest()` of the run, hex.
    pub digest: String,
}

impl ScenarioReport {
    /// True when every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The digest as bytes.
    pub fn digest_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // The field is always 64 hex digits written by `run_scenario`.
        let _ = hex::decode_to_slice(&self.digest, &mut out);
        out
    }
}

/// A small seeded generator for the scenario's own choices (senders, victims), separate from
/// the mesh's so that changing a scenario choice does not shift the network's randomness.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed ^ 0x6f76_6572_6c61_7973)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

struct Run<'a> {
    scenario: &'a Scenario,
    mesh: Mesh,
    rng: SplitMix64,
    alive: Vec<bool>,
    live: usize,
    /// False for attacker nodes: they never broadcast and are not counted as receivers.
    honest: Vec<bool>,
    tally: Option<SharedTally>,
    refused: usize,
    broadcasts: u64,
    violations: Vec<String>,
    /// One step per broadcast (quiet unless on a terminal, see [`crate::progress`]).
    progress: Progress,
    /// Peer ids to node indices, for the late-delivery analysis.
    index: NodeIndex,
    /// The late-delivery analysis of the sequential broadcasts.
    late: LateTracer,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn at_ms(t: Instant) -> f64 {
    ms(t.since_epoch())
}

impl Run<'_> {
    fn payload(&mut self) -> Bytes {
        let k = self.broadcasts;
        self.broadcasts += 1;
        if self.tally.is_some() {
            return adversary::honest_payload(k, self.scenario.payload_bytes);
        }
        let mut v = vec![0u8; self.scenario.payload_bytes];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (k as usize).wrapping_add(i) as u8;
        }
        Bytes::from(v)
    }

    /// Payload messages received so far, summed over live nodes.
    fn payload_received(&self) -> u64 {
        (0..self.mesh.len())
            .filter(|i| self.honest.get(*i).copied().unwrap_or(false))
            .filter_map(|i| self.mesh.stats(i))
            .map(|s| s.gossip_delivered + s.gossip_duplicates)
            .sum()
    }

    /// Live honest nodes.
    fn live_honest(&self) -> usize {
        self.alive
            .iter()
            .zip(&self.honest)
            .filter(|(a, h)| **a && **h)
            .count()
    }

    fn random_live(&mut self) -> usize {
        let k = self.rng.below(self.live_honest());
        self.alive
            .iter()
            .zip(&self.honest)
            .enumerate()
            .filter(|(_, (a, h))| **a && **h)
            .nth(k)
            .map_or(0, |(i, _)| i)
    }

    fn broadcast(&mut self, origin: usize) -> Option<MessageId> {
        self.progress.inc(1);
        let payload = self.payload();
        let now = self.mesh.now();
        match self.mesh.broadcast(origin, payload) {
            Ok(id) => Some(id),
            Err(e) if self.tally.is_some() => {
                // Under attack a refusal is a measured outcome (the broadcast reaches
                // nobody), not a broken invariant.
                let _ = e;
                self.refused += 1;
                None
            }
            Err(e) => {
                self.violations.push(format!(
                    "broadcast from node {origin} at t={:.3}s refused: {e}",
                    now.since_epoch().as_secs_f64()
                ));
                None
            }
        }
    }

    /// One broadcast with the network to itself: broadcast, run `window`, measure.
    fn sequential(&mut self, origin: usize, window: Duration) -> Option<BroadcastOutcome> {
        let before = self.payload_received();
        let snapshot = Snapshot::take(&self.mesh, &self.index);
        let churn = Churn::of(&self.mesh, &self.honest);
        let downs_before = self.mesh.session_downs().len();
        let id = self.broadcast(origin);
        self.mesh.run_for(window);
        let downs = self.mesh.session_downs().get(downs_before..).unwrap_or(&[]);
        self.late.add_churn(
            churn,
            Churn::of(&self.mesh, &self.honest),
            downs,
            &self.honest,
        );
        let payload = self.payload_received() - before;
        match id {
            Some(id) => {
                if let Some(track) = self.mesh.track(&id) {
                    self.late.add(track, &snapshot, &self.index, &self.honest);
                }
                Some(self.measure(&id, origin, window, Some(payload)))
            }
            None if self.tally.is_some() => Some(self.unreached(origin)),
            None => None,
        }
    }

    /// The outcome of a broadcast that never left its sender.
    fn unreached(&mut self, origin: usize) -> BroadcastOutcome {
        let expected = self.live_honest() - usize::from(self.is_live_honest(origin));
        let mut out = BroadcastOutcome {
            origin,
            sent_at_ms: at_ms(self.mesh.now()),
            expected,
            reached: 0,
            reliability: if expected == 0 { 1.0 } else { 0.0 },
            payload_messages: Some(0),
            ldh: 0,
            last_delivery_ms: 0.0,
            reliability_by_ms: Vec::new(),
            latencies_ms: Vec::new(),
        };
        out.record_checkpoints(0.0);
        out
    }

    fn is_live_honest(&self, i: usize) -> bool {
        self.alive.get(i).copied().unwrap_or(false) && self.honest.get(i).copied().unwrap_or(false)
    }

    fn measure(
        &mut self,
        id: &MessageId,
        origin: usize,
        window: Duration,
        payload_messages: Option<u64>,
    ) -> BroadcastOutcome {
        let expected = self.live_honest() - usize::from(self.is_live_honest(origin));
        let tampered = self
            .tally
            .as_ref()
            .map(|t| t.with(|t| t.tampered.clone()))
            .unwrap_or_default();
        let mut out = BroadcastOutcome {
            origin,
            sent_at_ms: 0.0,
            expected,
            reached: 0,
            reliability: 0.0,
            payload_messages,
            ldh: 0,
            last_delivery_ms: 0.0,
            reliability_by_ms: Vec::new(),
            latencies_ms: Vec::new(),
        };
        let Some(track) = self.mesh.track(id) else {
            self.violations
                .push(format!("no delivery record for message {id}"));
            return out;
        };
        let sent = track.sent_at;
        out.sent_at_ms = at_ms(sent);
        let deadline = sent + window;
        let mut delivered = vec![false; self.mesh.len()];
        let mut violations = Vec::new();
        for &(node, at, hops) in &track.delivered {
            let what = || format!("message {} from node {origin}", &id.to_hex()[..8]);
            if node == origin {
                violations.push(format!("{}: delivered back to its sender", what()));
                continue;
            }
            match delivered.get_mut(node) {
                Some(seen) if *seen => {
                    violations.push(format!("{}: delivered twice at node {node}", what()));
                    continue;
                }
                Some(seen) => *seen = true,
                None => continue,
            }
            if !self.alive.get(node).copied().unwrap_or(false) {
                violations.push(format!("{}: delivered at dead node {node}", what()));
                continue;
            }
            if hops == 0 {
                violations.push(format!("{}: delivered at node {node} with 0 hops", what()));
            }
            if at < sent {
                violations.push(format!(
                    "{}: delivered at node {node} before it was sent",
                    what()
                ));
            }
            if at > deadline
                || !self.honest.get(node).copied().unwrap_or(false)
                || tampered.contains(&(node, *id))
            {
                continue;
            }
            out.reached += 1;
            out.ldh = out.ldh.max(hops);
            let latency = ms(at - sent);
            out.last_delivery_ms = out.last_delivery_ms.max(latency);
            out.latencies_ms.push(latency);
        }
        self.violations.extend(violations);
        out.reliability = if expected == 0 {
            1.0
        } else {
            out.reached as f64 / expected as f64
        };
        out.record_checkpoints(ms(window));
        out
    }

    fn check_each(&mut self, outcomes: &[BroadcastOutcome], label: &str) {
        let min = self.scenario.min_reliability;
        for (k, o) in outcomes.iter().enumerate() {
            if o.reliability < min {
                self.violations.push(format!(
                    "{label} broadcast #{k} from node {} reached {}/{} nodes ({:.2}% < {:.2}%)",
                    o.origin,
                    o.reached,
                    o.expected,
                    o.reliability * 100.0,
                    min * 100.0
                ));
            }
        }
    }

    fn kill(&mut self, count: usize) {
        let mut order: Vec<usize> = (0..self.mesh.len()).collect();
        for i in 0..count.min(order.len()) {
            let j = i + self.rng.below(order.len() - i);
            order.swap(i, j);
        }
        for &victim in order.iter().take(count) {
            self.mesh.kill(victim);
            if let Some(a) = self.alive.get_mut(victim) {
                if *a {
                    *a = false;
                    self.live -= 1;
                }
            }
        }
    }
}

/// Broadcasts a scenario makes (the length of its progress bar).
fn planned_broadcasts(scenario: &Scenario, nodes: usize) -> u64 {
    let count = match scenario.kind {
        ScenarioKind::Single | ScenarioKind::Random => scenario.messages,
        ScenarioKind::AllSend => nodes,
        ScenarioKind::Kill => scenario.prekill_messages + scenario.messages + 1,
    };
    count as u64
}

/// Runs a scenario to completion. Errors only for invalid scenarios; broken invariants are
/// reported in [`ScenarioReport::violations`].
pub fn run_scenario(scenario: &Scenario) -> Result<ScenarioReport, SimError> {
    scenario.validate()?;
    let wall = std::time::Instant::now();
    let mut mesh = Mesh::new(scenario.mesh_config())?;
    let n = mesh.len();
    let mut honest = vec![true; n];
    let mut tally = None;
    if let Some(kind) = scenario.adversary {
        // A generator of its own, so the senders match those of the attack-free run.
        let mut pick = SplitMix64::new(scenario.seed ^ 0x6164_7665_7273_6172);
        let attackers =
            adversary::choose_attackers(n, scenario.adversary_percent, |k| pick.below(k));
        for &a in &attackers {
            if let Some(h) = honest.get_mut(a) {
                *h = false;
            }
        }
        tally = Some(adversary::install(
            &mut mesh,
            scenario.seed,
            kind,
            &attackers,
            &scenario.attack_rates(),
        ));
    }
    let setup = wall.elapsed();
    mesh.record_session_downs(true);
    let mut run = Run {
        scenario,
        mesh,
        rng: SplitMix64::new(scenario.seed),
        alive: vec![true; n],
        live: n,
        honest,
        tally,
        refused: 0,
        broadcasts: 0,
        violations: Vec::new(),
        progress: Progress::new(
            planned_broadcasts(scenario, n),
            "broadcasts",
            &format!("scale {} ({n} nodes)", scenario.name),
        ),
        index: NodeIndex::new(scenario.seed, n),
        late: LateTracer::default(),
    };
    run.progress.set_message("warm-up");
    run.mesh.run_for(Duration::from_millis(scenario.warmup_ms));
    run.progress.set_message("");
    let interval = Duration::from_millis(scenario.interval_ms);
    let timeout = Duration::from_millis(scenario.timeout_ms);

    let mut before = None;
    let mut first = None;
    let mut rest = None;
    let mut steady = None;
    let mut all: Vec<BroadcastOutcome> = Vec::new();
    let mut warm: Vec<BroadcastOutcome> = Vec::new();
    let mut payload_total = None;
    match scenario.kind {
        ScenarioKind::Single | ScenarioKind::Random => {
            let sender = run.random_live();
            for _ in 0..scenario.messages {
                let origin = if scenario.kind == ScenarioKind::Single {
                    sender
                } else {
                    run.random_live()
                };
                all.extend(run.sequential(origin, interval));
            }
            run.check_each(&all, scenario.kind.as_str());
        }
        ScenarioKind::AllSend => {
            let start = run.payload_received();
            let mut ids = Vec::with_capacity(n);
            for origin in 0..n {
                if let Some(id) = run.broadcast(origin) {
                    ids.push((origin, id));
                }
            }
            run.mesh.run_for(timeout);
            payload_total = Some(run.payload_received() - start);
            for (origin, id) in &ids {
                let o = run.measure(id, *origin, timeout, None);
                all.push(o);
            }
            run.check_each(&all, "all-send");
        }
        ScenarioKind::Kill => {
            for _ in 0..scenario.prekill_messages {
                let origin = run.random_live();
                warm.extend(run.sequential(origin, interval));
            }
            run.check_each(&warm, "pre-kill");
            run.kill(scenario.victims());
            for _ in 0..=scenario.messages {
                let origin = run.random_live();
                all.extend(run.sequential(origin, timeout));
            }
            if !warm.is_empty() {
                before = Some(Summary::of(&warm, None));
            }
            let later = all.get(1..).unwrap_or(&[]);
            if !later.is_empty() {
                let mean = Summary::of(later, None).reliability_mean;
                if mean < scenario.min_reliability {
                    run.violations.push(format!(
                        "mean reliability of the {} broadcasts after the first one following \
                         the kill is {:.2}% < {:.2}%",
                        later.len(),
                        mean * 100.0,
                        scenario.min_reliability * 100.0
                    ));
                }
            }
        }
    }
    if scenario.kind != ScenarioKind::AllSend {
        if let Some(o) = all.first() {
            first = Some(Summary::of(std::slice::from_ref(o), None));
        }
        if all.len() > 1 {
            rest = all.get(1..).map(|r| Summary::of(r, None));
        }
        if scenario.kind != ScenarioKind::Kill && all.len() >= 4 {
            steady = all.get(all.len() / 2..).map(|r| Summary::of(r, None));
        }
    }
    let overall = Summary::of(&all, payload_total);
    let late =
        (scenario.kind != ScenarioKind::AllSend).then(|| run.late.report(overall.latency_p99_ms));

    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    let mut sessions = 0usize;
    let mut isolated = 0usize;
    let honest_nodes: Vec<usize> = (0..n).filter(|i| run.is_live_honest(*i)).collect();
    for s in honest_nodes.iter().filter_map(|i| run.mesh.stats(*i)) {
        for (reason, count) in s.rejected.iter() {
            if count > 0 {
                *drops.entry(reason.label().to_string()).or_default() += count;
            }
        }
        sessions += s.sessions_running;
        if s.sessions_running == 0 {
            isolated += 1;
        }
    }
    let adversary = match (scenario.adversary, &run.tally) {
        (Some(kind), Some(tally)) => {
            let attacker_ids: std::collections::BTreeSet<_> = (0..n)
                .filter(|i| !run.honest.get(*i).copied().unwrap_or(true))
                .map(|i| overlay_proto::mesh::node_peer_id(scenario.seed, i))
                .collect();
            let mut with_attackers = 0usize;
            let mut not_ready = 0usize;
            let mut bans = 0u64;
            for &i in &honest_nodes {
                if let Some(node) = run.mesh.node(i) {
                    bans += node.stats().peers_banned;
                    with_attackers += node
                        .running_peers()
                        .iter()
                        .filter(|p| attacker_ids.contains(p))
                        .count();
                    not_ready += usize::from(!node.is_ready());
                }
            }
            Some(AdversaryReport {
                kind,
                attackers: attacker_ids.len(),
                honest: honest_nodes.len(),
                refused_broadcasts: run.refused,
                honest_not_ready: not_ready,
                attacker_sessions_end: with_attackers,
                attacker_sessions_per_honest: with_attackers as f64
                    / honest_nodes.len().max(1) as f64,
                honest_bans: bans,
                tally: tally.snapshot(),
            })
        }
        _ => None,
    };
    let elapsed = wall.elapsed();
    let virtual_s = run.mesh.now().since_epoch().as_secs_f64();
    let wall_s = elapsed.as_secs_f64().max(1e-9);
    let inputs = run.mesh.processed();
    let mut broadcasts = warm;
    broadcasts.extend(all);
    Ok(ScenarioReport {
        scenario: scenario.clone(),
        live_nodes: run.live,
        before,
        first,
        rest,
        steady,
        overall,
        broadcasts,
        drops,
        isolated_nodes: isolated,
        sessions_mean: sessions as f64 / honest_nodes.len().max(1) as f64,
        adversary,
        late,
        violations: run.violations,
        speed: Speed {
            setup_ms: ms(setup),
            wall_ms: ms(elapsed),
            virtual_s,
            sim_s_per_wall_s: virtual_s / wall_s,
            inputs,
            inputs_per_wall_s: inputs as f64 / wall_s,
        },
        digest: hex::encode(run.mesh.digest()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_spread() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = SplitMix64::new(8);
        assert_ne!(xs[0], c.next_u64());
        let mut hits = [0usize; 4];
        for _ in 0..4000 {
            hits[a.below(4)] += 1;
        }
        assert!(hits.iter().all(|h| (800..1200).contains(h)), "{hits:?}");
        assert_eq!(a.below(0), 0);
    }
}
