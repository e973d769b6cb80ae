//! The silent-cut fault of chaos mode, CI-sized: a node whose traffic vanishes without an RST
//! has every session across the cut closed, on both sides, by the core's failure detector
//! within `cut_detect`; it rejoins after the reconnect.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use std::path::Path;

use overlay_sim::chaos::{run_scenario, ChaosFile};

#[test]
fn silent_cuts_are_detected_on_both_sides_and_the_node_rejoins() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/chaos-cuts.toml");
    let s = ChaosFile::load(&file).unwrap().resolve().unwrap();
    assert_eq!(s.cuts, 2);
    let out = run_scenario(&s, None).unwrap();
    println!("{}", out.text());
    assert!(out.passed, "{}", out.text());
    let f = &out.figures;
    assert!(f.cut_sessions.0 >= 2, "the cut nodes had sessions: {f:?}");
    assert_eq!(f.cut_sessions.0, f.cut_sessions.1, "every session ended");
    assert!(
        f.cut_detect_ms[1] <= 3000.0,
        "detected within the limit: {:?}",
        f.cut_detect_ms
    );
    assert_eq!(
        f.cut_reasons.keys().map(String::as_str).collect::<Vec<_>>(),
        ["peer_unresponsive"],
        "only the failure detector can see a silent cut"
    );
    assert!(f.reliability_after_heal >= 1.0, "the cut nodes rejoined");
}
