//! Hop claims made cost-bearing (issue #7): the bookkeeping of tree-optimisation swaps that
//! wait for the announcer to prove its hop claim, as its own machine.
//!
//! The Plumtree optimisation step swaps an eager link for a lazy one whose IHAVE claimed a
//! path shorter by `optimization_threshold` hops; the hop count is the announcer's word, so a
//! swap is first *proposed* (the node asks the announcer for the very message with a GRAFT)
//! and completes only when the answer proves the claim (see `node/claims.rs` for the rule).
//! [`SwapClaims`] owns the pending proposals (at most [`MAX_PENDING`], one per link at a
//! time), the rate limit on new ones and the sessions that proved a claim before. It is one
//! table for the node (the rate limit is the node's), keyed by (session, connection) so a
//! reused session slot never inherits a proposal; it knows nothing of sessions or frames.

use core::time::Duration;
use std::collections::VecDeque;

use super::Neighbor;
use crate::peer::{ConnId, MessageId};
use crate::ratelimit::TokenBucket;
use crate::time::Instant;
use crate::topic::TopicId;

/// A swap waiting for the announcer to prove its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proposal {
    /// The tree the swap is in.
    pub(crate) topic: TopicId,
    /// The announcer that claimed the shorter path.
    pub(crate) shortcut: (Neighbor, ConnId),
    /// The eager link the message came by, pruned once the claim is proven.
    pub(crate) parent: (Neighbor, ConnId),
    /// The message the claim was about (asked for by GRAFT).
    pub(crate) id: MessageId,
    /// The hop count the announcer claimed for it.
    pub(crate) claimed: u8,
    /// When the proposal was made (when the claim arrived).
    pub(crate) proposed_at: Instant,
    /// The answer must arrive before this.
    pub(crate) deadline: Instant,
    /// No other message reached us since the evidence (the tree's completion rule).
    pub(crate) fresh: bool,
}

/// What became of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimOutcome {
    /// The answer carried at most the claimed hops, in time: the swap completes.
    Proven,
    /// The answer carried more hops than claimed.
    False,
    /// No answer before the deadline.
    Unanswered,
    /// The announcer answered the GRAFT with GRAFT_MISS: it no longer holds the message, so
    /// the claim cannot be proven (a GRAFT_MISS is counted, never scored).
    Gone,
}

/// What [`SwapClaims::propose`] decided.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proposed {
    /// Not made: rate limit, a link already in a proposal, or too many pending.
    Refused,
    /// The announcer proved a claim before: swap at once.
    SwapNow,
    /// Pending: ask the announcer for the message (GRAFT with the id).
    Pending,
}

/// What a duplicate from an announcer means for the proposals ([`SwapClaims::settle`]).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The announcer takes part in no proposal of the topic: an ordinary duplicate.
    NotInvolved,
    /// The announcer is on probation for another message: not a sign of redundancy.
    OnProbation,
    /// The answer to a proposal, now concluded.
    Concluded(Proposal, ClaimOutcome),
}

/// Proposals pending at once, at most (each holds one extra eager link for a moment).
pub(crate) const MAX_PENDING: usize = 16;

/// Proven sessions remembered, at most.
const MAX_PROVEN: usize = 64;

/// Proposed swaps, the rate limit on new ones and the sessions that proved a claim.
#[derive(Debug)]
pub(crate) struct SwapClaims {
    pending: Vec<Proposal>,
    budget: TokenBucket,
    /// Sessions (key, connection) that proved a hop claim: later swaps toward them are made
    /// at once (a proof costs the announcer a payload and us a duplicate; one per session is
    /// enough to show it delivers what it announces). At most `MAX_PROVEN`, oldest dropped.
    proven: VecDeque<(Neighbor, ConnId)>,
}

impl SwapClaims {
    /// No proposal yet; `rate_per_s` new ones per second at most.
    pub(crate) fn new(now: Instant, rate_per_s: u32) -> Self {
        SwapClaims {
            pending: Vec::new(),
            budget: TokenBucket::new(now, rate_per_s, rate_per_s),
            proven: VecDeque::new(),
        }
    }

