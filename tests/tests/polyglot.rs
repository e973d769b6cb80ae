//! The polyglot round trip (issue #9): two daemons; the Python client publishes on node A and
//! the TypeScript client receives it on node B, then the other way round; the Rust client does
//! the same; and every frame kind of a client session, encoded by each of the three codecs, is
//! decoded by the other two byte for byte.
//!
//! Needs `python3` and `node`; without them it prints `SKIPPED: …` and passes. The TypeScript
//! package is built (`npm ci && npm run build`) when `clients/ts/dist` is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use bytes::BytesMut;
use overlay_e2e::{metric_sum, poll_until, Daemon, DaemonOpts, DEADLINE};
use overlay_proto::capability::{mint, Caveat, Scope};
use overlay_proto::frame::{self, Header};
use overlay_proto::{MacKey, PeerId};
use serde_json::{json, Value};
use svc_overlay::client::{Client, ClientEvent, ClientOptions};
use tokio::process::{Child, Command};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the TypeScript package if needed; `Err(reason)` when it cannot (npm missing). A
/// failed `npm` run fails the calling test. Both tests of this file call it, concurrently on
/// a fresh clone: the build runs once (a second `npm ci` would delete `node_modules` under the
/// first one's compiler), and the other caller waits for it.
fn ts_built() -> Result<(), String> {
    static BUILT: std::sync::OnceLock<Result<(), (bool, String)>> = std::sync::OnceLock::new();
    match BUILT.get_or_init(build_ts) {
        Ok(()) => Ok(()),
        Err((false, skip)) => Err(skip.clone()),
        Err((true, failure)) => panic!("{failure}"),
    }
}

