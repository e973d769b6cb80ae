//! Large-scale mode: thousands of cores on the core's discrete-event mesh
//! ([`overlay_proto::mesh`]), measuring the epidemic-broadcast figures.
//!
//! The network model: every connection gets a one-way latency drawn uniformly from
//! `latency_min_ms..=latency_max_ms` (10–50 ms by default) by the seeded mesh RNG; bytes on a
//! connection arrive in order; a connection is usable 1.5 RTT (server) / 2 RTT (client) after
//! the dial, like TCP + TLS 1.3; optional TCP-like loss delays a transmission by an RTO. A
//! killed node vanishes; its peers see their connections close one latency later and dials to
//! it fail after one RTT.

pub mod adversary;
pub mod late;
pub mod metrics;
pub mod run;
pub mod scenario;
pub mod table;
pub mod topics;

use serde::Serialize;

use overlay_proto::trace::ActionDigest;

pub use adversary::{AdversaryKind, AttackRates, AttackTally};
pub use metrics::{BroadcastOutcome, Summary};
pub use run::{run_scenario, AdversaryReport, ScenarioReport, Speed};
pub use scenario::{suite, Scenario, ScenarioFile, ScenarioKind};

use crate::SimError;

/// The reports of a suite and a digest over all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteReport {
    /// One report per scenario, in order.
    pub runs: Vec<ScenarioReport>,
    /// BLAKE3 over the runs' digests, hex.
    pub digest: String,
    /// Wall time of the whole suite, ms.
    pub wall_ms: f64,
}

impl SuiteReport {
    /// True when every run passed.
    pub fn passed(&self) -> bool {
        self.runs.iter().all(ScenarioReport::passed)
    }
}

/// Runs scenarios one after the other; `progress` is called after each run (for a live
/// table).
pub fn run_suite(
    scenarios: &[Scenario],
    mut progress: impl FnMut(&ScenarioReport) -> Result<(), SimError>,
) -> Result<SuiteReport, SimError> {
    let wall = std::time::Instant::now();
    let mut runs = Vec::with_capacity(scenarios.len());
    for s in scenarios {
        let report = run_scenario(s)?;
        progress(&report)?;
        runs.push(report);
    }
    Ok(SuiteReport {
        digest: combined_digest(&runs),
        runs,
        wall_ms: wall.elapsed().as_secs_f64() * 1000.0,
    })
}

/// BLAKE3 over the digests of several runs, in order, hex.
pub fn combined_digest(runs: &[ScenarioReport]) -> String {
    let mut d = ActionDigest::new();
    d.update_raw(b"overlay-sim suite");
    for r in runs {
        d.update_raw(&r.digest_bytes());
    }
    hex::encode(d.finish())
}
