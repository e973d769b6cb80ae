//! Loader tests: defaults, precedence, env vars, the TOML file, validation errors, secret
//! files, dev mode and `--help`. No daemon process is started; the environment is injected.

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_proto::{KeyProvider, MacKey, NodeConfig};
use svc_overlay::config::{
    self, env, DaemonConfig, DaemonConfigError, FileConfig, LoadOutcome, Origin,
};
use svc_overlay::pq::PqMode;

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const TOKEN: &str = "dG9rZW4tZm9yLXRlc3Rz";

fn outcome(args: &[&str], vars: &[(&str, &str)]) -> Result<LoadOutcome, DaemonConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = env::from_map(&map);
    let argv = std::iter::once("svc-overlay")
        .chain(args.iter().copied())
        .map(OsString::from);
    config::load_with_default_config(argv, &lookup, Path::new("/nonexistent/Overlay.toml"))
}

fn run(args: &[&str], vars: &[(&str, &str)]) -> Result<DaemonConfig, DaemonConfigError> {
    match outcome(args, vars)? {
        LoadOutcome::Run(cfg) => Ok(cfg),
        other => panic!("expected Run, got {other:?}"),
    }
}

fn err(args: &[&str], vars: &[(&str, &str)]) -> DaemonConfigError {
    match outcome(args, vars) {
        Ok(o) => panic!("expected an error for {args:?} {vars:?}, got {o:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            e
        }
    }
}

/// Asserts the error names `setting`, shows `value` and every `needles` fragment.
fn assert_names(e: &DaemonConfigError, setting: &str, needles: &[&str]) {
    let text = e.to_string();
    assert_eq!(e.setting(), setting, "{text}");
    assert!(text.contains(setting), "`{text}` should name {setting}");
    for n in needles {
        assert!(text.contains(n), "`{text}` should contain `{n}`");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn chmod(_: &Path, _: u32) {}

fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = write(dir, name, text);
    chmod(&path, 0o600);
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// defaults

#[test]
fn defaults_with_no_args_and_empty_env() {
    let cfg = run(&[], &[]).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:9415".parse().unwrap());
    assert_eq!(cfg.metrics_addr, "127.0.0.1:0".parse().unwrap());
    assert_eq!(cfg.max_conns, 1024);
    assert!(cfg.peers.is_empty());
    assert_eq!(cfg.pq, PqMode::Hybrid);
    assert_eq!(cfg.trace_out, None);
    assert_eq!(cfg.log_level, config::defaults::LOG_LEVEL);
    assert!(cfg.amnesia);
    assert_eq!(cfg.idle, Duration::from_millis(30_000));
    assert_eq!(cfg.read, Duration::from_millis(60_000));
    assert_eq!(cfg.write, Duration::from_millis(15_000));
    assert_eq!(cfg.drain, Duration::from_millis(5_000));
    assert_eq!(cfg.ca, None);
    assert_eq!(cfg.cert_key, None);
    assert!(cfg.dev_mode);
    assert_eq!(cfg.node.idle_timeout, Duration::from_millis(30_000));
    assert_eq!(cfg.node.handshake_timeout, Duration::from_millis(5_000));
    assert_eq!(cfg.node.auth.tenant, "overlay");
    assert!(cfg.node.auth.amnesia);
    assert!(cfg.node.auth.require_token);
    assert_eq!(cfg.node.auth.own_token, None);
    assert_eq!(cfg.node.auth.keys.len(), 1);
    assert_eq!(
        cfg.node.auth.keys.key_for("dev", "overlay"),
        Some(&MacKey::DEV)
    );
    // Core settings without a daemon-level default keep the core's.
    let core = NodeConfig::default();
    assert_eq!((cfg.node.alpha, cfg.node.beta), (core.alpha, core.beta));
    assert_eq!(cfg.node.max_sessions, core.max_sessions);
    assert_eq!(cfg.node.degrade_ratio, core.degrade_ratio);
    assert_eq!(cfg, DaemonConfig::default());
}

#[test]
fn default_config_file_is_read_only_if_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("Overlay.toml");
    let argv = || [OsString::from("svc-overlay")];
    let none = |_: &str| None;
    let out = config::load_with_default_config(argv(), &none, &default).unwrap();
    assert_eq!(out, LoadOutcome::Run(DaemonConfig::default()));

    fs::write(&default, "[node]\nmax_conns = 7\n").unwrap();
    match config::load_with_default_config(argv(), &none, &default).unwrap() {
        LoadOutcome::Run(cfg) => assert_eq!(cfg.max_conns, 7),
        other => panic!("{other:?}"),
    }

    // An explicit --config that does not exist is an error naming the file.
    let e = err(&["--config", "/nonexistent/dir/x.toml"], &[]);
    assert_names(&e, "config", &["/nonexistent/dir/x.toml"]);
}

// ---------------------------------------------------------------------------------------------
// precedence

#[test]
fn precedence_flag_over_env_over_file_over_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "o.toml",
        r#"
[node]
bind = "127.0.0.1:3000"
metrics_addr = "127.0.0.1:3001"
max_conns = 30
log_level = "debug"
amnesia = false

[limits]
idle_ms = 30001
read_ms = 30002
write_ms = 30003
handshake_ms = 30004

[gossip]
alpha = 5
"#,
    );
    let f = s(&file);

    // file > default
    let cfg = run(&["--config", f], &[]).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:3000".parse().unwrap());
    assert_eq!(cfg.metrics_addr, "127.0.0.1:3001".parse().unwrap());
    assert_eq!(cfg.max_conns, 30);
    assert_eq!(cfg.log_level, "debug");
    assert!(!cfg.amnesia && !cfg.node.auth.amnesia);
    assert_eq!(cfg.idle, Duration::from_millis(30_001));
    assert_eq!(cfg.node.idle_timeout, Duration::from_millis(30_001));
    assert_eq!(cfg.read, Duration::from_millis(30_002));
    assert_eq!(cfg.write, Duration::from_millis(30_003));
    assert_eq!(cfg.node.handshake_timeout, Duration::from_millis(30_004));
    assert_eq!(cfg.node.alpha, 5);

    // env > file
    let vars = [
        ("OVERLAY_BIND", "127.0.0.1:4000"),
        ("METRICS_ADDR", "127.0.0.1:4001"),
        ("OVERLAY_MAX_CONNS", "40"),
        ("LOG_LEVEL", "trace"),
        ("AMNESIA", "true"),
        ("OVERLAY_IDLE_MS", "40001"),
        ("OVERLAY_READ_MS", "40002"),
        ("OVERLAY_WRITE_MS", "40003"),
    ];
    let cfg = run(&["--config", f], &vars).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:4000".parse().unwrap());
    assert_eq!(cfg.metrics_addr, "127.0.0.1:4001".parse().unwrap());
    assert_eq!(cfg.max_conns, 40);
    assert_eq!(cfg.log_level, "trace");
    assert!(cfg.amnesia);
    assert_eq!(cfg.idle, Duration::from_millis(40_001));
    assert_eq!(cfg.read, Duration::from_millis(40_002));
    assert_eq!(cfg.write, Duration::from_millis(40_003));

    // flag > env
    let cfg = run(
        &[
            "--config",
            f,
            "--bind",
            "127.0.0.1:5000",
            "--metrics-addr",
            "127.0.0.1:5001",
            "--max-conns",
            "50",
            "--log-level",
            "warn",
            "--amnesia",
            "false",
            "--idle-ms",
            "50001",
            "--read-ms",
            "50002",
            "--write-ms",
            "50003",
            "--handshake-ms",
            "50004",
            "--alpha",
            "6",
        ],
        &vars,
    )
    .unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(cfg.metrics_addr, "127.0.0.1:5001".parse().unwrap());
    assert_eq!(cfg.max_conns, 50);
    assert_eq!(cfg.log_level, "warn");
    assert!(!cfg.amnesia);
    assert_eq!(cfg.idle, Duration::from_millis(50_001));
    assert_eq!(cfg.read, Duration::from_millis(50_002));
    assert_eq!(cfg.write, Duration::from_millis(50_003));
    assert_eq!(cfg.node.handshake_timeout, Duration::from_millis(50_004));
    assert_eq!(cfg.node.alpha, 6);
}

