//! The TOML configuration file's schema (`Overlay.toml`).
//!
//! Every key is optional; a missing key falls back to the environment or the default. Unknown
//! keys are rejected. Numbers are kept as given (`i64` / `f64`) and range-checked by the
//! resolver, so a bad value gets the same message whichever layer it came from. Durations are
//! integer milliseconds in `*_ms` keys. Relative paths are relative to the file's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::DaemonConfigError;

/// A number in the file: TOML integers and floats are both accepted where a ratio is expected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A TOML integer.
    Int(i64),
    /// A TOML float.
    Float(f64),
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl serde::de::Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a number such as 0.9")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Number, E> {
                i64::try_from(v)
                    .map(Number::Int)
                    .map_err(|_| E::custom("number out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number::Float(v))
            }
        }
        d.deserialize_any(NumberVisitor)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[node]`: listeners, peers, logging, process-level settings.
    #[serde(default)]
    pub node: NodeSection,
    /// `[tls]`: identity and key-exchange policy.
    #[serde(default)]
    pub tls: TlsSection,
    /// `[gossip]`: Plumtree fan-out, caches and timers.
    #[serde(default)]
    pub gossip: GossipSection,
    /// `[membership]`: active/passive views, shuffle and reconnect backoff.
    #[serde(default)]
    pub membership: MembershipSection,
    /// `[limits]`: sessions, timeouts, flow control, rate limits, readiness.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[auth]`: capability tokens and verification keys.
    #[serde(default)]
    pub auth: AuthSection,
    /// `[scoring]`: peer-score weights, thresholds and bans.
    #[serde(default)]
    pub scoring: ScoringSection,
    /// `[http]`: the control listener and the HTTP limits.
    #[serde(default)]
    pub http: HttpSection,
    /// `[clients]`: limits of client sessions (connections without a certificate).
    #[serde(default)]
    pub clients: ClientsSection,
    /// `[topics]`: topics joined at start and the topic bounds.
    #[serde(default)]
    pub topics: TopicsSection,
}

/// `[topics]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSection {
    /// Topic names joined at start.
    pub join: Option<Vec<String>>,
    /// Most topics the node is in at once, the default topic included.
    pub max_topics: Option<i64>,
    /// Most topics one peer's TOPICS message may name.
    pub max_peer_topics: Option<i64>,
    /// Fewer links than this in a topic: ask peers for members and dial them.
    pub min_links: Option<i64>,
}

/// `[clients]`: limits of client sessions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsSection {
    /// Running client sessions at most.
    pub max_clients: Option<i64>,
    /// Requests and DIRECT messages per second per client.
    pub rate_per_s: Option<i64>,
    /// Token bucket depth for `rate_per_s`.
    pub rate_burst: Option<i64>,
    /// Window granted to each client, in frames.
    pub window_frames: Option<i64>,
    /// Window granted to each client, in bytes.
    pub window_bytes: Option<i64>,
    /// Frames queued per client before deliveries are dropped (LAGGED).
    pub queue_frames: Option<i64>,
    /// Bytes queued per client before deliveries are dropped (LAGGED).
    pub queue_bytes: Option<i64>,
    /// A client that sent nothing for this long is closed.
    pub idle_ms: Option<i64>,
    /// Bytes of partial frames buffered for all clients together.
    pub max_buffered_bytes: Option<i64>,
}

/// `[node]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Listen address for peer sessions.
    pub bind: Option<String>,
    /// Address advertised to peers.
    pub advertise: Option<String>,
    /// Listen address of the metrics / health HTTP server.
    pub metrics_addr: Option<String>,
    /// Most TCP connections at once.
    pub max_conns: Option<i64>,
    /// Peers to dial at start (`host:port` or `peer:<64 hex>@host:port`).
    pub peers: Option<Vec<String>>,
    /// File to write a replayable trace to.
    pub trace_out: Option<PathBuf>,
    /// `tracing` filter directives.
    pub log_level: Option<String>,
    /// Log line format: `text` or `json`.
    pub log_format: Option<String>,
    /// Allow `trace_out` while amnesia is on.
    pub trace_out_despite_amnesia: Option<bool>,
    /// Amnesia mode (keep nothing on disk).
    pub amnesia: Option<bool>,
    /// Graceful shutdown deadline.
    pub drain_ms: Option<i64>,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// `hybrid`, `hybrid-only` or `classic`.
    pub pq: Option<String>,
    /// Node certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Node private key (PEM, mode 0600).
    pub key: Option<PathBuf>,
    /// CA bundle peers' certificates must chain to (PEM).
    pub ca: Option<PathBuf>,
}