    /// The earliest deadline of a pending proposal.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    fn involves(&self, key: Neighbor) -> bool {
        self.pending
            .iter()
            .any(|p| p.shortcut.0 == key || p.parent.0 == key)
    }

    /// The optimisation step found that `shortcut` claims `claimed` hops for message `id` in
    /// `topic`, short enough to replace `parent`. Refused over the rate, when either link is
    /// in a proposal already, or with [`MAX_PENDING`] pending; a shortcut that proved a
    /// claim before swaps at once; otherwise the proposal waits `wait` (at least 1 ms) for
    /// the answer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn propose(
        &mut self,
        now: Instant,
        topic: TopicId,
        shortcut: (Neighbor, ConnId),
        parent: (Neighbor, ConnId),
        id: MessageId,
        claimed: u8,
        fresh: bool,
        wait: Duration,
    ) -> Proposed {
        if self.pending.len() >= MAX_PENDING
            || self.involves(shortcut.0)
            || self.involves(parent.0)
            || !self.budget.try_take(now)
        {
            return Proposed::Refused;
        }
        if self.proven.contains(&shortcut) {
            return Proposed::SwapNow;
        }
        self.pending.push(Proposal {
            topic,
            shortcut,
            parent,
            id,
            claimed,
            proposed_at: now,
            deadline: now + wait.max(Duration::from_millis(1)),
            fresh,
        });
        Proposed::Pending
    }

    /// A GOSSIP of `topic` for an id we already hold arrived at `now` from `key` on `conn`
    /// with `hops` hops: the answer to its pending proposal for that id (proven when at most
    /// the claimed hops arrived by the deadline), or a duplicate from an announcer on
    /// probation, or neither.
    pub(crate) fn settle(
        &mut self,
        now: Instant,
        topic: &TopicId,
        key: Neighbor,
        conn: ConnId,
        id: &MessageId,
        hops: u8,
    ) -> Settled {
        let found = self
            .pending
            .iter()
            .position(|p| p.shortcut == (key, conn) && p.id == *id && p.topic == *topic);
        let Some(i) = found else {
            let probation = self
                .pending
                .iter()
                .any(|p| p.shortcut == (key, conn) && p.topic == *topic);
            return if probation {
                Settled::OnProbation
            } else {
                Settled::NotInvolved
            };
        };
        let proposal = self.pending.remove(i);
        let outcome = if hops <= proposal.claimed && now <= proposal.deadline {
            ClaimOutcome::Proven
        } else if hops > proposal.claimed {
            ClaimOutcome::False
        } else {
            ClaimOutcome::Unanswered
        };
        Settled::Concluded(proposal, outcome)
    }

    /// A GRAFT_MISS of `topic` for `id` arrived from `key` on `conn`: when it answers that
    /// announcer's pending proposal for `id` (the GRAFT the proposal sent), the proposal is
    /// concluded as [`ClaimOutcome::Gone`] and returned; otherwise `None` (the miss was not
    /// asked for by a proposal).
    #[must_use]
    pub(crate) fn miss(
        &mut self,
        topic: &TopicId,
        key: Neighbor,
        conn: ConnId,
        id: &MessageId,
    ) -> Option<Proposal> {
        let i = self
            .pending
            .iter()
            .position(|p| p.shortcut == (key, conn) && p.id == *id && p.topic == *topic)?;
        Some(self.pending.remove(i))
    }

    /// Takes the proposals whose deadline passed by `now` (unanswered), in the order they
    /// were made.
    #[must_use]
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Proposal> {
        let mut due = Vec::new();
        self.pending.retain(|p| {
            let late = p.deadline <= now;
            if late {
                due.push(*p);
            }
            !late
        });
        due
    }

    /// `shortcut` proved a claim: later swaps toward it are made at once.
    pub(crate) fn note_proven(&mut self, shortcut: (Neighbor, ConnId)) {
        if self.proven.len() >= MAX_PROVEN {
            self.proven.pop_front();
        }
        self.proven.push_back(shortcut);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 32])
    }

    const T: TopicId = TopicId::DEFAULT;
    const WAIT: Duration = Duration::from_millis(600);
    const Q: (Neighbor, ConnId) = (1, ConnId(10));
    const P: (Neighbor, ConnId) = (2, ConnId(20));

    #[test]
    fn a_graft_miss_for_the_claimed_id_concludes_the_proposal_and_nothing_else() {
        let mut c = SwapClaims::new(at(0), 10);
        assert_eq!(
            c.propose(at(0), T, Q, P, id(1), 2, true, WAIT),
            Proposed::Pending
        );
        // Another id, another connection on the same slot, another topic: not its answer.
        assert_eq!(c.miss(&T, Q.0, Q.1, &id(2)), None);
        assert_eq!(c.miss(&T, Q.0, ConnId(11), &id(1)), None);
        assert_eq!(c.miss(&TopicId([9; 32]), Q.0, Q.1, &id(1)), None);
        assert_eq!(c.miss(&T, P.0, P.1, &id(1)), None);
        let concluded = c.miss(&T, Q.0, Q.1, &id(1)).unwrap();
        assert_eq!((concluded.id, concluded.proposed_at), (id(1), at(0)));
        // Concluded once: no deadline left, and a repeated miss is no answer.
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.miss(&T, Q.0, Q.1, &id(1)), None);
        assert!(c.expire(at(10_000)).is_empty());
    }

    #[test]
    fn a_claim_answered_in_time_with_at_most_its_hops_is_proven() {
        let mut c = SwapClaims::new(at(0), 10);
        assert_eq!(
            c.propose(at(0), T, Q, P, id(1), 2, true, WAIT),
            Proposed::Pending
        );
        assert_eq!(c.next_deadline(), Some(at(600)));
        // A duplicate of another message from the announcer: on probation.
        assert_eq!(
            c.settle(at(10), &T, Q.0, Q.1, &id(9), 5),
            Settled::OnProbation
        );
        // The same session slot on another connection is someone else.
        assert_eq!(
            c.settle(at(10), &T, Q.0, ConnId(11), &id(1), 2),
            Settled::NotInvolved
        );
        match c.settle(at(100), &T, Q.0, Q.1, &id(1), 2) {
            Settled::Concluded(p, ClaimOutcome::Proven) => {
                assert_eq!((p.shortcut, p.parent, p.fresh), (Q, P, true));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.next_deadline(), None);
        // Proven once: the next swap toward it is made at once.
        c.note_proven(Q);
        assert_eq!(
            c.propose(at(200), T, Q, P, id(2), 2, true, WAIT),
            Proposed::SwapNow
        );
    }

    #[test]
    fn more_hops_than_claimed_is_false_and_no_answer_is_unanswered() {
        let mut c = SwapClaims::new(at(0), 10);
        assert_eq!(
            c.propose(at(0), T, Q, P, id(1), 2, false, WAIT),
            Proposed::Pending
        );
        assert!(matches!(
            c.settle(at(100), &T, Q.0, Q.1, &id(1), 3),
            Settled::Concluded(_, ClaimOutcome::False)
        ));
        assert_eq!(
            c.propose(at(1_000), T, Q, P, id(2), 2, false, WAIT),
            Proposed::Pending
        );
        assert!(c.expire(at(1_599)).is_empty());
        let due = c.expire(at(1_600));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, id(2));
        // An answer after the deadline proves nothing.
        assert_eq!(
            c.propose(at(3_000), T, Q, P, id(3), 2, false, WAIT),
            Proposed::Pending
        );
        assert!(matches!(
            c.settle(at(3_700), &T, Q.0, Q.1, &id(3), 1),
            Settled::Concluded(_, ClaimOutcome::Unanswered)
        ));
    }

    #[test]
    fn proposals_are_rate_limited_and_one_per_link() {
        let mut c = SwapClaims::new(at(0), 2);
        assert_eq!(
            c.propose(at(0), T, Q, P, id(1), 2, true, WAIT),
            Proposed::Pending
        );
        // Either link already in a proposal.
        assert_eq!(
            c.propose(at(0), T, (3, ConnId(30)), P, id(2), 2, true, WAIT),
            Proposed::Refused
        );
        assert_eq!(
            c.propose(at(0), T, Q, (4, ConnId(40)), id(2), 2, true, WAIT),
            Proposed::Refused
        );
        assert_eq!(
            c.propose(
                at(0),
                T,
                (3, ConnId(30)),
                (4, ConnId(40)),
                id(2),
                2,
                true,
                WAIT
            ),
            Proposed::Pending
        );
        // Two per second: the third waits for the bucket.
        assert_eq!(
            c.propose(
                at(0),
                T,
                (5, ConnId(50)),
                (6, ConnId(60)),
                id(3),
                2,
                true,
                WAIT
            ),
            Proposed::Refused
        );
    }
}
