//! Helpers for the end-to-end tests: build the `svc-overlay` binary once, run daemons as
//! child processes on loopback, and talk HTTP (plain requests and Server-Sent Events) to them.
//!
//! Everything waits by polling with a deadline; nothing relies on sleeping for a fixed time.

// Test-support code: failing loudly with a message is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::Value;

/// Default deadline of the waits below.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The log filter daemons run with: the lines the helpers parse, warnings, nothing else.
pub const LOG_LEVEL: &str = "warn,svc_overlay=info";

/// The `svc-overlay` binary the tests run.
///
/// - `SVC_OVERLAY_BIN` set: that file (e.g. a release build);
/// - otherwise `<target>/<profile>/svc-overlay` next to the test executable (or the soak
///   binary), built once per process with `cargo build -p svc-overlay --bin svc-overlay` (same profile
///   and target directory as the tests) unless it is newer than every source it is built
///   from. `cargo test --workspace` builds it already, with the workspace's unified features;
///   rebuilding it with the package's own feature set would only cost time.
pub fn daemon_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("SVC_OVERLAY_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => build_daemon(),
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The newest modification time among the files the daemon is built from.
fn newest_source(root: &Path) -> Option<std::time::SystemTime> {
    fn walk(path: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(&entry.path(), newest);
                }
            }
        } else if let Ok(modified) = meta.modified() {
            if newest.is_none_or(|n| modified > n) {
                *newest = Some(modified);
            }
        }
    }
    let mut newest = None;
    for rel in [
        "Cargo.toml",
        "Cargo.lock",
        "overlay-proto/Cargo.toml",
        "overlay-proto/src",
        "overlay-driver-tokio/Cargo.toml",
        "overlay-driver-tokio/src",
    ] {
        walk(&root.join(rel), &mut newest);
    }
    newest
}

fn build_daemon() -> PathBuf {
    // Test executables live in <target>/<profile>/deps/, binaries (the soak) in
    // <target>/<profile>/.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("executable has a directory");
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("<target>/<profile>/deps has a parent")
    } else {
        dir
    }
    .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .to_path_buf();
    let bin = profile_dir.join(format!("svc-overlay{}", std::env::consts::EXE_SUFFIX));
    let root = workspace_root();
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let fresh = match (built, newest_source(&root)) {
        (Some(built), Some(source)) => built > source,
        _ => false,
    };
    if fresh {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_profile = if profile == "debug" {
        "dev".to_string()
    } else {
        profile.clone()
    };
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "svc-overlay",
            "--bin",
            "svc-overlay",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--profile")
        .arg(&cargo_profile)
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of svc-overlay failed");
    assert!(bin.is_file(), "{} missing after build", bin.display());
    bin
}

/// A loopback port that was free a moment ago (bound to port 0, then released). Another
/// process may take it before the daemon binds it: [`Daemon::start`] retries on collisions.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// An HTTP client for loopback (no proxy from the environment). It keeps at most one idle
/// connection per daemon: a request issued while the previous connection is still on its way
/// back to the pool opens a second one, which is then closed instead of kept (the soak counts
/// the daemon's descriptors, and a client's spare keep-alive connection is not a daemon leak).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// How to start a daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOpts {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Contents of a TOML config file passed with `--config`.
    pub config: Option<String>,
    /// Peers (`--peer`).
    pub peers: Vec<SocketAddr>,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
    /// Extra environment variables (set after the harness's own; an empty value counts as
    /// unset for the daemon, so `("LOG_LEVEL", "")` lets a config file's value win).
    pub env: Vec<(String, String)>,
}

impl DaemonOpts {
    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the config file contents.
    pub fn config(mut self, toml: impl Into<String>) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Adds a peer.
    pub fn peer(mut self, addr: SocketAddr) -> Self {
        self.peers.push(addr);
        self
    }

    /// Sets an environment variable of the daemon.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Fixes the listen port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// Lines a child process wrote to stderr.
#[derive(Clone, Default)]
pub struct LogBuf {
    text: Arc<Mutex<String>>,
    /// Set once the reader reached the end of the stream.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl LogBuf {
    /// Everything so far.
    pub fn text(&self) -> String {
        self.text.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether the stream has ended (everything written is in [`LogBuf::text`]).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn push(&self, line: &str) {
        if let Ok(mut s) = self.text.lock() {
            s.push_str(line);
            s.push('\n');
        }
    }

    /// Collects `reader` on a thread until it closes.
    pub fn collect(reader: impl std::io::Read + Send + 'static) -> Self {
        let buf = LogBuf::default();
        let b = buf.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                b.push(&line);
            }
            b.closed.store(true, std::sync::atomic::Ordering::Release);
        });
        buf
    }
}

