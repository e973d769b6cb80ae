//! The operator subcommands' command line (`clap`): `keygen`, `cap-key`, `token`, `config`,
//! `peers`, `publish`, `tail`, `completions`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

/// The default control API of `peers`, `publish` and `tail`: the daemon's default listener.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:9415";

/// One operator subcommand. Without one, `svc-overlay` runs the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Generate a self-signed node identity: DIR/cert.pem and DIR/key.pem (mode 0600); prints the PeerId
    Keygen {
        /// Directory to write cert.pem and key.pem into (created if missing; existing files are not overwritten)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Capability (MAC) keys
    #[command(subcommand)]
    CapKey(CapKeyCommand),
    /// Mint, inspect and attenuate capability tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Configuration checks
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List a running node's sessions (GET /v1/peers)
    Peers(NodeArgs),
    /// Broadcast DATA through a running node (POST /v1/broadcast); prints the message id
    Publish {
        /// The message; `-` reads it from stdin
        #[arg(value_name = "DATA")]
        data: String,
        /// Where the node is and how to authenticate
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print the messages a running node delivers (GET /v1/gossip, Server-Sent Events), one JSON object per line
    Tail {
        /// Stop after this many messages [default: run until interrupted]
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Where the node is and how to authenticate
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// `cap-key …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CapKeyCommand {
    /// Write a new random 32-byte capability key as 64 hex digits to FILE (mode 0600)
    New {
        /// The key file to create (an existing file is not overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `token …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TokenCommand {
    /// Mint a token signed with a capability key; prints it on stdout
    Mint {
        /// The signing key KID:TID:FILE (FILE: 64 hex digits, mode 0600)
        #[arg(long = "cap-key", value_name = "KID:TID:FILE")]
        cap_key: String,
        /// Restrictions carried by the token
        #[command(flatten)]
        caveats: CaveatArgs,
    },
    /// Print a token's fields and caveats as JSON (the MAC is checked only with --cap-key)
    Inspect {
        /// The token; `-` reads it from stdin
        #[arg(value_name = "TOKEN")]
        token: String,
        /// Check the MAC with this key KID:TID:FILE
        #[arg(long = "cap-key", value_name = "KID:TID:FILE")]
        cap_key: Option<String>,
    },
    /// Add caveats to an existing token (needs the key it was minted with); prints the new token
    Attenuate {
        /// The token; `-` reads it from stdin
        #[arg(value_name = "TOKEN")]
        token: String,
        /// The key the token was minted with, KID:TID:FILE
        #[arg(long = "cap-key", value_name = "KID:TID:FILE")]
        cap_key: String,
        /// Restrictions to add
        #[command(flatten)]
        caveats: CaveatArgs,
    },
}

/// The caveats `token mint` and `token attenuate` can add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct CaveatArgs {
    /// Lifetime from now: seconds, or a number with s, m, h or d (e.g. 90s, 15m, 24h, 30d)
    #[arg(long, value_name = "DUR", conflicts_with = "exp")]
    pub ttl: Option<String>,
    /// Expiry, unix seconds
    #[arg(long, value_name = "UNIX")]
    pub exp: Option<u64>,
    /// Not valid before, unix seconds
    #[arg(long, value_name = "UNIX")]
    pub nbf: Option<u64>,
    /// Allowed method (repeatable): `overlay` for peer and client sessions (plus operation names
    /// to restrict them: gossip, direct, membership, publish, subscribe), GET / POST for the
    /// control API
    #[arg(long = "method", value_name = "M", action = ArgAction::Append)]
    pub methods: Vec<String>,
    /// Allowed path prefix (e.g. /v1/ for the control API)
    #[arg(long, value_name = "P")]
    pub path_prefix: Option<String>,
    /// Largest request, bytes
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    /// Rate hint PER_S:BURST
    #[arg(long, value_name = "PER_S:BURST")]
    pub rate: Option<String>,
    /// Bind the token to one peer identity (peer:<64 hex>): only that TLS identity may use it
    #[arg(long, value_name = "PEERID")]
    pub peer: Option<String>,
    /// Mark the token as a control-plane (HTTP control API) credential
    #[arg(long)]
    pub control: bool,
}

/// `config …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ConfigCommand {
    /// Resolve the configuration like the daemon would (flags before the subcommand, environment, FILE) and print it with secrets redacted; exit 2 on errors
    Check {
        /// The config file [default: --config, else ./Overlay.toml if it exists]
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// How to reach a running node's control API.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeArgs {
    /// The node's control API base URL
    #[arg(long, value_name = "URL", env = "OVERLAY_NODE", default_value = DEFAULT_NODE)]
    pub node: String,
    /// File holding a control token (minted with --control), sent as `Authorization: Bearer`; not needed from loopback unless the node requires it
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}
