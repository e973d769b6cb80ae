//! The operator kit against real daemon processes: JSON logs, SIGHUP reload, systemd
//! notification, the amnesia rule of `--trace-out`, and every metric the shipped alert rules
//! and dashboard use being exported by a live daemon.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use overlay_e2e::{poll_until, run_to_exit, Daemon, DaemonOpts, DEADLINE};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn signal(d: &Daemon, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(d.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn wait_log(d: &Daemon, what: &str) -> String {
    poll_until(what, DEADLINE, || async {
        let text = d.log.text();
        text.lines().find(|l| l.contains(what)).map(str::to_string)
    })
    .await
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_span_fields() {
    let d = Daemon::start(DaemonOpts::default().args([
        "--log-format",
        "json",
        "--log-level",
        "info,svc_overlay=debug",
    ]))
    .await;
    let (status, _) = d.get("/v1/peers").await;
    assert_eq!(status, 200);
    let line = wait_log(&d, "\"route\":\"/v1/peers\"").await;
    let v: Value = serde_json::from_str(&line).expect("a JSON object");
    assert_eq!(v["span"]["name"], "http");
    assert_eq!(v["span"]["route"], "/v1/peers");
    let text = d.log.text();
    let mut lines = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 3, "{text}");
    assert!(d.terminate().success());
}

#[tokio::test]
async fn log_format_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(dir.path(), &["--log-format", "yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("text | json"), "{}", out.stderr);
}

const RELOAD_BEFORE: &str = r#"
[node]
log_level = "warn,svc_overlay=info"

[gossip]
alpha = 3
beta = 6
"#;

const RELOAD_AFTER: &str = r#"
[node]
log_level = "warn,svc_overlay=debug"

[gossip]
alpha = 5
beta = 4

[limits]
peer_rate_per_s = 1000
peer_rate_burst = 2000

[membership]
active_target = 5
"#;

#[tokio::test]
async fn sighup_applies_live_settings_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reload.toml");
    std::fs::write(&file, RELOAD_BEFORE).unwrap();
    let d = Daemon::start(
        DaemonOpts::default()
            .env("LOG_LEVEL", "")
            .args(["--config", file.to_str().unwrap()]),
    )
    .await;

    std::fs::write(&file, RELOAD_AFTER).unwrap();
    signal(&d, "HUP");
    let applied = wait_log(&d, "SIGHUP: applied").await;
    for part in [
        "log_level warn,svc_overlay=info → warn,svc_overlay=debug",
        "alpha 3 → 5",
        "beta 6 → 4",
        "peer_rate_per_s 200000 → 1000",
        "peer_rate_burst 400000 → 2000",
    ] {
        assert!(applied.contains(part), "{part} missing in: {applied}");
    }
    let restart = wait_log(&d, "only applied after a restart").await;
    assert!(restart.contains("active_target"), "{restart}");
    // The new filter is live: per-request debug lines now appear.
    let (status, _) = d.get("/healthz").await;
    assert_eq!(status, 200);
    wait_log(&d, "request done").await;

    // A broken file is refused and the daemon keeps running.
    std::fs::write(&file, "[gossip]\nalpha = 0\n").unwrap();
    signal(&d, "HUP");
    let refused = wait_log(&d, "configuration not reloaded").await;
    assert!(refused.contains("alpha"), "{refused}");
    let (status, _) = d.get("/readyz").await;
    assert_eq!(status, 200, "{}", d.log.text());
    assert!(d.terminate().success());
}

#[cfg(unix)]
const SCORING_BEFORE: &str = r#"
[scoring]
ban_threshold = -50.0
ihave_flood_weight = -0.2
"#;

const SCORING_AFTER: &str = r#"
[scoring]
ban_threshold = -80.0
ihave_flood_weight = -0.5
gossip_threshold = -5.0
ban_base_ms = 120000
"#;

#[tokio::test]
async fn sighup_reloads_the_scoring_weights_live() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scoring.toml");
    std::fs::write(&file, SCORING_BEFORE).unwrap();
    let d = Daemon::start(DaemonOpts::default().args(["--config", file.to_str().unwrap()])).await;

    std::fs::write(&file, SCORING_AFTER).unwrap();
    signal(&d, "HUP");
    // Logged only once the node answered with the new settings in force.
    let applied = wait_log(&d, "SIGHUP: applied").await;
    for part in [
        "scoring.ihave_flood_weight -0.2 → -0.5",
        "scoring.gossip_threshold -10 → -5",
        "scoring.ban_threshold -50 → -80",
        "scoring.ban_base_ms 60000 → 120000",
    ] {
        assert!(applied.contains(part), "{part} missing in: {applied}");
    }
    assert!(
        !d.log.text().contains("only applied after a restart"),
        "{}",
        d.log.text()
    );
    // Thresholds out of order are refused by the configuration check; nothing changes.
    std::fs::write(&file, "[scoring]\nprune_threshold = -60.0\n").unwrap();
    signal(&d, "HUP");
    let refused = wait_log(&d, "configuration not reloaded").await;
    assert!(refused.contains("ban_threshold"), "{refused}");
    let (status, _) = d.get("/readyz").await;
    assert_eq!(status, 200, "{}", d.log.text());
    assert!(d.terminate().success());
}

#[tokio::test]
async fn systemd_is_told_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let d = Daemon::start(DaemonOpts::default().env("NOTIFY_SOCKET", path.to_str().unwrap())).await;
    let mut seen = String::new();
    let recv_until = |want: &str, seen: &mut String| {
        let deadline = Instant::now() + DEADLINE;
        let mut buf = [0u8; 4096];
        while !seen.contains(want) {
            assert!(Instant::now() < deadline, "no {want} in {seen:?}");
            if let Ok(n) = sock.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
        }
    };
    recv_until("READY=1", &mut seen);
    assert!(seen.contains("STATUS=serving on"), "{seen:?}");
    signal(&d, "HUP");
    recv_until("RELOADING=1", &mut seen);
    recv_until("configuration unchanged", &mut seen);
    let pid = d.pid();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    recv_until("STOPPING=1", &mut seen);
    assert!(d.terminate().success());
}