#[test]
fn empty_env_value_counts_as_unset() {
    let cfg = run(&[], &[("OVERLAY_MAX_CONNS", ""), ("OVERLAY_BIND", "")]).unwrap();
    assert_eq!(cfg.max_conns, 1024);
    assert_eq!(cfg.bind, config::defaults::BIND);
}

#[test]
fn peer_flags_replace_file_peers() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "o.toml",
        "[node]\npeers = [\"a.example:1\", \"[::1]:2\"]\n",
    );
    let cfg = run(&["--config", s(&file)], &[]).unwrap();
    assert_eq!(cfg.peers, ["a.example:1", "[::1]:2"]);
    let cfg = run(
        &[
            "--config",
            s(&file),
            "--peer",
            "b:3",
            "--peer",
            "10.0.0.1:4",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(cfg.peers, ["b:3", "10.0.0.1:4"]);
    let e = err(&["--peer", "no-port"], &[]);
    assert_names(&e, "peers", &["no-port", "--peer", "host:port"]);
}

#[test]
fn topic_flags_replace_file_topics_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "o.toml",
        "[topics]\njoin = [\"chat\", \"default\", \"chat\", \"index.v1\"]\nmax_topics = 8\nmax_peer_topics = 16\n",
    );
    let cfg = run(&["--config", s(&file)], &[]).unwrap();
    assert_eq!(cfg.topics, ["chat", "index.v1"]);
    assert_eq!(cfg.node.max_topics, 8);
    assert_eq!(cfg.node.max_peer_topics, 16);
    let cfg = run(&["--config", s(&file), "--topic", "news"], &[]).unwrap();
    assert_eq!(cfg.topics, ["news"]);
    let e = err(&["--topic", "a/b"], &[]);
    assert_names(&e, "topics", &["a/b", "--topic", "A-Z"]);
    let many = write(dir.path(), "m.toml", "[topics]\nmax_topics = 2\n");
    let e = err(&["--config", s(&many), "--topic", "a", "--topic", "b"], &[]);
    assert_names(&e, "topics", &["2 topics", "max_topics"]);
}

// ---------------------------------------------------------------------------------------------
// environment

