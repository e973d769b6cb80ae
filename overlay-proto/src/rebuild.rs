//! When to rebuild the gossip trees after a failure nearby: [`TreeRebuild`].
//!
//! Every tree starts as the first-arrival tree of a flood over every link (all links start
//! eager, duplicates prune). After many nodes fail at once, each survivor's tree is patched
//! instead: lazy links are promoted where eager ones died and new sessions join eager, and a
//! duplicate over a settled edge prunes the new link, not the old one. The patched tree is
//! the first-arrival tree of a flood over the survivors' old pieces and the new links only,
//! and its paths stay long (docs/SIMULATION.md, "Session 12": 12–17 hops after a 20 % kill
//! against 7–10 before). A rebuild makes every link of the node eager and new again, as at
//! its start, so the next message floods once and its duplicates prune the mesh back down to
//! one short tree.
//!
//! The trigger tells a failure nearby from ordinary churn and from attackers: `losses` running
//! sessions whose *connection went away* ([`crate::CloseReason::TransportClosed`]: the peer's
//! process or host died, or it closed) within `window`. Sessions this node closed itself
//! (failure detector, bans, quotas, duplicates, link swaps, shutdown) do not count: silent
//! attackers are closed as unresponsive one after another, and rebuilding under that attack
//! only helps it (the simulator's silent 20 % row went from 1.35× to 1.65× when every loss
//! counted). The rebuild comes `delay` after the loss that completed the count, so that the
//! repair (new sessions dialed to refill the active view) is done first, and at most once per
//! `min_interval`, which also bounds what a peer can force by closing its own connections.
//!
//! The machine holds only times (at most `losses` of them) and draws no randomness.

use core::time::Duration;
use std::collections::VecDeque;

use crate::config::NodeConfig;
use crate::time::Instant;

/// The rule's settings (from [`NodeConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Transport losses within `window` that call for a rebuild (0: never).
    pub(crate) losses: u32,
    /// How close together the losses must be.
    pub(crate) window: Duration,
    /// How long after the last of them the rebuild comes.
    pub(crate) delay: Duration,
    /// Least time between two rebuilds.
    pub(crate) min_interval: Duration,
}

impl Params {
    /// The rule's settings in `config` (the window is `tree_settle`: the losses that
    /// already unsettle the node's tree).
    pub(crate) fn of(config: &NodeConfig) -> Params {
        Params {
            losses: config.tree_rebuild_losses,
            window: config.tree_settle,
            delay: config.tree_rebuild_delay,
            min_interval: config.tree_rebuild_interval,
        }
    }
}

/// Remembers recent transport losses and says when the node's trees are to be rebuilt.
#[derive(Debug)]
pub(crate) struct TreeRebuild {
    params: Params,
    /// The most recent losses, oldest first (at most `params.losses`).
    recent: VecDeque<Instant>,
    /// When the armed rebuild is due.
    due_at: Option<Instant>,
    /// When the last rebuild ran.
    last_at: Option<Instant>,
    /// When a running session was last lost to a closed connection (recorded with the rule
    /// off too: new links join lazy for `window` after it, see `Node::repairing_tree`).
    last_loss_at: Option<Instant>,
}

impl TreeRebuild {
    /// A rule that has seen no loss.
    pub(crate) fn new(params: Params) -> TreeRebuild {
        TreeRebuild {
            params,
            recent: VecDeque::with_capacity(params.losses.min(64) as usize),
            due_at: None,
            last_at: None,
            last_loss_at: None,
        }
    }

    /// A running session's connection went away at `now`. Arms the rebuild when this loss
    /// completes `losses` within `window`, none is armed and the last one ran at least
    /// `min_interval` ago.
    pub(crate) fn on_transport_loss(&mut self, now: Instant) {
        self.last_loss_at = Some(now);
        let need = self.params.losses as usize;
        if need == 0 {
            return;
        }
        let window = self.params.window;
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() == need {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let rested = self
            .last_at
            .is_none_or(|t| now.saturating_duration_since(t) > self.params.min_interval);
        if self.recent.len() >= need && self.due_at.is_none() && rested {
            self.due_at = Some(now + self.params.delay);
        }
    }

    /// True when a running session was lost to a closed connection less than `window`
    /// (`tree_settle`) before `now`: a failure nearby, whose repair is under way.
    pub(crate) fn failure_within_window(&self, now: Instant) -> bool {
        self.last_loss_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.params.window)
    }

    /// True when the armed rebuild is due at `now` (it is then disarmed and counts as run).
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        if self.due_at.is_some_and(|at| at <= now) {
            self.due_at = None;
            self.last_at = Some(now);
            return true;
        }
        false
    }

    /// When the armed rebuild is due, if one is.
    #[cfg(test)]
    fn due_at(&self) -> Option<Instant> {
        self.due_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> TreeRebuild {
        TreeRebuild::new(Params {
            losses: 2,
            window: Duration::from_secs(10),
            delay: Duration::from_secs(3),
            min_interval: Duration::from_secs(60),
        })
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn two_losses_within_the_window_arm_a_rebuild_after_the_delay() {
        let mut r = rule();
        assert!(!r.failure_within_window(at(0)));
        r.on_transport_loss(at(1_000));
        assert!(r.failure_within_window(at(10_999)));
        assert_eq!(r.due_at(), None, "one loss is ordinary churn");
        r.on_transport_loss(at(4_000));
        assert_eq!(r.due_at(), Some(at(7_000)));
        assert!(!r.take_due(at(6_999)));
        assert!(r.take_due(at(7_000)));
        assert_eq!(r.due_at(), None);
        assert!(!r.take_due(at(8_000)), "a rebuild runs once");
    }

    #[test]
    fn losses_further_apart_than_the_window_arm_nothing() {
        let mut r = rule();
        r.on_transport_loss(at(1_000));
        r.on_transport_loss(at(11_000));
        assert_eq!(r.due_at(), None);
        r.on_transport_loss(at(20_999));
        assert_eq!(r.due_at(), Some(at(23_999)));
    }

    #[test]
    fn more_losses_keep_the_first_deadline() {
        let mut r = rule();
        for ms in [1_000, 1_100, 1_200, 2_500] {
            r.on_transport_loss(at(ms));
        }
        assert_eq!(r.due_at(), Some(at(4_100)));
        assert!(r.recent.len() <= 2, "only the last `losses` times are kept");
    }

    #[test]
    fn a_second_rebuild_waits_for_the_minimum_interval() {
        let mut r = rule();
        r.on_transport_loss(at(0));
        r.on_transport_loss(at(10));
        assert!(r.take_due(at(3_010)));
        r.on_transport_loss(at(20_000));
        r.on_transport_loss(at(20_010));
        assert_eq!(r.due_at(), None, "within a minute of the last rebuild");
        r.on_transport_loss(at(63_011));
        r.on_transport_loss(at(63_020));
        assert_eq!(r.due_at(), Some(at(66_020)));
    }

    #[test]
    fn zero_losses_turns_the_rule_off() {
        let mut r = TreeRebuild::new(Params {
            losses: 0,
            ..rule().params
        });
        for ms in 0..100 {
            r.on_transport_loss(at(ms));
        }
        assert_eq!(r.due_at(), None);
        assert!(r.recent.is_empty());
        assert!(
            r.failure_within_window(at(10_098)),
            "the loss itself is still noted"
        );
        assert!(!r.failure_within_window(at(10_099)));
    }
}
