//! One simulated host: the real `svc_overlay::Overlay` built with
//! `OverlayBuilder::with_net(TurmoilNet)`, plus a small application that records what the
//! node delivers and reports, and carries out the orchestrator's commands (broadcast, flood,
//! probe, shutdown).
//!
//! Hosts and the orchestrator share one [`Journal`] (`Rc<RefCell<_>>`: everything runs on the
//! simulation's thread). No borrow is held across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use overlay_proto::{MessageId, NodeConfig, NodeStats, PeerId};
use svc_overlay::api::KernelEvent;
use svc_overlay::tls::{Identity, TlsOptions};
use svc_overlay::{DriverStats, Overlay, OverlayBuilder, Timeouts};
use tokio::sync::{mpsc, watch};

use super::net::TurmoilNet;

/// The overlay port of every host.
pub const PORT: u16 = 9415;

/// Unix time of every core's epoch (fixed, so token checks repeat).
pub const UNIX_BASE_SECS: u64 = 1_750_000_000;

/// What the orchestrator asks a running host to do.
#[derive(Debug)]
pub enum HostCmd {
    /// Broadcast planned broadcast `seq` with this payload.
    Broadcast {
        /// Planned sequence number.
        seq: u64,
        /// The payload.
        payload: Bytes,
    },
    /// Broadcast `count` small messages as fast as the node accepts them.
    Flood {
        /// Attempts.
        count: usize,
    },
    /// Report stats (watchdog probe).
    Probe,
    /// Graceful shutdown (end of the run: flushes the trace).
    Shutdown,
}

/// Simulated time as seen by a host: the simulation's elapsed time when the incarnation started
/// plus the host runtime's (paused, simulated) clock since then, so it has sub-tick resolution.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    base: Duration,
    start: tokio::time::Instant,
}

impl SimClock {
    /// A clock reading the simulation's elapsed time now (on a host's runtime).
    pub fn start() -> SimClock {
        SimClock {
            base: turmoil::sim_elapsed().unwrap_or_default(),
            start: tokio::time::Instant::now(),
        }
    }

    /// Simulated time since the simulation started.
    pub fn now(&self) -> Duration {
        self.base + self.start.elapsed()
    }
}

/// The outcome of one planned broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    /// Planned sequence number.
    pub seq: u64,
    /// The node it was sent from.
    pub origin: usize,
    /// When (simulated).
    pub at: Duration,
    /// Its id, or the error label.
    pub result: Result<MessageId, String>,
}

/// A readiness change seen by a host's application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessChange {
    /// When (simulated).
    pub at: Duration,
    /// Ready or not.
    pub ready: bool,
    /// What was saturated.
    pub missing: Vec<String>,
}

/// A session of a host that reached Running or ended, as its application saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    /// When (simulated).
    pub at: Duration,
    /// The incarnation that saw it.
    pub incarnation: u32,
    /// The peer.
    pub peer: PeerId,
    /// `None` when the session came up; the close reason's label when it ended.
    pub down: Option<String>,
}

/// One answered watchdog probe.
#[derive(Debug, Clone)]
pub struct ProbeRecord {
    /// When the answer arrived (simulated).
    pub at: Duration,
    /// Incarnation that answered.
    pub incarnation: u32,
    /// The core's stats.
    pub stats: NodeStats,
    /// The driver's counters.
    pub driver: DriverStats,
}

/// A running incarnation's command channel.
#[derive(Debug)]
pub struct Running {
    /// Commands to the host's application.
    pub cmd: mpsc::UnboundedSender<HostCmd>,
    /// Since when it runs (simulated).
    pub since: Duration,
    /// Incarnation number (1 = first start).
    pub incarnation: u32,
}

/// Everything recorded about one node over the run.
#[derive(Debug, Default)]
pub struct NodeRecord {
    /// Incarnations started so far.
    pub incarnations: u32,
    /// The running incarnation, once its overlay is up.
    pub running: Option<Running>,
    /// First delivery of each message: (simulated time, hops, incarnation).
    pub deliveries: BTreeMap<MessageId, (Duration, u8, u32)>,
    /// Deliveries of a message this node had already delivered (in an earlier incarnation).
    pub redeliveries: u64,
    /// Readiness changes.
    pub readiness: Vec<ReadinessChange>,
    /// Sessions up and down, in order.
    pub sessions: Vec<SessionChange>,
    /// Session events the application missed (its event channel lagged).
    pub sessions_missed: u64,
    /// Answered probes.
    pub probes: Vec<ProbeRecord>,
    /// When the outstanding probe was sent, if any.
    pub probe_pending: Option<Duration>,
    /// Trace files, one per incarnation (index 0 = incarnation 1).
    pub traces: Vec<PathBuf>,
    /// Errors of the application or the overlay (build failures, ...).
    pub errors: Vec<String>,
    /// Flood outcome: (accepted, refused) broadcasts.
    pub flood: Option<(u64, u64)>,
    /// Incarnations that finished a graceful shutdown.
    pub shut_down: u32,
}

