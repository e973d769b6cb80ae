//! The loader's error type and the origin of a rejected value.

use core::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a setting's value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--max-conns`.
    Flag(&'static str),
    /// An environment variable, e.g. `OVERLAY_MAX_CONNS`.
    Env(&'static str),
    /// A key of the TOML file, e.g. `node.max_conns`.
    File {
        /// The configuration file.
        path: PathBuf,
        /// The dotted key inside it.
        key: String,
    },
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "from flag {flag}"),
            Origin::Env(var) => write!(f, "from env {var}"),
            Origin::File { path, key } => write!(f, "from key {key} in {}", path.display()),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

/// Why the daemon's configuration could not be loaded. Every variant names the setting (or
/// file) at fault; none of them carries secret material. The daemon exits with
/// [`DaemonConfigError::exit_code`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DaemonConfigError {
    /// The command line was rejected by the argument parser (unknown flag, missing value);
    /// holds the parser's rendered message.
    #[error("{0}")]
    Cli(String),
    /// A value could not be parsed or is outside its accepted range.
    #[error("invalid {setting} `{value}` ({origin}): accepted {accepted}")]
    Invalid {
        /// The setting's canonical name (its TOML key without the section).
        setting: &'static str,
        /// The rejected value as given (never a secret).
        value: String,
        /// Where the value came from.
        origin: Origin,
        /// What is accepted.
        accepted: String,
    },
    /// A file named by a setting could not be read.
    #[error("cannot read {setting} file `{}`: {reason}", path.display())]
    Read {
        /// The setting naming the file (`config`, `key`, `cap_key`, …).
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The TOML file is malformed, has a value of the wrong type or an unknown key.
    #[error("config file `{}`: {message}", path.display())]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message, naming the offending key and its position.
        message: String,
    },
    /// A secret file is readable or writable by group or others.
    #[error(
        "{setting} file `{}` has mode {mode:04o}; secret files must be mode 0600 or stricter \
         (run: chmod 600 {})",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file exists but its content is not acceptable (the content is never shown).
    #[error("{setting} file `{}`: {reason}", path.display())]
    Secret {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Dev mode (no capability key configured) with a non-loopback listen address.
    #[error(
        "{setting} = {addr} is not a loopback address, but no capability key is configured: \
         dev mode uses the well-known dev key, which is not secret, so it only listens on \
         loopback; configure real keys (--cap-key KID:TID:FILE or [[auth.keys]]) and a token \
         (--token-file, OVERLAY_TOKEN or [auth] token_file) to listen on {addr}"
    )]
    DevModeExposed {
        /// `bind` or `metrics_addr`.
        setting: &'static str,
        /// The refused address.
        addr: SocketAddr,
    },
    /// A required companion setting is missing (e.g. `--cert` without `--key`).
    #[error("{setting}: {reason}")]
    Missing {
        /// The setting that is missing.
        setting: &'static str,
        /// Why it is needed.
        reason: &'static str,
    },
    /// Two settings that are valid alone contradict each other (e.g. `liveness_ms` not above
    /// `keepalive_ms`).
    #[error("invalid {setting} `{value}`: {rule}")]
    Conflict {
        /// The setting reported (the one whose rule is broken).
        setting: &'static str,
        /// Its value.
        value: String,
        /// The rule, naming the other setting and its value.
        rule: String,
    },
    /// The core's own validation (`NodeConfig::validate`) rejected the combined settings.
    /// `setting` is the core's field name; `key` the file key that sets it, if any.
    #[error("invalid setting `{setting}` ({key}): accepted {accepted}")]
    Node {
        /// The core setting's name.
        setting: &'static str,
        /// The TOML key that sets it, for the operator.
        key: &'static str,
        /// What is accepted.
        accepted: &'static str,
    },
}

impl DaemonConfigError {
    /// The process exit code for this error: always 2 (usage / configuration error).
    pub fn exit_code(&self) -> i32 {
        2
    }

    /// The canonical name of the setting (or file) at fault.
    pub fn setting(&self) -> &str {
        match self {
            DaemonConfigError::Cli(_) => "command line",
            DaemonConfigError::Invalid { setting, .. }
            | DaemonConfigError::Read { setting, .. }
            | DaemonConfigError::Permissions { setting, .. }
            | DaemonConfigError::Secret { setting, .. }
            | DaemonConfigError::DevModeExposed { setting, .. }
            | DaemonConfigError::Missing { setting, .. }
            | DaemonConfigError::Conflict { setting, .. }
            | DaemonConfigError::Node { setting, .. } => setting,
            DaemonConfigError::Parse { .. } => "config",
        }
    }
}

impl From<overlay_proto::ConfigError> for DaemonConfigError {
    fn from(e: overlay_proto::ConfigError) -> Self {
        DaemonConfigError::Node {
            setting: e.setting,
            key: file_key(e.setting),
            accepted: e.accepted,
        }
    }
}

