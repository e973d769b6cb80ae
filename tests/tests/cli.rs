//! The daemon's command line as an operator meets it: `--help`, `--version`, bad values.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

use overlay_e2e::run_to_exit;

/// The heading of docs/CONFIG.md's operator-command section: flags after it belong to the
/// subcommands, flags before it to the daemon.
const OPERATOR_SECTION: &str = "## Operator commands";

/// Every `--flag` named in docs/CONFIG.md's daemon sections.
fn documented_flags() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md"))
            .expect("read docs/CONFIG.md");
    let daemon = doc.split(OPERATOR_SECTION).next().unwrap_or_default();
    flags_in(daemon)
}

/// Every `--flag` named in docs/CONFIG.md's operator-command section.
fn documented_operator_flags() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md"))
            .expect("read docs/CONFIG.md");
    let section = doc
        .split_once(OPERATOR_SECTION)
        .map(|(_, rest)| rest.to_string())
        .expect("CONFIG.md has an operator-command section");
    flags_in(&section)
}

fn flags_in(doc: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (i, _) in doc.match_indices("`--") {
        let rest = &doc[i + 1..];
        let end = rest[2..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(rest.len(), |e| e + 2);
        let flag = &rest[..end];
        if flag.len() > 2 {
            flags.insert(flag.to_string());
        }
    }
    flags
}

#[test]
fn help_exits_zero_and_lists_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(dir.path(), &["--help"]);
    assert!(out.status.success(), "{out:?}");
    let flags = documented_flags();
    assert!(
        flags.len() >= 20,
        "too few flags found in CONFIG.md: {flags:?}"
    );
    for flag in &flags {
        assert!(
            out.stdout.contains(flag.as_str()),
            "--help does not mention {flag}:\n{}",
            out.stdout
        );
    }
    for extra in ["--help", "--version"] {
        assert!(out.stdout.contains(extra), "{}", out.stdout);
    }
    // Help goes to stdout, nothing else happens.
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn every_documented_operator_flag_is_in_a_subcommand_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_help = String::new();
    for cmd in [
        &["keygen"][..],
        &["cap-key", "new"],
        &["token", "mint"],
        &["token", "inspect"],
        &["token", "attenuate"],
        &["config", "check"],
        &["peers"],
        &["publish"],
        &["tail"],
        &["completions"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run_to_exit(dir.path(), &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        all_help.push_str(&out.stdout);
    }
    let flags = documented_operator_flags();
    assert!(
        flags.len() >= 10,
        "too few operator flags in CONFIG.md: {flags:?}"
    );
    for flag in &flags {
        assert!(
            all_help.contains(flag.as_str()),
            "no subcommand --help mentions {flag}"
        );
    }
}

#[test]
fn version_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(dir.path(), &["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        out.stdout
    );
}

#[test]
fn config_file_with_a_bad_value_exits_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[limits]\nmax_sessions = 0\n").unwrap();
    let out = run_to_exit(dir.path(), &["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("max_sessions"), "{}", out.stderr);
    assert!(out.stderr.contains("bad.toml"), "{}", out.stderr);

    std::fs::write(&path, "[node]\nbind = \"not an address\"\n").unwrap();
    let out = run_to_exit(dir.path(), &["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("bind"), "{}", out.stderr);

    std::fs::write(&path, "[limits]\nno_such_key = 1\n").unwrap();
    let out = run_to_exit(dir.path(), &["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("no_such_key"), "{}", out.stderr);
}

#[test]
fn the_default_config_file_is_read_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Overlay.toml"), "[gossip]\nalpha = 100\n").unwrap();
    let out = run_to_exit(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("alpha"), "{}", out.stderr);
}

#[test]
fn bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(dir.path(), &["--max-conns", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("max_conns"), "{}", out.stderr);
    assert!(out.stderr.contains("--max-conns"), "{}", out.stderr);

    let out = run_to_exit(dir.path(), &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Dev mode refuses to listen beyond loopback.
    let out = run_to_exit(dir.path(), &["--bind", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("bind"), "{}", out.stderr);
}
