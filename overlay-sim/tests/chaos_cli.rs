//! `overlay-sim chaos` as a binary: the same command twice prints the same digest; a failing
//! run exits 1 with its seed, a command that reproduces it exactly and the failing nodes'
//! traces (which replay without divergence); bad arguments exit 2.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn binary(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overlay-sim"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digest_line(stdout: &str) -> String {
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("digest: ") && last.len() == 8 + 64,
        "last line: {last:?}\n{stdout}"
    );
    last.to_string()
}

#[test]
fn same_command_twice_same_digest() {
    let args = [
        "chaos",
        "--scenario",
        "overlay-sim/scenarios/chaos-smoke.toml",
        "--seed",
        "11",
    ];
    let (code_a, out_a, err_a) = binary(&args);
    assert_eq!(code_a, 0, "{out_a}\n{err_a}");
    for needle in [
        "broadcasts:",
        "reliability:",
        "latency (simulated): p50",
        "hops:",
        "sessions:",
        "rejects (core):",
        "readiness:",
        "burst:",
        "invariants: all held",
    ] {
        assert!(out_a.contains(needle), "missing {needle:?} in\n{out_a}");
    }
    let (code_b, out_b, _) = binary(&args);
    assert_eq!(code_b, 0);
    assert_eq!(digest_line(&out_a), digest_line(&out_b));
    // Another seed is another run.
    let (_, out_c, _) = binary(&[
        "chaos",
        "--scenario",
        "overlay-sim/scenarios/chaos-smoke.toml",
        "--seed",
        "12",
    ]);
    assert_ne!(digest_line(&out_a), digest_line(&out_c));
}

#[test]
fn failing_run_prints_seed_command_and_keeps_traces() {
    let traces = std::env::temp_dir().join(format!("chaos-cli-test-{}", std::process::id()));
    let traces_arg = traces.to_string_lossy().into_owned();
    // A silent cut with a detection limit no failure detector can meet (200 ms; the core's
    // needs about 1.5 s): the cut invariant fails.
    let args = [
        "chaos",
        "--nodes",
        "4",
        "--seed",
        "1",
        "--duration",
        "5s",
        "--settle",
        "6s",
        "--churn",
        "0",
        "--partitions",
        "0",
        "--oneway",
        "0",
        "--holds",
        "0",
        "--burst",
        "false",
        "--cuts",
        "1",
        "--fault-min",
        "3s",
        "--fault-max",
        "3s",
        "--cut-detect",
        "200ms",
        "--traces-dir",
        &traces_arg,
    ];
    let (code, out, err) = binary(&args);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("FAILED: seed 1"), "{out}");
    assert!(out.contains("[cut]"), "{out}");
    let digest = digest_line(&out);

    // The printed command reproduces the run exactly.
    let command = out
        .lines()
        .find_map(|l| l.strip_prefix("reproduce: "))
        .unwrap();
    let rest = command
        .strip_prefix("cargo run --release -p overlay-sim -- ")
        .unwrap();
    let mut again: Vec<&str> = rest.split_whitespace().collect();
    again.extend(["--traces-dir", &traces_arg]);
    let (code2, out2, _) = binary(&again);
    assert_eq!(code2, 1);
    assert_eq!(digest_line(&out2), digest);

    // The failing nodes' traces were written and replay without divergence.
    let dir = traces.join("1");
    assert!(out.contains(&dir.display().to_string()), "{out}");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "trace"))
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        let (code, out, err) = binary(&["replay", &f.to_string_lossy()]);
        assert_eq!(code, 0, "replay of {}: {out}\n{err}", f.display());
    }
    let _ = std::fs::remove_dir_all(&traces);
}

#[test]
fn bad_arguments_exit_2() {
    let (code, _, err) = binary(&["chaos", "--nodes", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nodes"), "{err}");
    let (code, _, err) = binary(&["chaos", "--duration", "soon"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = binary(&["chaos", "--scenario", "does-not-exist.toml"]);
    assert_eq!(code, 2, "{err}");
}
