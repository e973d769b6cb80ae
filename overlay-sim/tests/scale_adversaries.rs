//! Adversary nodes in the large-scale mode, CI-sized (60 nodes, a few broadcasts, debug
//! build): every kind runs, the attack registers (the attackers' own tallies and the honest
//! nodes' counters show it), honest reliability is measured on honest nodes only, and runs
//! repeat bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use overlay_sim::scale::{run_scenario, AdversaryKind, Scenario, ScenarioKind, ScenarioReport};

const NODES: usize = 60;

fn attacked(kind: AdversaryKind, percent: u32, seed: u64) -> Scenario {
    let mut s = Scenario::new(ScenarioKind::Random, NODES, seed);
    s.warmup_ms = 5_000;
    s.messages = 4;
    s.payload_bytes = 256;
    s.adversary = Some(kind);
    s.adversary_percent = percent;
    s.attack_start_ms = 1_000;
    s.min_reliability = 0.0;
    s.name = s.default_name();
    s
}

fn run(kind: AdversaryKind, seed: u64) -> ScenarioReport {
    let r = run_scenario(&attacked(kind, 20, seed)).unwrap();
    assert!(
        r.violations.is_empty(),
        "{kind}: invariants other than reliability: {:?}",
        r.violations
    );
    r
}

fn count(map: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

#[test]
fn every_kind_attacks_and_the_attack_registers() {
    for kind in AdversaryKind::ALL {
        let r = run(kind, 2);
        let a = r.adversary.as_ref().expect("adversary report");
        assert_eq!(a.kind, kind);
        assert_eq!(a.attackers, 12, "20 % of 60");
        assert_eq!(a.honest, 48);
        for b in &r.broadcasts {
            assert_eq!(b.expected, 47, "{kind}: every honest node but the sender");
            assert!(b.reached <= b.expected);
        }
        let t = &a.tally;
        match kind {
            AdversaryKind::Forger => {
                assert!(count(&t.rewritten, "gossip") > 0, "{kind}: {t:?}");
                assert!(count(&t.injected, "gossip") > 0, "{kind}: {t:?}");
            }
            AdversaryKind::Silent => {
                assert!(count(&t.dropped, "gossip") > 0, "{kind}: {t:?}");
            }
            AdversaryKind::GraftSpam => {
                assert!(count(&t.injected, "graft") > 0, "{kind}: {t:?}");
                assert!(count(&t.rewritten, "credit") > 0, "{kind}: {t:?}");
            }
            AdversaryKind::IhaveFlood => {
                assert!(count(&t.injected, "ihave") > 0, "{kind}: {t:?}");
                // A silent announcer drops the gossip it gets, unless the defences (peer
                // scores: broken promises, IHAVE limits, GRAFTs for ids never announced) already
                // cut its sessions, so that no gossip reaches it.
                let defended: u64 = ["banned", "ihave_flood", "low_score"]
                    .iter()
                    .map(|k| count(&r.drops, k))
                    .sum::<u64>()
                    + t.closed_by_honest.values().sum::<u64>();
                assert!(
                    count(&t.dropped, "gossip") > 0 || defended > 0,
                    "{kind}: {t:?} {:?}",
                    r.drops
                );
            }
            AdversaryKind::Eclipse => {
                assert!(
                    count(&t.injected, "shuffle") + count(&t.rewritten, "shuffle") > 0,
                    "{kind}: {t:?}"
                );
            }
        }
    }
}

#[test]
fn forged_ids_are_refused_and_forged_origins_only_pass_without_signatures() {
    // origin_auth = none (the scale default): every node recomputes ids, so altered relays
    // are refused with 400 and never delivered; forged origins with correct ids cannot be
    // told apart without signatures and still reach applications.
    let r = run(AdversaryKind::Forger, 3);
    let t = &r.adversary.as_ref().unwrap().tally;
    assert_eq!(t.tampered_deliveries, 0, "{t:?}");
    assert!(
        t.closed_by_honest
            .iter()
            .filter(|(label, _)| label.starts_with("400 "))
            .map(|(_, n)| n)
            .sum::<u64>()
            > 0,
        "{t:?}"
    );
    assert!(t.forged_deliveries > 0, "{t:?}");
    assert!(count(&r.drops, "bad_id") > 0, "{:?}", r.drops);

    // origin_auth = sign: forged origins are refused too.
    let mut s = attacked(AdversaryKind::Forger, 20, 3);
    s.origin_auth = overlay_proto::OriginAuth::Sign;
    let r = run_scenario(&s).unwrap();
    let t = &r.adversary.as_ref().unwrap().tally;
    assert_eq!(t.tampered_deliveries, 0, "{t:?}");
    assert_eq!(t.forged_deliveries, 0, "{t:?}");
    assert!(count(&r.drops, "bad_signature") > 0, "{:?}", r.drops);
    assert!(count(&t.injected, "gossip") > 0, "the attack ran: {t:?}");
}

#[test]
fn attacked_runs_repeat_bit_for_bit() {
    let a = run_scenario(&attacked(AdversaryKind::IhaveFlood, 20, 5)).unwrap();
    let b = run_scenario(&attacked(AdversaryKind::IhaveFlood, 20, 5)).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.overall, b.overall);
    assert_eq!(a.adversary, b.adversary);
}

#[test]
fn scenario_files_and_flags_name_the_attack() {
    let text =
        "kind = \"random\"\nnodes = 60\nadversary = \"graft-spam\"\nadversary_percent = 10\n";
    let file =
        overlay_sim::scale::ScenarioFile::parse(text, std::path::Path::new("t.toml")).unwrap();
    let s = file.resolve().unwrap();
    assert_eq!(s.adversary, Some(AdversaryKind::GraftSpam));
    assert_eq!(s.attackers(), 6);
    assert_eq!(s.name, "random-60-graft-spam-10");
    let args = s.command_args();
    let joined = args.join(" ");
    assert!(
        joined.contains("--adversary graft-spam --adversary-percent 10"),
        "{joined}"
    );
    let mut bad = s.clone();
    bad.payload_bytes = 8;
    assert!(bad.validate().is_err(), "no room for the payload check");
    bad.payload_bytes = 256;
    bad.adversary_percent = 100;
    assert!(bad.validate().is_err());
}
