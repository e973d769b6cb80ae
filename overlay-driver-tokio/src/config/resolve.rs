//! Precedence (flag > env > file > default) and validation.
//!
//! Each setting is described by a [`Spec`] (canonical name, flag, env var, file key). The
//! first layer that has a value wins; that value is parsed and range-checked, and an error
//! names the setting, the value, where it came from and what is accepted. Built-in defaults
//! are valid by construction (checked by a unit test) and are not re-checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use overlay_proto::score::ScoreConfig;
use overlay_proto::{MacKey, NodeConfig, OriginAuth};
use zeroize::{Zeroize, Zeroizing};

use super::cli::Cli;
use super::env::{self, EnvLookup};
use super::error::{DaemonConfigError, Origin};
use super::file::{FileConfig, Number};
use super::secrets;
use super::{defaults, DaemonConfig};
use crate::pq::PqMode;
use crate::telemetry::LogFormat;

mod clients;
pub(crate) mod http;

/// Longest accepted duration: one day, in milliseconds.
pub const MAX_MS: u64 = 86_400_000;
/// Key id used for the well-known dev key in dev mode.
pub const DEV_KID: &str = "dev";

/// A value as given by one layer, before parsing.
#[derive(Debug, Clone)]
enum Raw {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Raw {
    fn shown(&self) -> String {
        match self {
            Raw::Text(s) => s.clone(),
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
        }
    }
}

impl From<Number> for Raw {
    fn from(n: Number) -> Raw {
        match n {
            Number::Int(i) => Raw::Int(i),
            Number::Float(f) => Raw::Float(f),
        }
    }
}

/// The winning layer's value and where it came from.
#[derive(Debug, Clone)]
struct Given {
    raw: Raw,
    origin: Origin,
}

/// How one setting is named in each layer.
#[derive(Debug, Clone, Copy)]
struct Spec {
    /// Canonical name (the TOML key without its section).
    name: &'static str,
    /// `--flag`, if the setting has one.
    flag: Option<&'static str>,
    /// Environment variable, if the setting has one.
    env: Option<&'static str>,
    /// Dotted TOML key.
    key: &'static str,
}

const fn spec(
    name: &'static str,
    flag: Option<&'static str>,
    env: Option<&'static str>,
    key: &'static str,
) -> Spec {
    Spec {
        name,
        flag,
        env,
        key,
    }
}

fn invalid(spec: &Spec, given: &Given, accepted: impl Into<String>) -> DaemonConfigError {
    DaemonConfigError::Invalid {
        setting: spec.name,
        value: given.raw.shown(),
        origin: given.origin.clone(),
        accepted: accepted.into(),
    }
}

/// Resolves the layers into a [`DaemonConfig`].
pub(crate) struct Resolver<'a> {
    cli: &'a Cli,
    env: EnvLookup<'a>,
    file: FileConfig,
    file_path: Option<PathBuf>,
}

impl<'a> Resolver<'a> {
    /// `file` is the parsed config file and its path, if one was read.
    pub(crate) fn new(
        cli: &'a Cli,
        env: EnvLookup<'a>,
        file: Option<(PathBuf, FileConfig)>,
    ) -> Self {
        let (file_path, file) = match file {
            Some((path, file)) => (Some(path), file),
            None => (None, FileConfig::default()),
        };
        Resolver {
            cli,
            env,
            file,
            file_path,
        }
    }

    /// The winning layer for `spec`, given the flag's text and the file's value.
    fn given(&self, spec: &Spec, flag: Option<&str>, file: Option<Raw>) -> Option<Given> {
        if let (Some(value), Some(name)) = (flag, spec.flag) {
            return Some(Given {
                raw: Raw::Text(value.to_string()),
                origin: Origin::Flag(name),
            });
        }
        if let Some(var) = spec.env {
            if let Some(value) = env::get(self.env, var) {
                return Some(Given {
                    raw: Raw::Text(value),
                    origin: Origin::Env(var),
                });
            }
        }
        file.map(|raw| Given {
            raw,
            origin: self.file_origin(spec.key),
        })
    }

    fn file_origin(&self, key: &str) -> Origin {
        Origin::File {
            path: self.file_path.clone().unwrap_or_default(),
            key: key.to_string(),
        }
    }

    /// A path from the file, made relative to the file's directory.
    fn file_relative(&self, path: &Path) -> PathBuf {
        match self.file_path.as_deref().and_then(Path::parent) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// A path setting: flag (as given) > file (relative to the file).
    fn path(&self, flag: Option<&PathBuf>, file: Option<&PathBuf>) -> Option<PathBuf> {
        flag.cloned()
            .or_else(|| file.map(|p| self.file_relative(p)))
    }

    fn uint(
        &self,
        spec: &Spec,
        flag: Option<&str>,
        file: Option<i64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, DaemonConfigError> {
        let Some(given) = self.given(spec, flag, file.map(Raw::Int)) else {
            return Ok(default);
        };
        let accepted = || format!("an integer in {min}..={max}");
        let value = match &given.raw {
            Raw::Text(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(spec, &given, accepted()))?,
            Raw::Int(i) => u64::try_from(*i).map_err(|_| invalid(spec, &given, accepted()))?,
            Raw::Float(_) | Raw::Bool(_) => return Err(invalid(spec, &given, accepted())),
        };
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(spec, &given, accepted()))
        }
    }

    fn usize_in(
        &self,
        spec: &Spec,
        flag: Option<&str>,
        file: Option<i64>,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, DaemonConfigError> {
        let v = self.uint(spec, flag, file, default as u64, min as u64, max as u64)?;
        // In range by construction; the fallback is never taken on 64-bit targets.
        Ok(usize::try_from(v).unwrap_or(max))
    }

    fn u32_in(
        &self,
        spec: &Spec,
        file: Option<i64>,
        default: u32,
        min: u32,
        max: u32,
    ) -> Result<u32, DaemonConfigError> {
        let v = self.uint(
            spec,
            None,
            file,
            u64::from(default),
            u64::from(min),
            u64::from(max),
        )?;
        Ok(u32::try_from(v).unwrap_or(max))
    }

    /// A duration in milliseconds, 1..=[`MAX_MS`].
    fn ms(
        &self,
        spec: &Spec,
        flag: Option<&str>,
        file: Option<i64>,
        default: Duration,
    ) -> Result<Duration, DaemonConfigError> {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(MAX_MS);
        self.uint(spec, flag, file, default_ms, 1, MAX_MS)
            .map(Duration::from_millis)
    }

    /// A ratio in the open/closed interval given by `max_inclusive`: (0, 1] or (0, 1).
    fn ratio(
        &self,
        spec: &Spec,
        file: Option<Number>,
        default: f64,
        max_inclusive: bool,
    ) -> Result<f64, DaemonConfigError> {
        let Some(given) = self.given(spec, None, file.map(Raw::from)) else {
            return Ok(default);
        };
        let accepted = if max_inclusive {
            "a number with 0 < value <= 1"
        } else {
            "a number with 0 < value < 1"
        };
        let value = match &given.raw {
            Raw::Text(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| invalid(spec, &given, accepted))?,
            Raw::Int(i) => *i as f64,
            Raw::Float(f) => *f,
            Raw::Bool(_) => return Err(invalid(spec, &given, accepted)),
        };
        let below = if max_inclusive {
            value <= 1.0
        } else {
            value < 1.0
        };
        if value.is_finite() && value > 0.0 && below {
            Ok(value)
        } else {
            Err(invalid(spec, &given, accepted))
        }
    }

    fn boolean(
        &self,
        spec: &Spec,
        flag: Option<&str>,
        file: Option<bool>,
        default: bool,
    ) -> Result<bool, DaemonConfigError> {
        let Some(given) = self.given(spec, flag, file.map(Raw::Bool)) else {
            return Ok(default);
        };
        const ACCEPTED: &str = "true | false (also 1 | 0, yes | no, on | off)";
        match &given.raw {
            Raw::Bool(b) => Ok(*b),
            Raw::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(invalid(spec, &given, ACCEPTED)),
            },
            Raw::Int(_) | Raw::Float(_) => Err(invalid(spec, &given, ACCEPTED)),
        }
    }

