//! Timers: the maintenance tick (handshake deadlines, the failure detector's heartbeats and
//! silence limits, cache expiry, dials, shuffles, readiness), the lazy-flush timer and the
//! graft timers; and graceful shutdown.

use core::time::Duration;

use super::send::{queue_load, Sent};
use super::{Node, SessionKey};
use crate::action::{Action, CloseReason};
use crate::liveness::Heartbeat;
use crate::wire::Kind;

impl Node {
    pub(super) fn on_timeout(&mut self) {
        let now = self.now;
        if self.lazy_flush_at.is_some_and(|at| at <= now) {
            self.flush_lazy();
        }
        if self.missing_due_at().is_some_and(|at| at <= now) {
            self.expire_missing();
        }
        if self.validation.next_deadline().is_some_and(|at| at <= now) {
            self.expire_validations();
        }
        if self.swap_claims.next_deadline().is_some_and(|at| at <= now) {
            self.expire_claims();
        }
        if self.next_tick <= now {
            // A tick that runs more than one period late means this node itself did not run
            // (stopped, starved, suspended): its peers are not to blame for that time.
            let late = now.saturating_duration_since(self.next_tick);
            self.next_tick = now + self.config.tick_interval;
            self.tick(late);
        }
    }

    fn tick(&mut self, late: Duration) {
        let now = self.now;
        self.cache.expire(now);
        self.check_sessions(late);
        self.check_session_deadlines();
        self.client_tick();
        for (_, s) in self.sessions.iter_mut() {
            s.shrink_if_idle();
        }
        for tree in self.trees.values_mut() {
            tree.shrink_if_idle();
        }
        if self.membership.shuffle_due(now) {
            self.shuffle();
        }
        self.maintain_membership();
        if self.rebuild.take_due(now) && !self.shutting_down {
            self.rebuild_trees();
        }
        self.optimize_links();
        self.seek_topic_peers();
        self.evaluate_readiness();
    }

    /// Handshake deadlines and the failure detector (the sessions machine decides): close
    /// what expired, send heartbeats.
    fn check_sessions(&mut self, late: Duration) {
        let now = self.now;
        let check = self.sessions.check_timers(
            now,
            self.config.handshake_timeout,
            &self.config.liveness(),
            late,
            self.config.tick_interval,
        );
        self.drain_sessions();
        let heartbeats = check.heartbeats;
        for (key, kind) in heartbeats {
            let sent = match kind {
                Heartbeat::Ping => self.send_frame(key, Kind::Ping, &[]),
                Heartbeat::Credit => self.grant_credit(key),
            };
            if sent == Sent::Now {
                self.stats.heartbeats_sent += 1;
                if let Some(s) = self.session_mut(key) {
                    s.liveness.heartbeat_sent(now, kind);
                }
            }
        }
    }

    /// Compares load signals with the thresholds (with hysteresis) and reports changes.
    ///
    /// The signals describe the node, not one peer: `sessions` is running sessions over
    /// `max_sessions` (pre-auth connections excluded); `send_queue` is the share of the eager
    /// sessions (the ones broadcasts are pushed to; all running sessions when none is eager)
    /// whose queue is itself over the threshold. One full session among several therefore
    /// never makes the node unready (and the stall rule closes it), while a node whose every
    /// push target is held is unready.
    pub(super) fn evaluate_readiness(&mut self) {
        let threshold = if self.ready {
            self.config.degrade_ratio
        } else {
            self.config.recover_ratio
        };
        let running = self.running_count();
        let sessions_load = running as f64 / self.config.max_sessions as f64;
        let targets: Vec<SessionKey> = match self.tree(&crate::topic::TopicId::DEFAULT) {
            Some(t) if !t.eager().is_empty() => t.eager().to_vec(),
            Some(t) => t.lazy().to_vec(),
            None => Vec::new(),
        };
        let full = targets
            .iter()
            .filter_map(|k| self.session(*k))
            .filter(|s| queue_load(&self.config, s) > threshold)
            .count();
        let queue_load = if targets.is_empty() {
            0.0
        } else {
            full as f64 / targets.len() as f64
        };
        let mut saturated = Vec::new();
        if sessions_load > threshold {
            saturated.push("sessions".to_string());
        }
        if queue_load > threshold {
            saturated.push("send_queue".to_string());
        }
        // Hysteresis: degrade above `degrade_ratio`, recover only below `recover_ratio`.
        let ready = saturated.is_empty();
        if ready != self.ready {
            self.ready = ready;
            if !ready {
                self.stats.degraded_transitions += 1;
            }
            self.actions
                .push_back(Action::Readiness { ready, saturated });
        }
    }

    pub(super) fn on_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.flush_lazy();
        self.membership.abandon_dials();
        self.drain_membership();
        for key in self.sessions.keys() {
            if self.session(key).is_some() {
                self.close_session(key, CloseReason::Shutdown);
            }
        }
        self.close_all_clients();
        self.actions.push_back(Action::ShutdownComplete);
    }
}
