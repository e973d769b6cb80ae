//! Logging and metrics setup for the daemon: a `tracing` subscriber with the configured
//! filter, and the Prometheus recorder whose handle `GET /metrics` renders.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

/// Buckets (seconds) of the latency histograms: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often the recorder's upkeep (histogram maintenance) runs.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A telemetry setup failure.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("invalid log_level `{filter}`: {detail}")]
    Filter {
        /// The filter text.
        filter: String,
        /// The parser's message.
        detail: String,
    },
    /// A global subscriber is already installed.
    #[error("a tracing subscriber is already installed")]
    SubscriberInstalled,
    /// The Prometheus recorder could not be built or installed.
    #[error("prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
}

/// Installs the global `tracing` subscriber: human-readable lines on stderr, filtered by
/// `filter` (an `EnvFilter` directive string such as `warn,svc_overlay=info`).
pub fn init_tracing(filter: &str) -> Result<(), TelemetryError> {
    let env_filter = EnvFilter::builder()
        .parse(filter)
        .map_err(|e| TelemetryError::Filter {
            filter: filter.to_string(),
            detail: e.to_string(),
        })?;
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_color())
        .with_target(true)
        .try_init()
        .map_err(|_| TelemetryError::SubscriberInstalled)
}

/// Colours only on a terminal, and never with `NO_COLOR` set.
fn use_color() -> bool {
    use std::io::IsTerminal as _;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The recorder configuration: histograms (not summaries) with [`LATENCY_BUCKETS`] for every
/// metric whose name ends in `_seconds`.
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)?)
}

/// Installs the Prometheus recorder as the global `metrics` recorder and describes the
/// metrics this crate's HTTP layer emits.
pub fn install_prometheus() -> Result<PrometheusHandle, TelemetryError> {
    let handle = prometheus_builder()?.install_recorder()?;
    describe_http_metrics();
    Ok(handle)
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] until the task is aborted.
pub fn spawn_upkeep(handle: PrometheusHandle) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Registers at zero the series of the golden counters that only move on rare events
/// (`service_restarts_total`, `errors_total`, `overlay_handshake_failures_total`), so dashboards
/// and alerts see them from the first scrape. Adding zero never changes a counter, so this is
/// safe to call after the runtime has counted something.
pub fn register_golden_series() {
    for task in ["accept", "handshake"] {
        metrics::counter!("service_restarts_total", "task" => task).increment(0);
    }
    metrics::counter!("errors_total", "stage" => "accept", "kind" => "unknown_protocol")
        .increment(0);
    metrics::counter!("overlay_handshake_failures_total", "reason" => "timeout").increment(0);
    metrics::describe_counter!(
        "service_restarts_total",
        "Crashed runtime tasks restarted, by task"
    );
    metrics::describe_counter!("errors_total", "Runtime errors by stage and kind");
    metrics::describe_counter!(
        "overlay_handshake_failures_total",
        "TLS handshakes that failed, by reason"
    );
    metrics::describe_counter!("rejected_total", "Refused or dropped work, by reason");
    metrics::describe_gauge!("overlay_sessions_active", "Sessions in Running state");
    metrics::describe_gauge!("bus_queue_depth", "Messages waiting for the node task");
    metrics::describe_histogram!(
        "overlay_gossip_latency_seconds",
        metrics::Unit::Seconds,
        "Gossip latency by stage"
    );
    metrics::describe_gauge!(
        "overlay_start_to_ready_seconds",
        metrics::Unit::Seconds,
        "Time from process start to the first ready state"
    );
}

/// Help texts of the HTTP layer's metrics.
pub fn describe_http_metrics() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to produce an HTTP response (headers), by route"
    );
    metrics::describe_counter!(
        "http_control_refused_total",
        "Control API requests refused (not loopback, no valid capability token)"
    );
    metrics::describe_counter!(
        "http_sse_dropped_total",
        "Gossip events dropped for slow /v1/gossip clients"
    );
    metrics::describe_gauge!("http_sse_clients", "Connected /v1/gossip clients");
    metrics::describe_counter!(
        "http_connections_refused_total",
        "HTTP connections closed unserved because the connection limit was reached"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_sorted() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn histograms_render_buckets() {
        let recorder = prometheus_builder().map(|b| b.build_recorder());
        let Ok(recorder) = recorder else {
            panic!("builder failed");
        };
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("overlay_gossip_latency_seconds", "stage" => "deliver")
                .record(0.003);
        });
        let text = handle.render();
        assert!(
            text.contains(
                "overlay_gossip_latency_seconds_bucket{stage=\"deliver\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
    }
}