    fn text(
        &self,
        spec: &Spec,
        flag: Option<&str>,
        file: Option<&String>,
    ) -> Option<(String, Given)> {
        let given = self.given(spec, flag, file.cloned().map(Raw::Text))?;
        Some((given.raw.shown(), given))
    }

    fn socket_addr(
        &self,
        spec: &Spec,
        flag: Option<&str>,
        file: Option<&String>,
        default: SocketAddr,
    ) -> Result<SocketAddr, DaemonConfigError> {
        match self.text(spec, flag, file) {
            None => Ok(default),
            Some((text, given)) => SocketAddr::from_str(text.trim()).map_err(|_| {
                invalid(
                    spec,
                    &given,
                    "an IP socket address such as 127.0.0.1:9415 or [::1]:9415",
                )
            }),
        }
    }

    /// Resolves every setting.
    pub(crate) fn resolve(&self) -> Result<DaemonConfig, DaemonConfigError> {
        let cli = self.cli;
        let f = &self.file;
        let mut node = NodeConfig::default();

        // [node]
        let bind = self.socket_addr(
            &spec("bind", Some("--bind"), Some(env::OVERLAY_BIND), "node.bind"),
            cli.bind.as_deref(),
            f.node.bind.as_ref(),
            defaults::BIND,
        )?;
        let advertise = self.advertise()?;
        let metrics_addr = self.socket_addr(
            &spec(
                "metrics_addr",
                Some("--metrics-addr"),
                Some(env::METRICS_ADDR),
                "node.metrics_addr",
            ),
            cli.metrics_addr.as_deref(),
            f.node.metrics_addr.as_ref(),
            defaults::METRICS_ADDR,
        )?;
        let max_conns = self.usize_in(
            &spec(
                "max_conns",
                Some("--max-conns"),
                Some(env::OVERLAY_MAX_CONNS),
                "node.max_conns",
            ),
            cli.max_conns.as_deref(),
            f.node.max_conns,
            defaults::MAX_CONNS,
            1,
            1_000_000,
        )?;
        let peers = self.peers()?;
        let trace_out = self.path(cli.trace_out.as_ref(), f.node.trace_out.as_ref());
        let log_level = self.log_level()?;
        let log_format = self.log_format()?;
        let amnesia = self.boolean(
            &spec(
                "amnesia",
                Some("--amnesia"),
                Some(env::AMNESIA),
                "node.amnesia",
            ),
            cli.amnesia.as_deref(),
            f.node.amnesia,
            defaults::AMNESIA,
        )?;
        let trace_out_despite_amnesia = self.boolean(
            &spec(
                "trace_out_despite_amnesia",
                Some("--trace-out-despite-amnesia"),
                None,
                "node.trace_out_despite_amnesia",
            ),
            cli.trace_out_despite_amnesia.as_deref(),
            f.node.trace_out_despite_amnesia,
            false,
        )?;
        if let Some(path) = &trace_out {
            if amnesia && !trace_out_despite_amnesia {
                return Err(DaemonConfigError::Conflict {
                    setting: "trace_out",
                    value: path.display().to_string(),
                    rule: "amnesia is on (AMNESIA=true, the default), and a trace writes keys, \
                           tokens and payloads to disk; turn amnesia off (--amnesia false) or \
                           allow it explicitly with --trace-out-despite-amnesia"
                        .to_string(),
                });
            }
        }
        let drain = self.ms(
            &spec("drain_ms", Some("--drain-ms"), None, "node.drain_ms"),
            cli.drain_ms.as_deref(),
            f.node.drain_ms,
            defaults::DRAIN,
        )?;

        // [tls]
        let pq = self.pq()?;
        let ca = self.path(cli.ca.as_ref(), f.tls.ca.as_ref());
        if let Some(ca) = &ca {
            secrets::check_readable("ca", ca)?;
        }
        let cert = self.path(cli.cert.as_ref(), f.tls.cert.as_ref());
        let key = self.path(cli.key.as_ref(), f.tls.key.as_ref());
        let cert_key = match (cert, key) {
            (Some(cert), Some(key)) => {
                secrets::check_readable("cert", &cert)?;
                secrets::check_private("key", &key)?;
                Some((cert, key))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(DaemonConfigError::Missing {
                    setting: "key",
                    reason: "a certificate (--cert / [tls] cert) needs its private key \
                             (--key / [tls] key)",
                })
            }
            (None, Some(_)) => {
                return Err(DaemonConfigError::Missing {
                    setting: "cert",
                    reason: "a private key (--key / [tls] key) needs its certificate \
                             (--cert / [tls] cert)",
                })
            }
        };

        // [gossip]
        let g = &f.gossip;
        node.alpha = self.usize_in(
            &spec("alpha", Some("--alpha"), None, "gossip.alpha"),
            cli.alpha.as_deref(),
            g.alpha,
            node.alpha,
            1,
            64,
        )?;
        node.beta = self.usize_in(
            &spec("beta", Some("--beta"), None, "gossip.beta"),
            cli.beta.as_deref(),
            g.beta,
            node.beta,
            0,
            256,
        )?;
        node.graft_timeout = self.ms(
            &spec("graft_timeout_ms", None, None, "gossip.graft_timeout_ms"),
            None,
            g.graft_timeout_ms,
            node.graft_timeout,
        )?;
        node.graft_timeout_settled = self.ms(
            &spec(
                "graft_timeout_settled_ms",
                None,
                None,
                "gossip.graft_timeout_settled_ms",
            ),
            None,
            g.graft_timeout_settled_ms,
            node.graft_timeout_settled,
        )?;
        node.tree_settle = self.ms(
            &spec("tree_settle_ms", None, None, "gossip.tree_settle_ms"),
            None,
            g.tree_settle_ms,
            node.tree_settle,
        )?;
        // 0 turns the rebuild after a failure nearby off.
        node.tree_rebuild_losses = self.u32_in(
            &spec(
                "tree_rebuild_losses",
                None,
                None,
                "gossip.tree_rebuild_losses",
            ),
            g.tree_rebuild_losses,
            node.tree_rebuild_losses,
            0,
            64,
        )?;
        node.tree_rebuild_delay = self
            .uint(
                &spec(
                    "tree_rebuild_delay_ms",
                    None,
                    None,
                    "gossip.tree_rebuild_delay_ms",
                ),
                None,
                g.tree_rebuild_delay_ms,
                u64::try_from(node.tree_rebuild_delay.as_millis()).unwrap_or(MAX_MS),
                0,
                60_000,
            )
            .map(Duration::from_millis)?;
        node.tree_rebuild_interval = self
            .uint(
                &spec(
                    "tree_rebuild_interval_ms",
                    None,
                    None,
                    "gossip.tree_rebuild_interval_ms",
                ),
                None,
                g.tree_rebuild_interval_ms,
                u64::try_from(node.tree_rebuild_interval.as_millis()).unwrap_or(MAX_MS),
                1_000,
                MAX_MS, // 24 h, as the core accepts
            )
            .map(Duration::from_millis)?;
        // 0 turns the restoration of displaced tree edges off.
        node.link_probation = self
            .uint(
                &spec("link_probation_ms", None, None, "gossip.link_probation_ms"),
                None,
                g.link_probation_ms,
                u64::try_from(node.link_probation.as_millis()).unwrap_or(MAX_MS),
                0,
                MAX_MS,
            )
            .map(Duration::from_millis)?;
        // 0 puts every new link on probation.
        node.link_probation_after_ban = self
            .uint(
                &spec(
                    "link_probation_after_ban_ms",
                    None,
                    None,
                    "gossip.link_probation_after_ban_ms",
                ),
                None,
                g.link_probation_after_ban_ms,
                u64::try_from(node.link_probation_after_ban.as_millis()).unwrap_or(MAX_MS),
                0,
                MAX_MS,
            )
            .map(Duration::from_millis)?;
        node.idle_ban_keeps_tree = self.boolean(
            &spec(
                "idle_ban_keeps_tree",
                None,
                None,
                "gossip.idle_ban_keeps_tree",
            ),
            None,
            g.idle_ban_keeps_tree,
            node.idle_ban_keeps_tree,
        )?;
        node.optimization_hold = self.ms(
            &spec(
                "optimization_hold_ms",
                None,
                None,
                "gossip.optimization_hold_ms",
            ),
            None,
            g.optimization_hold_ms,
            node.optimization_hold,
        )?;
        node.optimization_max_lateness = self
            .uint(
                &spec(
                    "optimization_max_lateness_ms",
                    None,
                    None,
                    "gossip.optimization_max_lateness_ms",
                ),
                None,
                g.optimization_max_lateness_ms,
                u64::try_from(node.optimization_max_lateness.as_millis()).unwrap_or(MAX_MS),
                0,
                60_000,
            )
            .map(Duration::from_millis)?;
        node.graft_retry = self.ms(
            &spec("graft_retry_ms", None, None, "gossip.graft_retry_ms"),
            None,
            g.graft_retry_ms,
            node.graft_retry,
        )?;
        node.lazy_flush_interval = self.ms(
            &spec("lazy_flush_ms", None, None, "gossip.lazy_flush_ms"),
            None,
            g.lazy_flush_ms,
            node.lazy_flush_interval,
        )?;
        node.seen_capacity = self.usize_in(
            &spec("seen_capacity", None, None, "gossip.seen_capacity"),
            None,
            g.seen_capacity,
            node.seen_capacity,
            16,
            1 << 24,
        )?;
        node.seen_ttl = self.ms(
            &spec("seen_ttl_ms", None, None, "gossip.seen_ttl_ms"),
            None,
            g.seen_ttl_ms,
            node.seen_ttl,
        )?;
        node.store_capacity = self.usize_in(
            &spec("store_capacity", None, None, "gossip.store_capacity"),
            None,
            g.store_capacity,
            node.store_capacity,
            1,
            1 << 20,
        )?;
        node.store_bytes = self.usize_in(
            &spec("store_bytes", None, None, "gossip.store_bytes"),
            None,
            g.store_bytes,
            node.store_bytes,
            0,
            1 << 34,
        )?;
        node.store_ttl = self.ms(
            &spec("store_ttl_ms", None, None, "gossip.store_ttl_ms"),
            None,
            g.store_ttl_ms,
            node.store_ttl,
        )?;
        node.ihave_batch_max = self.usize_in(
            &spec("ihave_batch_max", None, None, "gossip.ihave_batch_max"),
            None,
            g.ihave_batch_max,
            node.ihave_batch_max,
            1,
            overlay_proto::wire::MAX_IHAVE_IDS,
        )?;
        node.catch_up_ids = self.usize_in(
            &spec("catch_up_ids", None, None, "gossip.catch_up_ids"),
            None,
            g.catch_up_ids,
            node.catch_up_ids,
            0,
            overlay_proto::wire::MAX_IHAVE_IDS,
        )?;
        node.prune_after_duplicates = self.u32_in(
            &spec(
                "prune_after_duplicates",
                None,
                None,
                "gossip.prune_after_duplicates",
            ),
            g.prune_after_duplicates,
            node.prune_after_duplicates,
            1,
            1000,
        )?;
        node.optimization_threshold = u8::try_from(self.u32_in(
            &spec(
                "optimization_threshold",
                None,
                None,
                "gossip.optimization_threshold",
            ),
            g.optimization_threshold,
            u32::from(node.optimization_threshold),
            0,
            64,
        )?)
        .unwrap_or(u8::MAX);
        node.optimization_samples = u16::try_from(self.u32_in(
            &spec(
                "optimization_samples",
                None,
                None,
                "gossip.optimization_samples",
            ),
            g.optimization_samples,
            u32::from(node.optimization_samples),
            1,
            1024,
        )?)
        .unwrap_or(u16::MAX);
        node.origin_auth = self.origin_auth()?;

        // [membership]
        let m = &f.membership;
        node.active_target = self.usize_in(
            &spec("active_target", None, None, "membership.active_target"),
            None,
            m.active_target,
            node.active_target,
            1,
            1_000_000,
        )?;
        node.passive_capacity = self.usize_in(
            &spec(
                "passive_capacity",
                None,
                None,
                "membership.passive_capacity",
            ),
            None,
            m.passive_capacity,
            node.passive_capacity,
            1,
            65_536,
        )?;
        node.shuffle_interval = self.ms(
            &spec(
                "shuffle_interval_ms",
                None,
                None,
                "membership.shuffle_interval_ms",
            ),
            None,
            m.shuffle_interval_ms,
            node.shuffle_interval,
        )?;
        node.shuffle_len = self.usize_in(
            &spec("shuffle_len", None, None, "membership.shuffle_len"),
            None,
            m.shuffle_len,
            node.shuffle_len,
            0,
            overlay_proto::wire::MAX_SHUFFLE_ENTRIES,
        )?;
        node.backoff_base = self.ms(
            &spec("backoff_base_ms", None, None, "membership.backoff_base_ms"),
            None,
            m.backoff_base_ms,
            node.backoff_base,
        )?;
        node.backoff_max = self.ms(
            &spec("backoff_max_ms", None, None, "membership.backoff_max_ms"),
            None,
            m.backoff_max_ms,
            node.backoff_max,
        )?;
        node.max_concurrent_dials = self.usize_in(
            &spec(
                "max_concurrent_dials",
                None,
                None,
                "membership.max_concurrent_dials",
            ),
            None,
            m.max_concurrent_dials,
            node.max_concurrent_dials,
            1,
            1024,
        )?;
        node.link_optimization = self.boolean(
            &spec(
                "link_optimization",
                None,
                None,
                "membership.link_optimization",
            ),
            None,
            m.link_optimization,
            node.link_optimization,
        )?;
        node.link_optimization_interval = self.ms(
            &spec(
                "link_optimization_interval_ms",
                None,
                None,
                "membership.link_optimization_interval_ms",
            ),
            None,
            m.link_optimization_interval_ms,
            node.link_optimization_interval,
        )?;
        node.link_optimization_margin_pct = u8::try_from(self.u32_in(
            &spec(
                "link_optimization_margin_pct",
                None,
                None,
                "membership.link_optimization_margin_pct",
            ),
            m.link_optimization_margin_pct,
            u32::from(node.link_optimization_margin_pct),
            1,
            90,
        )?)
        .unwrap_or(90);
        node.link_optimization_swaps = self.u32_in(
            &spec(
                "link_optimization_swaps",
                None,
                None,
                "membership.link_optimization_swaps",
            ),
            m.link_optimization_swaps,
            node.link_optimization_swaps,
            1,
            1000,
        )?;

        // [limits]
        let l = &f.limits;
        node.max_sessions = self.usize_in(
            &spec("max_sessions", None, None, "limits.max_sessions"),
            None,
            l.max_sessions,
            node.max_sessions,
            1,
            1_000_000,
        )?;
        let idle = self.ms(
            &spec(
                "idle_ms",
                Some("--idle-ms"),
                Some(env::OVERLAY_IDLE_MS),
                "limits.idle_ms",
            ),
            cli.idle_ms.as_deref(),
            l.idle_ms,
            defaults::IDLE,
        )?;
        node.idle_timeout = idle;
        let read = self.ms(
            &spec(
                "read_ms",
                Some("--read-ms"),
                Some(env::OVERLAY_READ_MS),
                "limits.read_ms",
            ),
            cli.read_ms.as_deref(),
            l.read_ms,
            defaults::READ,
        )?;
        let write = self.ms(
            &spec(
                "write_ms",
                Some("--write-ms"),
                Some(env::OVERLAY_WRITE_MS),
                "limits.write_ms",
            ),
            cli.write_ms.as_deref(),
            l.write_ms,
            defaults::WRITE,
        )?;
        node.handshake_timeout = self.ms(
            &spec(
                "handshake_ms",
                Some("--handshake-ms"),
                None,
                "limits.handshake_ms",
            ),
            cli.handshake_ms.as_deref(),
            l.handshake_ms,
            defaults::HANDSHAKE,
        )?;
        node.keepalive_interval = self.ms(
            &spec("keepalive_ms", None, None, "limits.keepalive_ms"),
            None,
            l.keepalive_ms,
            node.keepalive_interval,
        )?;
        node.connect_timeout = self.ms(
            &spec("connect_ms", None, None, "limits.connect_ms"),
            None,
            l.connect_ms,
            node.connect_timeout,
        )?;
        node.liveness_timeout = self.ms(
            &spec("liveness_ms", None, None, "limits.liveness_ms"),
            None,
            l.liveness_ms,
            node.liveness_timeout,
        )?;
        node.tick_interval = self.ms(
            &spec("tick_ms", None, None, "limits.tick_ms"),
            None,
            l.tick_ms,
            node.tick_interval,
        )?;
        let frame = overlay_proto::frame::MAX_FRAME_BYTES as u64;
        node.credit_window_frames = self.u32_in(
            &spec(
                "credit_window_frames",
                None,
                None,
                "limits.credit_window_frames",
            ),
            l.credit_window_frames,
            node.credit_window_frames,
            2,
            1_000_000,
        )?;
        node.credit_window_bytes = self.u32_in(
            &spec(
                "credit_window_bytes",
                None,
                None,
                "limits.credit_window_bytes",
            ),
            l.credit_window_bytes,
            node.credit_window_bytes,
            u32::try_from(frame).unwrap_or(u32::MAX),
            1 << 30,
        )?;
        node.max_queue_frames = self.usize_in(
            &spec("max_queue_frames", None, None, "limits.max_queue_frames"),
            None,
            l.max_queue_frames,
            node.max_queue_frames,
            1,
            1_000_000,
        )?;
        node.max_queue_bytes = self.usize_in(
            &spec("max_queue_bytes", None, None, "limits.max_queue_bytes"),
            None,
            l.max_queue_bytes,
            node.max_queue_bytes,
            overlay_proto::frame::MAX_FRAME_BYTES,
            1 << 32,
        )?;
        node.max_message_bytes = self.usize_in(
            &spec("max_message_bytes", None, None, "limits.max_message_bytes"),
            None,
            l.max_message_bytes,
            node.max_message_bytes,
            1,
            overlay_proto::wire::MAX_APP_PAYLOAD,
        )?;
        node.peer_rate_per_s = self.u32_in(
            &spec("peer_rate_per_s", None, None, "limits.peer_rate_per_s"),
            l.peer_rate_per_s,
            node.peer_rate_per_s,
            1,
            100_000_000,
        )?;
        node.peer_rate_burst = self.u32_in(
            &spec("peer_rate_burst", None, None, "limits.peer_rate_burst"),
            l.peer_rate_burst,
            node.peer_rate_burst,
            1,
            100_000_000,
        )?;
        node.degrade_ratio = self.ratio(
            &spec("degrade_ratio", None, None, "limits.degrade_ratio"),
            l.degrade_ratio,
            node.degrade_ratio,
            true,
        )?;
        node.recover_ratio = self.ratio(
            &spec("recover_ratio", None, None, "limits.recover_ratio"),
            l.recover_ratio,
            node.recover_ratio,
            false,
        )?;
        self.hostile_peer_limits(&mut node)?;
        let topics = self.topics(&mut node)?;
        self.scoring(&mut node.scoring)?;
        self.client_limits(&mut node.clients)?;

        // [auth]
        node.auth.amnesia = amnesia;
        node.auth.tenant = self.tenant()?;
        node.auth.path = self.auth_path()?;
        node.auth.policy_digest_hex = self.policy_digest()?;
        let token = self.token()?;
        let keys = self.cap_keys()?;
        let dev_mode = keys.is_empty();
        let http = self.http_settings()?;
        if dev_mode {
            node.auth
                .keys
                .insert(DEV_KID, node.auth.tenant.clone(), MacKey::DEV);
            let control = http.control_addr.map(|a| ("control_addr", a));
            let listeners = [("bind", bind), ("metrics_addr", metrics_addr)];
            for (setting, addr) in listeners.into_iter().chain(control) {
                if !addr.ip().is_loopback() {
                    return Err(DaemonConfigError::DevModeExposed { setting, addr });
                }
            }
        } else {
            for (kid, tid, key) in keys {
                node.auth.keys.insert(kid, tid, key);
            }
            if token.is_none() {
                return Err(DaemonConfigError::Missing {
                    setting: "token_file",
                    reason: "capability keys are configured, so this node needs its own token: \
                             set --token-file, OVERLAY_TOKEN or [auth] token_file",
                });
            }
        }
        node.auth.own_token = token.map(|mut t| std::mem::take(&mut *t).into());

        cross_check(&node)?;
        node.validate()?;

        Ok(DaemonConfig {
            bind,
            advertise,
            metrics_addr,
            max_conns,
            peers,
            topics,
            pq,
            trace_out,
            log_level,
            log_format,
            trace_out_despite_amnesia,
            amnesia,
            idle,
            read,
            write,
            drain,
            ca,
            cert_key,
            node,
            dev_mode,
            http,
        })
    }