/// The file key that sets a core field (for errors from `NodeConfig::validate`).
fn file_key(core: &str) -> &'static str {
    match core {
        "alpha" => "gossip.alpha",
        "beta" => "gossip.beta",
        "graft_timeout" => "gossip.graft_timeout_ms",
        "graft_retry" => "gossip.graft_retry_ms",
        "graft_timeout_settled" => "gossip.graft_timeout_settled_ms",
        "tree_settle" => "gossip.tree_settle_ms",
        "tree_rebuild_losses" => "gossip.tree_rebuild_losses",
        "tree_rebuild_delay" => "gossip.tree_rebuild_delay_ms",
        "tree_rebuild_interval" => "gossip.tree_rebuild_interval_ms",
        "link_probation" => "gossip.link_probation_ms",
        "link_probation_after_ban" => "gossip.link_probation_after_ban_ms",
        "idle_ban_keeps_tree" => "gossip.idle_ban_keeps_tree",
        "optimization_threshold" => "gossip.optimization_threshold",
        "optimization_samples" => "gossip.optimization_samples",
        "optimization_hold" => "gossip.optimization_hold_ms",
        "optimization_max_lateness" => "gossip.optimization_max_lateness_ms",
        "lazy_flush_interval" => "gossip.lazy_flush_ms",
        "seen_capacity" => "gossip.seen_capacity",
        "seen_ttl" => "gossip.seen_ttl_ms",
        "store_capacity" => "gossip.store_capacity",
        "store_bytes" => "gossip.store_bytes",
        "store_ttl" => "gossip.store_ttl_ms",
        "ihave_batch_max" => "gossip.ihave_batch_max",
        "catch_up_ids" => "gossip.catch_up_ids",
        "prune_after_duplicates" => "gossip.prune_after_duplicates",
        "active_target" => "membership.active_target",
        "passive_capacity" => "membership.passive_capacity",
        "shuffle_interval" => "membership.shuffle_interval_ms",
        "shuffle_len" => "membership.shuffle_len",
        "backoff_base" => "membership.backoff_base_ms",
        "backoff_max" => "membership.backoff_max_ms",
        "max_concurrent_dials" => "membership.max_concurrent_dials",
        "link_optimization_interval" => "membership.link_optimization_interval_ms",
        "link_optimization_margin_pct" => "membership.link_optimization_margin_pct",
        "link_optimization_swaps" => "membership.link_optimization_swaps",
        "max_sessions" => "limits.max_sessions",
        "idle_timeout" => "limits.idle_ms",
        "handshake_timeout" => "limits.handshake_ms",
        "connect_timeout" => "limits.connect_ms",
        "keepalive_interval" => "limits.keepalive_ms",
        "liveness_timeout" => "limits.liveness_ms",
        "tick_interval" => "limits.tick_ms",
        "credit_window_frames" => "limits.credit_window_frames",
        "credit_window_bytes" => "limits.credit_window_bytes",
        "max_queue_frames" => "limits.max_queue_frames",
        "max_queue_bytes" => "limits.max_queue_bytes",
        "max_message_bytes" => "limits.max_message_bytes",
        "peer_rate_per_s" => "limits.peer_rate_per_s",
        "peer_rate_burst" => "limits.peer_rate_burst",
        "degrade_ratio" => "limits.degrade_ratio",
        "recover_ratio" => "limits.recover_ratio",
        "graft_max_ids" => "gossip.graft_max_ids",
        "graft_rate_per_s" => "gossip.graft_rate_per_s",
        "graft_rate_burst" => "gossip.graft_rate_burst",
        "ihave_rate_per_s" => "gossip.ihave_rate_per_s",
        "ihave_rate_burst" => "gossip.ihave_rate_burst",
        "ihave_max_missing_per_peer" => "gossip.ihave_max_missing_per_peer",
        "max_announcers" => "gossip.max_announcers",
        "optimization_swaps_per_s" => "gossip.optimization_swaps_per_s",
        "max_topics" => "topics.max_topics",
        "max_peer_topics" => "topics.max_peer_topics",
        "topic_min_links" => "topics.min_links",
        "duplicate_rate_per_s" => "gossip.duplicate_rate_per_s",
        "duplicate_rate_burst" => "gossip.duplicate_rate_burst",
        "shuffle_rate_per_s" => "membership.shuffle_rate_per_s",
        "shuffle_rate_burst" => "membership.shuffle_rate_burst",
        "min_peer_window_frames" => "limits.min_peer_window_frames",
        "stall_timeout" => "limits.stall_ms",
        "max_preauth" => "limits.max_preauth",
        "max_preauth_per_ip" => "limits.max_preauth_per_ip",
        "scoring.decay_interval" => "scoring.decay_interval_ms",
        "scoring.decay_factor" => "scoring.decay_factor",
        "scoring.first_delivery_weight" => "scoring.first_delivery_weight",
        "scoring.first_delivery_cap" => "scoring.first_delivery_cap",
        "scoring.invalid_message_weight" => "scoring.invalid_message_weight",
        "scoring.violation_weight" => "scoring.violation_weight",
        "scoring.broken_promise_weight" => "scoring.broken_promise_weight",
        "scoring.graft_flood_weight" => "scoring.graft_flood_weight",
        "scoring.ihave_flood_weight" => "scoring.ihave_flood_weight",
        "scoring.duplicate_flood_weight" => "scoring.duplicate_flood_weight",
        "scoring.shuffle_flood_weight" => "scoring.shuffle_flood_weight",
        "scoring.validation_rejected_weight" => "scoring.validation_rejected_weight",
        "scoring.ban_threshold" => "scoring.ban_threshold",
        "scoring.ban_max" => "scoring.ban_max_ms",
        "scoring.capacity" => "scoring.capacity",
        _ => "not settable in the file",
    }
}
