//! What a SIGHUP reload may change: the difference between the running configuration and the
//! one read again, split into what applies live and what needs a restart.
//!
//! Live: the log filter (`log_level`), and the core's [`LiveSettings`] — the gossip fan-outs
//! `alpha` / `beta`, the per-peer quota `peer_rate_per_s` / `peer_rate_burst` and every
//! `[scoring]` setting (weights, thresholds, decay, bans; scores keep their values and new
//! weights count from then on). Everything else (listen addresses, TLS identity and keys,
//! tokens, timers, limits, …) is reported as needing a restart and keeps its running value.

use std::time::Duration;

use overlay_proto::score::ScoreConfig;
use overlay_proto::{AuthConfig, LiveSettings, NodeConfig};

use crate::config::DaemonConfig;

/// One live setting that changes, shown as `name old → new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The setting's name (its TOML key without the section).
    pub setting: &'static str,
    /// The running value.
    pub old: String,
    /// The new value.
    pub new: String,
}

impl core::fmt::Display for Change {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {} → {}", self.setting, self.old, self.new)
    }
}

/// What a reload does.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadPlan {
    /// The new log filter, when it changes.
    pub log_level: Option<String>,
    /// The new live core settings, when any of them changes.
    pub live: Option<LiveSettings>,
    /// Every live change, for the log.
    pub changes: Vec<Change>,
    /// Settings that differ but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadPlan {
    /// Compares the running configuration with the one read again.
    pub fn between(running: &DaemonConfig, next: &DaemonConfig) -> ReloadPlan {
        let mut changes = Vec::new();
        let log_level = (running.log_level != next.log_level).then(|| {
            changes.push(Change {
                setting: "log_level",
                old: running.log_level.clone(),
                new: next.log_level.clone(),
            });
            next.log_level.clone()
        });
        let (old_live, new_live) = (
            LiveSettings::of(&running.node),
            LiveSettings::of(&next.node),
        );
        let pairs: [(&'static str, u64, u64); 4] = [
            ("alpha", old_live.alpha as u64, new_live.alpha as u64),
            ("beta", old_live.beta as u64, new_live.beta as u64),
            (
                "peer_rate_per_s",
                u64::from(old_live.peer_rate_per_s),
                u64::from(new_live.peer_rate_per_s),
            ),
            (
                "peer_rate_burst",
                u64::from(old_live.peer_rate_burst),
                u64::from(new_live.peer_rate_burst),
            ),
        ];
        for (setting, old, new) in pairs {
            if old != new {
                changes.push(Change {
                    setting,
                    old: old.to_string(),
                    new: new.to_string(),
                });
            }
        }
        changes.extend(scoring_changes(&old_live.scoring, &new_live.scoring));
        let live = (old_live != new_live).then_some(new_live);
        ReloadPlan {
            log_level,
            live,
            changes,
            needs_restart: needs_restart(running, next),
        }
    }

    /// Nothing to apply and nothing that needs a restart.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.needs_restart.is_empty()
    }
}

