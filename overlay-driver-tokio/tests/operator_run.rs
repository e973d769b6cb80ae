//! The operator subcommands through `svc_overlay::operator::run`, in process: the files they
//! create (modes, contents, no overwriting), the tokens they accept and refuse, and the exit
//! code of each failure. The e2e crate runs the same commands as a process; these tests keep
//! them inside the driver's own test suite (and its coverage figure).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod runtime_common;

use clap::Parser;
use overlay_proto::MacKey;
use runtime_common::token_with;
use svc_overlay::config::Cli;
use svc_overlay::operator::{run, OperatorError, CERT_FILE, KEY_FILE};
use svc_overlay::tls::Identity;

fn op(args: &[&str]) -> Result<(), OperatorError> {
    let mut argv = vec!["svc-overlay"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    run(&cli, &|_| None)
}

fn exit_code(args: &[&str]) -> u8 {
    match op(args) {
        Ok(()) => 0,
        Err(e) => e.exit_code(),
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A cap key written by `cap-key new`, named `dev:overlay:FILE`.
fn cap_key(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("cap.key");
    op(&["cap-key", "new", "--out", s(&file)]).unwrap();
    format!("dev:overlay:{}", s(&file))
}

#[test]
fn keygen_writes_a_loadable_identity_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("id");
    op(&["keygen", "--out", s(&out)]).unwrap();
    let (cert, key) = (out.join(CERT_FILE), out.join(KEY_FILE));
    let identity = Identity::from_pem_files(&cert, &key).expect("the daemon loads it");
    assert!(identity.peer_id().to_string().starts_with("peer:"));
    #[cfg(unix)]
    assert_eq!((mode(&key), mode(&cert)), (0o600, 0o644));
    let before = std::fs::read(&key).unwrap();
    let err = op(&["keygen", "--out", s(&out)]).unwrap_err();
    assert!(matches!(err, OperatorError::Exists(_)), "{err}");
    assert_eq!(err.exit_code(), 2);
    assert_eq!(std::fs::read(&key).unwrap(), before, "the key is untouched");
}

#[test]
fn cap_key_new_writes_64_hex_digits_readable_only_by_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    op(&["cap-key", "new", "--out", s(&a)]).unwrap();
    op(&["cap-key", "new", "--out", s(&b)]).unwrap();
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert!(text[..64]
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(
        text,
        std::fs::read_to_string(&b).unwrap(),
        "keys are random"
    );
    #[cfg(unix)]
    assert_eq!(mode(&a), 0o600);
    assert_eq!(exit_code(&["cap-key", "new", "--out", s(&a)]), 2);
    let missing_dir = dir.path().join("no/such/dir/k.key");
    let err = op(&["cap-key", "new", "--out", s(&missing_dir)]).unwrap_err();
    assert!(matches!(err, OperatorError::Io { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
}

#[test]
fn token_mint_accepts_caveats_and_refuses_bad_keys_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let key = cap_key(dir.path());
    let peer = format!("peer:{}", "ab".repeat(32));
    op(&["token", "mint", "--cap-key", &key]).unwrap();
    op(&[
        "token",
        "mint",
        "--cap-key",
        &key,
        "--ttl",
        "15m",
        "--nbf",
        "1",
        "--method",
        "GET",
        "--path-prefix",
        "/v1/",
        "--max-bytes",
        "4096",
        "--rate",
        "10:20",
        "--peer",
        &peer,
        "--control",
    ])
    .unwrap();
    for bad in [
        vec!["--cap-key", "no-colons"],
        vec!["--cap-key", "dev::file"],
        vec!["--cap-key", "dev:overlay:/no/such/key/file"],
    ] {
        let mut args = vec!["token", "mint"];
        args.extend(bad.iter().copied());
        assert_eq!(exit_code(&args), 2, "{bad:?}");
    }
    for (flag, value) in [
        ("--ttl", "soon"),
        ("--rate", "10"),
        ("--rate", "x:y"),
        ("--peer", "peer:not-hex"),
    ] {
        assert_eq!(
            exit_code(&["token", "mint", "--cap-key", &key, flag, value]),
            2,
            "{flag} {value}"
        );
    }
}

#[test]
fn token_inspect_and_attenuate_read_tokens_and_refuse_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let key = cap_key(dir.path());
    let file = key.trim_start_matches("dev:overlay:");
    let secret = MacKey::from_hex(std::fs::read_to_string(file).unwrap().trim()).unwrap();
    let token = token_with(&secret, Vec::new());
    op(&["token", "inspect", &token]).unwrap();
    op(&["token", "inspect", &token, "--cap-key", &key]).unwrap();
    op(&[
        "token",
        "attenuate",
        &token,
        "--cap-key",
        &key,
        "--ttl",
        "1h",
    ])
    .unwrap();
    // Another key: inspect still decodes the token (and reports the MAC as not matching),
    // attenuate refuses it.
    let other = cap_key(&dir.path().join("other"));
    op(&["token", "inspect", &token, "--cap-key", &other]).unwrap();
    let err = op(&[
        "token",
        "attenuate",
        &token,
        "--cap-key",
        &other,
        "--ttl",
        "1h",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("mac"), "{err}");
    assert_eq!(err.exit_code(), 2);
    for garbage in ["", "not a token", "!!!!"] {
        assert_eq!(exit_code(&["token", "inspect", garbage]), 2, "{garbage:?}");
        assert_eq!(
            exit_code(&["token", "attenuate", garbage, "--cap-key", &key]),
            2,
            "{garbage:?}"
        );
    }
    let huge = "A".repeat(64 * 1024);
    assert_eq!(exit_code(&["token", "inspect", &huge]), 2);
}

#[test]
fn config_check_resolves_a_file_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[membership]\nactive_target = 4\n").unwrap();
    op(&["config", "check", s(&good)]).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[membership]\npassive_capacity = 0\n").unwrap();
    let err = op(&["config", "check", s(&bad)]).unwrap_err();
    assert!(matches!(err, OperatorError::Config(_)), "{err}");
    assert!(err.to_string().contains("passive_capacity"), "{err}");
    assert_eq!(err.exit_code(), 2);
    let missing = dir.path().join("missing.toml");
    assert_eq!(exit_code(&["config", "check", s(&missing)]), 2);
}

#[test]
fn control_commands_fail_cleanly_without_a_node() {
    // Nothing listens on port 1 of loopback: the client reports it, exit 1.
    let err = op(&["peers", "--node", "http://127.0.0.1:1"]).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    let err = op(&["publish", "hello", "--node", "http://127.0.0.1:1"]).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    // A node URL that is not one is a usage error.
    assert_eq!(exit_code(&["peers", "--node", "not a url"]), 2);
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let err = op(&[]).unwrap_err();
    assert!(matches!(err, OperatorError::Usage(_)));
    assert_eq!(err.exit_code(), 2);
}
