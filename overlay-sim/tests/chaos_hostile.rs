//! The real driver against a hostile peer, CI-sized (`chaos-hostile.toml`: 8 honest nodes and
//! one hostile host with a valid identity and token, no other fault): the hostile host gets
//! sessions and sends its frames, honest nodes close them with an error status, no honest
//! application sees a hostile GOSSIP, and every broadcast still reaches every honest node.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use std::path::Path;

use overlay_sim::chaos::{run_scenario, ChaosFile};

#[test]
fn a_hostile_peer_is_thrown_out_and_honest_nodes_carry_on() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/chaos-hostile.toml");
    let s = ChaosFile::load(&file).unwrap().resolve().unwrap();
    assert_eq!(s.hostile, 1);
    let dir = std::env::temp_dir().join(format!("chaos-hostile-{}", std::process::id()));
    let out = run_scenario(&s, Some(&dir)).unwrap();
    println!("{}", out.text());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.passed, "{}", out.text());
    let h = &out.hostile[0];
    assert!(h.sessions >= 1, "the attack ran: {h:?}");
    assert!(h.frames.get("gossip").copied().unwrap_or(0) >= 1, "{h:?}");
    assert!(
        h.closed_by.keys().any(|c| *c >= 400),
        "honest nodes closed the hostile sessions: {h:?}"
    );
    assert!(out.figures.reliability_after_heal >= 1.0);
}
