//! The orchestrator: builds the turmoil world (one host per node, each running the real
//! driver), steps it, applies the seeded plan (faults, broadcasts, watchdog probes) between
//! steps, shuts every node down gracefully at the end (which flushes the traces), and hands
//! the journal to the invariant checks and the report.

use core::time::Duration;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Instant as WallInstant, SystemTime, UNIX_EPOCH};

use overlay_proto::{NodeConfig, PeerId};
use svc_overlay::api::install_dev_auth;
use svc_overlay::tls::TlsOptions;
use svc_overlay::Timeouts;

use super::faults::{self, Fault, Plan};
use super::host::{
    broadcast_payload, pending_for, run_host, HostCmd, HostSpec, Journal, NodeRecord,
    SharedJournal, PORT, UNIX_BASE_SECS,
};
use super::hostile::{run_hostile, HostileRecord, HostileSpec, SharedHostile};
use super::identity::node_identity;
use super::ChaosScenario;
use crate::progress::Progress;
use crate::SimError;

/// A problem found while the simulation ran (the rest are found afterwards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// When (simulated).
    pub at: Duration,
    /// The node concerned, if one.
    pub node: Option<usize>,
    /// What happened.
    pub what: String,
}

/// Everything a finished run leaves behind.
#[derive(Debug)]
pub struct RunData {
    /// The plan that was applied.
    pub plan: Plan,
    /// What the hosts recorded.
    pub journal: Journal,
    /// Faults as applied, with their simulated time.
    pub applied: Vec<(Duration, String)>,
    /// Problems seen during the run (watchdog, host errors, panics).
    pub incidents: Vec<Incident>,
    /// Planned broadcasts skipped because no node was running.
    pub skipped_broadcasts: u64,
    /// Panics on the simulation thread (driver tasks, host software).
    pub panics: Vec<String>,
    /// Simulated time at the end (after the graceful shutdown).
    pub sim_end: Duration,
    /// Wall-clock seconds of the simulation itself.
    pub wall_secs: f64,
    /// Directory of the trace files (removed by the caller).
    pub trace_dir: PathBuf,
    /// Addresses of the nodes (index order).
    pub addrs: Vec<SocketAddr>,
    /// Identities of the nodes (index order).
    pub peer_ids: Vec<PeerId>,
    /// What each hostile host did.
    pub hostile: Vec<HostileRecord>,
}

thread_local! {
    /// Panic messages seen on this thread while a chaos run is active.
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records panics of threads running a chaos
/// simulation, then defers to the previous hook.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let recorded = PANICS.with(|p| match p.borrow_mut().as_mut() {
                Some(list) => {
                    list.push(info.to_string());
                    true
                }
                None => false,
            });
            if !recorded {
                previous(info);
            }
        }));
    });
}

/// Tokio numbers tasks from one process-wide counter and keeps a runtime's tasks in lists
/// sharded by `id % 4`; when turmoil crashes a host it drops the host's runtime, whose tasks
/// (and their sockets, which send FIN/RST, each drawing a latency from turmoil's RNG) are
/// dropped shard by shard. So the drop order, and from there the whole run, depends on the task
/// counter's value modulo 4 when the run starts. Spending task ids until the next one is a
/// multiple of [`TASK_ID_ALIGN`] makes every run start alike, in a fresh process or not (as
/// long as no other thread spawns tokio tasks meanwhile).
const TASK_ID_ALIGN: u64 = 64;

