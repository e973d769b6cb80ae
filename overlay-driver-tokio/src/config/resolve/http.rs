//! The `[http]` settings: the control listener and its rules, and the HTTP limits.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::super::env;
use super::{invalid, spec, DaemonConfigError, Resolver, MAX_MS};
use crate::api::ReplayBounds;
use crate::http::HttpLimits;

/// The daemon's HTTP settings (`[http]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Serve the control API on its own listener instead of the overlay port.
    pub control_addr: Option<SocketAddr>,
    /// Token-less control requests from loopback addresses are allowed.
    pub control_trust_loopback: bool,
    /// Control tokens are accepted over plain HTTP from non-loopback addresses.
    pub control_plaintext_tokens: bool,
    /// Connection limits of each HTTP listener.
    pub limits: HttpLimits,
    /// Most control requests at once.
    pub max_control_inflight: usize,
    /// Most SSE streams at once.
    pub max_sse_clients: usize,
    /// Most SSE streams at once from one address.
    pub max_sse_per_ip: usize,
    /// Events waiting per SSE client.
    pub sse_buffer: usize,
    /// Bytes waiting per SSE client.
    pub sse_buffer_bytes: usize,
    /// Delivered messages kept for SSE clients that resume with `Last-Event-ID`.
    pub sse_replay_events: usize,
    /// Payload bytes of the messages kept for resuming SSE clients.
    pub sse_replay_bytes: usize,
    /// How long a rendered `/metrics` text is reused (zero: never).
    pub metrics_cache: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            control_addr: None,
            control_trust_loopback: true,
            control_plaintext_tokens: false,
            limits: HttpLimits::default(),
            max_control_inflight: 32,
            max_sse_clients: 64,
            max_sse_per_ip: 4,
            sse_buffer: 1024,
            sse_buffer_bytes: 1 << 20,
            sse_replay_events: ReplayBounds::default().events,
            sse_replay_bytes: ReplayBounds::default().bytes,
            metrics_cache: Duration::from_millis(500),
        }
    }
}

impl HttpSettings {
    /// The bounds of the node's replay ring (`sse_replay_events`, `sse_replay_bytes`).
    pub fn replay_bounds(&self) -> ReplayBounds {
        ReplayBounds {
            events: self.sse_replay_events,
            bytes: self.sse_replay_bytes,
        }
    }

    /// Applies these settings to an HTTP layer configuration.
    pub fn apply(&self, cfg: &mut crate::http::HttpConfig) {
        cfg.limits = self.limits.clone();
        cfg.auth.trust_loopback = self.control_trust_loopback;
        cfg.auth.plaintext_tokens = self.control_plaintext_tokens;
        cfg.max_control_inflight = self.max_control_inflight;
        cfg.max_sse_clients = self.max_sse_clients;
        cfg.max_sse_per_ip = self.max_sse_per_ip;
        cfg.sse_buffer = self.sse_buffer;
        cfg.sse_buffer_bytes = self.sse_buffer_bytes;
        cfg.metrics_cache = self.metrics_cache;
    }
}