#[test]
fn every_env_var_is_read() {
    let one = |name: &str, value: &str| run(&[], &[(name, value)]).unwrap();
    assert_eq!(
        one("OVERLAY_BIND", "127.0.0.2:1").bind,
        "127.0.0.2:1".parse().unwrap()
    );
    assert_eq!(one("OVERLAY_MAX_CONNS", "9").max_conns, 9);
    assert_eq!(
        one("OVERLAY_IDLE_MS", "60000").idle,
        Duration::from_secs(60)
    );
    assert_eq!(one("OVERLAY_READ_MS", "1").read, Duration::from_millis(1));
    assert_eq!(one("OVERLAY_WRITE_MS", "2").write, Duration::from_millis(2));
    assert_eq!(
        one("METRICS_ADDR", "[::1]:9100").metrics_addr,
        "[::1]:9100".parse().unwrap()
    );
    assert_eq!(one("LOG_LEVEL", "debug").log_level, "debug");
    assert_eq!(
        one("OVERLAY_ADVERTISE", "10.0.0.5:9415").advertise,
        Some("10.0.0.5:9415".parse().unwrap())
    );
    assert!(!one("AMNESIA", "false").amnesia);
    assert!(!one("AMNESIA", "0").node.auth.amnesia);
    assert_eq!(
        one("OVERLAY_TOKEN", TOKEN).node.auth.own_token.as_deref(),
        Some(TOKEN)
    );
    // The constants are the documented names.
    assert_eq!(
        env::ALL,
        [
            "OVERLAY_BIND",
            "OVERLAY_ADVERTISE",
            "OVERLAY_MAX_CONNS",
            "OVERLAY_IDLE_MS",
            "OVERLAY_READ_MS",
            "OVERLAY_WRITE_MS",
            "METRICS_ADDR",
            "LOG_LEVEL",
            "LOG_FORMAT",
            "AMNESIA",
            "OVERLAY_TOKEN",
            "OVERLAY_CONTROL_ADDR",
            "OVERLAY_CONTROL_TRUST_LOOPBACK",
            "OVERLAY_CONTROL_PLAINTEXT_TOKENS",
        ]
    );
    let control = one("OVERLAY_CONTROL_ADDR", "127.0.0.1:9416").http;
    assert_eq!(
        control.control_addr,
        Some("127.0.0.1:9416".parse().unwrap())
    );
    assert!(
        !one("OVERLAY_CONTROL_TRUST_LOOPBACK", "false")
            .http
            .control_trust_loopback
    );
}

// ---------------------------------------------------------------------------------------------
// the file

fn full_file(dir: &Path) -> PathBuf {
    secret(dir, "cap.key", KEY_HEX);
    secret(dir, "cap2.key", &KEY_HEX.to_uppercase());
    secret(dir, "node.token", &format!("{TOKEN}\n"));
    write(dir, "node.crt", "cert");
    secret(dir, "node.pem", "key");
    write(dir, "ca.crt", "ca");
    write(
        dir,
        "full.toml",
        r#"
[node]
bind = "127.0.0.1:9500"
metrics_addr = "127.0.0.1:9501"
max_conns = 77
peers = ["p1.example:9415", "10.1.2.3:9415"]
trace_out = "trace.cbor"
log_level = "info,svc_overlay=debug"
amnesia = false
drain_ms = 1234

[tls]
pq = "hybrid-only"
cert = "node.crt"
key = "node.pem"
ca = "ca.crt"

[gossip]
alpha = 4
beta = 8
graft_timeout_ms = 90
graft_retry_ms = 130
lazy_flush_ms = 11
seen_capacity = 5000
seen_ttl_ms = 100000
store_capacity = 900
store_bytes = 1000000
store_ttl_ms = 20000
ihave_batch_max = 256
catch_up_ids = 64

[membership]
active_target = 7
passive_capacity = 99
shuffle_interval_ms = 6000
shuffle_len = 12
backoff_base_ms = 150
backoff_max_ms = 20000
max_concurrent_dials = 5

[limits]
max_sessions = 500
idle_ms = 25000
read_ms = 14000
write_ms = 13000
handshake_ms = 4000
connect_ms = 3000
keepalive_ms = 9000
liveness_ms = 12000
tick_ms = 50
credit_window_frames = 256
credit_window_bytes = 4194304
max_queue_frames = 1000
max_queue_bytes = 8388608
max_message_bytes = 65536
peer_rate_per_s = 1000
peer_rate_burst = 2000
degrade_ratio = 0.85
recover_ratio = 0.5

[auth]
tenant = "acme"
path = "/overlay/acme"
token_file = "node.token"
policy_digest_hex = "ABCDEF01"

[[auth.keys]]
kid = "k1"
tid = "acme"
key_file = "cap.key"

[[auth.keys]]
kid = "k2"
tid = "acme"
key_file = "cap2.key"
"#,
    )
}