/// A running `svc-overlay` process; killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    /// The overlay (and same-port HTTP) address.
    pub addr: SocketAddr,
    /// The `METRICS_ADDR` listener.
    pub metrics_addr: SocketAddr,
    /// `peer:<hex>` from the start-up line.
    pub peer_id: String,
    /// From spawning the process to the first `GET /readyz` 200.
    pub start_to_ready: Duration,
    /// The daemon's stderr.
    pub log: LogBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// How a start attempt failed.
enum StartError {
    /// The port was taken between picking and binding it.
    PortTaken,
    /// Anything else, with the daemon's stderr.
    Failed(String),
}

impl Daemon {
    /// Starts a daemon and waits until `GET /readyz` answers 200. Retries with another port if
    /// the chosen one was taken meanwhile.
    pub async fn start(opts: DaemonOpts) -> Daemon {
        let mut last = String::new();
        for _ in 0..5 {
            match Daemon::try_start(&opts).await {
                Ok(d) => return d,
                Err(StartError::PortTaken) if opts.port.is_none() => continue,
                Err(StartError::PortTaken) => panic!("port {:?} is taken", opts.port),
                Err(StartError::Failed(log)) => last = log,
            }
            break;
        }
        panic!("svc-overlay did not become ready:\n{last}");
    }