/// The `[scoring]` settings that differ, by TOML key (`scoring.ban_threshold -50 → -80`).
fn scoring_changes(old: &ScoreConfig, new: &ScoreConfig) -> Vec<Change> {
    let ms = |d: Duration| d.as_millis().to_string();
    let pairs: [(&'static str, String, String); 20] = [
        (
            "scoring.enabled",
            old.enabled.to_string(),
            new.enabled.to_string(),
        ),
        (
            "scoring.decay_interval_ms",
            ms(old.decay_interval),
            ms(new.decay_interval),
        ),
        (
            "scoring.decay_factor",
            old.decay_factor.to_string(),
            new.decay_factor.to_string(),
        ),
        (
            "scoring.first_delivery_weight",
            old.first_delivery_weight.to_string(),
            new.first_delivery_weight.to_string(),
        ),
        (
            "scoring.first_delivery_cap",
            old.first_delivery_cap.to_string(),
            new.first_delivery_cap.to_string(),
        ),
        (
            "scoring.invalid_message_weight",
            old.invalid_message_weight.to_string(),
            new.invalid_message_weight.to_string(),
        ),
        (
            "scoring.violation_weight",
            old.violation_weight.to_string(),
            new.violation_weight.to_string(),
        ),
        (
            "scoring.broken_promise_weight",
            old.broken_promise_weight.to_string(),
            new.broken_promise_weight.to_string(),
        ),
        (
            "scoring.graft_flood_weight",
            old.graft_flood_weight.to_string(),
            new.graft_flood_weight.to_string(),
        ),
        (
            "scoring.ihave_flood_weight",
            old.ihave_flood_weight.to_string(),
            new.ihave_flood_weight.to_string(),
        ),
        (
            "scoring.duplicate_flood_weight",
            old.duplicate_flood_weight.to_string(),
            new.duplicate_flood_weight.to_string(),
        ),
        (
            "scoring.shuffle_flood_weight",
            old.shuffle_flood_weight.to_string(),
            new.shuffle_flood_weight.to_string(),
        ),
        (
            "scoring.validation_rejected_weight",
            old.validation_rejected_weight.to_string(),
            new.validation_rejected_weight.to_string(),
        ),
        (
            "scoring.gossip_threshold",
            old.gossip_threshold.to_string(),
            new.gossip_threshold.to_string(),
        ),
        (
            "scoring.prune_threshold",
            old.prune_threshold.to_string(),
            new.prune_threshold.to_string(),
        ),
        (
            "scoring.ban_threshold",
            old.ban_threshold.to_string(),
            new.ban_threshold.to_string(),
        ),
        ("scoring.ban_base_ms", ms(old.ban_base), ms(new.ban_base)),
        ("scoring.ban_max_ms", ms(old.ban_max), ms(new.ban_max)),
        ("scoring.retain_ms", ms(old.retain), ms(new.retain)),
        (
            "scoring.capacity",
            old.capacity.to_string(),
            new.capacity.to_string(),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(setting, old, new)| Change { setting, old, new })
        .collect()
}

/// The names of the settings that differ and cannot change live.
fn needs_restart(running: &DaemonConfig, next: &DaemonConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_string());
        }
    };
    check("bind", running.bind != next.bind);
    check("advertise", running.advertise != next.advertise);
    check("metrics_addr", running.metrics_addr != next.metrics_addr);
    check("max_conns", running.max_conns != next.max_conns);
    check("peers", running.peers != next.peers);
    check("topics", running.topics != next.topics);
    check("pq", running.pq != next.pq);
    check("trace_out", running.trace_out != next.trace_out);
    check("log_format", running.log_format != next.log_format);
    check(
        "trace_out_despite_amnesia",
        running.trace_out_despite_amnesia != next.trace_out_despite_amnesia,
    );
    check("amnesia", running.amnesia != next.amnesia);
    check("read_ms", running.read != next.read);
    check("write_ms", running.write != next.write);
    check("drain_ms", running.drain != next.drain);
    check("ca", running.ca != next.ca);
    check("cert/key", running.cert_key != next.cert_key);
    check("dev_mode", running.dev_mode != next.dev_mode);
    check("http", running.http != next.http);
    out.extend(node_needs_restart(&running.node, &next.node));
    // A setting this list does not name yet (added later) still counts.
    let mut rest = next.clone();
    rest.log_level = running.log_level.clone();
    rest.node = LiveSettings::of(&running.node).applied_to(&next.node);
    if out.is_empty() && rest != *running {
        out.push("other settings".to_string());
    }
    out
}

