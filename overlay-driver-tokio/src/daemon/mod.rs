//! The `svc-overlay` daemon's life cycle, as library functions the binary calls once it has a
//! configuration: logging and metrics set-up, start, systemd notification, live reload on
//! SIGHUP, graceful drain on SIGTERM / SIGINT.
//!
//! - `signals`: which signal asks for what;
//! - [`reload`]: what a reload changes live and what needs a restart;
//! - `notify`: `READY=1` / `RELOADING=1` / `STOPPING=1` on `$NOTIFY_SOCKET`.
//!
//! Exit codes: 0 after a clean shutdown, 2 for a configuration error, 1 when the node cannot
//! start or stops on its own.

mod notify;
pub mod reload;
mod signals;

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{self, DaemonConfig, DaemonConfigError, LoadOutcome};
use crate::http::{self, HttpConfig, MetricsRender, RouterSlot, Routes};
use crate::telemetry::{self, LogControl};
use crate::{Overlay, OverlayBuilder};

pub use reload::ReloadPlan;
pub use signals::{Signal, Signals};

/// Exit code for a configuration error (matches `DaemonConfigError::exit_code`).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a start-up or runtime failure.
pub const EXIT_FAILURE: u8 = 1;

/// Reads the configuration again for a SIGHUP reload (the same flags and environment; the
/// config file and the key and token files are read again).
pub type Reloader = Arc<dyn Fn() -> Result<DaemonConfig, DaemonConfigError> + Send + Sync>;

/// A [`Reloader`] that resolves `args` (the first item is the program name) against the
/// process environment, as [`config::load`] does at start.
pub fn reloader_from_args(args: Vec<OsString>) -> Reloader {
    Arc::new(
        move || match config::load(args.iter().cloned(), &config::env::process_env)? {
            LoadOutcome::Run(cfg) => Ok(cfg),
            LoadOutcome::Help(_) | LoadOutcome::Version(_) | LoadOutcome::Operator(_) => {
                Err(DaemonConfigError::Cli(
                    "the command line asks for help, version or an operator command, not a \
                     daemon configuration"
                        .to_string(),
                ))
            }
        },
    )
}

