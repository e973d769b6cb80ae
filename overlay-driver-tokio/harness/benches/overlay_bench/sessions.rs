//! `sessions --count K [--concurrency C]` (issue #10 §1): K idle, token-authenticated TLS client
//! sessions to one `svc-overlay` daemon process (dev mode, loopback). The daemon runs as a child
//! so its memory is measured alone: `VmRSS` after it is ready, then after all K sessions run;
//! `rss_per_session_bytes` is the difference over K. `handshakes_per_s` is K over the time to
//! open them all (TCP + TLS 1.3 with X25519MLKEM768 + HELLO + START, C at a time). Both the
//! bench and the daemon need about K file descriptors: RLIMIT_NOFILE is raised to its hard
//! limit first; if that is not enough the run stops with a clear message.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use overlay_proto::capability::{mint, Scope};
use overlay_proto::{MacKey, PeerId};
use svc_overlay::client::{Client, ClientOptions};

use super::Args;

/// Descriptors needed besides the sessions (daemon listeners, files, the runtime).
const FD_MARGIN: u64 = 256;

/// Raises RLIMIT_NOFILE (soft) to the hard limit; returns the soft limit in force. The
/// daemon, spawned afterwards, inherits it.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return lim.maximum.unwrap_or(u64::MAX);
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

/// `VmRSS` of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    peer_id: PeerId,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the daemon (built next to this bench) with room for `count` client sessions.
fn start_daemon(count: u64) -> Daemon {
    let exe = std::env::current_exe().expect("bench path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("svc-overlay"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            eprintln!("sessions: build the daemon first (cargo build --release --bin svc-overlay)");
            std::process::exit(2)
        });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[limits]\nmax_preauth = 4096\nmax_preauth_per_ip = 4096\nread_ms = 600000\n\n\
         [clients]\nmax_clients = {}\nidle_ms = 600000\n",
        count + 16
    );
    let path = dir.path().join("Overlay.toml");
    std::fs::write(&path, config).expect("config");
    let port = super::free_port();
    let mut child = Command::new(bin)
        .current_dir(dir.path())
        .env("LOG_LEVEL", "warn,svc_overlay=info")
        .env("NO_COLOR", "1")
        .env_remove("OVERLAY_BIND")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--max-conns", &(count + 64).to_string()])
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svc-overlay");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("peer:") {
                let id: String = line[i..].chars().take(5 + 64).collect();
                let _ = tx.send(id);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let peer_id = loop {
        if let Ok(id) = rx.recv_timeout(Duration::from_millis(50)) {
            if let Ok(p) = id.parse::<PeerId>() {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "daemon printed no peer id");
    };
    while !super::readyz_ok(port) {
        assert!(Instant::now() < deadline, "daemon never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        peer_id,
        _dir: dir,
    }
}

pub(super) async fn sessions(args: &Args) -> String {
    let count = args.get("count", 1000);
    let concurrency = args.get("concurrency", 32).max(1);
    let nofile = raise_nofile();
    if nofile < count + FD_MARGIN {
        let msg = format!(
            "sessions: RLIMIT_NOFILE is {nofile} even after raising the soft limit to the hard \
             limit; {count} sessions need about {}; skipped",
            count + FD_MARGIN
        );
        eprintln!("{msg}");
        return format!(
            "{{\"mode\":\"sessions\",\"sessions\":0,\"skipped\":\"RLIMIT_NOFILE {nofile} < {}\"}}",
            count + FD_MARGIN
        );
    }
    let daemon = start_daemon(count);
    // Let the daemon settle (allocator, first metrics mirror) before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_bytes(daemon.child.id());
    let token = mint(
        &MacKey::DEV,
        "overlay",
        "dev",
        Scope {
            prefix: None,
            methods: vec!["subscribe".into()],
            max_bytes: None,
        },
        vec![],
    );
    let opts = ClientOptions {
        server_id: Some(daemon.peer_id),
        timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = Arc::clone(&limit).acquire_owned().await.expect("semaphore");
        let (addr, token, opts) = (daemon.addr, token.clone(), opts.clone());
        tasks.spawn(async move {
            let client = Client::connect(addr, &token, opts).await;
            drop(permit);
            client
        });
    }
    let mut clients = Vec::with_capacity(count as usize);
    let mut failed = 0u64;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(c)) => clients.push(c),
            Ok(Err(e)) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("sessions: a client failed to open: {e}");
                }
            }
            Err(e) => panic!("client task: {e}"),
        }
    }
    let open_time = started.elapsed();
    // Idle: let the daemon release handshake buffers (maintenance tick) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(daemon.child.id());
    let opened = clients.len() as u64;
    let per_session = after.saturating_sub(base) / opened.max(1);
    let handshakes_per_s = opened as f64 / open_time.as_secs_f64();
    eprintln!(
        "sessions: {opened} open ({failed} failed) in {:.2} s; daemon RSS {} KiB → {} KiB",
        open_time.as_secs_f64(),
        base / 1024,
        after / 1024
    );
    drop(clients);
    drop(daemon);
    format!(
        "{{\"mode\":\"sessions\",\"count\":{count},\"concurrency\":{concurrency},\"sessions\":{opened},\"failed\":{failed},\"open_s\":{:.3},\"handshakes_per_s\":{handshakes_per_s:.0},\"daemon_rss_base_bytes\":{base},\"daemon_rss_bytes\":{after},\"rss_per_session_bytes\":{per_session}}}",
        open_time.as_secs_f64()
    )
}
