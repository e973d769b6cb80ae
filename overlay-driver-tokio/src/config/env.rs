//! Environment variables read by the daemon, and the injectable lookup used to read them.
//!
//! The loader never touches the process environment directly: it asks an [`EnvLookup`], so
//! tests can pass a map. An empty value counts as unset.

use std::collections::HashMap;

/// A lookup of one environment variable by name; `None` when unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Listen address for peer sessions (`--bind`).
pub const OVERLAY_BIND: &str = "OVERLAY_BIND";
/// Address advertised to peers (`--advertise`).
pub const OVERLAY_ADVERTISE: &str = "OVERLAY_ADVERTISE";
/// Connection cap (`--max-conns`).
pub const OVERLAY_MAX_CONNS: &str = "OVERLAY_MAX_CONNS";
/// Idle timeout in milliseconds (`--idle-ms`).
pub const OVERLAY_IDLE_MS: &str = "OVERLAY_IDLE_MS";
/// Read timeout in milliseconds (`--read-ms`).
pub const OVERLAY_READ_MS: &str = "OVERLAY_READ_MS";
/// Write timeout in milliseconds (`--write-ms`).
pub const OVERLAY_WRITE_MS: &str = "OVERLAY_WRITE_MS";
/// Metrics / health HTTP listen address (`--metrics-addr`).
pub const METRICS_ADDR: &str = "METRICS_ADDR";
/// Log filter (`--log-level`).
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// Log line format (`--log-format`).
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// Amnesia mode (`--amnesia`).
pub const AMNESIA: &str = "AMNESIA";
/// The node's capability token itself (the text, not a path); `--token-file` wins over it.
pub const OVERLAY_TOKEN: &str = "OVERLAY_TOKEN";
/// `--control-addr`.
pub const OVERLAY_CONTROL_ADDR: &str = "OVERLAY_CONTROL_ADDR";
/// `--control-trust-loopback`.
pub const OVERLAY_CONTROL_TRUST_LOOPBACK: &str = "OVERLAY_CONTROL_TRUST_LOOPBACK";
/// `--control-plaintext-tokens`.
pub const OVERLAY_CONTROL_PLAINTEXT_TOKENS: &str = "OVERLAY_CONTROL_PLAINTEXT_TOKENS";

/// Every variable the loader reads, in documentation order.
pub const ALL: [&str; 14] = [
    OVERLAY_BIND,
    OVERLAY_ADVERTISE,
    OVERLAY_MAX_CONNS,
    OVERLAY_IDLE_MS,
    OVERLAY_READ_MS,
    OVERLAY_WRITE_MS,
    METRICS_ADDR,
    LOG_LEVEL,
    LOG_FORMAT,
    AMNESIA,
    OVERLAY_TOKEN,
    OVERLAY_CONTROL_ADDR,
    OVERLAY_CONTROL_TRUST_LOOPBACK,
    OVERLAY_CONTROL_PLAINTEXT_TOKENS,
];

/// Reads the process environment. A variable whose value is not valid UTF-8 is reported as
/// that literal marker so validation rejects it with a message instead of ignoring it.
pub fn process_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => Some("<not valid UTF-8>".to_string()),
    }
}

/// A lookup over a fixed map (for tests and embedding).
pub fn from_map(map: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| map.get(name).cloned()
}

/// Looks `name` up, treating an empty value as unset.
pub(crate) fn get(env: EnvLookup<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}