/// What every host and the orchestrator share.
#[derive(Debug, Default)]
pub struct Journal {
    /// Per node.
    pub nodes: Vec<NodeRecord>,
    /// Planned broadcasts, as sent.
    pub sent: Vec<SentRecord>,
    /// Ids of the burst's flood messages (excluded from reliability and latency figures).
    pub flood_ids: BTreeMap<MessageId, usize>,
}

/// The shared journal.
pub type SharedJournal = Rc<RefCell<Journal>>;

/// What one host needs to (re)start its software.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Node index.
    pub index: usize,
    /// Its simulated IP.
    pub ip: IpAddr,
    /// Its TLS identity (the same in every incarnation).
    pub identity: Identity,
    /// Core settings (with capability keys and token installed).
    pub config: NodeConfig,
    /// TLS options (key-exchange mode).
    pub tls: TlsOptions,
    /// Addresses given to membership at start.
    pub bootstrap: Vec<SocketAddr>,
    /// The run's seed (core seeds derive from it, the index and the incarnation).
    pub seed: u64,
    /// Directory of the trace files.
    pub trace_dir: PathBuf,
    /// Socket deadlines.
    pub timeouts: Timeouts,
}

/// The core RNG seed of incarnation `incarnation` of node `index`.
pub fn core_seed(seed: u64, index: usize, incarnation: u32) -> u64 {
    let mut material = [0u8; 20];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..16].copy_from_slice(&(index as u64).to_be_bytes());
    material[16..].copy_from_slice(&incarnation.to_be_bytes());
    let key = blake3::derive_key("svc-overlay chaos 2025 core seed v1", &material);
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_be_bytes(first)
}

/// The host's software: one incarnation of the node. Returns when the node has shut down (or
/// could not start); a crash simply drops it.
pub async fn run_host(spec: Rc<HostSpec>, journal: SharedJournal) -> turmoil::Result {
    let index = spec.index;
    let incarnation = {
        let mut j = journal.borrow_mut();
        let Some(rec) = j.nodes.get_mut(index) else {
            return Ok(());
        };
        rec.incarnations += 1;
        rec.running = None;
        rec.probe_pending = None;
        rec.incarnations
    };
    let trace = spec
        .trace_dir
        .join(format!("node-{index}.{incarnation}.trace"));
    let clock = SimClock::start();
    let bind = SocketAddr::from(([0, 0, 0, 0], PORT));
    let built = OverlayBuilder::with_net(TurmoilNet)
        .bind(bind)
        .advertise(SocketAddr::new(spec.ip, PORT))
        .identity(spec.identity.clone())
        .tls(spec.tls.clone())
        .node_config(spec.config.clone())
        .peers(spec.bootstrap.clone())
        .seed(core_seed(spec.seed, index, incarnation))
        .unix_base_secs(UNIX_BASE_SECS)
        .trace_out(trace.clone())
        .timeouts(spec.timeouts)
        .build()
        .await;
    let ov = match built {
        Ok(ov) => ov,
        Err(e) => {
            if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
                rec.errors.push(format!(
                    "incarnation {incarnation}: overlay did not start: {e}"
                ));
            }
            return Ok(());
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
        rec.traces.push(trace);
        rec.running = Some(Running {
            cmd: tx,
            since: clock.now(),
            incarnation,
        });
    }

    tokio::task::spawn_local(record_deliveries(
        ov.clone(),
        Rc::clone(&journal),
        index,
        incarnation,
        clock,
    ));
    tokio::task::spawn_local(record_sessions(
        ov.events(),
        Rc::clone(&journal),
        index,
        incarnation,
        clock,
    ));
    tokio::task::spawn_local(record_readiness(
        ov.readiness(),
        Rc::clone(&journal),
        index,
        clock,
    ));

    while let Some(cmd) = rx.recv().await {
        match cmd {
            HostCmd::Broadcast { seq, payload } => {
                let ov = ov.clone();
                let journal = Rc::clone(&journal);
                tokio::task::spawn_local(async move {
                    let at = clock.now();
                    let result = ov.broadcast(payload).await.map_err(|e| e.to_string());
                    journal.borrow_mut().sent.push(SentRecord {
                        seq,
                        origin: index,
                        at,
                        result,
                    });
                });
            }
            HostCmd::Flood { count } => {
                let ov = ov.clone();
                let journal = Rc::clone(&journal);
                tokio::task::spawn_local(flood(ov, journal, index, count));
            }
            HostCmd::Probe => {
                let ov = ov.clone();
                let journal = Rc::clone(&journal);
                tokio::task::spawn_local(async move {
                    let stats = ov.stats().await;
                    let driver = ov.driver_stats();
                    let at = clock.now();
                    if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
                        rec.probe_pending = None;
                        rec.probes.push(ProbeRecord {
                            at,
                            incarnation,
                            stats,
                            driver,
                        });
                    }
                });
            }
            HostCmd::Shutdown => {
                ov.shutdown().await;
                if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
                    rec.shut_down += 1;
                    rec.running = None;
                }
                break;
            }
        }
    }
    Ok(())
}

