//! Daemon and library configuration.
//!
//! A [`DaemonConfig`] is resolved from four layers, highest first: command-line flag,
//! environment variable, TOML config file, built-in default. Every value is parsed and
//! range-checked, the core's [`NodeConfig::validate`] runs last, and any failure is a
//! [`DaemonConfigError`] naming the setting, the value and what is accepted (exit code 2).
//!
//! - [`cli`]: the `clap` command line;
//! - [`env`]: the environment variables and the injectable lookup;
//! - [`file`]: the TOML schema;
//! - [`secrets`]: key and token files (mode checks, zeroizing reads);
//! - `resolve`: precedence and validation.
//!
//! `docs/CONFIG.md` lists every setting; `Overlay.example.toml` is a complete example file.

pub mod cli;
pub mod env;
pub mod error;
pub mod file;
mod resolve;
pub mod secrets;

use core::fmt;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use overlay_proto::{MacKey, NodeConfig};

use crate::pq::PqMode;
use crate::telemetry::LogFormat;

pub use cli::Cli;
pub use env::EnvLookup;
pub use error::{DaemonConfigError, Origin};
pub use file::FileConfig;
pub use resolve::http::HttpSettings;
pub use resolve::{DEV_KID, MAX_MS};

/// Built-in defaults of the daemon-level settings (core settings default to
/// [`NodeConfig::default`]).
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::time::Duration;

    /// `--bind`: loopback, port 9415.
    pub const BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9415));
    /// `--metrics-addr`: loopback, ephemeral port.
    pub const METRICS_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    /// `--max-conns`.
    pub const MAX_CONNS: usize = 1024;
    /// `--log-level`: a `tracing` `EnvFilter` string.
    pub const LOG_LEVEL: &str = "warn,svc_overlay=info,overlay_proto=info";
    /// `--amnesia`.
    pub const AMNESIA: bool = true;
    /// `--idle-ms`.
    pub const IDLE: Duration = Duration::from_millis(30_000);
    /// `--read-ms`: a backstop only, far above the core's failure detector (which closes a
    /// silent session after `liveness_ms`, at most `idle_ms`).
    pub const READ: Duration = Duration::from_millis(60_000);
    /// `--write-ms`.
    pub const WRITE: Duration = Duration::from_millis(15_000);
    /// `--handshake-ms`.
    pub const HANDSHAKE: Duration = Duration::from_millis(5_000);
    /// `--drain-ms`.
    pub const DRAIN: Duration = Duration::from_millis(5_000);
    /// `--tenant`.
    pub const TENANT: &str = "overlay";
    /// The config file read when `--config` is not given, if it exists.
    pub const CONFIG_FILE: &str = "Overlay.toml";
}

/// The daemon's resolved configuration.
#[derive(Clone, PartialEq)]
pub struct DaemonConfig {
    /// Listen address for peer sessions.
    pub bind: SocketAddr,
    /// The address advertised to peers (HELLO `listen`, shuffles); `None`: the bound address,
    /// or nothing at all when that is unspecified (`0.0.0.0` / `::`).
    pub advertise: Option<SocketAddr>,
    /// Listen address of the metrics / health / control HTTP server.
    pub metrics_addr: SocketAddr,
    /// Most TCP connections accepted at once.
    pub max_conns: usize,
    /// Peers to dial at start: `host:port` or `peer:<64 hex>@host:port` (names are resolved by
    /// the runtime at every dial attempt).
    pub peers: Vec<String>,
    /// Topic names joined at start (validated; the default topic is never listed).
    pub topics: Vec<String>,
    /// TLS key-exchange policy.
    pub pq: PqMode,
    /// Where to write a replayable trace, if anywhere.
    pub trace_out: Option<PathBuf>,
    /// `tracing` `EnvFilter` directives.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// `trace_out` was explicitly allowed while amnesia is on.
    pub trace_out_despite_amnesia: bool,
    /// Amnesia mode: keep nothing on disk (also `node.auth.amnesia`).
    pub amnesia: bool,
    /// Idle timeout of a session (also `node.idle_timeout`).
    pub idle: Duration,
    /// Socket read timeout.
    pub read: Duration,
    /// Socket write timeout.
    pub write: Duration,
    /// Graceful shutdown deadline.
    pub drain: Duration,
    /// CA bundle (PEM) peers must chain to.
    pub ca: Option<PathBuf>,
    /// Node certificate chain and private key (PEM); `None` means a generated dev identity.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// The core's settings, fully populated: limits, timers, `auth.keys`, `auth.own_token`.
    pub node: NodeConfig,
    /// No capability key was configured: the ring holds [`MacKey::DEV`] under kid
    /// [`DEV_KID`] and the runtime mints its own dev token (unless one was configured).
    pub dev_mode: bool,
    /// The HTTP side: control listener and rules, limits.
    pub http: HttpSettings,
}

