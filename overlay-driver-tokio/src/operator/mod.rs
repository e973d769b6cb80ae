//! The operator subcommands of the `svc-overlay` binary: identities, capability keys and
//! tokens, configuration checks, a control-API client and shell completions.
//!
//! | command | does |
//! |---|---|
//! | `keygen --out DIR` | `DIR/cert.pem`, `DIR/key.pem` (0600); prints `peer:<64 hex>` |
//! | `cap-key new --out FILE` | 64 hex digits (0600) |
//! | `token mint --cap-key KID:TID:FILE [caveats]` | the token |
//! | `token inspect TOKEN [--cap-key …]` | JSON of the fields and caveats |
//! | `token attenuate TOKEN --cap-key … [caveats]` | the narrowed token |
//! | `config check [FILE]` | the effective configuration, secrets redacted (exit 2 on errors) |
//! | `peers`, `publish DATA`, `tail` | a running node's control API (`--node`, `--token-file`) |
//! | `completions SHELL` | a completion script |
//!
//! Exit codes: 0 success, 1 failure (IO, the node refused or is unreachable), 2 bad usage or
//! configuration.

pub mod args;
mod cap_key;
mod control;
mod files;
mod keygen;
mod token;

use std::io::Write as _;
use std::path::PathBuf;

use clap::CommandFactory;

pub use args::{CapKeyCommand, CaveatArgs, Command, ConfigCommand, NodeArgs, TokenCommand};
pub use keygen::{CERT_FILE, KEY_FILE};

use crate::config::{self, Cli};

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A bad argument, key file, token or configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration does not resolve (exit 2).
    #[error("{0}")]
    Config(#[from] config::DaemonConfigError),
    /// A file to create already exists (exit 2).
    #[error("{} already exists; not overwriting it", .0.display())]
    Exists(PathBuf),
    /// A file could not be read or written (exit 1).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else (exit 1): no randomness, the node is unreachable or refused.
    #[error("{0}")]
    Failed(String),
}

impl OperatorError {
    pub(crate) fn usage(text: impl Into<String>) -> OperatorError {
        OperatorError::Usage(text.into())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            OperatorError::Usage(_) | OperatorError::Config(_) | OperatorError::Exists(_) => 2,
            OperatorError::Io { .. } | OperatorError::Failed(_) => 1,
        }
    }
}

/// Runs the subcommand of `cli` (which must have one), writing results to stdout. `env` is
/// the environment lookup `config check` resolves with.
pub fn run(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<(), OperatorError> {
    let Some(command) = &cli.command else {
        return Err(OperatorError::usage("no subcommand"));
    };
    let mut stdout = std::io::stdout().lock();
    let out = |text: &str, stdout: &mut std::io::StdoutLock<'_>| {
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|source| OperatorError::Io {
                path: "<stdout>".into(),
                source,
            })
    };
    match command {
        Command::Keygen { out: dir } => out(&keygen::keygen(dir)?, &mut stdout),
        Command::CapKey(CapKeyCommand::New { out: file }) => cap_key::new_key(file),
        Command::Token(TokenCommand::Mint { cap_key, caveats }) => {
            out(&token::mint_token(cap_key, caveats)?, &mut stdout)
        }
        Command::Token(TokenCommand::Inspect { token, cap_key }) => {
            let text = files::token_arg(token)?;
            let value = token::inspect_token(&text, cap_key.as_deref())?;
            let pretty = serde_json::to_string_pretty(&value)
                .map_err(|e| OperatorError::Failed(e.to_string()))?;
            out(&pretty, &mut stdout)
        }
        Command::Token(TokenCommand::Attenuate {
            token,
            cap_key,
            caveats,
        }) => {
            let text = files::token_arg(token)?;
            out(
                &token::attenuate_token(&text, cap_key, caveats)?,
                &mut stdout,
            )
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let mut daemon = cli.clone();
            daemon.command = None;
            if let Some(file) = file {
                daemon.config = Some(file.clone());
            } else if daemon.config.is_none() {
                let default = PathBuf::from(config::defaults::CONFIG_FILE);
                if default.is_file() {
                    daemon.config = Some(default);
                }
            }
            let resolved = config::resolve_cli(&daemon, env)?;
            let source = match &daemon.config {
                Some(path) => format!("{} + environment + flags", path.display()),
                None => "environment + flags (no config file)".to_string(),
            };
            out(
                &format!("# configuration OK ({source}); secrets redacted\n{resolved:#?}"),
                &mut stdout,
            )
        }
        Command::Peers(node) => {
            let client = control::ControlClient::new(node)?;
            out(&block_on(client.peers())?, &mut stdout)
        }
        Command::Publish { data, node } => {
            let client = control::ControlClient::new(node)?;
            let body = if data == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf).map_err(
                    |source| OperatorError::Io {
                        path: "<stdin>".into(),
                        source,
                    },
                )?;
                buf
            } else {
                data.clone().into_bytes()
            };
            out(&block_on(client.publish(body))?, &mut stdout)
        }
        Command::Tail { count, node } => {
            let client = control::ControlClient::new(node)?;
            block_on(client.tail(*count, &mut stdout))
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "svc-overlay", &mut stdout);
            Ok(())
        }
    }
}

/// Runs a client future on a small current-thread runtime.
fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, OperatorError>>,
) -> Result<T, OperatorError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| OperatorError::Failed(format!("cannot start the tokio runtime: {e}")))?
        .block_on(future)
}