/// Runs the daemon with `cfg` until SIGTERM / SIGINT (or the node stopping on its own):
/// installs logging (`log_level`, `log_format`), builds the tokio runtime, starts the node and
/// its HTTP listeners, tells systemd it is ready, reloads on SIGHUP with `reload`, and drains
/// on shutdown. `started` is the process start, for the start-to-ready figure.
pub fn run(cfg: DaemonConfig, reload: Reloader, started: Instant) -> ExitCode {
    let log = match telemetry::init_tracing(&cfg.log_level, cfg.log_format) {
        Ok(log) => log,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "svc-overlay: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
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
    let code = runtime.block_on(serve(cfg, reload, log, started));
    // Connection tasks still open (HTTP keep-alive, SSE) must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Prometheus recorder could not be installed.
    #[error("{0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    /// The metrics listener could not be bound.
    #[error("cannot bind the metrics listener on {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The control listener (`--control-addr`) could not be bound.
    #[error("cannot bind the control listener on {addr}: {source}")]
    ControlBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The overlay node could not start.
    #[error("cannot start the overlay: {0}")]
    Overlay(#[from] crate::Error),
}

/// Starts the node and serves until a shutdown signal; the whole daemon on a runtime.
async fn serve(cfg: DaemonConfig, reload: Reloader, log: LogControl, started: Instant) -> ExitCode {
    // Installed before anything binds, so an early SIGHUP cannot kill the process.
    let mut signals = Signals::install();
    let overlay = match start(&cfg, started).await {
        Ok(overlay) => overlay,
        Err(e) => {
            tracing::error!("{e}");
            let _ = writeln!(std::io::stderr(), "svc-overlay: {e}");
            // A setting found unusable at start (e.g. `origin_auth = "sign"` with a
            // non-Ed25519 identity) is a configuration error like any other.
            return match e {
                StartError::Overlay(crate::Error::Config(_)) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::from(EXIT_FAILURE),
            };
        }
    };
    notify::ready(&format!("serving on {}", overlay.local_addr()));
    let mut running = cfg;
    loop {
        let signal = tokio::select! {
            signal = signals.next() => signal,
            () = overlay.closed() => {
                tracing::error!("the overlay node stopped unexpectedly");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        match signal {
            Signal::Reload => {
                notify::reloading();
                let status = reload_once(&overlay, &mut running, &reload, &log).await;
                notify::reloaded(&status);
            }
            Signal::Shutdown(name) => {
                tracing::info!(
                    "{name} received; shutting down (drain {} ms)",
                    running.drain.as_millis()
                );
                notify::stopping();
                return drain(&overlay, running.drain).await;
            }
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

    let control_listener = match cfg.http.control_addr {
        Some(addr) => Some(
            http::bind_listener(addr)
                .await
                .map_err(|source| StartError::ControlBind { addr, source })?,
        ),
        None => None,
    };

    let mut http_config = HttpConfig::new(&cfg.node);
    cfg.http.apply(&mut http_config);
    // Each listener has its own connection budget.
    let slot = RouterSlot::new(http_config.guard());
    let overlay = OverlayBuilder::from_daemon_config(cfg)?
        .http_handler(slot.handler())
        .build()
        .await?;

    let render: MetricsRender = Arc::new(move || prometheus.render());
    let http_config = http_config.with_metrics(render);
    let overlay_routes = if control_listener.is_some() {
        Routes::Public
    } else {
        Routes::All
    };
    slot.set(http::router_with(
        overlay.clone(),
        http_config.clone(),
        overlay_routes,
    ));
    http::spawn_listener(
        metrics_listener,
        http::router_with(overlay.clone(), http_config.clone(), Routes::Public),
        http_config.guard(),
    );
    if let Some(listener) = control_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("control API listening on http://{addr}/v1/");
        }
        http::spawn_listener(
            listener,
            http::router_with(overlay.clone(), http_config.clone(), Routes::Control),
            http_config.guard(),
        );
    }

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

/// One SIGHUP: reads the configuration again, applies what can change live, logs what
/// changed and what needs a restart, and returns a one-line status. On any error the running
/// configuration stays as it was.
async fn reload_once(
    overlay: &Overlay,
    running: &mut DaemonConfig,
    reload: &Reloader,
    log: &LogControl,
) -> String {
    metrics::counter!("overlay_reloads_total").increment(1);
    let read = {
        let reload = Arc::clone(reload);
        tokio::task::spawn_blocking(move || reload()).await
    };
    let next = match read {
        Ok(Ok(next)) => next,
        Ok(Err(e)) => {
            metrics::counter!("overlay_reload_failures_total").increment(1);
            tracing::error!("SIGHUP: configuration not reloaded, keeping the running one: {e}");
            return format!("reload failed: {e}");
        }
        Err(e) => {
            metrics::counter!("overlay_reload_failures_total").increment(1);
            tracing::error!(error = %e, "SIGHUP: the configuration reader crashed");
            return "reload failed".to_string();
        }
    };
    let plan = ReloadPlan::between(running, &next);
    if plan.is_empty() {
        tracing::info!("SIGHUP: configuration unchanged");
        return "configuration unchanged".to_string();
    }
    let mut applied = Vec::new();
    if let Some(filter) = &plan.log_level {
        match log.set_filter(filter) {
            Ok(()) => {
                running.log_level = filter.clone();
                applied.push("log_level");
            }
            Err(e) => tracing::error!("SIGHUP: log filter not changed: {e}"),
        }
    }
    if let Some(live) = plan.live {
        match overlay.reconfigure(live).await {
            Ok(now) => {
                running.node = now.applied_to(&running.node);
                applied.push("core");
            }
            Err(e) => {
                metrics::counter!("overlay_reload_failures_total").increment(1);
                tracing::error!("SIGHUP: live settings refused by the node, nothing changed: {e}");
            }
        }
    }
    let changes: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| {
            (c.setting == "log_level" && applied.contains(&"log_level"))
                || (c.setting != "log_level" && applied.contains(&"core"))
        })
        .map(ToString::to_string)
        .collect();
    if !changes.is_empty() {
        tracing::info!("SIGHUP: applied {}", changes.join(", "));
    }
    if !plan.needs_restart.is_empty() {
        tracing::warn!(
            "SIGHUP: changed but only applied after a restart: {}",
            plan.needs_restart.join(", ")
        );
    }
    format!(
        "reloaded: {} applied, {} need a restart",
        changes.len(),
        plan.needs_restart.len()
    )
}

/// Graceful shutdown within the drain deadline.
async fn drain(overlay: &Overlay, deadline: Duration) -> ExitCode {
    // The runtime bounds its own drain by `deadline`; this is a backstop.
    let limit = deadline.saturating_add(Duration::from_secs(2));
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
