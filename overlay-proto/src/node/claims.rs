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
//!    A GRAFT_MISS for the message (the announcer no longer holds it) ends the proposal the
//!    same way but unscored, and counts as a solicited GRAFT_MISS (`graft_misses_received`).
//!
//! While a proposal is pending, duplicates from the announcer do not prune it (it is on
//! probation, not redundant). Everything is keyed by (session, connection) so a reused
//! session slot never inherits a proposal.

use super::{Node, SessionKey};
use crate::peer::{ConnId, MessageId};
use crate::plumtree::{ClaimOutcome, Proposal, Proposed, Settled};
use crate::score::Penalty;
use crate::topic::TopicId;
use crate::wire::{self, Kind};

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
        let wait = self.config.graft_retry.saturating_mul(2);
        let proposed = self.swap_claims.propose(
            now,
            *topic,
            (shortcut, shortcut_conn),
            (parent, parent_conn),
            id,
            claimed,
            fresh,
            wait,
        );
        match proposed {
            Proposed::Refused => false,
            Proposed::SwapNow => {
                // Proven before: swap now, as for a proven claim (empty GRAFT: push to us).
                self.promote_to_eager(topic, shortcut);
                self.complete_swap(topic, parent, fresh);
                true
            }
            Proposed::Pending => {
                self.make_eager(topic, shortcut);
                self.stats.grafts_sent += 1;
                let kind = wire::kind_in_topic(Kind::Graft, topic);
                let prefix: &[u8] = if topic.is_default() { &[] } else { &topic.0 };
                self.send_frame(shortcut, kind, &[prefix, &id.0]);
                true
            }
        }
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
        let now = self.now;
        match self.swap_claims.settle(now, topic, key, conn, id, hops) {
            Settled::NotInvolved => false,
            Settled::OnProbation => true,
            Settled::Concluded(proposal, outcome) => {
                self.conclude(proposal, outcome);
                true
            }
        }
    }

    /// Proposals whose deadline passed without an answer. Called from the timers.
    pub(super) fn expire_claims(&mut self) {
        let now = self.now;
        for proposal in self.swap_claims.expire(now) {
            self.conclude(proposal, ClaimOutcome::Unanswered);
        }
    }

    /// A GRAFT_MISS from `key` for `id`: when it answers a pending proposal's GRAFT, the
    /// proposal ends (the announcer goes back to lazy, unscored) and this returns the time
    /// the claim was made; otherwise `None`.
    pub(super) fn claim_missed(
        &mut self,
        topic: &TopicId,
        key: SessionKey,
        conn: ConnId,
        id: &MessageId,
    ) -> Option<crate::time::Instant> {
        let proposal = self.swap_claims.miss(topic, key, conn, id)?;
        let claimed_at = proposal.proposed_at;
        self.conclude(proposal, ClaimOutcome::Gone);
        Some(claimed_at)
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
                self.swap_claims.note_proven(proposal.shortcut);
                let topic = proposal.topic;
                let eager = |node: &Node, key| node.tree(&topic).is_some_and(|t| t.is_eager(key));
                if alive(self, proposal.parent)
                    && eager(self, proposal.parent.0)
                    && eager(self, shortcut)
                {
                    self.complete_swap(&topic, proposal.parent.0, proposal.fresh);
                }
            }
            ClaimOutcome::False | ClaimOutcome::Unanswered | ClaimOutcome::Gone => {
                let topic = proposal.topic;
                let eager_links = self.tree(&topic).map_or(0, |t| t.eager().len());
                if self.tree(&topic).is_some_and(|t| t.is_eager(shortcut)) && eager_links > 1 {
                    self.prune(&topic, shortcut);
                }
                // "Gone" cannot prove the claim, but a bounded store drops young messages
                // honestly too: counted (GRAFT_MISS), not scored.
                if outcome != ClaimOutcome::Gone {
                    self.penalize(shortcut, Penalty::BrokenPromise, 1);
                }
            }
        }
    }
}
