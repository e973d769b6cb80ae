//! `overlay-soak`: a leak soak of one `svc-overlay` daemon process on loopback.
//!
//! ```sh
//! cargo run --release --bin overlay-soak -- --cycles 100000 --messages 1000000
//! ```
//!
//! 1. Starts a daemon (dev mode, `127.0.0.1`, its own port) from `SVC_OVERLAY_BIN` or the
//!    `svc-overlay` binary next to this one (built with `cargo build` when missing or older
//!    than its sources).
//! 2. `--cycles N`: N times, a fresh client connects over TCP, completes mutual TLS, opens an
//!    overlay session (HELLO, START with a dev token), asks the daemon to broadcast
//!    (`POST /v1/broadcast` on a kept-alive HTTP connection), waits for the daemon to push
//!    the message (GOSSIP or IHAVE) into the session, and disconnects.
//! 3. `--messages M`: an in-process overlay node (the `svc_overlay` library) opens one session
//!    to the daemon and broadcasts M messages through it; the daemon receives and delivers them.
//! 4. Samples the daemon's open file descriptors (`/proc/PID/fd`) and resident memory
//!    (`VmRSS` of `/proc/PID/status`) before, during (every `--sample-every` cycles) and after
//!    (once the daemon has closed every session), and prints one JSON line:
//!    `{"cycles":…,"messages":…,"fd_start":…,"fd_end":…,"rss_start_kb":…,"rss_end_kb":…, …}`.
//!
//! Exits 1 when file descriptors grew (`fd_end > fd_start + --max-fd-growth`, default 0), when
//! a cycle or message failed, or when the daemon did not deliver every message.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use svc_overlay::OverlayError;

