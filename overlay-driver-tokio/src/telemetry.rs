//! Logging and metrics setup for the daemon: a `tracing` subscriber (text or JSON lines) with a
//! filter that SIGHUP can replace, and the Prometheus recorder whose handle `GET /metrics`
//! renders.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

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
    /// The subscriber whose filter was to be replaced is gone.
    #[error("the log subscriber is gone; cannot change its filter")]
    SubscriberGone,
    /// The Prometheus recorder could not be built or installed.
    #[error("prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
}

/// How log lines are written (`--log-format`, env `LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal unless `NO_COLOR` is set).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields
    /// (`message`, …), `span` (the innermost span's fields, e.g. `peer_id`, `route`) and `spans`
    /// (every open span, outermost first).
    Json,
}

impl LogFormat {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl core::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log format name other than `text` or `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}` (text | json)")]
pub struct UnknownLogFormat(pub String);

impl core::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat(s.to_string())),
        }
    }
}

/// The subscriber stack under the output layer: the registry and the reloadable filter.
type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// Changes the log filter of the installed subscriber (SIGHUP reload).
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    /// Replaces the filter with `filter` (an `EnvFilter` directive string). On error the old
    /// filter stays.
    pub fn set_filter(&self, filter: &str) -> Result<(), TelemetryError> {
        let env_filter = parse_filter(filter)?;
        self.handle
            .reload(env_filter)
            .map_err(|_| TelemetryError::SubscriberGone)
    }
}

fn parse_filter(filter: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| TelemetryError::Filter {
            filter: filter.to_string(),
            detail: e.to_string(),
        })
}

/// The output layer for `format`, writing to `writer`. `color` applies to text only.
fn output_layer<W>(
    format: LogFormat,
    writer: W,
    color: bool,
) -> Box<dyn Layer<Filtered> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(color)
                .with_target(true),
        ),
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .with_target(true)
                .with_writer(writer),
        ),
    }
}

/// A subscriber writing `format` lines to `writer`, filtered by `filter`, and the control of
/// its filter. Not installed: see [`init_tracing`].
pub fn subscriber<W>(
    filter: &str,
    format: LogFormat,
    writer: W,
    color: bool,
) -> Result<(impl tracing::Subscriber + Send + Sync, LogControl), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter_layer, handle) = reload::Layer::new(parse_filter(filter)?);
    let subscriber = tracing_subscriber::registry()
        .with(filter_layer)
        .with(output_layer(format, writer, color));
    Ok((subscriber, LogControl { handle }))
}

/// Installs the global `tracing` subscriber: `format` lines on stderr, filtered by `filter`
/// (an `EnvFilter` directive string such as `warn,svc_overlay=info`). The returned control
/// changes the filter later.
pub fn init_tracing(filter: &str, format: LogFormat) -> Result<LogControl, TelemetryError> {
    let (subscriber, control) = subscriber(filter, format, std::io::stderr, use_color())?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| TelemetryError::SubscriberInstalled)?;
    // Records of the `log` crate (dependencies) are not bridged: nothing here uses `log`.
    Ok(control)
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
/// (`service_restarts_total`, `errors_total`, `overlay_handshake_failures_total`,
/// `overlay_reloads_total`, `overlay_reload_failures_total`), so dashboards
/// and alerts see them from the first scrape. Adding zero never changes a counter, so this is
/// safe to call after the runtime has counted something.
pub fn register_golden_series() {
    for task in ["accept", "handshake"] {
        metrics::counter!("service_restarts_total", "task" => task).increment(0);
    }
    metrics::counter!("errors_total", "stage" => "accept", "kind" => "unknown_protocol")
        .increment(0);
    metrics::counter!("overlay_handshake_failures_total", "reason" => "timeout").increment(0);
    metrics::counter!("overlay_reloads_total").increment(0);
    metrics::counter!("overlay_reload_failures_total").increment(0);
    metrics::describe_counter!("overlay_reloads_total", "SIGHUP reloads attempted");
    metrics::describe_counter!(
        "overlay_reload_failures_total",
        "SIGHUP reloads refused (invalid configuration, or live settings the node refused)"
    );
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
        "http_sse_dropped_total",
        "Gossip events lost by /v1/gossip clients that fell behind (their streams then end)"
    );
    metrics::describe_gauge!("http_sse_clients", "Connected /v1/gossip clients");
    metrics::describe_gauge!(
        "http_connections_open",
        "Open HTTP connections of every HTTP listener"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_sorted() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            self.0
                .lock()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        }
    }

    #[test]
    fn json_lines_carry_timestamp_level_target_and_span_fields() {
        let out = Buffer::default();
        let Ok((sub, _control)) = subscriber("info", LogFormat::Json, out.clone(), false) else {
            panic!("valid filter");
        };
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("conn", peer_id = "peer:ab", route = "/v1/peers");
            let _entered = span.enter();
            tracing::info!(sessions = 3, "session up");
            tracing::debug!("filtered out");
        });
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(lines[0]) else {
            panic!("not JSON: {text}");
        };
        assert!(v["timestamp"].is_string(), "{v}");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], module_path!());
        assert_eq!(v["message"], "session up");
        assert_eq!(v["sessions"], 3);
        assert_eq!(v["span"]["name"], "conn");
        assert_eq!(v["span"]["peer_id"], "peer:ab");
        assert_eq!(v["span"]["route"], "/v1/peers");
        assert_eq!(v["spans"][0]["peer_id"], "peer:ab");
    }

    #[test]
    fn the_filter_changes_live_and_a_bad_one_keeps_the_old() {
        let out = Buffer::default();
        let Ok((sub, control)) = subscriber("warn", LogFormat::Text, out.clone(), false) else {
            panic!("valid filter");
        };
        tracing::subscriber::with_default(sub, || {
            tracing::info!("before reload");
            assert!(control.set_filter("info").is_ok());
            tracing::info!("after reload");
            assert!(matches!(
                control.set_filter("info,[=bad"),
                Err(TelemetryError::Filter { .. })
            ));
            tracing::info!("still info");
        });
        let text = out.text();
        assert!(!text.contains("before reload"), "{text}");
        assert!(text.contains("after reload"), "{text}");
        assert!(text.contains("still info"), "{text}");
    }

    #[test]
    fn log_format_names() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(" Text ".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
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