/// Core settings other than the live ones that differ, by field name (`auth.*` for the
/// capability settings; key and token values are never shown).
fn node_needs_restart(running: &NodeConfig, next: &NodeConfig) -> Vec<String> {
    let mut out = Vec::new();
    // Compared field by field through serde, without the capability settings (so no key or
    // token is ever copied into a JSON value).
    let without_auth = |c: &NodeConfig| NodeConfig {
        auth: AuthConfig::default(),
        ..LiveSettings::of(running).applied_to(c)
    };
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(without_auth(running)),
        serde_json::to_value(without_auth(next)),
    ) else {
        if running != next {
            out.push("node settings".to_string());
        }
        return out;
    };
    for (name, value) in &a {
        if name != "auth" && b.get(name) != Some(value) {
            out.push(name_of(name));
        }
    }
    let (ra, na) = (&running.auth, &next.auth);
    for (name, differs) in [
        ("auth.keys", ra.keys != na.keys),
        ("auth.token", ra.own_token != na.own_token),
        ("auth.require_token", ra.require_token != na.require_token),
        ("auth.tenant", ra.tenant != na.tenant),
        ("auth.path", ra.path != na.path),
        (
            "auth.policy_digest_hex",
            ra.policy_digest_hex != na.policy_digest_hex,
        ),
    ] {
        if differs {
            out.push(name.to_string());
        }
    }
    out
}

/// The operator's name of a core field (the TOML key without its section).
fn name_of(field: &str) -> String {
    match field {
        "idle_timeout" => "idle_ms".to_string(),
        "handshake_timeout" => "handshake_ms".to_string(),
        "connect_timeout" => "connect_ms".to_string(),
        "liveness_timeout" => "liveness_ms".to_string(),
        "keepalive_interval" => "keepalive_ms".to_string(),
        "tick_interval" => "tick_ms".to_string(),
        "lazy_flush_interval" => "lazy_flush_ms".to_string(),
        "shuffle_interval" => "shuffle_interval_ms".to_string(),
        "graft_timeout"
        | "graft_retry"
        | "seen_ttl"
        | "store_ttl"
        | "backoff_base"
        | "backoff_max"
        | "graft_timeout_settled"
        | "tree_settle"
        | "link_probation"
        | "link_probation_after_ban"
        | "optimization_hold"
        | "optimization_max_lateness" => {
            format!("{field}_ms")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_config_plans_nothing() {
        let cfg = DaemonConfig::default();
        assert!(ReloadPlan::between(&cfg, &cfg.clone()).is_empty());
    }

    #[test]
    fn live_settings_apply_and_the_rest_needs_a_restart() {
        let running = DaemonConfig::default();
        let mut next = running.clone();
        next.log_level = "debug".to_string();
        next.node.alpha = 5;
        next.node.peer_rate_burst = 10;
        next.node.peer_rate_per_s = 5;
        next.bind = "127.0.0.1:9999".parse().unwrap_or(next.bind);
        next.node.idle_timeout = std::time::Duration::from_secs(99);
        next.node.auth.tenant = "other".to_string();
        let plan = ReloadPlan::between(&running, &next);
        assert_eq!(plan.log_level.as_deref(), Some("debug"));
        let live = plan.live.unwrap_or(LiveSettings::of(&running.node));
        assert_eq!((live.alpha, live.beta), (5, running.node.beta));
        assert_eq!((live.peer_rate_per_s, live.peer_rate_burst), (5, 10));
        let names: Vec<&str> = plan.changes.iter().map(|c| c.setting).collect();
        assert_eq!(
            names,
            ["log_level", "alpha", "peer_rate_per_s", "peer_rate_burst"]
        );
        assert_eq!(plan.changes[1].to_string(), "alpha 1 → 5");
        assert_eq!(plan.needs_restart, ["bind", "idle_ms", "auth.tenant"]);
    }

    #[test]
    fn scoring_settings_apply_live_by_their_toml_names() {
        let running = DaemonConfig::default();
        let mut next = running.clone();
        next.node.scoring.ban_threshold = -80.0;
        next.node.scoring.ihave_flood_weight = -0.5;
        next.node.scoring.ban_base = std::time::Duration::from_secs(120);
        let plan = ReloadPlan::between(&running, &next);
        let live = plan.live.clone().unwrap_or(LiveSettings::of(&running.node));
        assert_eq!(live.scoring, next.node.scoring);
        let shown: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "scoring.ihave_flood_weight -0.2 → -0.5",
                "scoring.ban_threshold -50 → -80",
                "scoring.ban_base_ms 60000 → 120000",
            ]
        );
        assert!(plan.needs_restart.is_empty(), "{:?}", plan.needs_restart);
    }
}
