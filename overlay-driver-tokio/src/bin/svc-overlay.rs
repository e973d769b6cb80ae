//! The `svc-overlay` daemon and its operator commands.
//!
//! With a subcommand (`keygen`, `cap-key`, `token`, `config`, `peers`, `publish`, `tail`,
//! `completions`) it runs that command and exits (see [`svc_overlay::operator`]). Without one
//! it is the daemon: it loads the configuration (flags > environment > config file > defaults)
//! and hands it to [`svc_overlay::daemon::run`] — logging and the Prometheus recorder, the
//! overlay node with the HTTP server on the same port (first-byte demultiplexing) and on
//! `METRICS_ADDR`, systemd notification, live reload on SIGHUP, and a graceful drain on SIGINT
//! or SIGTERM.
//!
//! Exit codes: 0 after a clean shutdown (and for `--help` / `--version`), 2 for a configuration
//! error (including one found at start, such as `origin_auth = "sign"` with a non-Ed25519
//! identity), 1 when the node cannot start or stops on its own.

#[cfg(not(loom))]
use std::io::Write as _;
#[cfg(not(loom))]
use std::process::ExitCode;
#[cfg(not(loom))]
use std::time::Instant;

#[cfg(not(loom))]
use svc_overlay::config::{self, LoadOutcome};
#[cfg(not(loom))]
use svc_overlay::daemon;

/// The loom build (`--cfg loom`) has no daemon: the library is only its shared state there.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> ExitCode {
    let started = Instant::now();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cfg = match config::load(args.iter().cloned(), &config::env::process_env) {
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
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(daemon::EXIT_CONFIG));
        }
    };
    daemon::run(cfg, daemon::reloader_from_args(args), started)
}