    /// A number in `min..=max` (TOML integer or float).
    fn float_in(
        &self,
        spec: &Spec,
        file: Option<Number>,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, DaemonConfigError> {
        let Some(given) = self.given(spec, None, file.map(Raw::from)) else {
            return Ok(default);
        };
        let accepted = || format!("a number in {min}..={max}");
        let value = match &given.raw {
            Raw::Text(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| invalid(spec, &given, accepted()))?,
            Raw::Int(i) => *i as f64,
            Raw::Float(f) => *f,
            Raw::Bool(_) => return Err(invalid(spec, &given, accepted())),
        };
        if value.is_finite() && (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(spec, &given, accepted()))
        }
    }

    /// The per-peer limits against hostile peers (`[gossip]`, `[membership]`, `[limits]`).
    fn hostile_peer_limits(&self, node: &mut NodeConfig) -> Result<(), DaemonConfigError> {
        let (g, m, l) = (&self.file.gossip, &self.file.membership, &self.file.limits);
        const RATE_MAX: u32 = 100_000_000;
        let rate = |name, key, file, default: u32| {
            self.u32_in(&spec(name, None, None, key), file, default, 1, RATE_MAX)
        };
        node.graft_max_ids = self.usize_in(
            &spec("graft_max_ids", None, None, "gossip.graft_max_ids"),
            None,
            g.graft_max_ids,
            node.graft_max_ids,
            1,
            overlay_proto::wire::MAX_IHAVE_IDS,
        )?;
        node.graft_rate_per_s = rate(
            "graft_rate_per_s",
            "gossip.graft_rate_per_s",
            g.graft_rate_per_s,
            node.graft_rate_per_s,
        )?;
        node.graft_rate_burst = rate(
            "graft_rate_burst",
            "gossip.graft_rate_burst",
            g.graft_rate_burst,
            node.graft_rate_burst,
        )?;
        node.graft_after_prune = self.ms(
            &spec(
                "graft_after_prune_ms",
                None,
                None,
                "gossip.graft_after_prune_ms",
            ),
            None,
            g.graft_after_prune_ms,
            node.graft_after_prune,
        )?;
        node.ihave_rate_per_s = rate(
            "ihave_rate_per_s",
            "gossip.ihave_rate_per_s",
            g.ihave_rate_per_s,
            node.ihave_rate_per_s,
        )?;
        node.ihave_rate_burst = rate(
            "ihave_rate_burst",
            "gossip.ihave_rate_burst",
            g.ihave_rate_burst,
            node.ihave_rate_burst,
        )?;
        node.ihave_max_missing_per_peer = self.usize_in(
            &spec(
                "ihave_max_missing_per_peer",
                None,
                None,
                "gossip.ihave_max_missing_per_peer",
            ),
            None,
            g.ihave_max_missing_per_peer,
            node.ihave_max_missing_per_peer,
            1,
            65_536,
        )?;
        node.max_announcers = self.usize_in(
            &spec("max_announcers", None, None, "gossip.max_announcers"),
            None,
            g.max_announcers,
            node.max_announcers,
            1,
            64,
        )?;
        node.optimization_swaps_per_s = self.u32_in(
            &spec(
                "optimization_swaps_per_s",
                None,
                None,
                "gossip.optimization_swaps_per_s",
            ),
            g.optimization_swaps_per_s,
            node.optimization_swaps_per_s,
            1,
            1000,
        )?;
        node.duplicate_rate_per_s = rate(
            "duplicate_rate_per_s",
            "gossip.duplicate_rate_per_s",
            g.duplicate_rate_per_s,
            node.duplicate_rate_per_s,
        )?;
        node.duplicate_rate_burst = rate(
            "duplicate_rate_burst",
            "gossip.duplicate_rate_burst",
            g.duplicate_rate_burst,
            node.duplicate_rate_burst,
        )?;
        node.shuffle_rate_per_s = rate(
            "shuffle_rate_per_s",
            "membership.shuffle_rate_per_s",
            m.shuffle_rate_per_s,
            node.shuffle_rate_per_s,
        )?;
        node.shuffle_rate_burst = rate(
            "shuffle_rate_burst",
            "membership.shuffle_rate_burst",
            m.shuffle_rate_burst,
            node.shuffle_rate_burst,
        )?;
        node.min_peer_window_frames = self.u32_in(
            &spec(
                "min_peer_window_frames",
                None,
                None,
                "limits.min_peer_window_frames",
            ),
            l.min_peer_window_frames,
            node.min_peer_window_frames,
            1,
            1_000_000,
        )?;
        node.min_peer_window_bytes = self.u32_in(
            &spec(
                "min_peer_window_bytes",
                None,
                None,
                "limits.min_peer_window_bytes",
            ),
            l.min_peer_window_bytes,
            node.min_peer_window_bytes,
            0,
            1 << 30,
        )?;
        node.stall_timeout = self.ms(
            &spec("stall_ms", None, None, "limits.stall_ms"),
            None,
            l.stall_ms,
            node.stall_timeout,
        )?;
        node.max_preauth = self.usize_in(
            &spec("max_preauth", None, None, "limits.max_preauth"),
            None,
            l.max_preauth,
            node.max_preauth,
            1,
            1_000_000,
        )?;
        node.max_preauth_per_ip = self.usize_in(
            &spec(
                "max_preauth_per_ip",
                None,
                None,
                "limits.max_preauth_per_ip",
            ),
            None,
            l.max_preauth_per_ip,
            node.max_preauth_per_ip,
            1,
            1_000_000,
        )?;
        Ok(())
    }