impl Default for DaemonConfig {
    /// What `svc-overlay` with no flags, no environment and no config file runs with
    /// (dev mode, loopback only).
    fn default() -> Self {
        let mut node = NodeConfig {
            idle_timeout: defaults::IDLE,
            handshake_timeout: defaults::HANDSHAKE,
            ..NodeConfig::default()
        };
        node.auth.amnesia = defaults::AMNESIA;
        node.auth.tenant = defaults::TENANT.to_string();
        node.auth
            .keys
            .insert(DEV_KID, defaults::TENANT, MacKey::DEV);
        DaemonConfig {
            bind: defaults::BIND,
            advertise: None,
            metrics_addr: defaults::METRICS_ADDR,
            max_conns: defaults::MAX_CONNS,
            peers: Vec::new(),
            topics: Vec::new(),
            pq: PqMode::default(),
            trace_out: None,
            log_level: defaults::LOG_LEVEL.to_string(),
            log_format: LogFormat::Text,
            trace_out_despite_amnesia: false,
            amnesia: defaults::AMNESIA,
            idle: defaults::IDLE,
            read: defaults::READ,
            write: defaults::WRITE,
            drain: defaults::DRAIN,
            ca: None,
            cert_key: None,
            node,
            dev_mode: true,
            http: HttpSettings::default(),
        }
    }
}

impl fmt::Debug for DaemonConfig {
    /// Like a derived `Debug`, but the node's own token is shown as `<redacted>` (keys already
    /// redact themselves).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut node = self.node.clone();
        if node.auth.own_token.is_some() {
            node.auth.own_token = Some("<redacted>".to_string().into());
        }
        f.debug_struct("DaemonConfig")
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("metrics_addr", &self.metrics_addr)
            .field("max_conns", &self.max_conns)
            .field("peers", &self.peers)
            .field("topics", &self.topics)
            .field("pq", &self.pq)
            .field("trace_out", &self.trace_out)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("trace_out_despite_amnesia", &self.trace_out_despite_amnesia)
            .field("amnesia", &self.amnesia)
            .field("idle", &self.idle)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("drain", &self.drain)
            .field("ca", &self.ca)
            .field("cert_key", &self.cert_key)
            .field("node", &node)
            .field("dev_mode", &self.dev_mode)
            .field("http", &self.http)
            .finish()
    }
}

/// What the command line asked for.
// `Run` is much larger than the text variants; the value is built once per process, so boxing
// would only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum LoadOutcome {
    /// Run the daemon with this configuration.
    Run(DaemonConfig),
    /// `--help` / `-h`: print this text to stdout and exit 0.
    Help(String),
    /// `--version` / `-V`: print this text to stdout and exit 0.
    Version(String),
    /// An operator subcommand (`keygen`, `token mint`, …): run it with
    /// [`crate::operator::run`].
    Operator(Box<Cli>),
}

/// Parses `args` (the first item is the program name), reads `env` and the config file
/// (`--config FILE`, else `./Overlay.toml` if it exists) and resolves everything.
pub fn load(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadOutcome, DaemonConfigError> {
    load_with_default_config(args, env, Path::new(defaults::CONFIG_FILE))
}

/// Like [`load`], with the process's arguments and environment.
pub fn load_from_process() -> Result<LoadOutcome, DaemonConfigError> {
    load(std::env::args_os(), &env::process_env)
}

/// Like [`load`], but reads `default_config` (if it exists) when `--config` is not given.
pub fn load_with_default_config(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
    default_config: &Path,
) -> Result<LoadOutcome, DaemonConfigError> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(LoadOutcome::Help(text))
                }
                ErrorKind::DisplayVersion => Ok(LoadOutcome::Version(text)),
                _ => Err(DaemonConfigError::Cli(text)),
            };
        }
    };
    if cli.command.is_some() {
        return Ok(LoadOutcome::Operator(Box::new(cli)));
    }
    let file = match &cli.config {
        Some(path) => Some((path.clone(), FileConfig::read(path)?)),
        None if default_config.is_file() => Some((
            default_config.to_path_buf(),
            FileConfig::read(default_config)?,
        )),
        None => None,
    };
    resolve::Resolver::new(&cli, env, file)
        .resolve()
        .map(LoadOutcome::Run)
}

/// Resolves an already-parsed command line (no config file is read unless `cli.config` is
/// set).
pub fn resolve_cli(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DaemonConfig, DaemonConfigError> {
    let file = match &cli.config {
        Some(path) => Some((path.clone(), FileConfig::read(path)?)),
        None => None,
    };
    resolve::Resolver::new(cli, env, file).resolve()
}

/// The full `--help` text.
pub fn help_text() -> String {
    Cli::command().render_long_help().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn default_matches_an_empty_load() {
        let out = load_with_default_config(
            [OsString::from("svc-overlay")],
            &no_env,
            Path::new("/nonexistent/Overlay.toml"),
        );
        assert_eq!(out, Ok(LoadOutcome::Run(DaemonConfig::default())));
        assert_eq!(DaemonConfig::default().node.validate(), Ok(()));
    }

    #[test]
    fn debug_redacts_the_token() {
        let mut cfg = DaemonConfig::default();
        cfg.node.auth.own_token = Some("s3cr3t-token".to_string().into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(cfg.node.auth.own_token.as_deref(), Some("s3cr3t-token"));
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
