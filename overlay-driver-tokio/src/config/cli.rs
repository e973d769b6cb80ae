//! The command line (`clap`).
//!
//! Flags are captured as text and parsed by the resolver, so a bad value gets the same message
//! (setting, value, accepted range) as a bad environment variable or file key. Defaults are not
//! filled in here — a flag's absence must stay visible for the precedence rules — but the help
//! text documents each default and environment variable.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Text shown after the flag list by `--help`.
const AFTER_HELP: &str = "\
Precedence: command-line flag > environment variable > config file > built-in default.

Environment variables (an empty value counts as unset):
  OVERLAY_BIND       same as --bind
  OVERLAY_ADVERTISE  same as --advertise
  OVERLAY_MAX_CONNS  same as --max-conns
  OVERLAY_IDLE_MS    same as --idle-ms
  OVERLAY_READ_MS    same as --read-ms
  OVERLAY_WRITE_MS   same as --write-ms
  METRICS_ADDR       same as --metrics-addr
  LOG_LEVEL          same as --log-level
  LOG_FORMAT         same as --log-format
  AMNESIA            same as --amnesia
  OVERLAY_TOKEN      this node's capability token itself (text, not a path); --token-file wins
  OVERLAY_CONTROL_ADDR            same as --control-addr
  OVERLAY_CONTROL_TRUST_LOOPBACK  same as --control-trust-loopback
  OVERLAY_CONTROL_PLAINTEXT_TOKENS  same as --control-plaintext-tokens

Every setting, including those without a flag, can be set in the TOML config file; see
docs/CONFIG.md and Overlay.example.toml. Unknown keys in the file are an error.

Operator commands (svc-overlay COMMAND --help for each): keygen, cap-key new, token mint |
inspect | attenuate, config check, peers, publish, tail, completions.

Dev mode: with no capability key (--cap-key or [[auth.keys]]) the node uses the well-known,
non-secret dev key and mints its own dev token; it then refuses to listen on anything but
loopback.";

/// The `svc-overlay` command line. Every field is `None` / empty when the flag is absent.
/// Without a subcommand it runs the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(
    name = "svc-overlay",
    version,
    about = "Authenticated gossip overlay daemon (TLS 1.3, hybrid post-quantum, capability tokens).",
    after_help = AFTER_HELP,
    after_long_help = AFTER_HELP,
)]
pub struct Cli {
    /// An operator subcommand; without one, the daemon runs.
    #[command(subcommand)]
    pub command: Option<crate::operator::Command>,

    /// TOML config file [default: ./Overlay.toml, only if it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen address for peer sessions [env: OVERLAY_BIND] [default: 127.0.0.1:9415]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,

    /// Most TCP connections at once, 1..=1000000 [env: OVERLAY_MAX_CONNS] [default: 1024]
    #[arg(long, value_name = "N")]
    pub max_conns: Option<String>,

    /// Peer to dial at start: host:port (name re-resolved at every attempt) or peer:<64 hex>@host:port (only that identity accepted); repeatable; replaces [node] peers of the file
    #[arg(long = "peer", value_name = "ADDR", action = ArgAction::Append)]
    pub peers: Vec<String>,

    /// Topic to join at start: 1..=64 bytes of A-Z a-z 0-9 . _ - ~; repeatable; replaces [topics] join of the file
    #[arg(long = "topic", value_name = "NAME", action = ArgAction::Append)]
    pub topics: Vec<String>,

    /// Address advertised to peers (HELLO, shuffles), IP:port; never unspecified [env: OVERLAY_ADVERTISE] [default: the bound address, or nothing when bound to 0.0.0.0 / ::]
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,

    /// Metrics / health HTTP listen address [env: METRICS_ADDR] [default: 127.0.0.1:0]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,

    /// Post-quantum key exchange: hybrid | hybrid-only | classic [default: hybrid]
    #[arg(long, value_name = "MODE")]
    pub pq: Option<String>,

    /// Gossip eager peers kept after losing one, 1..=64 [default: 1]
    #[arg(long, value_name = "N")]
    pub alpha: Option<String>,

    /// Gossip lazy (IHAVE) fan-out, 0..=256 [default: 6]
    #[arg(long, value_name = "N")]
    pub beta: Option<String>,

    /// Gossip origin signatures: sign | none [default: sign]; sign needs an Ed25519 identity
    #[arg(long, value_name = "MODE")]
    pub origin_auth: Option<String>,

    /// Write a replayable trace of the core's inputs to FILE [default: none]
    #[arg(long, value_name = "FILE")]
    pub trace_out: Option<PathBuf>,

    /// tracing filter directives [env: LOG_LEVEL] [default: warn,svc_overlay=info,overlay_proto=info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format: text | json (one JSON object per line) [env: LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Allow --trace-out while amnesia is on (the trace holds keys, tokens and payloads)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub trace_out_despite_amnesia: Option<String>,

    /// CA bundle (PEM) peers' certificates must chain to [default: none]
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Node certificate chain (PEM); needs --key [default: generated dev identity]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Node private key (PEM), mode 0600 or stricter; needs --cert
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// File holding this node's capability token, mode 0600 [env: OVERLAY_TOKEN holds the token text]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Capability verification key KID:TID:FILE (FILE: 64 hex digits, mode 0600); repeatable
    #[arg(long = "cap-key", value_name = "KID:TID:FILE", action = ArgAction::Append)]
    pub cap_keys: Vec<String>,

    /// Amnesia mode (keep nothing on disk): true | false [env: AMNESIA] [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub amnesia: Option<String>,

    /// Longest silence any session may keep (cap of the failure detector), ms, 1..=86400000 [env: OVERLAY_IDLE_MS] [default: 30000]
    #[arg(long, value_name = "MS")]
    pub idle_ms: Option<String>,

    /// Socket read timeout (backstop above idle-ms), ms, 1..=86400000 [env: OVERLAY_READ_MS] [default: 60000]
    #[arg(long, value_name = "MS")]
    pub read_ms: Option<String>,

    /// Socket write timeout, ms, 1..=86400000 [env: OVERLAY_WRITE_MS] [default: 15000]
    #[arg(long, value_name = "MS")]
    pub write_ms: Option<String>,

    /// TLS + HELLO/START handshake deadline, ms, 1..=86400000 [default: 5000]
    #[arg(long, value_name = "MS")]
    pub handshake_ms: Option<String>,

    /// Graceful shutdown deadline, ms, 1..=86400000 [default: 5000]
    #[arg(long, value_name = "MS")]
    pub drain_ms: Option<String>,

    /// Tenant of the capability request context [default: overlay]
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,

    /// Serve the control API (/v1/...) on its own listener ADDR instead of the overlay port [env: OVERLAY_CONTROL_ADDR] [default: the overlay port]
    #[arg(long, value_name = "ADDR")]
    pub control_addr: Option<String>,

    /// Allow token-less control requests from loopback: true | false [env: OVERLAY_CONTROL_TRUST_LOOPBACK] [default: true]
    #[arg(long, value_name = "BOOL")]
    pub control_trust_loopback: Option<String>,

    /// Accept control tokens over plain HTTP from non-loopback addresses: true | false (trusted networks or a TLS proxy only) [env: OVERLAY_CONTROL_PLAINTEXT_TOKENS] [default: false]
    #[arg(long, value_name = "BOOL")]
    pub control_plaintext_tokens: Option<String>,
}
