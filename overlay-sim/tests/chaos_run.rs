//! A small chaos run of the real driver over turmoil: every invariant holds, and the same
//! scenario twice gives the same digest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use overlay_sim::chaos::{run_scenario, ChaosFile, ChaosScenario};

fn small(seed: u64) -> ChaosScenario {
    ChaosFile {
        name: Some("test-small".into()),
        nodes: Some(8),
        seed: Some(seed),
        duration: Some("10s".into()),
        warmup: Some("3s".into()),
        settle: Some("12s".into()),
        churn: Some(0.3),
        burst_messages: Some(2600),
        burst_hold: Some("2s".into()),
        ..ChaosFile::default()
    }
    .resolve()
    .unwrap()
}

#[test]
fn small_run_holds_invariants_and_repeats() {
    let s = small(5);
    let a = run_scenario(&s, None).unwrap();
    println!("{}", a.text());
    assert!(a.passed, "{}", a.text());
    let b = run_scenario(&s, None).unwrap();
    assert_eq!(a.digest, b.digest, "same scenario, same digest");
}