/// `[gossip]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipSection {
    /// Eager peers kept after losing one.
    pub alpha: Option<i64>,
    /// Lazy (IHAVE) fan-out.
    pub beta: Option<i64>,
    /// Wait for an announced message before grafting.
    pub graft_timeout_ms: Option<i64>,
    /// Wait for an announced message before grafting while the tree is settled.
    pub graft_timeout_settled_ms: Option<i64>,
    /// How long after losing a session grafts use `graft_timeout_ms`.
    pub tree_settle_ms: Option<i64>,
    /// Running sessions lost to closed connections within `tree_settle_ms` that rebuild the
    /// trees (0: never).
    pub tree_rebuild_losses: Option<i64>,
    /// How long after the loss that calls for a rebuild it comes.
    pub tree_rebuild_delay_ms: Option<i64>,
    /// Least time between two tree rebuilds.
    pub tree_rebuild_interval_ms: Option<i64>,
    /// How long a new tree link is on probation (displaces no established tree edge).
    pub link_probation_ms: Option<i64>,
    /// New links go on probation only within this long of the node's last ban (0: always).
    pub link_probation_after_ban_ms: Option<i64>,
    /// A ban of a peer that never fed the tree promotes no lazy link and keeps it settled.
    pub idle_ban_keeps_tree: Option<bool>,
    /// Mean hops a lazy peer's path must save before the tree optimisation swaps links (0: off).
    pub optimization_threshold: Option<i64>,
    /// Messages the mean saving of the tree optimisation is taken over.
    pub optimization_samples: Option<i64>,
    /// A link whose role changed this recently takes no part in an optimisation swap.
    pub optimization_hold_ms: Option<i64>,
    /// Most a lazy peer's announcements may arrive after our copies, on average, for the tree
    /// optimisation to take it (0 = only when they come no later).
    pub optimization_max_lateness_ms: Option<i64>,
    /// Wait after a GRAFT before asking the next announcer.
    pub graft_retry_ms: Option<i64>,
    /// IHAVE flush period.
    pub lazy_flush_ms: Option<i64>,
    /// Seen-id cache capacity.
    pub seen_capacity: Option<i64>,
    /// How long a seen id is remembered.
    pub seen_ttl_ms: Option<i64>,
    /// Messages kept for GRAFT answers.
    pub store_capacity: Option<i64>,
    /// Payload bytes kept for GRAFT answers.
    pub store_bytes: Option<i64>,
    /// How long a message is kept for GRAFT answers.
    pub store_ttl_ms: Option<i64>,
    /// Most ids in one IHAVE batch.
    pub ihave_batch_max: Option<i64>,
    /// Recent ids announced to a new session.
    pub catch_up_ids: Option<i64>,
    /// Duplicates in a row from an eager peer before it is pruned.
    pub prune_after_duplicates: Option<i64>,
    /// Most distinct ids of one GRAFT frame answered.
    pub graft_max_ids: Option<i64>,
    /// GRAFT ids per second a peer may ask for.
    pub graft_rate_per_s: Option<i64>,
    /// Token bucket depth for `graft_rate_per_s`.
    pub graft_rate_burst: Option<i64>,
    /// A GRAFT this soon after we pruned the peer is scored.
    pub graft_after_prune_ms: Option<i64>,
    /// IHAVE ids per second taken from a peer.
    pub ihave_rate_per_s: Option<i64>,
    /// Token bucket depth for `ihave_rate_per_s`.
    pub ihave_rate_burst: Option<i64>,
    /// Missing-id table entries one peer's announcements may hold.
    pub ihave_max_missing_per_peer: Option<i64>,
    /// Announcers remembered per missing id (GRAFT candidates, best-ranked first).
    pub max_announcers: Option<i64>,
    /// Tree-optimisation swaps a node may start per second (each waits for the announcer to
    /// prove its hop claim).
    pub optimization_swaps_per_s: Option<i64>,
    /// Duplicates per second tolerated from a peer before they are scored.
    pub duplicate_rate_per_s: Option<i64>,
    /// Token bucket depth for `duplicate_rate_per_s`.
    pub duplicate_rate_burst: Option<i64>,
    /// Origin signatures: `sign` or `none`.
    pub origin_auth: Option<String>,
}

