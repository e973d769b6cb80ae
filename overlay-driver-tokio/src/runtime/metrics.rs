//! Runtime-side metrics: driver counters (emitted through the `metrics` facade and kept in a
//! [`DriverStats`] snapshot for tests and the library API) and the mirror of the core's
//! [`NodeStats`] into gauges and absolute counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use overlay_proto::score::Penalty;
use overlay_proto::wire::Kind;
use overlay_proto::NodeStats;

pub(crate) use crate::shared::{ConnRegistry, ConnSlot};
use crate::sync::Arc;

/// A snapshot of what the driver itself counted (the core's counters are in
/// [`NodeStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// TLS handshake failures by reason (`overlay_handshake_failures_total{reason}`).
    pub handshake_failures: BTreeMap<String, u64>,
    /// Connections or frames refused by the driver by reason (`max_conns`, `writer_full`).
    pub rejected: BTreeMap<String, u64>,
    /// Errors by `(stage, kind)` (`errors_total{stage,kind}`).
    pub errors: BTreeMap<(String, String), u64>,
    /// Crashed tasks restarted or reported as closed, by task (`service_restarts_total{task}`).
    pub restarts: BTreeMap<String, u64>,
    /// Deliveries a lagging subscriber lost.
    pub subscriber_lagged: u64,
    /// Trace records that could not be written (the trace is incomplete when non-zero).
    pub trace_dropped: u64,
    /// Reads that waited for the node's read budget (reads not yet handled by the node task
    /// held all of it).
    pub read_budget_waits: u64,
    /// TCP connections open now (inbound and outbound, handshaking included).
    pub live_connections: usize,
}

impl DriverStats {
    /// Handshake failures counted with this reason.
    pub fn handshake_failures(&self, reason: &str) -> u64 {
        self.handshake_failures.get(reason).copied().unwrap_or(0)
    }

    /// Handshake failures of every reason.
    pub fn handshake_failures_total(&self) -> u64 {
        self.handshake_failures.values().sum()
    }

    /// Driver rejections counted with this reason.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }

    /// Errors counted at this stage, any kind.
    pub fn errors_at(&self, stage: &str) -> u64 {
        self.errors
            .iter()
            .filter(|((s, _), _)| s == stage)
            .map(|(_, n)| n)
            .sum()
    }
}

type Labels1 = BTreeMap<&'static str, u64>;
type Labels2 = BTreeMap<(&'static str, &'static str), u64>;

/// Counters shared by every runtime task.
#[derive(Debug, Default)]
pub(crate) struct DriverCounters {
    handshake_failures: Mutex<Labels1>,
    rejected: Mutex<Labels1>,
    errors: Mutex<Labels2>,
    restarts: Mutex<Labels1>,
    subscriber_lagged: AtomicU64,
    trace_dropped: AtomicU64,
    read_budget_waits: AtomicU64,
    /// Open TCP connections, admitted against `max_conns` (see [`ConnSlot`]).
    pub(crate) conns: Arc<ConnRegistry>,
}

fn bump1(map: &Mutex<Labels1>, key: &'static str, n: u64) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    *map.entry(key).or_insert(0) += n;
}

fn owned1(map: &Mutex<Labels1>) -> BTreeMap<String, u64> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

impl DriverCounters {
    /// A TLS handshake failed (inbound or outbound, or the first read of a dialed session).
    pub(crate) fn handshake_failure(&self, reason: &'static str) {
        bump1(&self.handshake_failures, reason, 1);
        metrics::counter!("overlay_handshake_failures_total", "reason" => reason).increment(1);
        self.error("tls", reason);
    }

    /// The driver refused a connection or a frame.
    pub(crate) fn reject(&self, reason: &'static str) {
        bump1(&self.rejected, reason, 1);
        metrics::counter!("rejected_total", "reason" => reason).increment(1);
    }

    /// An error at a stage (`accept`, `tls`, `read`, `write`, `dial`, `core`).
    pub(crate) fn error(&self, stage: &'static str, kind: &'static str) {
        {
            let mut map = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
            *map.entry((stage, kind)).or_insert(0) += 1;
        }
        metrics::counter!("errors_total", "stage" => stage, "kind" => kind).increment(1);
    }

    /// A task crashed and was restarted (or its connection reported closed).
    pub(crate) fn restart(&self, task: &'static str) {
        bump1(&self.restarts, task, 1);
        metrics::counter!("service_restarts_total", "task" => task).increment(1);
    }