fn align_task_ids() -> Result<(), SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(SimError::Io)?;
    for _ in 0..TASK_ID_ALIGN * 4 {
        let id = rt
            .block_on(async { tokio::spawn(async { tokio::task::id() }).await })
            .map_err(|e| SimError::Scenario(format!("internal: task id probe failed: {e}")))?;
        match id.to_string().parse::<u64>() {
            Ok(n) if n % TASK_ID_ALIGN == TASK_ID_ALIGN - 1 => return Ok(()),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// A fresh private directory for the traces of one run.
fn trace_dir(seed: u64) -> Result<PathBuf, SimError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static STAMP: OnceLock<u128> = OnceLock::new();
    let stamp = STAMP.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "overlay-sim-chaos-{}-{stamp}-{n}-seed{seed}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|source| SimError::ReadFile {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// The name of node `i`'s host.
fn host_name(i: usize) -> String {
    format!("node-{i}")
}

/// Runs the simulation of `s`.
pub fn simulate(s: &ChaosScenario) -> Result<RunData, SimError> {
    install_panic_hook();
    PANICS.with(|p| *p.borrow_mut() = Some(Vec::new()));
    let result = simulate_inner(s);
    let panics = PANICS.with(|p| p.borrow_mut().take()).unwrap_or_default();
    result.map(|mut data| {
        data.panics = panics;
        data
    })
}

fn simulate_inner(s: &ChaosScenario) -> Result<RunData, SimError> {
    let plan = faults::plan(s);
    let dir = trace_dir(s.seed)?;
    align_task_ids()?;
    let total = s.total();
    let tick = Duration::from_millis(s.tick_ms);

    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(faults::PlanRng::new(s.seed, "turmoil").next_u64())
        .epoch(UNIX_EPOCH + Duration::from_secs(UNIX_BASE_SECS))
        .simulation_duration(total + Duration::from_secs(3600))
        .tick_duration(tick)
        .min_message_latency(Duration::from_millis(s.latency_min_ms))
        .max_message_latency(Duration::from_millis(s.latency_max_ms))
        .fail_rate(0.0)
        .repair_rate(s.repair);
    let mut sim = builder.build();

    let names: Vec<String> = (0..s.nodes).map(host_name).collect();
    let ips: Vec<IpAddr> = names.iter().map(|n| sim.lookup(n.as_str())).collect();
    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, PORT)).collect();

    let mut config = NodeConfig {
        alpha: s.alpha,
        beta: s.beta,
        active_target: s.active_target,
        ..NodeConfig::default()
    };
    install_dev_auth(&mut config.auth);
    config.validate()?;
    let tls = TlsOptions {
        pq: s.pq,
        ca_roots: None,
    };

    let journal: SharedJournal = Rc::new(RefCell::new(Journal {
        nodes: (0..s.nodes).map(|_| NodeRecord::default()).collect(),
        ..Journal::default()
    }));
    let mut boot_rng = faults::PlanRng::new(s.seed, "bootstrap");
    let mut peer_ids = Vec::with_capacity(s.nodes);
    for (i, name) in names.iter().enumerate() {
        let identity = node_identity(s.seed, i)
            .map_err(|e| SimError::Scenario(format!("identity of node {i}: {e}")))?;
        peer_ids.push(identity.peer_id());
        let bootstrap: Vec<SocketAddr> = boot_rng
            .sample(s.nodes, s.bootstrap_peers + 1)
            .into_iter()
            .filter(|&p| p != i)
            .take(s.bootstrap_peers)
            .map(|p| addrs[p])
            .collect();
        let spec = Rc::new(HostSpec {
            index: i,
            ip: ips[i],
            identity,
            config: config.clone(),
            tls: tls.clone(),
            bootstrap,
            seed: s.seed,
            trace_dir: dir.clone(),
            timeouts: Timeouts::default(),
        });
        let journal = Rc::clone(&journal);
        sim.host(name.as_str(), move || {
            run_host(Rc::clone(&spec), Rc::clone(&journal))
        });
    }

    let hostile: SharedHostile = Rc::new(RefCell::new(vec![HostileRecord::default(); s.hostile]));
    let mut target_rng = faults::PlanRng::new(s.seed, "hostile targets");
    for k in 0..s.hostile {
        let index = s.nodes + k;
        let identity = node_identity(s.seed, index)
            .map_err(|e| SimError::Scenario(format!("identity of hostile host {k}: {e}")))?;
        let spec = Rc::new(HostileSpec {
            index: k,
            identity,
            token: config
                .auth
                .own_token
                .as_ref()
                .map(|t| t.expose().to_string())
                .unwrap_or_default(),
            targets: target_rng
                .sample(s.nodes, s.nodes.min(4))
                .into_iter()
                .map(|p| addrs[p])
                .collect(),
            honest: peer_ids.clone(),
            tls: tls.clone(),
            seed: s.seed,
            start: s.warmup,
        });
        let hostile = Rc::clone(&hostile);
        sim.host(format!("hostile-{k}").as_str(), move || {
            run_hostile(Rc::clone(&spec), Rc::clone(&hostile))
        });
    }

    let wall = WallInstant::now();
    let mut applied: Vec<(Duration, String)> = Vec::new();
    let mut incidents: Vec<Incident> = Vec::new();
    let mut skipped = 0u64;
    let mut next_fault = 0usize;
    let mut next_bcast = 0usize;
    let mut next_probe = s.warmup;
    let crashed: Vec<Cell<bool>> = (0..s.nodes).map(|_| Cell::new(false)).collect();
    let mut watchdog_fired: Vec<u32> = vec![0; s.nodes];

    let step = |sim: &mut turmoil::Sim<'_>, incidents: &mut Vec<Incident>| {
        if let Err(e) = sim.step() {
            incidents.push(Incident {
                at: sim.elapsed(),
                node: None,
                what: format!("host software failed: {e}"),
            });
        }
    };

    let progress = Progress::new(
        u64::try_from(total.as_millis()).unwrap_or(u64::MAX),
        "virtual ms",
        &format!("chaos ({} nodes)", s.nodes),
    );
    while sim.elapsed() < total {
        let now = sim.elapsed();
        progress.set_position(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        while let Some((at, fault)) = plan.faults.get(next_fault) {
            if *at > now {
                break;
            }
            next_fault += 1;
            apply_fault(&mut sim, s, &ips, &names, &journal, &crashed, fault);
            applied.push((now, fault.describe()));
        }
        while let Some(b) = plan.broadcasts.get(next_bcast) {
            if b.at > now {
                break;
            }
            next_bcast += 1;
            let j = journal.borrow();
            let origin = (0..s.nodes)
                .map(|k| (b.origin + k) % s.nodes)
                .find(|&n| j.nodes[n].running.is_some());
            match origin {
                Some(n) => {
                    if let Some(r) = &j.nodes[n].running {
                        let _ = r.cmd.send(HostCmd::Broadcast {
                            seq: b.seq,
                            payload: broadcast_payload(b.seq, s.payload_bytes),
                        });
                    }
                }
                None => skipped += 1,
            }
        }
        if now >= next_probe {
            next_probe = now + s.probe_interval;
            let mut j = journal.borrow_mut();
            for (i, rec) in j.nodes.iter_mut().enumerate() {
                let Some(incarnation) = rec.running.as_ref().map(|r| r.incarnation) else {
                    continue;
                };
                match pending_for(rec, now) {
                    Some(waited) => {
                        if waited > s.watchdog && watchdog_fired[i] != incarnation {
                            watchdog_fired[i] = incarnation;
                            incidents.push(Incident {
                                at: now,
                                node: Some(i),
                                what: format!(
                                    "deadlock: node {i} (incarnation {incarnation}) left a \
                                     probe unanswered for {:.1} s",
                                    waited.as_secs_f64()
                                ),
                            });
                        }
                    }
                    None => {
                        if let Some(r) = &rec.running {
                            if r.cmd.send(HostCmd::Probe).is_ok() {
                                rec.probe_pending = Some(now);
                            }
                        }
                    }
                }
            }
        }
        step(&mut sim, &mut incidents);
    }

    // Final probe, then a graceful shutdown of every running node (flushes the traces).
    {
        let mut j = journal.borrow_mut();
        for rec in j.nodes.iter_mut() {
            if let Some(r) = &rec.running {
                if rec.probe_pending.is_none() && r.cmd.send(HostCmd::Probe).is_ok() {
                    rec.probe_pending = Some(sim.elapsed());
                }
            }
        }
    }
    let probe_end = sim.elapsed() + Duration::from_millis(200);
    while sim.elapsed() < probe_end {
        step(&mut sim, &mut incidents);
    }
    let mut shutting: Vec<usize> = Vec::new();
    {
        let j = journal.borrow();
        for (i, rec) in j.nodes.iter().enumerate() {
            if let Some(r) = &rec.running {
                if r.cmd.send(HostCmd::Shutdown).is_ok() {
                    shutting.push(i);
                }
            }
        }
    }
    let shutdown_limit = sim.elapsed() + Duration::from_secs(30);
    while sim.elapsed() < shutdown_limit {
        let pending = {
            let j = journal.borrow();
            shutting.iter().any(|&i| j.nodes[i].running.is_some())
        };
        if !pending {
            break;
        }
        step(&mut sim, &mut incidents);
    }
    {
        let j = journal.borrow();
        for &i in &shutting {
            if j.nodes[i].running.is_some() {
                incidents.push(Incident {
                    at: sim.elapsed(),
                    node: Some(i),
                    what: format!("node {i} did not finish its graceful shutdown within 30 s"),
                });
            }
        }
    }
    let sim_end = sim.elapsed();
    let wall_secs = wall.elapsed().as_secs_f64();
    // Dropping the simulation drops every runtime: trace writers of crashed incarnations end.
    drop(sim);
    let journal = Rc::try_unwrap(journal)
        .map(RefCell::into_inner)
        .map_err(|_| SimError::Scenario("internal: the journal is still shared".into()))?;
    let hostile = hostile.borrow().clone();
    Ok(RunData {
        plan,
        journal,
        applied,
        incidents,
        skipped_broadcasts: skipped,
        panics: Vec::new(),
        sim_end,
        wall_secs,
        trace_dir: dir,
        addrs,
        peer_ids,
        hostile,
    })
}