    /// `[scoring]`.
    fn scoring(&self, sc: &mut ScoreConfig) -> Result<(), DaemonConfigError> {
        let f = &self.file.scoring;
        const BIG: f64 = 1e9;
        let weight = |name, key, file, default| {
            self.float_in(&spec(name, None, None, key), file, default, -BIG, 0.0)
        };
        sc.enabled = self.boolean(
            &spec("enabled", None, None, "scoring.enabled"),
            None,
            f.enabled,
            sc.enabled,
        )?;
        sc.decay_interval = self.ms(
            &spec("decay_interval_ms", None, None, "scoring.decay_interval_ms"),
            None,
            f.decay_interval_ms,
            sc.decay_interval,
        )?;
        sc.decay_factor = self.ratio(
            &spec("decay_factor", None, None, "scoring.decay_factor"),
            f.decay_factor,
            sc.decay_factor,
            false,
        )?;
        sc.first_delivery_weight = self.float_in(
            &spec(
                "first_delivery_weight",
                None,
                None,
                "scoring.first_delivery_weight",
            ),
            f.first_delivery_weight,
            sc.first_delivery_weight,
            0.0,
            BIG,
        )?;
        sc.first_delivery_cap = self.float_in(
            &spec(
                "first_delivery_cap",
                None,
                None,
                "scoring.first_delivery_cap",
            ),
            f.first_delivery_cap,
            sc.first_delivery_cap,
            0.0,
            BIG,
        )?;
        sc.invalid_message_weight = weight(
            "invalid_message_weight",
            "scoring.invalid_message_weight",
            f.invalid_message_weight,
            sc.invalid_message_weight,
        )?;
        sc.violation_weight = weight(
            "violation_weight",
            "scoring.violation_weight",
            f.violation_weight,
            sc.violation_weight,
        )?;
        sc.broken_promise_weight = weight(
            "broken_promise_weight",
            "scoring.broken_promise_weight",
            f.broken_promise_weight,
            sc.broken_promise_weight,
        )?;
        sc.graft_flood_weight = weight(
            "graft_flood_weight",
            "scoring.graft_flood_weight",
            f.graft_flood_weight,
            sc.graft_flood_weight,
        )?;
        sc.ihave_flood_weight = weight(
            "ihave_flood_weight",
            "scoring.ihave_flood_weight",
            f.ihave_flood_weight,
            sc.ihave_flood_weight,
        )?;
        sc.duplicate_flood_weight = weight(
            "duplicate_flood_weight",
            "scoring.duplicate_flood_weight",
            f.duplicate_flood_weight,
            sc.duplicate_flood_weight,
        )?;
        sc.shuffle_flood_weight = weight(
            "shuffle_flood_weight",
            "scoring.shuffle_flood_weight",
            f.shuffle_flood_weight,
            sc.shuffle_flood_weight,
        )?;
        sc.validation_rejected_weight = weight(
            "validation_rejected_weight",
            "scoring.validation_rejected_weight",
            f.validation_rejected_weight,
            sc.validation_rejected_weight,
        )?;
        sc.gossip_threshold = weight(
            "gossip_threshold",
            "scoring.gossip_threshold",
            f.gossip_threshold,
            sc.gossip_threshold,
        )?;
        sc.prune_threshold = weight(
            "prune_threshold",
            "scoring.prune_threshold",
            f.prune_threshold,
            sc.prune_threshold,
        )?;
        sc.ban_threshold = weight(
            "ban_threshold",
            "scoring.ban_threshold",
            f.ban_threshold,
            sc.ban_threshold,
        )?;
        sc.ban_base = self.ms(
            &spec("ban_base_ms", None, None, "scoring.ban_base_ms"),
            None,
            f.ban_base_ms,
            sc.ban_base,
        )?;
        sc.ban_max = self.ms(
            &spec("ban_max_ms", None, None, "scoring.ban_max_ms"),
            None,
            f.ban_max_ms,
            sc.ban_max,
        )?;
        sc.retain = self.ms(
            &spec("retain_ms", None, None, "scoring.retain_ms"),
            None,
            f.retain_ms,
            sc.retain,
        )?;
        sc.capacity = self.usize_in(
            &spec("capacity", None, None, "scoring.capacity"),
            None,
            f.capacity,
            sc.capacity,
            1,
            1_000_000,
        )?;
        Ok(())
    }

