//! Application validation of gossip (`NodeConfig::validation = App`): a new message that passed
//! the content checks is held, not forwarded or delivered, while the application decides.
//!
//! The node emits `Action::Validate { id, delivery }` and keeps the message in a bounded
//! pending table with a deadline (`validation_timeout`). `Input::Verdict { id, verdict }`
//! settles it: `Accept` stores, forwards and delivers it like any new message; `Reject` drops
//! it and penalizes the neighbour that sent it (`validation_rejected`, its own score
//! component: with the default weight one rejection does not ban the neighbour — the
//! application may be stricter than its peers, or wrong — but a few in a row do);
//! `Ignore` drops it with no penalty. A message still pending at its deadline is ignored;
//! a new message that finds the table full is dropped. Every outcome is counted
//! ([`ValidationStats`]).
//!
//! A message whose verdict was `Reject` or `Ignore` is forgotten: a later copy is validated
//! again (and a rejected copy penalizes its sender again).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Node;
use super::SessionKey;
use crate::action::{Action, Delivery};
use crate::peer::{MessageId, PeerId};
use crate::score::Penalty;
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::GossipMsg;

/// Who decides whether a new gossip message is forwarded and delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// The node's own content checks only (id, origin signature): valid messages are
    /// forwarded and delivered at once.
    #[default]
    Off,
    /// After the content checks the application gives a [`Verdict`] for each new message
    /// (`Action::Validate` / `Input::Verdict`) before it is forwarded or delivered.
    App,
}

/// The application's decision on a message held for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Valid: store, forward and deliver it.
    Accept,
    /// Invalid: drop it and penalize the neighbour that sent it.
    Reject,
    /// Not for us (or undecidable): drop it, no penalty.
    Ignore,
}

/// What became of the messages held for validation (counters since start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValidationStats {
    /// Messages handed to the application (`Action::Validate`).
    pub requested: u64,
    /// Accepted: forwarded and delivered.
    pub accepted: u64,
    /// Rejected: dropped, the sender penalized.
    pub rejected: u64,
    /// Ignored by the application: dropped.
    pub ignored: u64,
    /// No verdict before `validation_timeout`: dropped as ignored.
    pub timed_out: u64,
    /// Dropped unvalidated: the pending table was full (`validation_pending_max`).
    pub dropped_full: u64,
    /// Verdicts for ids that are not pending (late, repeated or never issued): no effect.
    pub unknown_verdicts: u64,
    /// Messages held now.
    pub pending: usize,
}

/// A message waiting for its verdict.
#[derive(Debug)]
struct Pending {
    deadline: Instant,
    /// The session it came on, and that session's peer.
    key: SessionKey,
    from: PeerId,
    /// The topic it was received in.
    topic: TopicId,
    /// As received (hops not yet incremented).
    msg: GossipMsg,
}

/// The pending table: by validation id (issued in increasing order with a fixed timeout and a
/// clock that never goes back, so the first entry has the earliest deadline) and by message
/// id (copies that arrive meanwhile are duplicates).
#[derive(Debug, Default)]
pub(super) struct PendingValidations {
    next_id: u64,
    by_id: BTreeMap<u64, Pending>,
    by_message: BTreeMap<MessageId, u64>,
    stats: ValidationStats,
}

impl PendingValidations {
    /// True when a message with this id is waiting for its verdict.
    pub(super) fn contains(&self, id: &MessageId) -> bool {
        self.by_message.contains_key(id)
    }

    /// The earliest deadline of a pending message.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_id.first_key_value().map(|(_, p)| p.deadline)
    }

    /// The counters, with the current number pending.
    pub(super) fn stats(&self) -> ValidationStats {
        ValidationStats {
            pending: self.by_id.len(),
            ..self.stats
        }
    }

    fn take(&mut self, id: u64) -> Option<Pending> {
        let pending = self.by_id.remove(&id)?;
        self.by_message.remove(&pending.msg.id);
        Some(pending)
    }
}

impl Node {
    /// True when new gossip waits for the application's verdict.
    pub(super) fn validates(&self) -> bool {
        self.config.validation == ValidationMode::App
    }

    /// Holds a new, content-checked message from session `key` for the application's verdict.
    pub(super) fn hold_for_validation(
        &mut self,
        key: SessionKey,
        from: PeerId,
        topic: TopicId,
        msg: GossipMsg,
    ) {
        let pending = &mut self.validation;
        if pending.by_id.len() >= self.config.validation_pending_max {
            pending.stats.dropped_full += 1;
            return;
        }
        let id = pending.next_id;
        pending.next_id += 1;
        let deadline = self.now + self.config.validation_timeout;
        let delivery = Delivery {
            topic,
            id: msg.id,
            origin: msg.origin,
            from,
            hops: msg.hops.saturating_add(1),
            payload: msg.payload.clone(),
        };
        pending.by_message.insert(msg.id, id);
        pending.by_id.insert(
            id,
            Pending {
                deadline,
                key,
                from,
                topic,
                msg,
            },
        );
        pending.stats.requested += 1;
        self.actions.push_back(Action::Validate {
            id,
            delivery: Box::new(delivery),
        });
    }

    /// `Input::Verdict`: settles a pending message.
    pub(super) fn on_verdict(&mut self, id: u64, verdict: Verdict) {
        let Some(p) = self.validation.take(id) else {
            self.validation.stats.unknown_verdicts += 1;
            return;
        };
        match verdict {
            Verdict::Accept => {
                self.validation.stats.accepted += 1;
                // A copy may have been stored meanwhile (our own broadcast cannot collide, and
                // copies of a pending id are duplicates): accept at most once.
                if !self.cache.contains(&p.msg.id) {
                    self.accept_gossip(p.key, p.from, p.topic, p.msg);
                }
            }
            Verdict::Reject => {
                self.validation.stats.rejected += 1;
                // The session may be gone; the score is kept by peer either way.
                if self.session(p.key).is_some_and(|s| s.peer == p.from) {
                    self.penalize(p.key, Penalty::ValidationRejected, 1);
                } else {
                    let _standing = self.scores.penalize(p.from, Penalty::ValidationRejected, 1);
                    if let Some(c) = self
                        .stats
                        .score_penalties
                        .get_mut(Penalty::ValidationRejected as usize)
                    {
                        *c += 1;
                    }
                }
            }
            Verdict::Ignore => self.validation.stats.ignored += 1,
        }
    }

    /// Drops every pending message whose deadline passed (counted as timed out).
    pub(super) fn expire_validations(&mut self) {
        let now = self.now;
        while let Some(entry) = self.validation.by_id.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let p = entry.remove();
            self.validation.by_message.remove(&p.msg.id);
            self.validation.stats.timed_out += 1;
        }
    }

    /// Counters of the application validation ([`ValidationMode::App`]).
    pub fn validation_stats(&self) -> ValidationStats {
        self.validation.stats()
    }
}
