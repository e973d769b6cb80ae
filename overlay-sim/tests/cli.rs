//! The binary: same command ⇒ same digest; exit codes; a failing run prints the seed and a
//! command that reproduces it; JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use std::path::Path;
use std::process::Command;

fn binary(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overlay-sim"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digest_line(stdout: &str) -> &str {
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("digest: ") && last.len() == 8 + 64,
        "last line: {last:?}"
    );
    last
}

const SMALL: &[&str] = &[
    "scale",
    "--scenario",
    "single",
    "--nodes",
    "30",
    "--warmup-ms",
    "3000",
    "--messages",
    "2",
    "--payload-bytes",
    "200",
];

#[test]
fn same_command_twice_gives_the_same_digest() {
    let (code, first, err) = binary(SMALL);
    assert_eq!(code, 0, "{first}{err}");
    assert!(first.contains("invariants: ok"), "{first}");
    assert!(first.contains("simulated s per wall s"), "{first}");
    let (code, second, _) = binary(SMALL);
    assert_eq!(code, 0);
    assert_eq!(digest_line(&first), digest_line(&second));
    let mut other = SMALL.to_vec();
    other.extend(["--seed", "2"]);
    let (_, third, _) = binary(&other);
    assert_ne!(digest_line(&first), digest_line(&third));
}

#[test]
fn a_failing_run_exits_1_with_the_seed_and_a_command_that_reproduces_it() {
    let mut args = SMALL.to_vec();
    args.extend(["--interval-ms", "1", "--seed", "77"]);
    let (code, out, _) = binary(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("invariants: FAILED"), "{out}");
    assert!(out.contains("seed: 77"), "{out}");
    let repro = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("reproduce: cargo run --release -p overlay-sim -- ")
        })
        .unwrap_or_else(|| panic!("no reproduce line in {out}"));
    let repro_args: Vec<&str> = repro.split_whitespace().collect();
    let (code, again, _) = binary(&repro_args);
    assert_eq!(code, 1);
    assert_eq!(
        digest_line(&out),
        digest_line(&again),
        "the command reproduces the run exactly"
    );
}

#[test]
fn scenario_files_and_json_output() {
    let (code, out, err) = binary(&[
        "scale",
        "--scenario-file",
        "overlay-sim/scenarios/smoke.toml",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let mut lines = out.lines();
    let json: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(json["scenario"]["name"], "smoke");
    assert_eq!(json["scenario"]["nodes"], 40);
    assert_eq!(json["overall"]["reliability_min"], 1.0);
    let digest = json["digest"].as_str().unwrap().to_string();
    assert_eq!(digest_line(&out), format!("digest: {digest}"));
    // `--scenario FILE` works too, and command-line values override the file's.
    let (code, out2, _) = binary(&["scale", "--scenario", "overlay-sim/scenarios/smoke.toml"]);
    assert_eq!(code, 0);
    assert_eq!(digest_line(&out2), format!("digest: {digest}"));
    let (_, out3, _) = binary(&[
        "scale",
        "--scenario",
        "overlay-sim/scenarios/smoke.toml",
        "--seed",
        "8",
    ]);
    assert_ne!(digest_line(&out3), format!("digest: {digest}"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(binary(&["scale"]).0, 2, "a scenario is required");
    assert_eq!(binary(&["scale", "--scenario", "bogus"]).0, 2);
    assert_eq!(binary(&["scale", "--scenario", "single", "--suite"]).0, 2);
    assert_eq!(
        binary(&[
            "scale",
            "--scenario",
            "kill",
            "--nodes",
            "10",
            "--kill-percent",
            "99"
        ])
        .0,
        2
    );
    assert_eq!(binary(&["frobnicate"]).0, 2);
}
