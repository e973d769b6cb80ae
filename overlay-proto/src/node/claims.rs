//! Hop claims made cost-bearing (issue #7).
//!
//! The Plumtree optimisation step (`tree.rs`, opt-in) swaps an eager link for a lazy one whose
//! IHAVE claimed a path shorter by `optimization_threshold` hops. The hop count in an IHAVE is
//! the announcer's word: a hostile peer could claim hop 0 or 1 for everything to attract eager
//! links, then withhold. So a swap is not done on the claim alone:
//!
//! 1. The swap is *proposed*: the node asks the announcer for the very message it claimed
//!    (GRAFT with that id, which also makes the link eager on both ends) and keeps its old
//!    parent eager meanwhile. At most `optimization_swaps_per_s` proposals start per second
//!    (token bucket), and one link takes part in one proposal at a time.
//! 2. The announcer answers with the stored GOSSIP. It **proves** the claim when its hop
//!    count is at most the claimed one and it arrives within `2 × graft_retry`: then the old
//!    parent is pruned and the swap counts (`tree_swaps`).
//! 3. A higher hop count (a false claim) or no answer in time (a promise not kept) is scored
//!    as a broken promise, and the announcer is pruned back to lazy; the old parent stays.
//!
//! While a proposal is pending, duplicates from the announcer do not prune it (it is on
//! probation, not redundant). Everything is keyed by (session, connection) so a reused
//! session slot never inherits a proposal.

use core::time::Duration;
use std::collections::VecDeque;

use super::{Node, SessionKey};
use crate::peer::{ConnId, MessageId};
use crate::ratelimit::TokenBucket;
use crate::score::Penalty;
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::{self, Kind};

/// A swap waiting for the announcer to prove its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proposal {
    /// The tree the swap is in.
    topic: TopicId,
    /// The announcer that claimed the shorter path.
    shortcut: (SessionKey, ConnId),
    /// The eager link the message came by, pruned once the claim is proven.
    parent: (SessionKey, ConnId),
    /// The message the claim was about (asked for by GRAFT).
    id: MessageId,
    /// The hop count the announcer claimed for it.
    claimed: u8,
    /// The answer must arrive before this.
    deadline: Instant,
    /// No other message reached us since the evidence (the tree's completion rule).
    fresh: bool,
}

/// What became of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimOutcome {
    /// The answer carried at most the claimed hops, in time: the swap was completed.
    Proven,
    /// The answer carried more hops than claimed.
    False,
    /// No answer before the deadline.
    Unanswered,
}

/// Proposed swaps, in deadline order, and the rate limit on new ones.
#[derive(Debug)]
pub(super) struct SwapClaims {
    pending: Vec<Proposal>,
    budget: TokenBucket,
    /// Sessions (key, connection) that proved a hop claim: later swaps toward them are made
    /// at once (a proof costs the announcer a payload and us a duplicate; one per session is
    /// enough to show it delivers what it announces). At most `MAX_PROVEN`, oldest dropped.
    proven: VecDeque<(SessionKey, ConnId)>,
}

/// Proposals pending at once, at most (each holds one extra eager link for a moment).
const MAX_PENDING: usize = 16;

/// Proven sessions remembered, at most.
const MAX_PROVEN: usize = 64;

impl SwapClaims {
    /// No proposal yet; `rate_per_s` new ones per second at most.
    pub(super) fn new(now: Instant, rate_per_s: u32) -> Self {
        SwapClaims {
            pending: Vec::new(),
            budget: TokenBucket::new(now, rate_per_s, rate_per_s),
            proven: VecDeque::new(),
        }
    }

    /// The earliest deadline of a pending proposal.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    fn involves(&self, key: SessionKey) -> bool {
        self.pending
            .iter()
            .any(|p| p.shortcut.0 == key || p.parent.0 == key)
    }

    /// True when `key` (on `conn`) is an announcer on probation in `topic`.
    fn on_probation(&self, topic: &TopicId, key: SessionKey, conn: ConnId) -> bool {
        self.pending
            .iter()
            .any(|p| p.shortcut == (key, conn) && p.topic == *topic)
    }
}