/// `[membership]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSection {
    /// Sessions membership tries to keep running.
    pub active_target: Option<i64>,
    /// Known, unconnected peers remembered.
    pub passive_capacity: Option<i64>,
    /// Shuffle period.
    pub shuffle_interval_ms: Option<i64>,
    /// Peers per shuffle.
    pub shuffle_len: Option<i64>,
    /// First reconnect delay.
    pub backoff_base_ms: Option<i64>,
    /// Largest reconnect delay.
    pub backoff_max_ms: Option<i64>,
    /// Dials in flight at once.
    pub max_concurrent_dials: Option<i64>,
    /// Latency-aware membership: probe passive peers, replace slow lazy links.
    pub link_optimization: Option<bool>,
    /// Shortest time between link-optimisation rounds.
    pub link_optimization_interval_ms: Option<i64>,
    /// How much faster (percent) a probe must be than the link it replaces.
    pub link_optimization_margin_pct: Option<i64>,
    /// Swaps a node may make in a burst (one comes back every 64 intervals).
    pub link_optimization_swaps: Option<i64>,
    /// SHUFFLE messages per second taken from a peer.
    pub shuffle_rate_per_s: Option<i64>,
    /// Token bucket depth for `shuffle_rate_per_s`.
    pub shuffle_rate_burst: Option<i64>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Hard ceiling on sessions in the core.
    pub max_sessions: Option<i64>,
    /// Ceiling of the failure detector's adaptive silence limit.
    pub idle_ms: Option<i64>,
    /// Socket read timeout.
    pub read_ms: Option<i64>,
    /// Socket write timeout.
    pub write_ms: Option<i64>,
    /// TLS + HELLO/START deadline.
    pub handshake_ms: Option<i64>,
    /// TCP connect deadline of a dial.
    pub connect_ms: Option<i64>,
    /// Heartbeat period: a frame goes out when nothing was sent for this long.
    pub keepalive_ms: Option<i64>,
    /// Failure detector: silence that makes a peer unresponsive.
    pub liveness_ms: Option<i64>,
    /// Core maintenance tick.
    pub tick_ms: Option<i64>,
    /// Credit window per peer, frames.
    pub credit_window_frames: Option<i64>,
    /// Credit window per peer, bytes.
    pub credit_window_bytes: Option<i64>,
    /// Frames queued per session while waiting for credit.
    pub max_queue_frames: Option<i64>,
    /// Bytes queued per session while waiting for credit.
    pub max_queue_bytes: Option<i64>,
    /// Largest application message.
    pub max_message_bytes: Option<i64>,
    /// Messages per second a peer may send.
    pub peer_rate_per_s: Option<i64>,
    /// Token bucket depth.
    pub peer_rate_burst: Option<i64>,
    /// Readiness degrades above this load ratio.
    pub degrade_ratio: Option<Number>,
    /// Readiness recovers below this load ratio.
    pub recover_ratio: Option<Number>,
    /// Smallest window a peer may grant in HELLO, frames.
    pub min_peer_window_frames: Option<i64>,
    /// Smallest window a peer may grant in HELLO, bytes.
    pub min_peer_window_bytes: Option<i64>,
    /// A session whose send queue made no progress for this long is closed.
    pub stall_ms: Option<i64>,
    /// Connections before START (pre-auth), at most.
    pub max_preauth: Option<i64>,
    /// Pre-auth connections from one IP, at most.
    pub max_preauth_per_ip: Option<i64>,
}

