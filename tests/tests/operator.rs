//! The operator subcommands, run as an operator would: `keygen`, `cap-key new`, `token mint |
//! inspect | attenuate`, `config check`, `peers | publish | tail`, `completions`; and a
//! production-mode mesh (keygen identities, one cap-key, `token mint --peer` tokens, a pinned
//! seed named by DNS) driven by the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use overlay_e2e::{
    daemon_binary, metric_sum, poll_until, run_to_exit, wait_exit, Daemon, DaemonOpts, Finished,
    LogBuf,
};
use overlay_proto::capability::{
    decode_token, peer_caveat, verify_token, Caveat, Decision, OverlayCaveats, RequestCtx,
    VerifierConfig,
};
use overlay_proto::{KeyRing, MacKey, PeerId};
use serde_json::Value;

fn run(dir: &Path, args: &[&str]) -> Finished {
    run_to_exit(dir, args)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    out.stdout.trim().to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A cap key file in `dir`, and its `KID:TID:FILE` argument.
fn cap_key(dir: &Path) -> (MacKey, String) {
    let file = dir.join("cap.key");
    ok(dir, &["cap-key", "new", "--out", file.to_str().unwrap()]);
    let key = MacKey::from_hex(&std::fs::read_to_string(&file).unwrap()).unwrap();
    (key, format!("k1:overlay:{}", file.display()))
}

fn ctx(method: &str, path: &str) -> RequestCtx {
    RequestCtx {
        now_unix_s: now(),
        method: method.into(),
        path: path.into(),
        tenant: "overlay".into(),
        amnesia: true,
        ..RequestCtx::default()
    }
}

#[test]
fn keygen_writes_a_loadable_identity_with_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("id");
    let peer = ok(dir.path(), &["keygen", "--out", out_dir.to_str().unwrap()]);
    assert!(peer.starts_with("peer:") && peer.len() == 5 + 64, "{peer}");
    peer.parse::<PeerId>().unwrap();
    assert_eq!(mode(&out_dir.join("key.pem")), 0o600);
    let cert = std::fs::read_to_string(out_dir.join("cert.pem")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    // The daemon's own loader reads it back to the same PeerId.
    let id = svc_overlay::tls::Identity::from_pem_files(
        &out_dir.join("cert.pem"),
        &out_dir.join("key.pem"),
    )
    .unwrap();
    assert_eq!(id.peer_id().to_string(), peer);
    // Never overwrites: a second run fails with a usage error and leaves the files alone.
    let again = run(dir.path(), &["keygen", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("cert.pem")).unwrap(),
        cert
    );
}

#[test]
fn cap_key_new_writes_64_hex_digits_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k");
    let out = ok(
        dir.path(),
        &["cap-key", "new", "--out", file.to_str().unwrap()],
    );
    assert!(out.is_empty(), "the key is not printed: {out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let hex = text.trim_end_matches('\n');
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(mode(&file), 0o600);
    let other = dir.path().join("k2");
    ok(
        dir.path(),
        &["cap-key", "new", "--out", other.to_str().unwrap()],
    );
    assert_ne!(
        std::fs::read_to_string(&other).unwrap(),
        text,
        "keys are random"
    );
    let again = run(
        dir.path(),
        &["cap-key", "new", "--out", file.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(2), "{again:?}");
}

#[test]
fn minted_tokens_verify_with_the_core_and_carry_their_caveats() {
    let dir = tempfile::tempdir().unwrap();
    let (key, arg) = cap_key(dir.path());
    let mut ring = KeyRing::new();
    ring.insert("k1", "overlay", key.clone());
    let cfg = VerifierConfig::default();
    let peer = PeerId([0x42; 32]).to_string();

    // A control token for GET /v1/… for one hour.
    let token = ok(
        dir.path(),
        &[
            "token",
            "mint",
            "--cap-key",
            &arg,
            "--ttl",
            "1h",
            "--method",
            "GET",
            "--path-prefix",
            "/v1/",
            "--control",
            "--peer",
            &peer,
            "--rate",
            "10:20",
            "--max-bytes",
            "4096",
        ],
    );
    let allowed = verify_token(token.as_bytes(), &ctx("GET", "/v1/peers"), &ring, &cfg).unwrap();
    assert!(matches!(allowed, Decision::Allow { .. }), "{allowed:?}");
    let denied = verify_token(token.as_bytes(), &ctx("POST", "/v1/peers"), &ring, &cfg).unwrap();
    assert!(matches!(denied, Decision::Deny { .. }), "{denied:?}");
    let denied = verify_token(token.as_bytes(), &ctx("GET", "/metrics"), &ring, &cfg).unwrap();
    assert!(matches!(denied, Decision::Deny { .. }), "{denied:?}");
    let cap = decode_token(token.as_bytes(), &cfg).unwrap();
    let overlay = OverlayCaveats::of(&cap).unwrap();
    assert!(overlay.control);
    assert_eq!(overlay.bound_peer, Some(PeerId([0x42; 32])));
    assert!(cap.caveats.contains(&Caveat::Rate {
        per_s: 10,
        burst: 20
    }));
    assert!(cap.caveats.contains(&Caveat::BytesLe(4096)));
    let exp = cap.caveats.iter().find_map(|c| match c {
        Caveat::Exp(e) => Some(*e),
        _ => None,
    });
    let exp = exp.expect("--ttl sets Exp");
    assert!(exp >= now() + 3590 && exp <= now() + 3600, "{exp}");

    // --exp / --nbf are taken as given; an expired token is refused by the core verifier.
    let expired = ok(
        dir.path(),
        &[
            "token",
            "mint",
            "--cap-key",
            &arg,
            "--exp",
            "1000",
            "--nbf",
            "10",
        ],
    );
    assert!(verify_token(expired.as_bytes(), &ctx("GET", "/"), &ring, &cfg).is_err());

    // A key the node does not have: the MAC does not verify.
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other_arg) = cap_key(other_dir.path());
    let foreign = ok(dir.path(), &["token", "mint", "--cap-key", &other_arg]);
    assert!(verify_token(foreign.as_bytes(), &ctx("GET", "/"), &ring, &cfg).is_err());
}

#[test]
fn token_inspect_prints_json_and_checks_the_mac_only_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, arg) = cap_key(dir.path());
    let peer = PeerId([7; 32]).to_string();
    let token = ok(
        dir.path(),
        &[
            "token",
            "mint",
            "--cap-key",
            &arg,
            "--exp",
            "2000000000",
            "--peer",
            &peer,
            "--method",
            "overlay",
        ],
    );
    let v: Value = serde_json::from_str(&ok(dir.path(), &["token", "inspect", &token])).unwrap();
    assert_eq!(v["tid"], "overlay");
    assert_eq!(v["kid"], "k1");
    assert_eq!(
        v["caveats"][0],
        serde_json::json!({"t": "Exp", "v": 2_000_000_000u64})
    );
    assert_eq!(v["caveats"][1]["t"], "Method");
    assert_eq!(v["overlay"]["bound_peer"], peer.as_str());
    assert_eq!(v["overlay"]["control"], false);
    assert_eq!(v["mac"], "not checked (no --cap-key)");
    let v: Value = serde_json::from_str(&ok(
        dir.path(),
        &["token", "inspect", &token, "--cap-key", &arg],
    ))
    .unwrap();
    assert_eq!(v["mac"], "valid");
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other) = cap_key(other_dir.path());
    let v: Value = serde_json::from_str(&ok(
        dir.path(),
        &["token", "inspect", &token, "--cap-key", &other],
    ))
    .unwrap();
    assert_eq!(v["mac"], "invalid");
    let bad = run(dir.path(), &["token", "inspect", "not*base64"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(bad.stderr.contains("does not decode"), "{}", bad.stderr);
}

#[test]
fn token_attenuate_narrows_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (key, arg) = cap_key(dir.path());
    let mut ring = KeyRing::new();
    ring.insert("k1", "overlay", key);
    let cfg = VerifierConfig::default();
    let token = ok(dir.path(), &["token", "mint", "--cap-key", &arg]);
    let peer = PeerId([9; 32]);
    let narrowed = ok(
        dir.path(),
        &[
            "token",
            "attenuate",
            &token,
            "--cap-key",
            &arg,
            "--peer",
            &peer.to_string(),
            "--method",
            "GET",
        ],
    );
    assert_ne!(narrowed, token);
    let cap = decode_token(narrowed.as_bytes(), &cfg).unwrap();
    assert_eq!(
        cap.caveats,
        vec![Caveat::Method(vec!["GET".into()]), peer_caveat(&peer)]
    );
    let ok_get = verify_token(narrowed.as_bytes(), &ctx("GET", "/v1/peers"), &ring, &cfg).unwrap();
    assert!(matches!(ok_get, Decision::Allow { .. }), "{ok_get:?}");
    let post = verify_token(narrowed.as_bytes(), &ctx("POST", "/v1/peers"), &ring, &cfg).unwrap();
    assert!(matches!(post, Decision::Deny { .. }), "{post:?}");
    // Nothing to add, or the wrong key: usage errors.
    let none = run(
        dir.path(),
        &["token", "attenuate", &token, "--cap-key", &arg],
    );
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other) = cap_key(other_dir.path());
    let wrong = run(
        dir.path(),
        &[
            "token",
            "attenuate",
            &token,
            "--cap-key",
            &other,
            "--ttl",
            "1m",
        ],
    );
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
}

