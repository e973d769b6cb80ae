//! The CI seed sweep of chaos mode: the smoke scenario (8 nodes, 25 s simulated with churn, a
//! partition, a one-way partition, a held link and the saturation burst) over ten seeds, two
//! processes at a time; every run must hold every invariant. Set `CHAOS_SWEEP_SEEDS` to sweep
//! more (the long sweep is documented in docs/SIMULATION.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use std::path::Path;
use std::process::{Child, Command, Stdio};

fn spawn(seed: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_overlay-sim"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "chaos",
            "--scenario",
            "overlay-sim/scenarios/chaos-smoke.toml",
            "--seed",
            &seed.to_string(),
            "--traces-dir",
            &std::env::temp_dir()
                .join("overlay-sim-chaos-ci")
                .to_string_lossy(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn smoke_seed_sweep() {
    let seeds: u64 = std::env::var("CHAOS_SWEEP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut failures = Vec::new();
    let all: Vec<u64> = (1..=seeds).collect();
    for pair in all.chunks(2) {
        let children: Vec<(u64, Child)> = pair.iter().map(|&s| (s, spawn(s))).collect();
        for (seed, child) in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let last = stdout.lines().last().unwrap_or("").to_string();
            assert!(last.starts_with("digest: "), "seed {seed}: {stdout}");
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "seed {seed}:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