#[test]
fn a_file_with_all_sections_parses_and_maps() {
    let dir = tempfile::tempdir().unwrap();
    let file = full_file(dir.path());
    let cfg = run(&["--config", s(&file), "--bind", "0.0.0.0:9500"], &[]).unwrap();
    let d = dir.path();
    assert_eq!(cfg.bind, "0.0.0.0:9500".parse().unwrap());
    assert_eq!(cfg.metrics_addr, "127.0.0.1:9501".parse().unwrap());
    assert_eq!(cfg.max_conns, 77);
    assert_eq!(cfg.peers, ["p1.example:9415", "10.1.2.3:9415"]);
    assert_eq!(cfg.trace_out, Some(d.join("trace.cbor")));
    assert_eq!(cfg.log_level, "info,svc_overlay=debug");
    assert!(!cfg.amnesia);
    assert_eq!(cfg.drain, Duration::from_millis(1234));
    assert_eq!(cfg.pq, PqMode::HybridOnly);
    assert_eq!(cfg.cert_key, Some((d.join("node.crt"), d.join("node.pem"))));
    assert_eq!(cfg.ca, Some(d.join("ca.crt")));
    assert!(!cfg.dev_mode);

    let n = &cfg.node;
    assert_eq!((n.alpha, n.beta), (4, 8));
    assert_eq!(n.graft_timeout, Duration::from_millis(90));
    assert_eq!(n.graft_retry, Duration::from_millis(130));
    assert_eq!(n.lazy_flush_interval, Duration::from_millis(11));
    assert_eq!(n.seen_capacity, 5000);
    assert_eq!(n.seen_ttl, Duration::from_millis(100_000));
    assert_eq!((n.store_capacity, n.store_bytes), (900, 1_000_000));
    assert_eq!(n.store_ttl, Duration::from_millis(20_000));
    assert_eq!((n.ihave_batch_max, n.catch_up_ids), (256, 64));
    assert_eq!((n.active_target, n.passive_capacity), (7, 99));
    assert_eq!(n.shuffle_interval, Duration::from_millis(6000));
    assert_eq!(n.shuffle_len, 12);
    assert_eq!(n.backoff_base, Duration::from_millis(150));
    assert_eq!(n.backoff_max, Duration::from_millis(20_000));
    assert_eq!(n.max_concurrent_dials, 5);
    assert_eq!(n.max_sessions, 500);
    assert_eq!(cfg.idle, Duration::from_millis(25_000));
    assert_eq!(n.idle_timeout, Duration::from_millis(25_000));
    assert_eq!(cfg.read, Duration::from_millis(14_000));
    assert_eq!(cfg.write, Duration::from_millis(13_000));
    assert_eq!(n.handshake_timeout, Duration::from_millis(4000));
    assert_eq!(n.connect_timeout, Duration::from_millis(3000));
    assert_eq!(n.keepalive_interval, Duration::from_millis(9000));
    assert_eq!(n.liveness_timeout, Duration::from_millis(12_000));
    assert_eq!(n.tick_interval, Duration::from_millis(50));
    assert_eq!(
        (n.credit_window_frames, n.credit_window_bytes),
        (256, 4_194_304)
    );
    assert_eq!((n.max_queue_frames, n.max_queue_bytes), (1000, 8_388_608));
    assert_eq!(n.max_message_bytes, 65_536);
    assert_eq!((n.peer_rate_per_s, n.peer_rate_burst), (1000, 2000));
    assert_eq!((n.degrade_ratio, n.recover_ratio), (0.85, 0.5));
    assert_eq!(n.auth.tenant, "acme");
    assert_eq!(n.auth.path, "/overlay/acme");
    assert_eq!(n.auth.own_token.as_deref(), Some(TOKEN));
    assert_eq!(n.auth.policy_digest_hex.as_deref(), Some("abcdef01"));
    assert!(!n.auth.amnesia);
    assert_eq!(n.auth.keys.len(), 2);
    let expected = MacKey::from_hex(KEY_HEX).unwrap();
    assert_eq!(n.auth.keys.key_for("k1", "acme"), Some(&expected));
    assert_eq!(n.auth.keys.key_for("k2", "acme"), Some(&expected));
    assert_eq!(n.auth.keys.key_for("dev", "acme"), None);
}