fn apply_fault(
    sim: &mut turmoil::Sim<'_>,
    s: &ChaosScenario,
    ips: &[IpAddr],
    names: &[String],
    journal: &SharedJournal,
    crashed: &[Cell<bool>],
    fault: &Fault,
) {
    let others =
        |group: &[usize]| -> Vec<usize> { (0..s.nodes).filter(|n| !group.contains(n)).collect() };
    match fault {
        Fault::Crash { node } => {
            sim.crash(names[*node].as_str());
            crashed[*node].set(true);
            if let Some(rec) = journal.borrow_mut().nodes.get_mut(*node) {
                rec.running = None;
                rec.probe_pending = None;
            }
        }
        Fault::Restart { node } => {
            if crashed[*node].replace(false) {
                sim.bounce(names[*node].as_str());
            }
        }
        Fault::Partition { group } => {
            for &a in group {
                for b in others(group) {
                    sim.partition(ips[a], ips[b]);
                }
            }
        }
        Fault::HealPartition { group } => {
            for &a in group {
                for b in others(group) {
                    sim.repair(ips[a], ips[b]);
                }
            }
        }
        Fault::OneWay { from } => {
            for &a in from {
                for b in others(from) {
                    sim.partition_oneway(ips[a], ips[b]);
                }
            }
        }
        Fault::HealOneWay { from } => {
            for &a in from {
                for b in others(from) {
                    sim.repair_oneway(ips[a], ips[b]);
                }
            }
        }
        Fault::Cut { node } => {
            for b in others(&[*node]) {
                sim.partition(ips[*node], ips[b]);
            }
        }
        Fault::Uncut { node } => {
            for b in others(&[*node]) {
                sim.repair(ips[*node], ips[b]);
            }
        }
        Fault::Hold { node, peers } => {
            for &p in peers {
                sim.hold(ips[*node], ips[p]);
            }
        }
        Fault::Release { node, peers } => {
            for &p in peers {
                sim.release(ips[*node], ips[p]);
            }
        }
        Fault::BurstStart { node, messages } => {
            for p in others(&[*node]) {
                sim.hold(ips[*node], ips[p]);
            }
            let j = journal.borrow();
            if let Some(r) = j.nodes.get(*node).and_then(|rec| rec.running.as_ref()) {
                let _ = r.cmd.send(HostCmd::Flood { count: *messages });
            }
        }
        Fault::BurstEnd { node } => {
            for p in others(&[*node]) {
                sim.release(ips[*node], ips[p]);
            }
        }
        Fault::Loss { on } => sim.set_fail_rate(if *on { s.loss } else { 0.0 }),
        Fault::HealAll => {
            sim.set_fail_rate(0.0);
            for a in 0..ips.len() {
                for b in a + 1..ips.len() {
                    sim.release(ips[a], ips[b]);
                }
            }
            for (node, down) in crashed.iter().enumerate() {
                if down.replace(false) {
                    sim.bounce(names[node].as_str());
                }
            }
        }
    }
}