#[test]
fn bad_mint_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (_, arg) = cap_key(dir.path());
    for args in [
        vec!["token", "mint", "--cap-key", "k1:overlay"],
        vec!["token", "mint", "--cap-key", "k1:overlay:/nonexistent/key"],
        vec!["token", "mint", "--cap-key", &arg, "--ttl", "soon"],
        vec![
            "token",
            "mint",
            "--cap-key",
            &arg,
            "--ttl",
            "1h",
            "--exp",
            "5",
        ],
        vec!["token", "mint", "--cap-key", &arg, "--rate", "5"],
        vec!["token", "mint", "--cap-key", &arg, "--peer", "peer:1234"],
        vec!["token", "mint"],
    ] {
        let out = run(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // A key file readable by others is refused.
    let loose = dir.path().join("loose.key");
    std::fs::write(&loose, "ab".repeat(32)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        dir.path(),
        &[
            "token",
            "mint",
            "--cap-key",
            &format!("k1:overlay:{}", loose.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn config_check_prints_the_effective_config_redacted_and_exits_2_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, arg) = cap_key(dir.path());
    let token = ok(dir.path(), &["token", "mint", "--cap-key", &arg]);
    let token_file = dir.path().join("node.token");
    std::fs::write(&token_file, &token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key_file = dir.path().join("cap.key");
    let toml = format!(
        "[node]\nbind = \"0.0.0.0:9415\"\nadvertise = \"10.1.2.3:9415\"\npeers = [\"seed.example:9415\"]\n\
         [auth]\ntoken_file = \"{}\"\n[[auth.keys]]\nkid = \"k1\"\ntid = \"overlay\"\nkey_file = \"{}\"\n",
        token_file.display(),
        key_file.display()
    );
    let file = dir.path().join("Overlay.toml");
    std::fs::write(&file, toml).unwrap();
    let out = ok(dir.path(), &["config", "check", file.to_str().unwrap()]);
    assert!(out.contains("configuration OK"), "{out}");
    assert!(out.contains("10.1.2.3:9415"), "{out}");
    assert!(out.contains("seed.example:9415"), "{out}");
    assert!(!out.contains(&token), "the token is redacted: {out}");
    let key_hex = std::fs::read_to_string(&key_file).unwrap();
    assert!(!out.contains(key_hex.trim()), "the key is redacted");
    // Flags before the subcommand take part, as for the daemon.
    let out = ok(
        dir.path(),
        &[
            "--advertise",
            "10.9.9.9:1",
            "config",
            "check",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("10.9.9.9:1"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[node]\nadvertise = \"0.0.0.0:9415\"\n").unwrap();
    let out = run(dir.path(), &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("advertise"), "{}", out.stderr);
    let out = run(
        dir.path(),
        &["config", "check", "/nonexistent/Overlay.toml"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // No file at all: the defaults (dev mode) are valid.
    let empty = tempfile::tempdir().unwrap();
    let out = ok(empty.path(), &["config", "check"]);
    assert!(out.contains("dev_mode: true"), "{out}");
}

#[test]
fn completions_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ok(dir.path(), &["completions", shell]);
        for word in ["keygen", "cap-key", "token", "publish", "advertise"] {
            assert!(out.contains(word), "{shell}: no {word}");
        }
    }
    let out = run(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn advertise_rejects_unspecified_addresses_from_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    for value in ["0.0.0.0:9415", "[::]:9415", "10.0.0.1:0", "host:1"] {
        let out = run(dir.path(), &["--advertise", value]);
        assert_eq!(out.status.code(), Some(2), "{value}: {out:?}");
        assert!(out.stderr.contains("advertise"), "{}", out.stderr);
    }
    let out = Command::new(daemon_binary())
        .current_dir(dir.path())
        .env("OVERLAY_ADVERTISE", "0.0.0.0:1")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OVERLAY_ADVERTISE"),
        "{out:?}"
    );
}

/// One production-mode node's files: identity, token bound to it.
struct NodeFiles {
    peer: String,
    cert: PathBuf,
    key: PathBuf,
    token: PathBuf,
}

fn node_files(dir: &Path, name: &str, cap_arg: &str) -> NodeFiles {
    let id_dir = dir.join(name);
    let peer = ok(dir, &["keygen", "--out", id_dir.to_str().unwrap()]);
    let token = ok(
        dir,
        &[
            "token",
            "mint",
            "--cap-key",
            cap_arg,
            "--peer",
            &peer,
            "--ttl",
            "1h",
        ],
    );
    let token_path = id_dir.join("token");
    std::fs::write(&token_path, token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    NodeFiles {
        peer,
        cert: id_dir.join("cert.pem"),
        key: id_dir.join("key.pem"),
        token: token_path,
    }
}

fn production_args(files: &NodeFiles, cap_arg: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        files.cert.display().to_string(),
        "--key".into(),
        files.key.display().to_string(),
        "--token-file".into(),
        files.token.display().to_string(),
        "--cap-key".into(),
        cap_arg.to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_mesh_from_cli_made_keys_with_a_pinned_seed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cap_arg) = cap_key(dir.path());
    let a_files = node_files(dir.path(), "a", &cap_arg);
    let b_files = node_files(dir.path(), "b", &cap_arg);
    let c_files = node_files(dir.path(), "c", &cap_arg);

    let a = Daemon::start(DaemonOpts::default().args(production_args(&a_files, &cap_arg))).await;
    assert_eq!(a.peer_id, a_files.peer);
    // B knows the seed only by name, pinned to A's identity.
    let seed = format!("{}@localhost:{}", a_files.peer, a.addr.port());
    let b = Daemon::start(
        DaemonOpts::default()
            .args(production_args(&b_files, &cap_arg))
            .args(["--peer", &seed]),
    )
    .await;
    poll_until(
        "B runs a session with A",
        Duration::from_secs(20),
        || async {
            b.running_peers()
                .await
                .iter()
                .any(|p| p["peer_id"] == a_files.peer.as_str())
                .then_some(())
        },
    )
    .await;

    // C pins a wrong identity for A's address: refused, counted, no session.
    let wrong = format!("{}@127.0.0.1:{}", b_files.peer, a.addr.port());
    let c = Daemon::start(
        DaemonOpts::default()
            .args(production_args(&c_files, &cap_arg))
            .args(["--peer", &wrong]),
    )
    .await;
    let refused = poll_until(
        "C counts a pinned-identity mismatch",
        Duration::from_secs(20),
        || async {
            let (_, text) = c.get("/metrics").await;
            metric_sum(
                &text,
                "overlay_handshake_failures_total",
                "reason=\"peer_id_mismatch\"",
            )
            .filter(|n| *n >= 1.0)
        },
    )
    .await;
    assert!(refused >= 1.0);
    assert!(
        c.running_peers().await.is_empty(),
        "C must not run a session with the wrong identity"
    );

    // The CLI client: peers on B lists A; publish on B reaches a `tail` on A.
    let node_b = format!("http://{}", b.addr);
    let node_a = format!("http://{}", a.addr);
    let peers = ok(dir.path(), &["peers", "--node", &node_b]);
    let rows: Value = serde_json::from_str(&peers).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["peer_id"] == a_files.peer.as_str()),
        "{peers}"
    );
    let mut tail = Command::new(daemon_binary())
        .args(["tail", "--count", "1", "--node", &node_a])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tail_out = LogBuf::collect(tail.stdout.take().unwrap());
    let tail_err = LogBuf::collect(tail.stderr.take().unwrap());
    // Publish until the tail (which subscribes asynchronously) has seen one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let answer = ok(
            dir.path(),
            &["publish", "hello from the cli", "--node", &node_b],
        );
        let id: Value = serde_json::from_str(&answer).unwrap();
        assert!(id["id"].is_string(), "{answer}");
        if let Some(status) = wait_exit(&mut tail, Duration::from_millis(300)) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tail saw nothing: {}",
            tail_err.text()
        );
    };
    assert!(status.success(), "{}", tail_err.text());
    std::thread::sleep(Duration::from_millis(50));
    let line = tail_out.text();
    let msg: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let data = msg["data_b64"].as_str().unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(bytes, b"hello from the cli");

    // A node that is not there: exit 1 with a message.
    let out = run(dir.path(), &["peers", "--node", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = run(dir.path(), &["peers", "--node", "not a url"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