#[test]
fn unknown_file_keys_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[node]\nbindd = \"127.0.0.1:1\"\n", "bindd"),
        ("[gossip]\nalpah = 3\n", "alpah"),
        ("[nodes]\nbind = \"127.0.0.1:1\"\n", "nodes"),
        ("max_conns = 3\n", "max_conns"),
        (
            "[[auth.keys]]\nkid = \"a\"\ntid = \"b\"\nkey_file = \"c\"\nextra = 1\n",
            "extra",
        ),
    ] {
        let file = write(dir.path(), "bad.toml", text);
        let e = err(&["--config", s(&file)], &[]);
        assert!(matches!(e, DaemonConfigError::Parse { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(shown.contains(key), "`{shown}` should name `{key}`");
        assert!(shown.contains("bad.toml"), "{shown}");
    }
    // Wrong types and malformed TOML are parse errors too.
    let file = write(dir.path(), "bad.toml", "[node]\nmax_conns = \"many\"\n");
    let e = err(&["--config", s(&file)], &[]);
    assert!(e.to_string().contains("max_conns"), "{e}");
    let file = write(dir.path(), "bad.toml", "[node\n");
    assert!(matches!(
        err(&["--config", s(&file)], &[]),
        DaemonConfigError::Parse { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// bad values

#[test]
fn bad_values_name_setting_value_origin_and_range() {
    let e = err(&["--max-conns", "0"], &[]);
    assert_names(&e, "max_conns", &["`0`", "--max-conns", "1..=1000000"]);
    let e = err(&["--max-conns", "lots"], &[]);
    assert_names(&e, "max_conns", &["`lots`", "1..=1000000"]);
    let e = err(&[], &[("OVERLAY_MAX_CONNS", "1000001")]);
    assert_names(&e, "max_conns", &["OVERLAY_MAX_CONNS", "1..=1000000"]);

    let e = err(&[], &[("OVERLAY_IDLE_MS", "abc")]);
    assert_names(&e, "idle_ms", &["`abc`", "OVERLAY_IDLE_MS", "1..=86400000"]);
    let e = err(&[], &[("OVERLAY_READ_MS", "0")]);
    assert_names(&e, "read_ms", &["OVERLAY_READ_MS", "1..=86400000"]);
    let e = err(&[], &[("OVERLAY_WRITE_MS", "-5")]);
    assert_names(&e, "write_ms", &["`-5`", "OVERLAY_WRITE_MS"]);
    let e = err(&["--drain-ms", "86400001"], &[]);
    assert_names(&e, "drain_ms", &["--drain-ms", "1..=86400000"]);
    let e = err(&["--handshake-ms", "1.5"], &[]);
    assert_names(&e, "handshake_ms", &["`1.5`"]);

    let e = err(&["--alpha", "0"], &[]);
    assert_names(&e, "alpha", &["--alpha", "1..=64"]);
    let e = err(&["--alpha", "65"], &[]);
    assert_names(&e, "alpha", &["1..=64"]);
    let e = err(&["--beta", "257"], &[]);
    assert_names(&e, "beta", &["--beta", "0..=256"]);

    let e = err(&["--pq", "quantum"], &[]);
    assert_names(
        &e,
        "pq",
        &["`quantum`", "--pq", "hybrid | hybrid-only | classic"],
    );
    let e = err(&["--bind", "localhost"], &[]);
    assert_names(&e, "bind", &["`localhost`", "--bind"]);
    let e = err(&[], &[("METRICS_ADDR", "127.0.0.1")]);
    assert_names(&e, "metrics_addr", &["METRICS_ADDR"]);
    let e = err(&[], &[("AMNESIA", "maybe")]);
    assert_names(&e, "amnesia", &["`maybe`", "AMNESIA", "true | false"]);
    let e = err(&["--log-level", "svc_overlay=loud"], &[]);
    assert_names(&e, "log_level", &["--log-level"]);
    let e = err(&["--tenant", "a b"], &[]);
    assert_names(&e, "tenant", &["--tenant"]);
}

#[test]
fn bad_file_values_name_the_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "[limits]\ndegrade_ratio = 1.5\n",
            "degrade_ratio",
            "0 < value <= 1",
        ),
        (
            "[limits]\nrecover_ratio = 1\n",
            "recover_ratio",
            "0 < value < 1",
        ),
        (
            "[limits]\nrecover_ratio = 0.0\n",
            "recover_ratio",
            "0 < value < 1",
        ),
        ("[gossip]\nalpha = 0\n", "alpha", "1..=64"),
        (
            "[gossip]\nihave_batch_max = 9000\n",
            "ihave_batch_max",
            "1..=8192",
        ),
        ("[gossip]\nseen_capacity = 3\n", "seen_capacity", "16..="),
        (
            "[membership]\nshuffle_interval_ms = 0\n",
            "shuffle_interval_ms",
            "1..=86400000",
        ),
        (
            "[membership]\npassive_capacity = 0\n",
            "passive_capacity",
            "1..=65536",
        ),
        (
            "[limits]\ncredit_window_bytes = 1000\n",
            "credit_window_bytes",
            "1048576..=",
        ),
        (
            "[limits]\nmax_message_bytes = 2000000\n",
            "max_message_bytes",
            "1..=1048300",
        ),
        (
            "[limits]\nkeepalive_ms = 90000000\n",
            "keepalive_ms",
            "1..=86400000",
        ),
        ("[node]\nmax_conns = 0\n", "max_conns", "1..=1000000"),
        (
            "[tls]\npq = \"none\"\n",
            "pq",
            "hybrid | hybrid-only | classic",
        ),
        ("[auth]\npath = \"overlay\"\n", "path", "starting with `/`"),
        (
            "[auth]\npolicy_digest_hex = \"xyz\"\n",
            "policy_digest_hex",
            "hex digits",
        ),
    ];
    for (text, setting, range) in cases {
        let file = write(dir.path(), "bad.toml", text);
        let e = err(&["--config", s(&file)], &[]);
        assert_names(&e, setting, &[range, "bad.toml"]);
        match &e {
            DaemonConfigError::Invalid {
                origin: Origin::File { key, .. },
                ..
            } => {
                assert!(key.ends_with(setting), "{key}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn cross_setting_rules_name_both_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "x.toml",
        "[limits]\ndegrade_ratio = 0.5\nrecover_ratio = 0.6\n",
    );
    let e = err(&["--config", s(&file)], &[]);
    assert!(matches!(e, DaemonConfigError::Conflict { .. }), "{e:?}");
    assert_names(&e, "recover_ratio", &["0.6", "degrade_ratio (0.5)"]);

    let e = err(&["--idle-ms", "1000"], &[]);
    assert_names(&e, "idle_ms", &["1000", "liveness_ms (1500)"]);

    let file = write(
        dir.path(),
        "x.toml",
        "[limits]
keepalive_ms = 1500
",
    );
    let e = err(&["--config", s(&file)], &[]);
    assert_names(&e, "liveness_ms", &["1500", "keepalive_ms (1500)"]);

    let file = write(
        dir.path(),
        "x.toml",
        "[membership]\nbackoff_base_ms = 500\nbackoff_max_ms = 100\n",
    );
    let e = err(&["--config", s(&file)], &[]);
    assert_names(&e, "backoff_max_ms", &["100", "backoff_base_ms (500)"]);

    let file = write(
        dir.path(),
        "x.toml",
        "[membership]\nactive_target = 20\n[limits]\nmax_sessions = 10\n",
    );
    let e = err(&["--config", s(&file)], &[]);
    assert_names(&e, "active_target", &["20", "max_sessions (10)"]);

    // A ratio given as an integer is accepted; a string is a parse error naming the key.
    let file = write(dir.path(), "x.toml", "[limits]\ndegrade_ratio = 1\n");
    assert_eq!(
        run(&["--config", s(&file)], &[])
            .unwrap()
            .node
            .degrade_ratio,
        1.0
    );
    // Scoring thresholds keep their order; weights are penalties (<= 0).
    let file = write(
        dir.path(),
        "x.toml",
        "[scoring]\ngossip_threshold = -10\nprune_threshold = -5\n",
    );
    let e = err(&["--config", s(&file)], &[]);
    assert_names(&e, "ban_threshold", &["-50", "prune_threshold (-5)"]);
    let file = write(dir.path(), "x.toml", "[scoring]\ngraft_flood_weight = 2\n");
    let e = err(&["--config", s(&file)], &[]);
    assert_names(
        &e,
        "graft_flood_weight",
        &["2", "scoring.graft_flood_weight"],
    );
    let file = write(
        dir.path(),
        "x.toml",
        "[limits]\nmax_preauth = 4\nmax_preauth_per_ip = 5\n",
    );
    let e = err(&["--config", s(&file)], &[]);
    assert_names(&e, "max_preauth_per_ip", &["5", "max_preauth (4)"]);
    let file = write(
        dir.path(),
        "x.toml",
        "[scoring]\nenabled = false\nban_threshold = -80.5\nretain_ms = 1000\n[limits]\nstall_ms = 250\n",
    );
    let node = run(&["--config", s(&file)], &[]).unwrap().node;
    assert!(!node.scoring.enabled);
    assert_eq!(node.scoring.ban_threshold, -80.5);
    assert_eq!(node.scoring.retain, Duration::from_secs(1));
    assert_eq!(node.stall_timeout, Duration::from_millis(250));

    let file = write(dir.path(), "x.toml", "[limits]\ndegrade_ratio = \"high\"\n");
    let e = err(&["--config", s(&file)], &[]);
    assert!(
        e.to_string().contains("degrade_ratio") && e.to_string().contains("a number"),
        "{e}"
    );
}

#[test]
fn core_validation_errors_name_the_file_key() {
    let e = DaemonConfigError::from(overlay_proto::ConfigError {
        setting: "idle_timeout",
        accepted: "> keepalive_interval",
    });
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("limits.idle_ms"), "{e}");
}

#[test]
fn clap_errors_exit_2_with_clap_message_and_help_version_exit_0() {
    let e = err(&["--no-such-flag"], &[]);
    assert!(matches!(e, DaemonConfigError::Cli(_)));
    assert!(e.to_string().contains("--no-such-flag"), "{e}");
    let e = err(&["--bind"], &[]);
    assert!(e.to_string().contains("--bind"), "{e}");

    match outcome(&["--version"], &[]).unwrap() {
        LoadOutcome::Version(v) => assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        outcome(&["-h"], &[]).unwrap(),
        LoadOutcome::Help(_)
    ));
}

#[test]
fn help_mentions_every_flag_and_env_var() {
    let help = match outcome(&["--help"], &[]).unwrap() {
        LoadOutcome::Help(h) => h,
        other => panic!("{other:?}"),
    };
    for flag in [
        "--config",
        "--bind",
        "--max-conns",
        "--peer",
        "--metrics-addr",
        "--pq",
        "--alpha",
        "--beta",
        "--trace-out",
        "--log-level",
        "--ca",
        "--cert",
        "--key",
        "--token-file",
        "--cap-key",
        "--amnesia",
        "--idle-ms",
        "--read-ms",
        "--write-ms",
        "--handshake-ms",
        "--drain-ms",
        "--tenant",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    for var in env::ALL {
        assert!(help.contains(var), "help lacks {var}:\n{help}");
    }
    // Defaults shown in the help match the real ones.
    for default in [
        config::defaults::BIND.to_string(),
        config::defaults::METRICS_ADDR.to_string(),
        config::defaults::MAX_CONNS.to_string(),
        config::defaults::LOG_LEVEL.to_string(),
        config::defaults::TENANT.to_string(),
        config::defaults::IDLE.as_millis().to_string(),
        config::defaults::READ.as_millis().to_string(),
        config::defaults::HANDSHAKE.as_millis().to_string(),
        NodeConfig::default().alpha.to_string(),
        NodeConfig::default().beta.to_string(),
    ] {
        assert!(
            help.contains(&format!("[default: {default}]")),
            "help lacks {default}"
        );
    }
    assert_eq!(help, config::help_text());
}

// ---------------------------------------------------------------------------------------------
// secrets

#[cfg(unix)]
#[test]
fn key_file_mode_0644_is_refused_and_0600_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "cap.key", KEY_HEX);
    let arg = format!("k1:overlay:{}", s(&key));
    let vars = [("OVERLAY_TOKEN", TOKEN)];

    chmod(&key, 0o644);
    let e = err(&["--cap-key", &arg], &vars);
    assert!(
        matches!(e, DaemonConfigError::Permissions { mode: 0o644, .. }),
        "{e:?}"
    );
    assert_names(&e, "cap_key", &["cap.key", "0644", "0600"]);

    chmod(&key, 0o640);
    assert!(matches!(
        err(&["--cap-key", &arg], &vars),
        DaemonConfigError::Permissions { .. }
    ));

    for ok in [0o600, 0o400] {
        chmod(&key, ok);
        let cfg = run(&["--cap-key", &arg], &vars).unwrap();
        assert!(!cfg.dev_mode);
        assert_eq!(cfg.node.auth.keys.len(), 1);
        assert_eq!(
            cfg.node.auth.keys.key_for("k1", "overlay"),
            MacKey::from_hex(KEY_HEX).as_ref()
        );
        assert_eq!(cfg.node.auth.keys.key_for("dev", "overlay"), None);
    }
}

#[cfg(unix)]
#[test]
fn tls_key_and_token_files_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "node.crt", "cert");
    let key = write(dir.path(), "node.pem", "key");
    chmod(&key, 0o644);
    let e = err(&["--cert", s(&cert), "--key", s(&key)], &[]);
    assert!(
        matches!(e, DaemonConfigError::Permissions { setting: "key", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("node.pem"), "{e}");
    chmod(&key, 0o600);
    let cfg = run(&["--cert", s(&cert), "--key", s(&key)], &[]).unwrap();
    assert_eq!(cfg.cert_key, Some((cert.clone(), key.clone())));

    let e = err(&["--cert", s(&cert)], &[]);
    assert_names(&e, "key", &["--key"]);
    let e = err(&["--key", s(&key)], &[]);
    assert_names(&e, "cert", &["--cert"]);
    let e = err(&["--ca", "/nonexistent/ca.pem"], &[]);
    assert_names(&e, "ca", &["/nonexistent/ca.pem"]);

    let token = write(dir.path(), "node.token", TOKEN);
    chmod(&token, 0o604);
    let e = err(&["--token-file", s(&token)], &[]);
    assert!(matches!(
        e,
        DaemonConfigError::Permissions {
            setting: "token_file",
            ..
        }
    ));
    chmod(&token, 0o600);
    let cfg = run(&["--token-file", s(&token)], &[]).unwrap();
    assert_eq!(cfg.node.auth.own_token.as_deref(), Some(TOKEN));
}

#[test]
fn key_file_content_is_checked_but_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("OVERLAY_TOKEN", TOKEN)];
    for bad in ["zz".repeat(32), "abcd".to_string(), format!("{KEY_HEX}00")] {
        let key = secret(dir.path(), "bad.key", &bad);
        let e = err(&["--cap-key", &format!("k:t:{}", s(&key))], &vars);
        assert!(matches!(e, DaemonConfigError::Secret { .. }), "{e:?}");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        assert!(!e.to_string().contains(&bad), "{e}");
    }
    let key = secret(dir.path(), "ok.key", &format!("  {KEY_HEX}\n"));
    for bad in ["k:t", "k", ":t:file", "k::file", "k:t:"] {
        let e = err(&["--cap-key", bad], &vars);
        assert_names(&e, "cap_key", &["--cap-key"]);
    }
    // Duplicate (kid, tid).
    let arg = format!("k:t:{}", s(&key));
    let e = err(&["--cap-key", &arg, "--cap-key", &arg], &vars);
    assert_names(&e, "cap_key", &["at most once"]);
    // A missing key file names the file.
    let e = err(&["--cap-key", "k:t:/nonexistent/k.key"], &vars);
    assert_names(&e, "cap_key", &["/nonexistent/k.key"]);
}

#[test]
fn tokens_are_required_with_real_keys_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "cap.key", KEY_HEX);
    let arg = format!("k1:overlay:{}", s(&key));
    let e = err(&["--cap-key", &arg], &[]);
    assert_names(&e, "token_file", &["OVERLAY_TOKEN"]);

    // OVERLAY_TOKEN with whitespace inside is rejected without echoing it.
    let e = err(&[], &[("OVERLAY_TOKEN", "secret part")]);
    assert!(!e.to_string().contains("secret"), "{e}");
    assert!(e.to_string().contains("OVERLAY_TOKEN"), "{e}");

    // --token-file wins over OVERLAY_TOKEN.
    let file = secret(dir.path(), "t", "from-file\n");
    let cfg = run(
        &["--cap-key", &arg, "--token-file", s(&file)],
        &[("OVERLAY_TOKEN", TOKEN)],
    )
    .unwrap();
    assert_eq!(cfg.node.auth.own_token.as_deref(), Some("from-file"));
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("from-file"), "{shown}");
    assert!(!shown.contains(KEY_HEX), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// dev mode

#[test]
fn dev_mode_refuses_non_loopback_addresses() {
    let e = err(&["--bind", "0.0.0.0:9415"], &[]);
    assert!(
        matches!(
            e,
            DaemonConfigError::DevModeExposed {
                setting: "bind",
                ..
            }
        ),
        "{e:?}"
    );
    assert_names(&e, "bind", &["0.0.0.0:9415", "loopback", "--cap-key"]);
    let e = err(&[], &[("METRICS_ADDR", "0.0.0.0:9100")]);
    assert_names(&e, "metrics_addr", &["0.0.0.0:9100", "loopback"]);
    let e = err(&["--bind", "[::]:9415"], &[]);
    assert_eq!(e.setting(), "bind");

    // Loopback in v4 and v6 is fine; the ring holds the dev key under the tenant.
    let cfg = run(&["--bind", "[::1]:9415", "--tenant", "t1"], &[]).unwrap();
    assert!(cfg.dev_mode);
    assert_eq!(cfg.node.auth.keys.key_for("dev", "t1"), Some(&MacKey::DEV));

    // Real keys lift the restriction.
    let dir = tempfile::tempdir().unwrap();
    let key = secret(dir.path(), "cap.key", KEY_HEX);
    let cfg = run(
        &[
            "--bind",
            "0.0.0.0:9415",
            "--cap-key",
            &format!("k1:overlay:{}", s(&key)),
        ],
        &[("OVERLAY_TOKEN", TOKEN), ("METRICS_ADDR", "0.0.0.0:9100")],
    )
    .unwrap();
    assert!(!cfg.dev_mode);
}

// ---------------------------------------------------------------------------------------------
// the example file and the reference

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_file_loads() {
    let example = crate_dir().join("Overlay.example.toml");
    let cfg = run(&["--config", s(&example)], &[]).unwrap();
    assert!(cfg.dev_mode);
    // The example spells out the defaults, so it resolves to the default configuration.
    assert_eq!(cfg, DaemonConfig::default());
}

/// Un-comments every `# key = value` / `# [section]` line of the example: every documented
/// but disabled key must still be a key of the schema, with a value of the right type.
#[test]
fn example_file_commented_keys_are_valid_schema() {
    let example = crate_dir().join("Overlay.example.toml");
    let text = fs::read_to_string(&example).unwrap();
    let mut enabled = String::new();
    let mut uncommented = 0;
    for line in text.lines() {
        let rest = line.strip_prefix("# ").unwrap_or("");
        let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        let is_table = rest.starts_with("[[auth.keys]]");
        if is_key || is_table {
            enabled.push_str(rest);
            uncommented += 1;
        } else {
            enabled.push_str(line);
        }
        enabled.push('\n');
    }
    assert!(uncommented > 0);
    let parsed = FileConfig::parse(&enabled, &example).unwrap();
    assert!(parsed.tls.cert.is_some() && parsed.tls.key.is_some());
    assert!(parsed.auth.keys.as_ref().is_some_and(|k| !k.is_empty()));
}

#[test]
fn reference_doc_mentions_every_flag_env_var_and_key() {
    let doc = fs::read_to_string(crate_dir().join("../docs/CONFIG.md")).unwrap();
    let help = config::help_text();
    for word in help.split_whitespace() {
        let flag = word.trim_matches(|c: char| c == ',' || c == '[' || c == ']');
        if flag.starts_with("--") && flag.len() > 2 && flag != "--help" && flag != "--version" {
            assert!(doc.contains(&format!("`{flag}")), "CONFIG.md lacks {flag}");
        }
    }
    for var in env::ALL {
        assert!(doc.contains(var), "CONFIG.md lacks {var}");
    }
    let example = fs::read_to_string(crate_dir().join("Overlay.example.toml")).unwrap();
    for line in example.lines() {
        let line = line.trim_start_matches("# ");
        if let Some((key, _)) = line.split_once(" = ") {
            if key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                assert!(
                    doc.contains(&format!("`{key}`")),
                    "CONFIG.md lacks key `{key}`"
                );
            }
        }
    }
}