use bytes::{Bytes, BytesMut};
use overlay_e2e::{Daemon, DaemonOpts};
use overlay_proto::capability::{mint, Scope};
use overlay_proto::frame::{self, flags, Frame, Header};
use overlay_proto::wire::{HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{MacKey, OVERLAY_APP_PROTO_ID};
use rustls::ClientConfig;
use svc_overlay::tls::{client_config, server_name, Identity, TlsOptions};
use svc_overlay::Overlay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// What each open file descriptor of a process points at (`socket:[…]`, `anon_inode:[…]`,
/// a path), sorted: printed when descriptors grew, to name the leak.
fn fd_targets(pid: u32) -> Vec<String> {
    let sockets = tcp_sockets(pid);
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| {
                    let target = std::fs::read_link(entry.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_else(|_| "?".into());
                    let target = match target
                        .strip_prefix("socket:[")
                        .and_then(|t| t.strip_suffix(']'))
                        .and_then(|inode| sockets.get(inode))
                    {
                        Some(tcp) => format!("{target} tcp {tcp}"),
                        None => target,
                    };
                    format!("{} -> {target}", entry.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

/// TCP sockets of a process's network namespace by inode: `local remote state` in the kernel's
/// hex notation of `/proc/net/tcp` (ports readable as hex, state 0A = listen, 01 = established).
fn tcp_sockets(pid: u32) -> std::collections::HashMap<String, String> {
    let mut sockets = std::collections::HashMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if let (Some(local), Some(remote), Some(state), Some(inode)) =
                (cols.get(1), cols.get(2), cols.get(3), cols.get(9))
            {
                sockets.insert(inode.to_string(), format!("{local} {remote} {state}"));
            }
        }
    }
    sockets
}

/// Upper bound of one step of a cycle (connect, handshake, a reply, the pushed message).
const STEP: Duration = Duration::from_secs(10);
/// Client identities used in turn (a fresh one per cycle would mostly measure key generation).
const IDENTITIES: usize = 8;

#[derive(Debug, Clone)]
struct Args {
    cycles: u64,
    messages: u64,
    payload: usize,
    sample_every: u64,
    max_fd_growth: i64,
}

fn usage() -> ! {
    eprintln!(
        "usage: overlay-soak [--cycles N] [--messages M] [--payload BYTES] \
         [--sample-every CYCLES] [--max-fd-growth N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        cycles: 1000,
        messages: 10_000,
        payload: 256,
        sample_every: 1000,
        max_fd_growth: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { usage() };
        let ok = match flag.as_str() {
            "--cycles" => value.parse().map(|v| args.cycles = v).is_ok(),
            "--messages" => value.parse().map(|v| args.messages = v).is_ok(),
            "--payload" => value.parse().map(|v| args.payload = v).is_ok(),
            "--sample-every" => value.parse().map(|v| args.sample_every = v).is_ok(),
            "--max-fd-growth" => value.parse().map(|v| args.max_fd_growth = v).is_ok(),
            _ => false,
        };
        if !ok {
            usage();
        }
    }
    args.sample_every = args.sample_every.max(1);
    args
}

/// Open file descriptors and resident set (KiB) of a process.
fn sample(pid: u32) -> Res<(i64, i64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as i64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok((fds, rss))
}

fn raw_frame(fl: u16, app: u16, cap: &[u8], body: &[u8]) -> Res<Vec<u8>> {
    let header = Header {
        len: 0,
        ver: 1,
        flags: fl,
        code: 0,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = BytesMut::new();
    frame::encode(&header, cap, body, &mut out)?;
    Ok(out.to_vec())
}

/// One client identity with its TLS configuration and HELLO/START bytes.
struct Client {
    config: Arc<ClientConfig>,
    open: Vec<u8>,
}

impl Client {
    fn new(token: &str) -> Res<Client> {
        let identity = Identity::generate_dev()?;
        let config = client_config(&identity, &TlsOptions::default(), None)?;
        let hello = HelloRequestBody {
            ua: Some("overlay-soak".into()),
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: identity.peer_id().to_string(),
                listen: None,
                credit_frames: 64,
                credit_bytes: 1 << 24,
                graft_miss: false,
                running_peers: false,
            },
        };
        let mut open = raw_frame(flags::REQ, 0, &[], &serde_json::to_vec(&hello)?)?;
        open.extend(raw_frame(
            flags::START | flags::REQ,
            OVERLAY_APP_PROTO_ID,
            token.as_bytes(),
            &[],
        )?);
        Ok(Client { config, open })
    }
}

/// The next frame of a stream, `None` at EOF.
async fn next_frame(stream: &mut TlsStream<TcpStream>, buf: &mut BytesMut) -> Res<Option<Frame>> {
    loop {
        if let Some(f) = frame::decode(buf)? {
            return Ok(Some(f));
        }
        buf.reserve(16 * 1024);
        if timeout(STEP, stream.read_buf(buf)).await?? == 0 {
            return Ok(None);
        }
    }
}

/// Reads until a frame matching `want` (or fails at EOF or a server error).
async fn expect_frame(
    stream: &mut TlsStream<TcpStream>,
    buf: &mut BytesMut,
    what: &str,
    want: impl Fn(&Frame) -> bool,
) -> Res<()> {
    while let Some(f) = next_frame(stream, buf).await? {
        if f.header.flags & flags::RESP != 0 && f.header.code >= 400 {
            return Err(format!("{what}: server answered {}", f.header.code).into());
        }
        if want(&f) {
            return Ok(());
        }
    }
    Err(format!("{what}: connection closed").into())
}

/// One connect → TLS → HELLO/START → broadcast → disconnect cycle.
async fn cycle(daemon: &Daemon, client: &Client, n: u64) -> Res<()> {
    let tcp = timeout(STEP, TcpStream::connect(daemon.addr)).await??;
    let mut stream = timeout(
        STEP,
        TlsConnector::from(Arc::clone(&client.config)).connect(server_name(), tcp),
    )
    .await??;
    stream.write_all(&client.open).await?;
    stream.flush().await?;
    let mut buf = BytesMut::new();
    let started = |f: &Frame| f.header.app_proto_id == OVERLAY_APP_PROTO_ID && f.header.code == 200;
    expect_frame(&mut stream, &mut buf, "START reply", started).await?;
    let (status, body) = daemon.broadcast(format!("soak cycle {n}")).await;
    if status != 202 {
        return Err(format!("POST /v1/broadcast answered {status}: {body}").into());
    }
    let pushed = |f: &Frame| {
        f.header.app_proto_id == OVERLAY_APP_PROTO_ID
            && matches!(
                Kind::from_code(f.header.code),
                Some(Kind::Gossip | Kind::IHave)
            )
    };
    expect_frame(&mut stream, &mut buf, "pushed broadcast", pushed).await?;
    // close_notify, then the socket closes when the stream drops.
    let _ = timeout(STEP, stream.shutdown()).await;
    Ok(())
}

/// The daemon's Prometheus text.
async fn metrics_text(daemon: &Daemon) -> Res<String> {
    Ok(daemon
        .http()
        .get(daemon.metrics_url("/metrics"))
        .timeout(STEP)
        .send()
        .await?
        .text()
        .await?)
}

/// The daemon's count of delivered gossip, from its Prometheus text.
async fn delivered(daemon: &Daemon) -> Res<u64> {
    let text = metrics_text(daemon).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("overlay_gossip_delivered_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| "no overlay_gossip_delivered_total".into())
}

/// Sessions the daemon runs now (`GET /v1/peers`).
async fn running_sessions(daemon: &Daemon) -> usize {
    match daemon.get("/v1/peers").await {
        (200, text) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(usize::MAX),
        _ => usize::MAX,
    }
}

/// Waits (at most 30 s) until the daemon runs no session.
async fn settle(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_sessions(daemon).await != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Broadcasts `count` messages from an in-process node through one session to the daemon.
/// Samples the daemon's fds and RSS every tenth of the way (stderr); returns (delivered,
/// busy retries, largest RSS seen).
async fn messages(daemon: &Daemon, count: u64, payload: usize) -> Res<(u64, u64, i64)> {
    let pid = daemon.pid();
    let tenth = (count / 10).max(1);
    let mut rss_max_kb = 0;
    let before = delivered(daemon).await?;
    let node = Overlay::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    node.dial(daemon.addr).await?;
    let mut retries = 0u64;
    let body = vec![0x5Au8; payload.saturating_sub(8)];
    for i in 0..count {
        let mut msg = BytesMut::with_capacity(payload);
        msg.extend_from_slice(&i.to_be_bytes());
        msg.extend_from_slice(&body);
        let msg: Bytes = msg.freeze();
        loop {
            match node.broadcast(msg.clone()).await {
                Ok(_) => break,
                // Backpressure: the session's queue is full until credit returns.
                Err(svc_overlay::Error::Overlay(OverlayError::Busy)) if retries < count * 100 => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                Err(e) => return Err(format!("broadcast {i}: {e}").into()),
            }
        }
        if (i + 1) % tenth == 0 {
            let (fd, rss) = sample(pid)?;
            rss_max_kb = rss_max_kb.max(rss);
            eprintln!("overlay-soak: {} messages, fd {fd}, rss {rss} KiB", i + 1);
        }
    }
    // Every message reaches the daemon.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = delivered(daemon).await? - before;
    while got < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = delivered(daemon).await? - before;
    }
    if got < count {
        // Name where the rest went: the sender's drops and the daemon's refusals.
        let stats = node.stats().await;
        let drops: Vec<String> = stats
            .rejected
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason:?} {n}"))
            .collect();
        eprintln!(
            "overlay-soak: {got} of {count} delivered; sender: gossip_sent {}, frames_out {}, \
             ihave_sent {}, graft_misses_sent {}, grafts_received {}, sessions_running {}, \
             sessions_closed {}, queued_frames {}, prunes_received {}, prunes_sent {}, \
             grafts_sent {}, gossip_duplicates {}, score_penalties {:?}, drops {drops:?}",
            stats.gossip_sent,
            stats.frames_out,
            stats.ihave_sent,
            stats.graft_misses_sent,
            stats.grafts_received,
            stats.sessions_running,
            stats.sessions_closed,
            stats.queued_frames,
            stats.prunes_received,
            stats.prunes_sent,
            stats.grafts_sent,
            stats.gossip_duplicates,
            stats.score_penalties,
        );
        if let Ok(text) = metrics_text(daemon).await {
            let refusals: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
                .filter(|l| {
                    l.contains("rejected")
                        || l.contains("dropped")
                        || l.contains("graft")
                        || l.contains("prune")
                        || l.contains("duplicate")
                        || l.contains("penalt")
                })
                .collect();
            eprintln!("overlay-soak: daemon: {refusals:?}");
        }
        let log = daemon.log.text();
        let closes: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("session down") || l.contains("WARN"))
            .collect();
        eprintln!("overlay-soak: daemon log (session closes, warnings): {closes:?}");
    }
    node.shutdown().await;
    Ok((got, retries, rss_max_kb))
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    match run(&args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("overlay-soak: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args) -> Res<bool> {
    // `SVC_OVERLAY_BIN`, else `svc-overlay` next to this binary, built when missing or older
    // than its sources (overlay_e2e::daemon_binary).
    let daemon = Daemon::start(DaemonOpts::default()).await;
    let pid = daemon.pid();
    let token = mint(
        &MacKey::DEV,
        "overlay",
        "dev",
        Scope {
            prefix: None,
            methods: Vec::new(),
            max_bytes: None,
        },
        Vec::new(),
    );
    let clients = (0..IDENTITIES)
        .map(|_| Client::new(&token))
        .collect::<Res<Vec<_>>>()?;
    // Warm-up: the first connection and HTTP request allocate what the daemon keeps for good.
    // Both HTTP listeners get the one keep-alive connection the soak's client then reuses
    // (control port: broadcast, peers; metrics port: the delivered count), and the warm-up
    // session is closed before the first sample, so `fd_start` counts the same connections
    // as `fd_end`.
    cycle(&daemon, &clients[0], 0).await?;
    // (The counter may not exist before the first delivery: only the connection matters.)
    let _ = delivered(&daemon).await;
    settle(&daemon).await;
    let (fd_start, rss_start_kb) = sample(pid)?;
    let fds_at_start = fd_targets(pid);
    let (mut fd_max, mut rss_max_kb) = (fd_start, rss_start_kb);
    // (rss_max_kb also takes the samples of the message phase below.)
    let started = Instant::now();
    let mut cycle_failures = 0u64;
    let mut first_failure = None;
    for n in 0..args.cycles {
        if let Err(e) = cycle(&daemon, &clients[(n as usize) % IDENTITIES], n + 1).await {
            cycle_failures += 1;
            first_failure.get_or_insert_with(|| format!("cycle {n}: {e}"));
        }
        if (n + 1) % args.sample_every == 0 {
            let (fd, rss) = sample(pid)?;
            fd_max = fd_max.max(fd);
            rss_max_kb = rss_max_kb.max(rss);
            eprintln!(
                "overlay-soak: {} cycles, fd {fd}, rss {rss} KiB, {:.0} s",
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let cycles_s = started.elapsed().as_secs_f64();
    let msg_started = Instant::now();
    let (delivered_msgs, busy_retries, msg_rss_max) = if args.messages > 0 {
        messages(&daemon, args.messages, args.payload).await?
    } else {
        (0, 0, 0)
    };
    rss_max_kb = rss_max_kb.max(msg_rss_max);
    let messages_s = msg_started.elapsed().as_secs_f64();
    // Settle: every session closed by the daemon, then the final sample.
    settle(&daemon).await;
    // Descriptors of connections that just closed (the last HTTP requests, a spare keep-alive
    // connection the client dropped) go away within moments; a leak stays.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut fd_end, mut rss_end_kb) = sample(pid)?;
    while fd_end - fd_start > args.max_fd_growth && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (fd_end, rss_end_kb) = sample(pid)?;
    }
    let fds_at_end = fd_targets(pid);
    let report = serde_json::json!({
        "cycles": args.cycles,
        "messages": args.messages,
        "fd_start": fd_start,
        "fd_end": fd_end,
        "rss_start_kb": rss_start_kb,
        "rss_end_kb": rss_end_kb,
        "fd_max": fd_max.max(fd_end),
        "rss_max_kb": rss_max_kb.max(rss_end_kb),
        "cycle_failures": cycle_failures,
        "messages_delivered": delivered_msgs,
        "busy_retries": busy_retries,
        "cycles_s": (cycles_s * 10.0).round() / 10.0,
        "messages_s": (messages_s * 10.0).round() / 10.0,
    });
    if let Some(f) = &first_failure {
        eprintln!("overlay-soak: first failure: {f}");
    }
    let ok = fd_end - fd_start <= args.max_fd_growth
        && cycle_failures == 0
        && delivered_msgs >= args.messages;
    if fd_end - fd_start > args.max_fd_growth {
        eprintln!("overlay-soak: descriptors after warm-up: {fds_at_start:?}");
        eprintln!("overlay-soak: descriptors at the end: {fds_at_end:?}");
    }
    if !ok {
        eprintln!("overlay-soak: FAILED (fd growth, failed cycles or undelivered messages)");
    }
    daemon.terminate();
    println!("{report}");
    Ok(ok)
}