    /// A subscriber lagged and lost `n` deliveries.
    pub(crate) fn lagged(&self, n: u64) {
        self.subscriber_lagged.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("overlay_subscriber_lagged_total").increment(n);
    }

    /// A trace record was dropped.
    pub(crate) fn trace_dropped(&self) {
        self.trace_dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("overlay_trace_dropped_total").increment(1);
    }

    /// A reader waited for the node's read budget.
    pub(crate) fn read_budget_wait(&self) {
        self.read_budget_waits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("overlay_read_budget_waits_total").increment(1);
    }

    /// The snapshot.
    pub(crate) fn snapshot(&self) -> DriverStats {
        let errors = {
            let map = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .map(|((s, k), v)| (((*s).to_string(), (*k).to_string()), *v))
                .collect()
        };
        DriverStats {
            handshake_failures: owned1(&self.handshake_failures),
            rejected: owned1(&self.rejected),
            errors,
            restarts: owned1(&self.restarts),
            subscriber_lagged: self.subscriber_lagged.load(Ordering::Relaxed),
            trace_dropped: self.trace_dropped.load(Ordering::Relaxed),
            read_budget_waits: self.read_budget_waits.load(Ordering::Relaxed),
            live_connections: self.conns.live(),
        }
    }
}

/// Records one `overlay_gossip_latency_seconds{stage}` sample.
pub(crate) fn latency(stage: &'static str, d: Duration) {
    metrics::histogram!("overlay_gossip_latency_seconds", "stage" => stage).record(d.as_secs_f64());
}

/// Counts a session opened with a negotiated key-exchange group.
pub(crate) fn kx_group(group: Option<&str>) {
    let group = group.unwrap_or("unknown").to_string();
    metrics::counter!("overlay_kx_group_total", "group" => group).increment(1);
}