#[test]
fn origin_auth_defaults_to_sign_and_takes_flag_and_file() {
    use overlay_proto::OriginAuth;
    // Sign by default, in dev mode too (the dev identity is Ed25519).
    let cfg = run(&[], &[]).unwrap();
    assert!(cfg.dev_mode);
    assert_eq!(cfg.node.origin_auth, OriginAuth::Sign);
    let cfg = run(&["--origin-auth", "none"], &[]).unwrap();
    assert_eq!(cfg.node.origin_auth, OriginAuth::None);

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "o.toml", "[gossip]\norigin_auth = \"none\"\n");
    let cfg = run(&["--config", s(&file)], &[]).unwrap();
    assert_eq!(cfg.node.origin_auth, OriginAuth::None);
    // The flag wins over the file.
    let cfg = run(&["--config", s(&file), "--origin-auth", "sign"], &[]).unwrap();
    assert_eq!(cfg.node.origin_auth, OriginAuth::Sign);

    let e = err(&["--origin-auth", "maybe"], &[]);
    assert_names(
        &e,
        "origin_auth",
        &["maybe", "--origin-auth", "sign | none"],
    );
    let bad = write(dir.path(), "b.toml", "[gossip]\norigin_auth = \"Sign\"\n");
    let e = err(&["--config", s(&bad)], &[]);
    assert_names(&e, "origin_auth", &["gossip.origin_auth", "sign | none"]);
}