/// `npm ci && npm run build` in `clients/ts` unless `dist/` is there; `Err((fatal, why))`.
fn build_ts() -> Result<(), (bool, String)> {
    let ts = repo().join("clients/ts");
    if ts.join("dist/cli.js").exists() && ts.join("dist/frame.js").exists() {
        return Ok(());
    }
    if !have("npm") {
        return Err((false, "npm not found (needed to build clients/ts)".into()));
    }
    for args in [
        &["ci", "--no-audit", "--no-fund"][..],
        &["run", "--silent", "build"][..],
    ] {
        let out = std::process::Command::new("npm")
            .args(args)
            .current_dir(&ts)
            .output()
            .map_err(|e| (true, format!("npm {args:?}: {e}")))?;
        if !out.status.success() {
            return Err((
                true,
                format!(
                    "npm {args:?} failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
    }
    Ok(())
}

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", repo().join("clients/python/src"))
        .current_dir(repo())
        .kill_on_drop(true);
    cmd.arg("-m").arg("svc_overlay_client");
    cmd
}

fn node_cli() -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("clients/ts/dist/cli.js"))
        .current_dir(repo())
        .kill_on_drop(true);
    cmd
}

/// `--addr`, `--token`, `--server-id` for a client CLI.
fn target(cmd: &mut Command, d: &Daemon, token: &str) {
    cmd.arg("--addr")
        .arg(d.addr.to_string())
        .arg("--token")
        .arg(token)
        .arg("--server-id")
        .arg(&d.peer_id);
}

async fn output(mut cmd: Command, what: &str) -> String {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A CLI `subscribe --count 1`, started in the background.
fn subscriber(mut cmd: Command, d: &Daemon, token: &str) -> Child {
    target(&mut cmd, d, token);
    cmd.args(["subscribe", "--count", "1", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn subscriber")
}

async fn finish(child: Child, what: &str) -> Value {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().next().expect("one line")).unwrap()
}

/// Waits until node `d` has `n` subscribed clients (metrics are mirrored every 500 ms).
async fn subscribers(d: &Daemon, n: f64) {
    poll_until("client subscribed", DEADLINE, || async {
        let text = d
            .http()
            .get(d.metrics_url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (metric_sum(&text, "client_subscribers", "").unwrap_or(0.0) >= n).then_some(())
    })
    .await;
}

async fn publish(mut cmd: Command, d: &Daemon, token: &str, msg: &str, what: &str) -> String {
    target(&mut cmd, d, token);
    cmd.args(["publish", msg]);
    let out = output(cmd, what).await;
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["id"].as_str().expect("id").to_string()
}

fn check_delivery(got: &Value, id: &str, origin: &Daemon, msg: &str) {
    assert_eq!(got["id"], id, "{got}");
    assert_eq!(got["origin"], origin.peer_id.as_str(), "{got}");
    let data = base64::engine::general_purpose::STANDARD
        .decode(got["data_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, msg.as_bytes());
}

fn token() -> String {
    let scope = Scope {
        prefix: None,
        methods: vec!["publish".into(), "subscribe".into()],
        max_bytes: Some(65_536),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mint(
        &MacKey::DEV,
        "overlay",
        "dev",
        scope,
        vec![Caveat::Exp(now + 3600)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_typescript_and_rust_clients_round_trip_through_two_daemons() {
    for tool in ["python3", "node"] {
        if !have(tool) {
            println!("SKIPPED: {tool} not found; the polyglot round trip needs python3 and node");
            return;
        }
    }
    if let Err(why) = ts_built() {
        println!("SKIPPED: {why}");
        return;
    }
    let a = Daemon::start(DaemonOpts::default()).await;
    let b = Daemon::start(DaemonOpts::default().peer(a.addr)).await;
    for d in [&a, &b] {
        poll_until("peer session", DEADLINE, || async {
            (!d.running_peers().await.is_empty()).then_some(())
        })
        .await;
    }
    let token = token();

    // Python publishes on A, TypeScript receives on B.
    let ts_sub = subscriber(node_cli(), &b, &token);
    subscribers(&b, 1.0).await;
    let msg = "from python via A";
    let id = publish(python(), &a, &token, msg, "python publish").await;
    check_delivery(&finish(ts_sub, "ts subscribe").await, &id, &a, msg);

    // TypeScript publishes on B, Python receives on A.
    let py_sub = subscriber(python(), &a, &token);
    subscribers(&a, 1.0).await;
    let msg = "from typescript via B";
    let id = publish(node_cli(), &b, &token, msg, "ts publish").await;
    check_delivery(&finish(py_sub, "python subscribe").await, &id, &b, msg);

    // Rust publishes on A: a Rust client and the Python client receive on B; then TypeScript
    // publishes on B and the Rust client on A receives.
    let opts = |d: &Daemon| ClientOptions {
        server_id: Some(d.peer_id.parse::<PeerId>().unwrap()),
        timeout: DEADLINE,
        ..ClientOptions::default()
    };
    let mut rust_b = Client::connect(b.addr, &token, opts(&b)).await.unwrap();
    rust_b.subscribe().await.unwrap();
    let mut rust_a = Client::connect(a.addr, &token, opts(&a)).await.unwrap();
    rust_a.subscribe().await.unwrap();
    let py_sub = subscriber(python(), &b, &token);
    subscribers(&b, 2.0).await;
    let msg = "from rust via A";
    let id = rust_a.publish(msg.as_bytes().to_vec()).await.unwrap();
    check_delivery(
        &finish(py_sub, "python subscribe (rust)").await,
        &id.to_hex(),
        &a,
        msg,
    );
    match rust_b.recv_timeout(DEADLINE).await.unwrap() {
        ClientEvent::Message(m) => {
            assert_eq!((m.id, &m.payload[..]), (id, msg.as_bytes()));
            assert_eq!(m.origin.to_string(), a.peer_id);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = "from typescript to rust";
    let id = publish(node_cli(), &b, &token, msg, "ts publish (rust)").await;
    match rust_a.recv_timeout(DEADLINE).await.unwrap() {
        ClientEvent::Message(m) => {
            assert_eq!(m.id.to_hex(), id);
            assert_eq!(&m.payload[..], msg.as_bytes());
            assert_eq!(m.origin.to_string(), b.peer_id);
        }
        other => panic!("unexpected {other:?}"),
    }
    println!("polyglot round trip: python→ts, ts→python, rust→python+rust, ts→rust ok");
}

/// Every frame kind of a client session, with awkward values (a large tenant, the largest
/// corr id, binary payloads).
fn frame_specs() -> Vec<Value> {
    let spec =
        |flags: u16, code: u16, app: u16, tenant: u128, corr: u64, cap: &[u8], payload: &[u8]| {
            json!({
                "flags": flags, "code": code, "app": app,
                "tenant": tenant.to_string(), "corr": corr.to_string(),
                "cap": hex(cap), "payload": hex(payload),
            })
        };
    let mut deliver = vec![0xAB; 32];
    deliver.extend_from_slice(&[0xCD; 32]);
    deliver.push(3);
    deliver.extend_from_slice(b"\x00\xffbinary message");
    let big_tenant = u128::MAX - 12_345;
    vec![
        spec(0x0001, 0, 0, 0, 1, b"", br#"{"ua":"interop/1"}"#),
        spec(
            0x0001,
            0,
            0,
            7,
            1,
            b"",
            br#"{"ua":null,"credit_frames":16,"credit_bytes":65536}"#,
        ),
        spec(0x0009, 0, 0x4F56, big_tenant, 2, token().as_bytes(), b""),
        spec(0x000A, 200, 0x4F56, 0, 2, b"", b""),
        spec(
            0x0001,
            0x0110,
            0x4F56,
            0,
            u64::MAX,
            b"",
            b"\x00\x01\x02 publish \xfe\xff",
        ),
        spec(0x0001, 0x0111, 0x4F56, 0, 4, b"", b""),
        spec(0x0001, 0x0112, 0x4F56, 0, 5, b"", b""),
        spec(0x0002, 200, 0x4F56, 0, 4, b"", br#"{"id":"00ff"}"#),
        spec(0x0002, 429, 0x4F56, 0, 6, b"", br#"{"error":"rate"}"#),
        spec(0x0012, 401, 0x4F56, 0, 0, b"", br#"{"error":"expired"}"#),
        spec(
            0x0004,
            0x0105,
            0x4F56,
            0,
            0,
            b"",
            &[0, 0, 0, 16, 0, 1, 0, 0],
        ),
        spec(0x0004, 0x0106, 0x4F56, 0, 0, b"", b"direct \x00 bytes"),
        spec(0x0004, 0x0109, 0x4F56, 0, 0, b"", b""),
        spec(0x0004, 0x010A, 0x4F56, 0, 0, b"", b""),
        spec(0x0004, 0x0113, 0x4F56, 0, 0, b"", &deliver),
        spec(0x0004, 0x0114, 0x4F56, 0, 0, b"", &42u64.to_be_bytes()),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rust_encode(spec: &Value) -> String {
    let header = Header {
        len: 0,
        ver: 1,
        flags: spec["flags"].as_u64().unwrap() as u16,
        code: spec["code"].as_u64().unwrap() as u16,
        app_proto_id: spec["app"].as_u64().unwrap() as u16,
        tenant_id: spec["tenant"].as_str().unwrap().parse().unwrap(),
        cap_len: 0,
        corr_id: spec["corr"].as_str().unwrap().parse().unwrap(),
    };
    let mut out = BytesMut::new();
    frame::encode(
        &header,
        &unhex(spec["cap"].as_str().unwrap()),
        &unhex(spec["payload"].as_str().unwrap()),
        &mut out,
    )
    .unwrap();
    hex(&out)
}

fn rust_decode(hex_frame: &str) -> Value {
    let mut buf = BytesMut::from(&unhex(hex_frame)[..]);
    let f = frame::decode(&mut buf).unwrap().expect("a whole frame");
    assert!(buf.is_empty(), "every byte consumed");
    let h = f.header;
    json!({
        "flags": h.flags, "code": h.code, "app": h.app_proto_id,
        "tenant": h.tenant_id.to_string(), "corr": h.corr_id.to_string(),
        "cap": hex(f.cap.as_deref().unwrap_or_default()),
        "payload": hex(f.payload.as_deref().unwrap_or_default()),
    })
}

async fn script(lang: &str, mode: &str, input: &Value) -> Value {
    let interop = repo().join("clients/interop");
    let mut cmd = match lang {
        "python" => {
            let mut c = Command::new("python3");
            c.arg(interop.join("frames.py"))
                .env("PYTHONPATH", repo().join("clients/python/src"));
            c
        }
        _ => {
            let mut c = Command::new("node");
            c.arg(interop.join("frames.mjs"));
            c
        }
    };
    cmd.arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{lang} {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn frames_encoded_by_each_language_decode_identically_in_the_other_two() {
    for tool in ["python3", "node"] {
        if !have(tool) {
            println!("SKIPPED: {tool} not found; the frame interop check needs python3 and node");
            return;
        }
    }
    if let Err(why) = ts_built() {
        println!("SKIPPED: {why}");
        return;
    }
    let specs = frame_specs();
    let rust: Vec<String> = specs.iter().map(rust_encode).collect();
    let input = Value::from(specs.clone());
    let python = script("python", "encode", &input).await;
    let ts = script("ts", "encode", &input).await;
    for (i, r) in rust.iter().enumerate() {
        assert_eq!(python[i], r.as_str(), "python encodes frame {i} like rust");
        assert_eq!(ts[i], r.as_str(), "typescript encodes frame {i} like rust");
    }
    // Each language decodes the frames of the other two (and re-encodes them to the same bytes).
    let encoded = [
        ("rust", Value::from(rust.clone())),
        ("python", python),
        ("ts", ts),
    ];
    for (from, frames) in &encoded {
        for decoder in ["rust", "python", "ts"] {
            if decoder == *from {
                continue;
            }
            let decoded: Vec<Value> = match decoder {
                "rust" => frames
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        let fields = rust_decode(f.as_str().unwrap());
                        let reencoded = rust_encode(&fields);
                        json!({"fields": fields, "reencoded": reencoded})
                    })
                    .collect(),
                lang => script(lang, "decode", frames)
                    .await
                    .as_array()
                    .unwrap()
                    .clone(),
            };
            for (i, d) in decoded.iter().enumerate() {
                assert_eq!(
                    d["fields"], specs[i],
                    "{decoder} decodes {from}'s frame {i}"
                );
                assert_eq!(
                    d["reencoded"], frames[i],
                    "{decoder} re-encodes {from}'s frame {i} byte for byte"
                );
            }
        }
    }
    println!(
        "frame interop: {} frames, rust/python/typescript agree byte for byte",
        specs.len()
    );
}