/// Mirrors the core's stats into metrics: gauges as values, counters as absolute values.
pub(crate) fn mirror_core(stats: &NodeStats, bus_depth: usize) {
    metrics::gauge!("overlay_sessions_active").set(stats.sessions_running as f64);
    metrics::gauge!("overlay_sessions_handshaking").set(stats.sessions_handshaking as f64);
    metrics::gauge!("bus_queue_depth").set(bus_depth as f64);
    metrics::gauge!("overlay_eager_peers").set(stats.eager_peers as f64);
    metrics::gauge!("overlay_lazy_peers").set(stats.lazy_peers as f64);
    metrics::gauge!("overlay_passive_peers").set(stats.passive_peers as f64);
    metrics::gauge!("overlay_dials_in_flight").set(stats.dials_in_flight as f64);
    metrics::gauge!("overlay_queued_frames").set(stats.queued_frames as f64);
    metrics::gauge!("overlay_queued_bytes").set(stats.queued_bytes as f64);
    metrics::gauge!("overlay_seen_ids").set(stats.seen_len as f64);
    metrics::gauge!("overlay_store_messages").set(stats.store_len as f64);
    metrics::gauge!("overlay_store_bytes").set(stats.store_bytes as f64);
    metrics::gauge!("overlay_ready").set(if stats.ready { 1.0 } else { 0.0 });

    let counters: [(&'static str, u64); 41] = [
        ("overlay_sessions_opened_total", stats.sessions_opened),
        ("overlay_sessions_closed_total", stats.sessions_closed),
        (
            "overlay_core_handshake_failures_total",
            stats.handshake_failures,
        ),
        ("overlay_dials_started_total", stats.dials_started),
        ("overlay_dials_failed_total", stats.dials_failed),
        ("overlay_dials_refused_total", stats.dials_refused),
        ("overlay_passive_dropped_total", stats.passive_dropped),
        ("overlay_frames_received_total", stats.frames_in),
        ("overlay_frames_sent_total", stats.frames_out),
        ("overlay_bytes_in_total", stats.bytes_in),
        ("overlay_bytes_out_total", stats.bytes_out),
        ("overlay_gossip_originated_total", stats.gossip_originated),
        ("overlay_gossip_delivered_total", stats.gossip_delivered),
        ("overlay_gossip_duplicates_total", stats.gossip_duplicates),
        ("overlay_gossip_sent_total", stats.gossip_sent),
        ("overlay_delivered_hops_sum", stats.delivered_hops_sum),
        ("overlay_ihave_sent_total", stats.ihave_sent),
        ("overlay_ihave_received_total", stats.ihave_received),
        ("overlay_grafts_sent_total", stats.grafts_sent),
        ("overlay_grafts_received_total", stats.grafts_received),
        ("overlay_graft_misses_sent_total", stats.graft_misses_sent),
        (
            "overlay_graft_misses_received_total",
            stats.graft_misses_received,
        ),
        (
            "overlay_graft_misses_too_soon_total",
            stats.graft_misses_too_soon,
        ),
        (
            "overlay_graft_misses_unsolicited_total",
            stats.graft_misses_unsolicited,
        ),
        ("overlay_prunes_sent_total", stats.prunes_sent),
        ("overlay_prunes_received_total", stats.prunes_received),
        ("overlay_tree_swaps_total", stats.tree_swaps),
        ("overlay_tree_rebuilds_total", stats.tree_rebuilds),
        ("overlay_links_joined_lazy_total", stats.links_joined_lazy),
        ("overlay_gossip_held_total", stats.gossip_held),
        ("overlay_gossip_released_total", stats.gossip_released),
        ("overlay_tree_edges_spared_total", stats.tree_edges_spared),
        ("overlay_young_links_kept_total", stats.young_links_kept),
        ("overlay_link_probe_asks_total", stats.link_probe_asks),
        ("overlay_link_probes_total", stats.link_probes),
        (
            "overlay_link_probes_rejected_total",
            stats.link_probes_rejected,
        ),
        ("overlay_links_optimized_total", stats.links_optimized),
        ("overlay_direct_delivered_total", stats.direct_delivered),
        (
            "overlay_degraded_transitions_total",
            stats.degraded_transitions,
        ),
        ("overlay_peers_unresponsive_total", stats.peers_unresponsive),
        ("overlay_heartbeats_sent_total", stats.heartbeats_sent),
    ];
    for (name, value) in counters {
        metrics::counter!(name).absolute(value);
    }
    metrics::gauge!("overlay_delivered_hops_max").set(f64::from(stats.delivered_hops_max));

    for (i, kind) in Kind::ALL.iter().enumerate() {
        let label = kind.label();
        if let Some(n) = stats.frames_in_by_kind.get(i) {
            metrics::counter!("overlay_frames_total", "direction" => "in", "kind" => label)
                .absolute(*n);
        }
        if let Some(n) = stats.frames_out_by_kind.get(i) {
            metrics::counter!("overlay_frames_total", "direction" => "out", "kind" => label)
                .absolute(*n);
        }
    }
    let evictions = &stats.store_evictions;
    for (reason, n) in [
        ("expired", evictions.expired),
        ("over_bytes", evictions.over_bytes),
        ("over_count", evictions.over_count),
        ("too_large", evictions.too_large),
    ] {
        metrics::counter!("overlay_store_evictions_total", "reason" => reason).absolute(n);
    }
    metrics::gauge!("overlay_preauth_connections").set(stats.preauth_sessions as f64);
    metrics::gauge!("overlay_bans_active").set(stats.bans_active as f64);
    metrics::gauge!("overlay_peer_score_min").set(stats.lowest_score);
    metrics::counter!("overlay_peers_banned_total").absolute(stats.peers_banned);
    for (penalty, n) in Penalty::ALL.iter().zip(stats.score_penalties.iter()) {
        metrics::counter!("overlay_score_penalties_total", "component" => penalty.label())
            .absolute(*n);
    }
    for (reason, n) in stats.rejected.iter() {
        metrics::counter!("rejected_total", "reason" => reason.label()).absolute(n);
    }
    mirror_clients(&stats.clients);
}

/// Client sessions (issue #9): gauges and counters of their own.
fn mirror_clients(c: &overlay_proto::ClientStats) {
    metrics::gauge!("client_sessions").set(c.sessions as f64);
    metrics::gauge!("client_sessions_handshaking").set(c.handshaking as f64);
    metrics::gauge!("client_subscribers").set(c.subscribers as f64);
    metrics::gauge!("client_buffered_bytes").set(c.buffered_bytes as f64);
    let counters: [(&'static str, u64); 8] = [
        ("client_sessions_opened_total", c.opened),
        ("client_sessions_with_certificate_total", c.from_certificate),
        ("client_sessions_closed_total", c.closed),
        ("client_published_total", c.published),
        ("client_delivered_total", c.delivered),
        ("client_lagged_total", c.lagged),
        ("client_direct_in_total", c.direct_in),
        ("client_direct_out_total", c.direct_out),
    ];
    for (name, value) in counters {
        metrics::counter!(name).absolute(value);
    }
    for (reason, n) in c.rejected.iter() {
        metrics::counter!("client_rejected_total", "reason" => reason.label()).absolute(n);
    }
}