// ---------------------------------------------------------------------------------------------
// operator kit: log format, trace-out under amnesia

#[test]
fn log_format_from_flag_env_and_file() {
    use svc_overlay::telemetry::LogFormat;
    assert_eq!(run(&[], &[]).unwrap().log_format, LogFormat::Text);
    assert_eq!(
        run(&["--log-format", "json"], &[]).unwrap().log_format,
        LogFormat::Json
    );
    assert_eq!(
        run(&[], &[("LOG_FORMAT", "JSON")]).unwrap().log_format,
        LogFormat::Json
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "o.toml", "[node]\nlog_format = \"json\"\n");
    assert_eq!(
        run(&["--config", s(&file)], &[]).unwrap().log_format,
        LogFormat::Json
    );
    assert_eq!(
        run(&["--config", s(&file), "--log-format", "text"], &[])
            .unwrap()
            .log_format,
        LogFormat::Text
    );
    let e = err(&["--log-format", "yaml"], &[]);
    assert_eq!(e.setting(), "log_format");
    assert!(e.to_string().contains("text | json"), "{e}");
}

#[test]
fn trace_out_needs_an_explicit_allowance_under_amnesia() {
    let e = err(&["--trace-out", "t.cbor"], &[]);
    assert_eq!(e.setting(), "trace_out");
    assert!(e.to_string().contains("--trace-out-despite-amnesia"), "{e}");
    let e = err(&["--trace-out", "t.cbor"], &[("AMNESIA", "true")]);
    assert_eq!(e.setting(), "trace_out");

    let cfg = run(
        &["--trace-out", "t.cbor", "--trace-out-despite-amnesia"],
        &[],
    )
    .unwrap();
    assert!(cfg.amnesia && cfg.trace_out_despite_amnesia);
    assert_eq!(cfg.trace_out, Some(PathBuf::from("t.cbor")));

    let cfg = run(&["--trace-out", "t.cbor", "--amnesia", "false"], &[]).unwrap();
    assert!(!cfg.amnesia && !cfg.trace_out_despite_amnesia);

    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "o.toml",
        "[node]\ntrace_out = \"t.cbor\"\ntrace_out_despite_amnesia = true\n",
    );
    let cfg = run(&["--config", s(&file)], &[]).unwrap();
    assert!(cfg.trace_out_despite_amnesia);
}