    fn log_format(&self) -> Result<LogFormat, DaemonConfigError> {
        let s = spec(
            "log_format",
            Some("--log-format"),
            Some(env::LOG_FORMAT),
            "node.log_format",
        );
        match self.text(
            &s,
            self.cli.log_format.as_deref(),
            self.file.node.log_format.as_ref(),
        ) {
            None => Ok(LogFormat::Text),
            Some((text, given)) => {
                LogFormat::from_str(&text).map_err(|_| invalid(&s, &given, "text | json"))
            }
        }
    }

    /// `--advertise`: an IP socket address peers can dial; never unspecified, never port 0.
    fn advertise(&self) -> Result<Option<SocketAddr>, DaemonConfigError> {
        let s = spec(
            "advertise",
            Some("--advertise"),
            Some(env::OVERLAY_ADVERTISE),
            "node.advertise",
        );
        let Some((text, given)) = self.text(
            &s,
            self.cli.advertise.as_deref(),
            self.file.node.advertise.as_ref(),
        ) else {
            return Ok(None);
        };
        match SocketAddr::from_str(text.trim()) {
            Ok(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => Ok(Some(addr)),
            _ => Err(invalid(
                &s,
                &given,
                "an IP socket address peers can dial, such as 10.0.0.5:9415 (not 0.0.0.0 or \
                 ::, not port 0)",
            )),
        }
    }

    fn pq(&self) -> Result<PqMode, DaemonConfigError> {
        let s = spec("pq", Some("--pq"), None, "tls.pq");
        match self.text(&s, self.cli.pq.as_deref(), self.file.tls.pq.as_ref()) {
            None => Ok(PqMode::default()),
            Some((text, given)) => PqMode::from_str(text.trim())
                .map_err(|_| invalid(&s, &given, "hybrid | hybrid-only | classic")),
        }
    }

    /// `sign` (default, also in dev mode: the dev identity is Ed25519) or `none`.
    fn origin_auth(&self) -> Result<OriginAuth, DaemonConfigError> {
        let s = spec(
            "origin_auth",
            Some("--origin-auth"),
            None,
            "gossip.origin_auth",
        );
        match self.text(
            &s,
            self.cli.origin_auth.as_deref(),
            self.file.gossip.origin_auth.as_ref(),
        ) {
            None => Ok(OriginAuth::Sign),
            Some((text, given)) => {
                OriginAuth::from_str(text.trim()).map_err(|()| invalid(&s, &given, "sign | none"))
            }
        }
    }

    fn log_level(&self) -> Result<String, DaemonConfigError> {
        let s = spec(
            "log_level",
            Some("--log-level"),
            Some(env::LOG_LEVEL),
            "node.log_level",
        );
        match self.text(
            &s,
            self.cli.log_level.as_deref(),
            self.file.node.log_level.as_ref(),
        ) {
            None => Ok(defaults::LOG_LEVEL.to_string()),
            Some((text, given)) => {
                let text = text.trim().to_string();
                if text.is_empty() || tracing_subscriber::EnvFilter::try_new(&text).is_err() {
                    Err(invalid(
                        &s,
                        &given,
                        "a tracing filter such as `info` or `warn,svc_overlay=debug`",
                    ))
                } else {
                    Ok(text)
                }
            }
        }
    }

    fn peers(&self) -> Result<Vec<String>, DaemonConfigError> {
        let (list, origin) = if !self.cli.peers.is_empty() {
            (self.cli.peers.clone(), Origin::Flag("--peer"))
        } else if let Some(list) = &self.file.node.peers {
            (list.clone(), self.file_origin("node.peers"))
        } else {
            return Ok(Vec::new());
        };
        const ACCEPTED: &str = "host:port with a port in 1..=65535 (IPv6 as [addr]:port), \
                                optionally pinned as peer:<64 hex>@host:port";
        if list.len() > 4096 {
            return Err(DaemonConfigError::Invalid {
                setting: "peers",
                value: format!("{} entries", list.len()),
                origin,
                accepted: "at most 4096 peers".to_string(),
            });
        }
        let mut out = Vec::with_capacity(list.len());
        for peer in list {
            let peer = peer.trim().to_string();
            if !valid_peer(&peer) {
                return Err(DaemonConfigError::Invalid {
                    setting: "peers",
                    value: peer,
                    origin,
                    accepted: ACCEPTED.to_string(),
                });
            }
            if !out.contains(&peer) {
                out.push(peer);
            }
        }
        Ok(out)
    }

    /// `[topics]`: the bounds, and the topics joined at start (`--topic` replaces the file's
    /// list); names are checked, repeats and the default topic's name dropped, and the list
    /// must fit `max_topics` with the default topic.
    fn topics(&self, node: &mut NodeConfig) -> Result<Vec<String>, DaemonConfigError> {
        let t = &self.file.topics;
        node.max_topics = self.usize_in(
            &spec("max_topics", None, None, "topics.max_topics"),
            None,
            t.max_topics,
            node.max_topics,
            1,
            4096,
        )?;
        node.max_peer_topics = self.usize_in(
            &spec("max_peer_topics", None, None, "topics.max_peer_topics"),
            None,
            t.max_peer_topics,
            node.max_peer_topics,
            0,
            4096,
        )?;
        node.topic_min_links = self.usize_in(
            &spec("topic_min_links", None, None, "topics.min_links"),
            None,
            t.min_links,
            node.topic_min_links,
            0,
            64,
        )?;
        let (list, origin) = if !self.cli.topics.is_empty() {
            (self.cli.topics.clone(), Origin::Flag("--topic"))
        } else if let Some(list) = &t.join {
            (list.clone(), self.file_origin("topics.join"))
        } else {
            return Ok(Vec::new());
        };
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for name in list {
            if let Err(e) = overlay_proto::validate_topic_name(&name) {
                return Err(DaemonConfigError::Invalid {
                    setting: "topics",
                    value: name,
                    origin,
                    accepted: e.to_string(),
                });
            }
            if name != overlay_proto::DEFAULT_TOPIC_NAME && !out.contains(&name) {
                out.push(name);
            }
        }
        if out.len() >= node.max_topics {
            return Err(DaemonConfigError::Invalid {
                setting: "topics",
                value: format!("{} topics", out.len()),
                origin,
                accepted: format!(
                    "fewer than max_topics = {} (the default topic counts)",
                    node.max_topics
                ),
            });
        }
        Ok(out)
    }

    fn tenant(&self) -> Result<String, DaemonConfigError> {
        let s = spec("tenant", Some("--tenant"), None, "auth.tenant");
        match self.text(
            &s,
            self.cli.tenant.as_deref(),
            self.file.auth.tenant.as_ref(),
        ) {
            None => Ok(defaults::TENANT.to_string()),
            Some((text, given)) => {
                if is_ident(&text, 128) {
                    Ok(text)
                } else {
                    Err(invalid(
                        &s,
                        &given,
                        "1 to 128 printable ASCII characters without whitespace or `:`",
                    ))
                }
            }
        }
    }

    fn auth_path(&self) -> Result<String, DaemonConfigError> {
        let s = spec("path", None, None, "auth.path");
        match self.text(&s, None, self.file.auth.path.as_ref()) {
            None => Ok(NodeConfig::default().auth.path),
            Some((text, given)) => {
                let ok = text.starts_with('/')
                    && text.len() <= 1024
                    && text.bytes().all(|b| b.is_ascii_graphic());
                if ok {
                    Ok(text)
                } else {
                    Err(invalid(
                        &s,
                        &given,
                        "an absolute path starting with `/`, at most 1024 printable ASCII \
                         characters without whitespace",
                    ))
                }
            }
        }
    }

    fn policy_digest(&self) -> Result<Option<String>, DaemonConfigError> {
        let s = spec("policy_digest_hex", None, None, "auth.policy_digest_hex");
        match self.text(&s, None, self.file.auth.policy_digest_hex.as_ref()) {
            None => Ok(None),
            Some((text, given)) => {
                let ok = !text.is_empty()
                    && text.len() <= 128
                    && text.len() % 2 == 0
                    && text.bytes().all(|b| b.is_ascii_hexdigit());
                if ok {
                    Ok(Some(text.to_ascii_lowercase()))
                } else {
                    Err(invalid(
                        &s,
                        &given,
                        "an even number (2 to 128) of hex digits",
                    ))
                }
            }
        }
    }

    /// The node's own token: `--token-file` > `OVERLAY_TOKEN` > `[auth] token_file`.
    fn token(&self) -> Result<Option<Zeroizing<String>>, DaemonConfigError> {
        if let Some(path) = &self.cli.token_file {
            return secrets::read_token_file("token_file", path).map(Some);
        }
        if let Some(raw) = env::get(self.env, env::OVERLAY_TOKEN) {
            let mut raw = Zeroizing::new(raw);
            let token = Zeroizing::new(raw.trim().to_string());
            raw.zeroize();
            return match secrets::check_token(&token) {
                Ok(()) => Ok(Some(token)),
                Err(reason) => Err(DaemonConfigError::Invalid {
                    setting: "token",
                    value: "<redacted>".to_string(),
                    origin: Origin::Env(env::OVERLAY_TOKEN),
                    accepted: reason.to_string(),
                }),
            };
        }
        match &self.file.auth.token_file {
            Some(path) => {
                secrets::read_token_file("token_file", &self.file_relative(path)).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Capability verification keys: `--cap-key` flags replace `[[auth.keys]]`.
    fn cap_keys(&self) -> Result<Vec<(String, String, MacKey)>, DaemonConfigError> {
        let mut entries: Vec<(String, String, PathBuf, Origin)> = Vec::new();
        if !self.cli.cap_keys.is_empty() {
            for arg in &self.cli.cap_keys {
                let mut parts = arg.splitn(3, ':');
                let (kid, tid, file) = (parts.next(), parts.next(), parts.next());
                match (kid, tid, file) {
                    (Some(kid), Some(tid), Some(file)) if !file.is_empty() => entries.push((
                        kid.to_string(),
                        tid.to_string(),
                        PathBuf::from(file),
                        Origin::Flag("--cap-key"),
                    )),
                    _ => {
                        return Err(DaemonConfigError::Invalid {
                            setting: "cap_key",
                            value: arg.clone(),
                            origin: Origin::Flag("--cap-key"),
                            accepted: "KID:TID:FILE".to_string(),
                        })
                    }
                }
            }
        } else if let Some(keys) = &self.file.auth.keys {
            for (i, k) in keys.iter().enumerate() {
                entries.push((
                    k.kid.clone(),
                    k.tid.clone(),
                    self.file_relative(&k.key_file),
                    self.file_origin(&format!("auth.keys[{i}]")),
                ));
            }
        }
        let mut out: Vec<(String, String, MacKey)> = Vec::with_capacity(entries.len());
        for (kid, tid, path, origin) in entries {
            for (what, value) in [("kid", &kid), ("tid", &tid)] {
                if !is_ident(value, 128) {
                    return Err(DaemonConfigError::Invalid {
                        setting: "cap_key",
                        value: format!("{what} `{value}`"),
                        origin,
                        accepted: format!(
                            "a {what} of 1 to 128 printable ASCII characters without \
                             whitespace or `:`"
                        ),
                    });
                }
            }
            if out.iter().any(|(k, t, _)| *k == kid && *t == tid) {
                return Err(DaemonConfigError::Invalid {
                    setting: "cap_key",
                    value: format!("{kid}:{tid}"),
                    origin,
                    accepted: "each (kid, tid) pair at most once".to_string(),
                });
            }
            let key = secrets::read_mac_key("cap_key", &path)?;
            out.push((kid, tid, key));
        }
        Ok(out)
    }
}

/// Rules between settings, checked before the core's own validation so the message uses the
/// operator's names (`idle_ms`, not `idle_timeout`).
fn cross_check(node: &NodeConfig) -> Result<(), DaemonConfigError> {
    let ms = |d: Duration| d.as_millis().to_string();
    if node.active_target > node.max_sessions {
        return Err(DaemonConfigError::Conflict {
            setting: "active_target",
            value: node.active_target.to_string(),
            rule: format!("must not exceed max_sessions ({})", node.max_sessions),
        });
    }
    if node.liveness_timeout <= node.keepalive_interval {
        return Err(DaemonConfigError::Conflict {
            setting: "liveness_ms",
            value: ms(node.liveness_timeout),
            rule: format!(
                "must be greater than keepalive_ms ({})",
                ms(node.keepalive_interval)
            ),
        });
    }
    if node.idle_timeout < node.liveness_timeout {
        return Err(DaemonConfigError::Conflict {
            setting: "idle_ms",
            value: ms(node.idle_timeout),
            rule: format!(
                "must be at least liveness_ms ({})",
                ms(node.liveness_timeout)
            ),
        });
    }
    if node.backoff_max < node.backoff_base {
        return Err(DaemonConfigError::Conflict {
            setting: "backoff_max_ms",
            value: ms(node.backoff_max),
            rule: format!(
                "must be at least backoff_base_ms ({})",
                ms(node.backoff_base)
            ),
        });
    }
    let sc = &node.scoring;
    if !(sc.ban_threshold <= sc.prune_threshold && sc.prune_threshold <= sc.gossip_threshold)
        || sc.ban_threshold >= 0.0
    {
        return Err(DaemonConfigError::Conflict {
            setting: "ban_threshold",
            value: sc.ban_threshold.to_string(),
            rule: format!(
                "must be below 0 and ban_threshold <= prune_threshold ({}) <= gossip_threshold ({})",
                sc.prune_threshold, sc.gossip_threshold
            ),
        });
    }
    if sc.ban_max < sc.ban_base {
        return Err(DaemonConfigError::Conflict {
            setting: "ban_max_ms",
            value: ms(sc.ban_max),
            rule: format!("must be at least ban_base_ms ({})", ms(sc.ban_base)),
        });
    }
    if node.max_preauth_per_ip > node.max_preauth {
        return Err(DaemonConfigError::Conflict {
            setting: "max_preauth_per_ip",
            value: node.max_preauth_per_ip.to_string(),
            rule: format!("must not exceed max_preauth ({})", node.max_preauth),
        });
    }
    if node.recover_ratio >= node.degrade_ratio {
        return Err(DaemonConfigError::Conflict {
            setting: "recover_ratio",
            value: node.recover_ratio.to_string(),
            rule: format!("must be less than degrade_ratio ({})", node.degrade_ratio),
        });
    }
    Ok(())
}

/// Printable ASCII, no whitespace, no `:`, 1..=max bytes.
fn is_ident(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// `host:port`, `[v6]:port`, optionally pinned as `peer:<64 hex>@…`; the host is resolved
/// later by the runtime.
fn valid_peer(peer: &str) -> bool {
    let addr = match peer.split_once('@') {
        Some((id, addr)) => {
            if id.parse::<overlay_proto::PeerId>().is_err() {
                return false;
            }
            addr
        }
        None => peer,
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let port_ok = matches!(port.parse::<u16>(), Ok(p) if p != 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_syntax() {
        for ok in [
            "a:1",
            "node-1.example:9415",
            "10.0.0.1:9415",
            "[::1]:9415",
            "x_y:65535",
            "peer:abababababababababababababababababababababababababababababababab@seed:9415",
        ] {
            assert!(valid_peer(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            ":1",
            "a:0",
            "a:65536",
            "a:x",
            "::1:9415",
            "[zz]:1",
            "a b:1",
            "[::1]",
            "peer:ab@seed:9415",
            "@seed:1",
            "peer:abababababababababababababababababababababababababababababababab@",
        ] {
            assert!(!valid_peer(bad), "{bad}");
        }
    }

    #[test]
    fn idents() {
        assert!(is_ident("k1", 128));
        assert!(!is_ident("", 128));
        assert!(!is_ident("a:b", 128));
        assert!(!is_ident("a b", 128));
        assert!(!is_ident(&"x".repeat(129), 128));
    }
}