#[test]
fn trace_out_is_refused_under_amnesia_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(dir.path(), &["--trace-out", "t.cbor"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--trace-out-despite-amnesia"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("t.cbor").exists());
}

/// Metric names used by PromQL expressions: identifiers that are not functions, aggregation
/// operators, keywords, label names (inside `{}` or grouping lists) or string contents.
/// Series Prometheus makes itself (`up`, `scrape_*`) are left out.
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &["bool", "and", "or", "unless", "offset", "inf", "nan"];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const SYNTHETIC: &[&str] = &["up"];
    // Drop strings and label matchers; keep the rest.
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut in_str: Option<char> = None;
    for c in expr.chars() {
        match (in_str, c) {
            (Some(q), c) if c == q => in_str = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => in_str = Some(c),
            (None, '{') => depth_brace += 1,
            (None, '}') => depth_brace -= 1,
            (None, '[' | ']') => cleaned.push(' '),
            (None, c) if depth_brace == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let chars: Vec<char> = cleaned.chars().collect();
    let next_non_space = |from: usize| {
        let mut j = from;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        j
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let j = next_non_space(i);
        if GROUPING.contains(&word.as_str()) {
            // An optional label list follows: skip it.
            if chars.get(j) == Some(&'(') {
                i = chars[j..]
                    .iter()
                    .position(|c| *c == ')')
                    .map_or(chars.len(), |close| j + close + 1);
            }
            continue;
        }
        let is_call = chars.get(j) == Some(&'(');
        let is_duration = start > 0 && chars[start - 1].is_ascii_digit();
        let skip = is_call
            || is_duration
            || KEYWORDS.contains(&word.as_str())
            || AGGREGATIONS.contains(&word.as_str())
            || SYNTHETIC.contains(&word.as_str());
        if !skip {
            names.insert(word);
        }
    }
    names
}

#[test]
fn the_promql_name_extractor_finds_metrics_only() {
    let names = metric_names_in(
        r#"sum by (reason) (rate(rejected_total{reason!="x"}[5m])) / ignoring(reason) group_left sum(rate(overlay_frames_received_total[5m])) > 0.5 and on() histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"#,
    );
    let want: BTreeSet<String> = [
        "rejected_total",
        "overlay_frames_received_total",
        "http_request_duration_seconds_bucket",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, want);
}

/// Every `expr:` of the alert rules and every `"expr"` of the dashboard.
fn shipped_exprs() -> Vec<(String, String)> {
    let root = repo_root().join("docs/deploy");
    let mut out = Vec::new();
    let rules = std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let rest = rest.trim();
        if rest == "|" || rest == ">" || rest.is_empty() {
            // A block scalar: the lines indented deeper than `expr:`.
            let mut expr = String::new();
            while let Some(next) = lines.peek() {
                let deeper = next.len() - next.trim_start().len() > indent;
                if next.trim().is_empty() || !deeper {
                    break;
                }
                expr.push_str(next.trim());
                expr.push(' ');
                lines.next();
            }
            out.push(("alerts.yml".to_string(), expr));
        } else {
            out.push(("alerts.yml".to_string(), rest.to_string()));
        }
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/svc-overlay.json")).unwrap(),
    )
    .unwrap();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?");
                out.push((format!("dashboard panel {title:?}"), expr.to_string()));
            }
        }
    }
    out
}

/// Series names in a Prometheus text exposition.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_alert_rules_and_dashboard_is_exported() {
    // Two peered daemons with gossip, so sessions, latencies and HTTP series all exist.
    let a = Daemon::start(DaemonOpts::default()).await;
    let b = Daemon::start(DaemonOpts::default().peer(a.addr)).await;
    poll_until("a session", DEADLINE, || async {
        (!a.running_peers().await.is_empty()).then_some(())
    })
    .await;
    let (status, body) = a.broadcast("metrics check").await;
    assert_eq!(status, 202, "{body}");
    let exprs = shipped_exprs();
    assert!(exprs.len() >= 10, "too few expressions found: {exprs:?}");
    let mut used: BTreeSet<String> = BTreeSet::new();
    for (_, expr) in &exprs {
        used.extend(metric_names_in(expr));
    }
    // Gauges mirrored from the core appear within a mirror period; poll until the set is
    // complete, then report whatever is still missing.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, text) = b.get("/metrics").await;
        let exported = exported_names(&text);
        let missing: Vec<String> = exprs
            .iter()
            .flat_map(|(place, expr)| {
                metric_names_in(expr)
                    .into_iter()
                    .filter(|n| !exported.contains(n))
                    .map(move |n| format!("{n} (in {place})"))
            })
            .collect();
        if missing.is_empty() {
            // The catalogue lists every exported series (histograms by their base name).
            let catalogue = std::fs::read_to_string(repo_root().join("docs/METRICS.md")).unwrap();
            let undocumented: Vec<&String> = exported
                .iter()
                .filter(|name| {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix))
                        .unwrap_or(name);
                    !catalogue.contains(&format!("`{name}`"))
                        && !catalogue.contains(&format!("`{base}`"))
                })
                .collect();
            assert!(
                undocumented.is_empty(),
                "exported but not in docs/METRICS.md: {undocumented:#?}"
            );
            println!(
                "{} metric names used by the alerts and the dashboard, all exported \
                 ({} series names exported)",
                used.len(),
                exported.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "used but not exported by a live daemon: {missing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