    async fn try_start(opts: &DaemonOpts) -> Result<Daemon, StartError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = opts.port.unwrap_or_else(free_port);
        let mut cmd = Command::new(daemon_binary());
        cmd.current_dir(dir.path())
            .env_remove("OVERLAY_BIND")
            .env_remove("METRICS_ADDR")
            .env_remove("OVERLAY_TOKEN")
            .env("LOG_LEVEL", LOG_LEVEL)
            .env("NO_COLOR", "1")
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-addr")
            .arg("127.0.0.1:0");
        for p in &opts.peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        if let Some(toml) = &opts.config {
            let path = dir.path().join("Overlay.toml");
            std::fs::write(&path, toml).expect("write config");
            cmd.arg("--config").arg(&path);
        }
        for (name, value) in &opts.env {
            cmd.env(name, value);
        }
        cmd.args(&opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn svc-overlay");
        let log = LogBuf::collect(child.stderr.take().expect("stderr"));
        let http = client();
        let deadline = started + DEADLINE;
        // The start-up lines: address, identity, metrics listener.
        let (addr, peer_id, metrics_addr) = loop {
            let text = log.text();
            if let Some(parsed) = parse_startup(&text) {
                break parsed;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Give the log thread a moment to drain what the process wrote.
                let text = wait_log_closed(&log, &text);
                return Err(if text.contains("in use") {
                    StartError::PortTaken
                } else {
                    StartError::Failed(format!("exited with {status}:\n{text}"))
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(StartError::Failed(format!("no start-up line:\n{text}")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let ready_url = format!("http://{addr}/readyz");
        loop {
            if let Ok(resp) = http
                .get(&ready_url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if resp.status() == 200 {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartError::Failed(format!(
                    "exited with {status}:\n{}",
                    log.text()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(StartError::Failed(format!("never ready:\n{}", log.text())));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Daemon {
            child: Some(child),
            addr,
            metrics_addr,
            peer_id,
            start_to_ready: started.elapsed(),
            log,
            http,
            _dir: dir,
        })
    }

    /// `http://<addr><path>` on the overlay port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<metrics_addr><path>`.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr)
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET` on the overlay port: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// `GET` on the overlay port, body as JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get(path).await;
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// `POST /v1/broadcast` with `payload`: status and JSON body.
    pub async fn broadcast(&self, payload: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url("/v1/broadcast"))
            .header("content-type", "application/octet-stream")
            .body(payload)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("POST /v1/broadcast");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Running sessions, from `GET /v1/peers`.
    pub async fn running_peers(&self) -> Vec<Value> {
        let (status, v) = self.get_json("/v1/peers").await;
        assert_eq!(status, 200, "{v}");
        v.as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["state"] == "running")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Opens `GET /v1/gossip`; returns once the subscription exists (headers received).
    pub async fn gossip(&self) -> SseStream {
        self.gossip_after(None).await
    }

    /// Opens `GET /v1/gossip` resuming after `last_event_id` (sent as `Last-Event-ID`).
    pub async fn gossip_after(&self, last_event_id: Option<&str>) -> SseStream {
        let mut req = self.http.get(self.url("/v1/gossip"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("GET /v1/gossip");
        assert_eq!(resp.status(), 200);
        SseStream {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        wait_exit(&mut child, DEADLINE).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "svc-overlay did not exit after SIGTERM:\n{}",
                self.log.text()
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_log_closed(log: &LogBuf, seen: &str) -> String {
    // The process has exited: its end of the pipe closes (unless a child of it still holds
    // it), so wait for the reader to reach the end rather than guessing from a quiet moment.
    let until = Instant::now() + Duration::from_secs(10);
    while !log.is_closed() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = log.text();
    if text.is_empty() {
        seen.to_string()
    } else {
        text
    }
}

/// Waits for a child to exit, polling until `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The result of running the binary to completion.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `svc-overlay` with `args` in `dir` (empty environment for its settings) and waits
/// for it to exit (at most 30 s).
pub fn run_to_exit(dir: &Path, args: &[&str]) -> Finished {
    let mut child = Command::new(daemon_binary())
        .current_dir(dir)
        .env_remove("OVERLAY_BIND")
        .env_remove("METRICS_ADDR")
        .env_remove("LOG_LEVEL")
        .env_remove("OVERLAY_TOKEN")
        .env_remove("OVERLAY_MAX_CONNS")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svc-overlay");
    let out = LogBuf::collect(child.stdout.take().expect("stdout"));
    let err = LogBuf::collect(child.stderr.take().expect("stderr"));
    let status = wait_exit(&mut child, DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("svc-overlay {args:?} did not exit:\n{}", err.text())
    });
    Finished {
        status,
        stdout: wait_log_closed(&out, &out.text()),
        stderr: wait_log_closed(&err, &err.text()),
    }
}

/// Finds `svc-overlay listening on <addr> as <peer>` and `metrics listening on http://<addr>/`
/// in the log.
pub fn parse_startup(log: &str) -> Option<(SocketAddr, String, SocketAddr)> {
    let mut main = None;
    let mut metrics = None;
    for line in log.lines() {
        if let Some(rest) = line.split("svc-overlay listening on ").nth(1) {
            let mut words = rest.split_whitespace();
            let addr = words.next()?.parse().ok()?;
            let _as = words.next()?;
            let peer = words.next()?.to_string();
            main = Some((addr, peer));
        }
        if let Some(rest) = line.split("metrics listening on http://").nth(1) {
            metrics = rest.split('/').next()?.parse().ok();
        }
    }
    let (addr, peer) = main?;
    Some((addr, peer, metrics?))
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A Server-Sent Events response being read.
pub struct SseStream {
    stream: ByteStream,
    buf: String,
}

impl SseStream {
    /// The events of an SSE response (e.g. `GET /v1/topics/{name}/gossip`).
    pub fn new(resp: reqwest::Response) -> SseStream {
        SseStream {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (default `message`).
    pub event: String,
    /// `id:`, when the event has one.
    pub id: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

impl SseStream {
    /// The next event (comments skipped), or `None` at `deadline` or end of stream.
    pub async fn next_event(&mut self, deadline: Instant) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = "message".to_string();
                let mut id = None;
                let mut data: Vec<&str> = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !data.is_empty() {
                    return Some(SseEvent {
                        event,
                        id,
                        data: data.join("\n"),
                    });
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.stream.next())
                .await
                .ok()??;
            let chunk = chunk.ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `message` event's JSON.
    pub async fn next_message(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let ev = self.next_event(deadline).await?;
            if ev.event == "message" {
                return serde_json::from_str(&ev.data).ok();
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` after `limit`.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a Prometheus sample line `name{labels} value` (labels matched as a substring;
/// `""` matches the series without labels too). Sums every matching series.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if metric == name && rest.contains(labels) {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}