/// Broadcasts `count` messages back to back (each waits for the node's answer).
async fn flood(ov: Overlay, journal: SharedJournal, index: usize, count: usize) {
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for i in 0..count {
        let payload = Bytes::from(format!("chaos-flood-{index}-{i}"));
        match ov.broadcast(payload).await {
            Ok(id) => {
                accepted += 1;
                journal.borrow_mut().flood_ids.insert(id, index);
            }
            Err(_) => refused += 1,
        }
    }
    if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
        rec.flood = Some((accepted, refused));
    }
}

/// Records every delivery with its simulated time and hops.
async fn record_deliveries(
    ov: Overlay,
    journal: SharedJournal,
    index: usize,
    incarnation: u32,
    clock: SimClock,
) {
    let mut sub = ov.deliveries();
    drop(ov);
    while let Some(d) = sub.recv().await {
        let at = clock.now();
        let mut j = journal.borrow_mut();
        let Some(rec) = j.nodes.get_mut(index) else {
            return;
        };
        match rec.deliveries.get(&d.id) {
            Some(_) => rec.redeliveries += 1,
            None => {
                rec.deliveries.insert(d.id, (at, d.hops, incarnation));
            }
        }
    }
}

/// Records sessions going up and down (for the silent-cut invariant).
async fn record_sessions(
    mut events: svc_overlay::feed::Receiver<KernelEvent>,
    journal: SharedJournal,
    index: usize,
    incarnation: u32,
    clock: SimClock,
) {
    use svc_overlay::feed::RecvError;
    loop {
        let change = match events.recv().await {
            Ok(KernelEvent::SessionUp { peer }) => (peer, None),
            Ok(KernelEvent::SessionDown { peer, reason }) => (peer, Some(reason)),
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
                    rec.sessions_missed += n;
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
            rec.sessions.push(SessionChange {
                at: clock.now(),
                incarnation,
                peer: change.0,
                down: change.1,
            });
        }
    }
}

/// Records readiness changes.
async fn record_readiness(
    mut ready: watch::Receiver<svc_overlay::Readiness>,
    journal: SharedJournal,
    index: usize,
    clock: SimClock,
) {
    loop {
        let now = {
            let r = ready.borrow_and_update();
            ReadinessChange {
                at: clock.now(),
                ready: r.ready,
                missing: r.missing.clone(),
            }
        };
        if let Some(rec) = journal.borrow_mut().nodes.get_mut(index) {
            let changed = rec
                .readiness
                .last()
                .is_none_or(|last| last.ready != now.ready || last.missing != now.missing);
            if changed {
                rec.readiness.push(now);
            }
        }
        if ready.changed().await.is_err() {
            return;
        }
    }
}

/// The payload of planned broadcast `seq`, padded to `bytes`.
pub fn broadcast_payload(seq: u64, bytes: usize) -> Bytes {
    let mut text = format!("chaos-bcast-{seq}-").into_bytes();
    if text.len() < bytes {
        text.resize(bytes, b'.');
    }
    Bytes::from(text)
}

/// Simulated time that a probe has been outstanding.
pub fn pending_for(rec: &NodeRecord, now: Duration) -> Option<Duration> {
    rec.probe_pending.map(|at| now.saturating_sub(at))
}