/// `[scoring]`: peer-score weights, thresholds and bans.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringSection {
    /// Whether thresholds act on scores.
    pub enabled: Option<bool>,
    /// Period of the decay step.
    pub decay_interval_ms: Option<i64>,
    /// Factor applied at each decay step.
    pub decay_factor: Option<Number>,
    /// Reward per first delivery.
    pub first_delivery_weight: Option<Number>,
    /// First deliveries counted at most.
    pub first_delivery_cap: Option<Number>,
    /// Per message with a bad id or signature.
    pub invalid_message_weight: Option<Number>,
    /// Per protocol violation.
    pub violation_weight: Option<Number>,
    /// Per GRAFT never answered.
    pub broken_promise_weight: Option<Number>,
    /// Per abusive GRAFT id.
    pub graft_flood_weight: Option<Number>,
    /// Per IHAVE id over rate or share.
    pub ihave_flood_weight: Option<Number>,
    /// Per duplicate over the duplicate rate.
    pub duplicate_flood_weight: Option<Number>,
    /// Per abusive SHUFFLE.
    pub shuffle_flood_weight: Option<Number>,
    /// Per message the application's validator rejected.
    pub validation_rejected_weight: Option<Number>,
    /// Below: IHAVE/GRAFT ignored.
    pub gossip_threshold: Option<Number>,
    /// Below: kept lazy.
    pub prune_threshold: Option<Number>,
    /// Below: closed and banned.
    pub ban_threshold: Option<Number>,
    /// First ban length.
    pub ban_base_ms: Option<i64>,
    /// Longest ban.
    pub ban_max_ms: Option<i64>,
    /// How long a disconnected peer's score is kept.
    pub retain_ms: Option<i64>,
    /// Disconnected peers and banned addresses remembered at most.
    pub capacity: Option<i64>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Tenant of the request context tokens are checked against.
    pub tenant: Option<String>,
    /// Path of the request context.
    pub path: Option<String>,
    /// File holding this node's token (mode 0600).
    pub token_file: Option<PathBuf>,
    /// Policy digest of the request context (hex).
    pub policy_digest_hex: Option<String>,
    /// Capability verification keys.
    pub keys: Option<Vec<KeySection>>,
}

/// `[http]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Listen address of the control API (default: the overlay port).
    pub control_addr: Option<String>,
    /// Token-less control requests from loopback are allowed.
    pub control_trust_loopback: Option<bool>,
    /// Control tokens are accepted over plain HTTP from non-loopback addresses.
    pub control_plaintext_tokens: Option<bool>,
    /// Most HTTP connections per listener.
    pub max_conns: Option<i64>,
    /// Most HTTP connections per listener from one address.
    pub max_conns_per_ip: Option<i64>,
    /// Probe-only connections admitted beyond `max_conns`.
    pub probe_reserve: Option<i64>,
    /// A connection stalled this long may be evicted for a new one.
    pub evict_after_ms: Option<i64>,
    /// Time to receive request headers.
    pub header_timeout_ms: Option<i64>,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout_ms: Option<i64>,
    /// Time to receive a request body.
    pub body_timeout_ms: Option<i64>,
    /// Time a response write may stay blocked.
    pub write_timeout_ms: Option<i64>,
    /// Pipelined requests in a row before the connection is closed.
    pub max_pipelined: Option<i64>,
    /// Most control requests at once.
    pub max_control_inflight: Option<i64>,
    /// Most SSE streams at once.
    pub max_sse_clients: Option<i64>,
    /// Most SSE streams at once from one address.
    pub max_sse_per_ip: Option<i64>,
    /// Events waiting per SSE client.
    pub sse_buffer: Option<i64>,
    /// Bytes waiting per SSE client.
    pub sse_buffer_bytes: Option<i64>,
    /// Delivered messages kept for SSE clients that resume with `Last-Event-ID`.
    pub sse_replay_events: Option<i64>,
    /// Payload bytes of the messages kept for resuming SSE clients.
    pub sse_replay_bytes: Option<i64>,
    /// How long a rendered `/metrics` text is reused (0: never).
    pub metrics_cache_ms: Option<i64>,
}

/// One `[[auth.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// Key id, as carried in tokens.
    pub kid: String,
    /// Tenant id, as carried in tokens.
    pub tid: String,
    /// File holding 64 hex digits (mode 0600).
    pub key_file: PathBuf,
}

impl FileConfig {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, DaemonConfigError> {
        toml::from_str(text).map_err(|e| DaemonConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<FileConfig, DaemonConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| DaemonConfigError::Read {
            setting: "config",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        FileConfig::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults_and_numbers_keep_their_kind() {
        let p = Path::new("t.toml");
        assert_eq!(FileConfig::parse("", p).unwrap(), FileConfig::default());
        let f = FileConfig::parse("[limits]\ndegrade_ratio = 1\nrecover_ratio = 0.5\n", p).unwrap();
        assert_eq!(f.limits.degrade_ratio, Some(Number::Int(1)));
        assert_eq!(f.limits.recover_ratio, Some(Number::Float(0.5)));
        let e = FileConfig::parse("[limits]\nrecover_ratio = true\n", p).unwrap_err();
        assert!(e.to_string().contains("a number"), "{e}");
    }

    #[test]
    fn key_entries_need_all_fields() {
        let e = FileConfig::parse(
            "[[auth.keys]]\nkid = \"k\"\ntid = \"t\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
    }
}