impl Resolver<'_> {
    /// Resolves the `[http]` settings.
    pub(super) fn http_settings(&self) -> Result<HttpSettings, DaemonConfigError> {
        let cli = self.cli;
        let h = &self.file.http;
        let d = HttpSettings::default();
        let control_spec = spec(
            "control_addr",
            Some("--control-addr"),
            Some(env::OVERLAY_CONTROL_ADDR),
            "http.control_addr",
        );
        let control_addr = match self.text(
            &control_spec,
            cli.control_addr.as_deref(),
            h.control_addr.as_ref(),
        ) {
            None => None,
            Some((text, given)) => Some(SocketAddr::from_str(text.trim()).map_err(|_| {
                invalid(
                    &control_spec,
                    &given,
                    "an IP socket address such as 127.0.0.1:9416",
                )
            })?),
        };
        let control_trust_loopback = self.boolean(
            &spec(
                "control_trust_loopback",
                Some("--control-trust-loopback"),
                Some(env::OVERLAY_CONTROL_TRUST_LOOPBACK),
                "http.control_trust_loopback",
            ),
            cli.control_trust_loopback.as_deref(),
            h.control_trust_loopback,
            d.control_trust_loopback,
        )?;
        let control_plaintext_tokens = self.boolean(
            &spec(
                "control_plaintext_tokens",
                Some("--control-plaintext-tokens"),
                Some(env::OVERLAY_CONTROL_PLAINTEXT_TOKENS),
                "http.control_plaintext_tokens",
            ),
            cli.control_plaintext_tokens.as_deref(),
            h.control_plaintext_tokens,
            d.control_plaintext_tokens,
        )?;
        let count = |name: &'static str, key: &'static str, file: Option<i64>, default: usize| {
            self.usize_in(
                &spec(name, None, None, key),
                None,
                file,
                default,
                1,
                1_000_000,
            )
        };
        let ms = |name: &'static str, key: &'static str, file: Option<i64>, default: Duration| {
            self.ms(&spec(name, None, None, key), None, file, default)
        };
        let dl = &d.limits;
        let limits = HttpLimits {
            max_conns: count("max_conns", "http.max_conns", h.max_conns, dl.max_conns)?,
            max_conns_per_ip: count(
                "max_conns_per_ip",
                "http.max_conns_per_ip",
                h.max_conns_per_ip,
                dl.max_conns_per_ip,
            )?,
            probe_reserve: self.usize_in(
                &spec("probe_reserve", None, None, "http.probe_reserve"),
                None,
                h.probe_reserve,
                dl.probe_reserve,
                0,
                1024,
            )?,
            evict_after: self
                .uint(
                    &spec("evict_after_ms", None, None, "http.evict_after_ms"),
                    None,
                    h.evict_after_ms,
                    u64::try_from(dl.evict_after.as_millis()).unwrap_or(MAX_MS),
                    0,
                    MAX_MS,
                )
                .map(Duration::from_millis)?,
            header_timeout: ms(
                "header_timeout_ms",
                "http.header_timeout_ms",
                h.header_timeout_ms,
                dl.header_timeout,
            )?,
            idle_timeout: ms(
                "idle_timeout_ms",
                "http.idle_timeout_ms",
                h.idle_timeout_ms,
                dl.idle_timeout,
            )?,
            body_timeout: ms(
                "body_timeout_ms",
                "http.body_timeout_ms",
                h.body_timeout_ms,
                dl.body_timeout,
            )?,
            write_timeout: ms(
                "write_timeout_ms",
                "http.write_timeout_ms",
                h.write_timeout_ms,
                dl.write_timeout,
            )?,
            max_pipelined: self.u32_in(
                &spec("max_pipelined", None, None, "http.max_pipelined"),
                h.max_pipelined,
                dl.max_pipelined,
                1,
                100_000,
            )?,
        };
        Ok(HttpSettings {
            control_addr,
            control_trust_loopback,
            control_plaintext_tokens,
            limits,
            max_control_inflight: count(
                "max_control_inflight",
                "http.max_control_inflight",
                h.max_control_inflight,
                d.max_control_inflight,
            )?,
            max_sse_clients: count(
                "max_sse_clients",
                "http.max_sse_clients",
                h.max_sse_clients,
                d.max_sse_clients,
            )?,
            max_sse_per_ip: count(
                "max_sse_per_ip",
                "http.max_sse_per_ip",
                h.max_sse_per_ip,
                d.max_sse_per_ip,
            )?,
            sse_buffer: count("sse_buffer", "http.sse_buffer", h.sse_buffer, d.sse_buffer)?,
            sse_buffer_bytes: self.usize_in(
                &spec("sse_buffer_bytes", None, None, "http.sse_buffer_bytes"),
                None,
                h.sse_buffer_bytes,
                d.sse_buffer_bytes,
                1024,
                1 << 30,
            )?,
            sse_replay_events: self.usize_in(
                &spec("sse_replay_events", None, None, "http.sse_replay_events"),
                None,
                h.sse_replay_events,
                d.sse_replay_events,
                0,
                1_000_000,
            )?,
            sse_replay_bytes: self.usize_in(
                &spec("sse_replay_bytes", None, None, "http.sse_replay_bytes"),
                None,
                h.sse_replay_bytes,
                d.sse_replay_bytes,
                0,
                1 << 30,
            )?,
            metrics_cache: self
                .uint(
                    &spec("metrics_cache_ms", None, None, "http.metrics_cache_ms"),
                    None,
                    h.metrics_cache_ms,
                    u64::try_from(d.metrics_cache.as_millis()).unwrap_or(MAX_MS),
                    0,
                    60_000,
                )
                .map(Duration::from_millis)?,
        })
    }
}
