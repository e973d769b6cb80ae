//! The `svc-overlay` daemon and its operator commands.
//!
//! With a subcommand (`keygen`, `cap-key`, `token`, `config`, `peers`, `publish`, `tail`,
//! `completions`) it runs that command and exits (see [`svc_overlay::operator`]). Without one
//! it is the daemon:
//! Loads the configuration (flags > environment > config file > defaults), sets up logging
//! and the Prometheus recorder, starts the overlay node with the HTTP server on the same port
//! (first-byte demultiplexing) and on `METRICS_ADDR`, and runs until SIGINT or SIGTERM, then
//! shuts down gracefully within the drain deadline.
//!
//! Exit codes: 0 after a clean shutdown (and for `--help` / `--version`), 2 for a configuration
//! error, 1 when the node cannot start or stops on its own.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use svc_overlay::config::{self, DaemonConfig, LoadOutcome};
use svc_overlay::http::{self, HttpConfig, MetricsRender, RouterSlot};
use svc_overlay::{telemetry, Overlay, OverlayBuilder};

/// Exit code for a configuration error (matches `DaemonConfigError::exit_code`).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a start-up or runtime failure.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let started = Instant::now();
    let cfg = match config::load_from_process() {
        Ok(LoadOutcome::Run(cfg)) => cfg,
        Ok(LoadOutcome::Help(text) | LoadOutcome::Version(text)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            return ExitCode::SUCCESS;
        }
        Ok(LoadOutcome::Operator(cli)) => {
            return match svc_overlay::operator::run(&cli, &config::env::process_env) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "svc-overlay: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "svc-overlay: {e}");
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_CONFIG));
        }
    };
    if let Err(e) = telemetry::init_tracing(&cfg.log_level) {
        let _ = writeln!(std::io::stderr(), "svc-overlay: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("svc-overlay")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(run(cfg, started));
    // Connection tasks still open (HTTP keep-alive, SSE) must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("cannot bind the metrics listener on {addr}: {source}")]
    MetricsBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the overlay: {0}")]
    Overlay(#[from] svc_overlay::OverlayError),
}

async fn run(cfg: DaemonConfig, started: Instant) -> ExitCode {
    match start(&cfg, started).await {
        Ok(overlay) => serve_until_signal(overlay, &cfg).await,
        Err(e) => {
            tracing::error!("{e}");
            let _ = writeln!(std::io::stderr(), "svc-overlay: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Starts everything and returns the running node.
async fn start(cfg: &DaemonConfig, started: Instant) -> Result<Overlay, StartError> {
    let prometheus = telemetry::install_prometheus()?;
    telemetry::register_golden_series();
    let _upkeep = telemetry::spawn_upkeep(prometheus.clone());

    // Bound before the node starts, so "ready" implies every listener is up.
    let metrics_listener = http::bind_listener(cfg.metrics_addr)
        .await
        .map_err(|source| StartError::MetricsBind {
            addr: cfg.metrics_addr,
            source,
        })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| StartError::MetricsBind {
            addr: cfg.metrics_addr,
            source,
        })?;

    let slot = RouterSlot::new();
    let overlay = OverlayBuilder::from_daemon_config(cfg)?
        .http_handler(slot.handler())
        .build()
        .await?;

    let render: MetricsRender = Arc::new(move || prometheus.render());
    let router = http::router(
        overlay.clone(),
        HttpConfig::new(&cfg.node).with_metrics(render),
    );
    slot.set(router.clone());
    http::spawn_listener(metrics_listener, router);

    let mode = if cfg.dev_mode { " (dev mode)" } else { "" };
    tracing::info!(
        "svc-overlay listening on {} as {}{mode}",
        overlay.local_addr(),
        overlay.peer_id()
    );
    tracing::info!("metrics listening on http://{metrics_addr}/metrics");
    spawn_ready_report(&overlay, started);
    Ok(overlay)
}

/// Logs the start-to-ready time once the node first reports ready.
fn spawn_ready_report(overlay: &Overlay, started: Instant) {
    let mut readiness = overlay.readiness();
    tokio::spawn(async move {
        if readiness.wait_for(|r| r.ready).await.is_ok() {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!("ready in {ms:.1} ms after start");
            metrics::gauge!("overlay_start_to_ready_seconds").set(ms / 1e3);
        }
    });
}

/// Runs until SIGINT/SIGTERM (or the node stopping on its own), then shuts down.
async fn serve_until_signal(overlay: Overlay, cfg: &DaemonConfig) -> ExitCode {
    let stopped_by_itself = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!("{signal} received; shutting down (drain {} ms)", cfg.drain.as_millis());
            false
        }
        () = overlay.closed() => true,
    };
    if stopped_by_itself {
        tracing::error!("the overlay node stopped unexpectedly");
        return ExitCode::from(EXIT_FAILURE);
    }
    // The runtime bounds its own drain by `drain`; this is a backstop.
    let limit = cfg.drain.saturating_add(Duration::from_secs(2));
    if tokio::time::timeout(limit, overlay.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown did not finish within the drain deadline; exiting anyway");
    } else {
        tracing::info!("stopped");
    }
    ExitCode::SUCCESS
}

/// Resolves with the signal's name on SIGINT or (on unix) SIGTERM.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