impl Node {
    /// The optimisation step found that `shortcut` claims `claimed` hops for message `id`,
    /// short enough to replace `parent`: ask it for the message (GRAFT with the id) and
    /// keep `parent` until the answer proves the claim. Returns false when the proposal is
    /// not made (rate limit, a link already in a proposal, too many pending).
    pub(super) fn propose_swap(
        &mut self,
        topic: &TopicId,
        shortcut: SessionKey,
        parent: SessionKey,
        id: MessageId,
        claimed: u8,
        fresh: bool,
    ) -> bool {
        let now = self.now;
        let (Some(q), Some(p)) = (self.session(shortcut), self.session(parent)) else {
            return false;
        };
        let (shortcut_conn, parent_conn) = (q.conn, p.conn);
        if self.swap_claims.pending.len() >= MAX_PENDING
            || self.swap_claims.involves(shortcut)
            || self.swap_claims.involves(parent)
            || !self.swap_claims.budget.try_take(now)
        {
            return false;
        }
        if self.swap_claims.proven.contains(&(shortcut, shortcut_conn)) {
            // Proven before: swap now, as for a proven claim (empty GRAFT: push to us).
            self.promote_to_eager(topic, shortcut);
            self.complete_swap(topic, parent, fresh);
            return true;
        }
        let wait = self.config.graft_retry.saturating_mul(2);
        self.swap_claims.pending.push(Proposal {
            topic: *topic,
            shortcut: (shortcut, shortcut_conn),
            parent: (parent, parent_conn),
            id,
            claimed,
            deadline: now + wait.max(Duration::from_millis(1)),
            fresh,
        });
        self.make_eager(topic, shortcut);
        self.stats.grafts_sent += 1;
        let kind = wire::kind_in_topic(Kind::Graft, topic);
        let prefix: &[u8] = if topic.is_default() { &[] } else { &topic.0 };
        self.send_frame(shortcut, kind, &[prefix, &id.0]);
        true
    }

    /// A GOSSIP for an id we already hold arrived from `key`: if it answers a pending
    /// proposal, settle it and return true (the duplicate is then no sign of redundancy).
    /// Any other duplicate from an announcer on probation also returns true.
    pub(super) fn settle_claim(
        &mut self,
        topic: &TopicId,
        key: SessionKey,
        id: &MessageId,
        hops: u8,
    ) -> bool {
        let Some(conn) = self.session(key).map(|s| s.conn) else {
            return false;
        };
        let found = self
            .swap_claims
            .pending
            .iter()
            .position(|p| p.shortcut == (key, conn) && p.id == *id && p.topic == *topic);
        let Some(i) = found else {
            return self.swap_claims.on_probation(topic, key, conn);
        };
        let proposal = self.swap_claims.pending.remove(i);
        let outcome = if hops <= proposal.claimed && self.now <= proposal.deadline {
            ClaimOutcome::Proven
        } else if hops > proposal.claimed {
            ClaimOutcome::False
        } else {
            ClaimOutcome::Unanswered
        };
        self.conclude(proposal, outcome);
        true
    }

    /// Proposals whose deadline passed without an answer. Called from the timers.
    pub(super) fn expire_claims(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        self.swap_claims.pending.retain(|p| {
            let late = p.deadline <= now;
            if late {
                due.push(*p);
            }
            !late
        });
        for proposal in due {
            self.conclude(proposal, ClaimOutcome::Unanswered);
        }
    }

    fn conclude(&mut self, proposal: Proposal, outcome: ClaimOutcome) {
        let shortcut = proposal.shortcut.0;
        let alive = |node: &Node, (key, conn): (SessionKey, ConnId)| {
            node.session(key)
                .is_some_and(|s| s.conn == conn && s.is_running())
        };
        if !alive(self, proposal.shortcut) {
            return;
        }
        match outcome {
            ClaimOutcome::Proven => {
                let proven = &mut self.swap_claims.proven;
                if proven.len() >= MAX_PROVEN {
                    proven.pop_front();
                }
                proven.push_back(proposal.shortcut);
                let topic = proposal.topic;
                let eager = |node: &Node, key| node.tree(&topic).is_some_and(|t| t.is_eager(key));
                if alive(self, proposal.parent)
                    && eager(self, proposal.parent.0)
                    && eager(self, shortcut)
                {
                    self.complete_swap(&topic, proposal.parent.0, proposal.fresh);
                }
            }
            ClaimOutcome::False | ClaimOutcome::Unanswered => {
                let topic = proposal.topic;
                let eager_links = self.tree(&topic).map_or(0, |t| t.eager().len());
                if self.tree(&topic).is_some_and(|t| t.is_eager(shortcut)) && eager_links > 1 {
                    self.prune(&topic, shortcut);
                }
                self.penalize(shortcut, Penalty::BrokenPromise, 1);
            }
        }
    }
}
