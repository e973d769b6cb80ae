//! Plumtree broadcast state of one topic, as its own machine.
//!
//! A [`Plumtree`] owns everything the epidemic broadcast of one topic needs to remember about
//! its neighbours: which links push eagerly and which announce lazily, each link's duplicate
//! streak, role age and optimisation tallies, the IHAVE batches waiting for the lazy flush and
//! how late the tree brings messages that were announced first. It knows nothing of sessions,
//! frames, scores or the message store: the [`crate::Node`] tells it what happened on a link
//! (a first copy, a duplicate, a neighbour up or down, a PRUNE or GRAFT) and carries out what
//! it answers (push to these links, prune that one, promote those, announce to these).
//!
//! Neighbours are named by the node's session key ([`Neighbor`]); the machine only compares
//! them, so any small integer id would do. Randomness (the β sample of lazy links, which lazy
//! link replaces a lost eager one) is drawn from the generator the caller passes, so the node
//! keeps one seeded stream and the same inputs give the same outputs.
//!
//! The rules, in short (the reasons are on each method):
//!
//! - every new link is eager (unless the caller says the peer may not be), so the first
//!   messages flood and the duplicates prune the mesh down to one tree;
//! - a duplicate prunes a lazy-on-our-side link at once, an eager one once it is not busy
//!   (or after `prune_after_duplicates` in a row), never the last eager link;
//! - losing an eager link promotes random lazy links until α are eager;
//! - a lazy link whose announcements beat the eager copies by `optimization_threshold` hops on
//!   average over `optimization_samples` messages becomes a swap candidate.

mod claims;
mod missing;

pub(crate) use claims::{ClaimOutcome, Proposal, Proposed, Settled, SwapClaims};
pub(crate) use missing::MissingIds;

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use rand_core::RngCore;

use crate::config::NodeConfig;
use crate::peer::{ConnId, MessageId};
use crate::time::Instant;

/// A neighbour of the tree: the node's session key.
pub(crate) type Neighbor = usize;

/// Eager links a lazy link keeps shortcut tallies against.
pub(crate) const SHORTCUT_TALLIES: usize = 4;

/// An announcement older than this, relative to our own receipt, says nothing about the
/// current tree (a catch-up IHAVE of a new session, say) and never triggers a swap.
pub(crate) const OPTIMIZATION_WINDOW: Duration = Duration::from_secs(1);

/// Most messages held back from the established eager links at once (see
/// [`Plumtree::hold`]); each is held for `graft_timeout` at most.
pub(crate) const MAX_HELD: usize = 1024;

/// The settings the machine uses (from [`NodeConfig`]; α and β change live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Eager links kept after losses (α).
    pub(crate) alpha: usize,
    /// Lazy links each message is announced to (β).
    pub(crate) beta: usize,
    /// Most ids waiting in one link's IHAVE batch.
    pub(crate) ihave_batch_max: usize,
    /// Duplicates in a row that prune a busy eager link.
    pub(crate) prune_after_duplicates: u32,
    /// How long an eager link counts as busy after a first copy or becoming eager.
    pub(crate) graft_timeout: Duration,
    /// Longest a GRAFT is put off while the tree is settled.
    pub(crate) graft_timeout_settled: Duration,
    /// How long links keep their roles before a swap, and a replaced link stays prunable.
    pub(crate) optimization_hold: Duration,
    /// Mean hops a shortcut must save (0: no optimisation).
    pub(crate) optimization_threshold: u8,
    /// Messages a shortcut tally needs before it counts.
    pub(crate) optimization_samples: u16,
    /// Most a shortcut's announcements may arrive after our copies, on average, for a swap.
    pub(crate) optimization_max_lateness: Duration,
    /// How long a new link is on probation: a message it brings first is not pushed into
    /// the established links until the tree's own copy comes (or `graft_timeout`).
    pub(crate) link_probation: Duration,
}

impl Params {
    /// The machine's settings in `config`.
    pub(crate) fn of(config: &NodeConfig) -> Params {
        Params {
            alpha: config.alpha,
            beta: config.beta,
            ihave_batch_max: config.ihave_batch_max,
            prune_after_duplicates: config.prune_after_duplicates,
            graft_timeout: config.graft_timeout,
            graft_timeout_settled: config.graft_timeout_settled,
            optimization_hold: config.optimization_hold,
            optimization_threshold: config.optimization_threshold,
            optimization_samples: config.optimization_samples,
            optimization_max_lateness: config.optimization_max_lateness,
            link_probation: config.link_probation,
        }
    }
}

/// One neighbour's Plumtree state in the topic.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Push messages of the topic eagerly to this peer.
    pub(crate) eager: bool,
    /// Duplicates received from this peer since it last gave us a message first.
    dup_streak: u32,
    /// When this peer last gave us a message first.
    first_copy_at: Option<Instant>,
    /// When this link last changed between eager and lazy (or opened).
    role_since: Instant,
    /// When this link joined the tree.
    joined_at: Instant,
    /// The link joined on probation (for `link_probation` from `joined_at`).
    probation: bool,
    /// The first message this node had after the link joined (accepted or broadcast), and
    /// when: for `graft_timeout` after it, only that message's duplicates prune the link at
    /// once (see [`Plumtree::on_duplicate`]).
    shaper: Option<(MessageId, Instant)>,
    /// When we last sent PRUNE to the peer.
    pub(crate) pruned_at: Option<Instant>,
    /// When a tree optimisation chose a shortcut over this (eager) link without pruning it
    /// at once; its next duplicate within `optimization_hold` prunes it.
    replaced_at: Option<Instant>,
    /// When this (settled) link's duplicate last had a young link pruned (rule "a young link
    /// never displaces the tree"): at most once per `optimization_hold`, so a peer that echoes
    /// our own pushes back cannot veto every newcomer.
    young_pruned_at: Option<Instant>,
    /// On a lazy link: how many hops shorter this peer's announcements were than the copies
    /// that came over each eager link (one tally per eager link, the most recent kept).
    shortcut_tallies: [Option<ShortcutTally>; SHORTCUT_TALLIES],
    /// Ids to announce to this peer at the next lazy flush.
    ihave: Vec<(MessageId, u8)>,
}

/// Hops a lazy link would have saved, summed over the messages that came over one eager link
/// (the tree optimisation swaps the two links when the mean is large enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortcutTally {
    /// The eager link and its connection (to detect reuse).
    parent: (Neighbor, ConnId),
    /// Since when the tally runs (a role change of either link restarts it).
    since: Instant,
    /// Sum of `our hops − (announced hops + 1)` over the messages counted.
    saved: i32,
    /// Messages counted.
    samples: u16,
    /// Sum over the messages counted of how much later the shortcut's announcement arrived
    /// than our copy, µs (negative when the announcement came first).
    late_us: i64,
    /// The most hops a message counted here took to us over the eager link, and the most
    /// the shortcut announced, in this window and the one before it (the windows turn
    /// when the tally halves its weights).
    longest: Longest,
    /// The same for the previous window.
    longest_before: Longest,
}

/// The longest paths seen by one shortcut tally in one window: the most hops a message took
/// to us over the eager link, and the most hops the shortcut announced (each a maximum over
/// the same messages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Longest {
    /// Most hops over the eager link.
    hops: u8,
    /// Most hops the shortcut announced.
    offered: u8,
}

impl Longest {
    fn note(self, hops: u8, offered: u8) -> Longest {
        Longest {
            hops: self.hops.max(hops),
            offered: self.offered.max(offered),
        }
    }

    fn max(self, other: Longest) -> Longest {
        self.note(other.hops, other.offered)
    }
}

impl ShortcutTally {
    /// How many hops the longest path through the eager link would shrink by through the
    /// shortcut: the farthest sender behind the eager link is `longest.hops` away over it and
    /// `longest.offered + 1` through the shortcut (negative: it would grow).
    fn longest_saving(&self) -> i32 {
        let l = self.longest.max(self.longest_before);
        i32::from(l.hops) - i32::from(l.offered) - 1
    }
}

impl Link {
    /// True when the link is a settled edge of the tree: eager for `hold` at least, and it
    /// gave us a first copy since it became eager.
    fn is_settled_edge(&self, now: Instant, hold: Duration) -> bool {
        self.eager
            && now - self.role_since >= hold
            && self.first_copy_at.is_some_and(|t| t >= self.role_since)
    }

    fn new(now: Instant, eager: bool) -> Link {
        Link {
            eager,
            dup_streak: 0,
            first_copy_at: None,
            role_since: now,
            joined_at: now,
            probation: true,
            shaper: None,
            pruned_at: None,
            replaced_at: None,
            young_pruned_at: None,
            shortcut_tallies: [None; SHORTCUT_TALLIES],
            ihave: Vec::new(),
        }
    }
}

/// What a duplicate over an older eager link does when the first copy came over a young link
/// ([`Plumtree::young_link_verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum YoungLinkVerdict {
    /// The rule does not apply (the first link is not young, or the older one is no settled
    /// tree edge): the usual duplicate rules decide.
    NotApplicable,
    /// Prune the young link; the older one is kept and the duplicate not held against it.
    PruneYoung,
    /// The older link had a young link pruned within `optimization_hold`: the young link
    /// stays, and the usual duplicate rules judge the older link.
    KeepBoth,
}

/// What [`Plumtree::announce`] did.
#[must_use]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Announced {
    /// At least one id was queued (the lazy flush must be armed).
    pub(crate) queued: bool,
    /// Links whose IHAVE batch was full (the id was not queued for them).
    pub(crate) overflow: u64,
}

/// What a topic's tree asks the node to carry out, in the order it decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlumtreeOutput {
    /// The tree made this link eager on its own initiative ([`Plumtree::refill_eager`]): tell
    /// the peer (an empty GRAFT), so the link is eager on both ends.
    TellEager(Neighbor),
}

/// The broadcast tree of one topic: which neighbours are eager and lazy in it.
#[derive(Debug)]
pub(crate) struct Plumtree {
    params: Params,
    /// Neighbours we push eagerly to, in the order they became eager.
    eager: Vec<Neighbor>,
    /// Neighbours we announce to lazily.
    lazy: Vec<Neighbor>,
    /// The link state of every neighbour in the tree.
    links: BTreeMap<Neighbor, Link>,
    /// Recent largest lateness of eager copies that arrived after an IHAVE for the same id
    /// (how far the tree path trails the mesh's shortest paths here): sets how long GRAFTs
    /// are put off while the tree is settled.
    lateness: Duration,
    /// When this node last accepted a new message of the topic: a tree optimisation based on
    /// an older message may rest on a tree that has changed since.
    last_first_copy_at: Option<Instant>,
    /// Links that joined the tree since this node last had a new message (no shaper yet).
    unshaped: usize,
    /// Messages whose first copy came over a link on probation and that were not yet
    /// forwarded to the established eager links, with the end of their hold, oldest first.
    held: Vec<(MessageId, Instant)>,
    /// When this node last asked peers for members of the topic (TOPIC_PEERS).
    pub(crate) asked_at: Option<Instant>,
    /// Reused scratch space for sampling lazy links.
    scratch: Vec<Neighbor>,
    /// Decisions for the node, oldest first.
    outputs: VecDeque<PlumtreeOutput>,
}

/// A uniform index below `n` (0 when `n <= 1`, drawing nothing).
pub(crate) fn random_below(rng: &mut impl RngCore, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (rng.next_u64() % n as u64) as usize
}

impl Plumtree {
    /// An empty tree.
    pub(crate) fn new(params: Params) -> Plumtree {
        Plumtree {
            params,
            eager: Vec::new(),
            lazy: Vec::new(),
            links: BTreeMap::new(),
            lateness: Duration::ZERO,
            last_first_copy_at: None,
            unshaped: 0,
            held: Vec::new(),
            asked_at: None,
            scratch: Vec::new(),
            outputs: VecDeque::new(),
        }
    }

    /// The next decision for the node to carry out, oldest first.
    pub(crate) fn poll_output(&mut self) -> Option<PlumtreeOutput> {
        self.outputs.pop_front()
    }

    /// New settings (live reconfiguration); call [`Plumtree::trim_eager`] and
    /// [`Plumtree::refill_eager`] after a change of α.
    pub(crate) fn set_params(&mut self, params: Params) {
        self.params = params;
    }

    /// Eager neighbours, in the order they became eager.
    pub(crate) fn eager(&self) -> &[Neighbor] {
        &self.eager
    }

    /// Lazy neighbours.
    pub(crate) fn lazy(&self) -> &[Neighbor] {
        &self.lazy
    }

    /// Neighbours in the tree.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    /// The link of `key`, when it is in the tree.
    pub(crate) fn link(&self, key: Neighbor) -> Option<&Link> {
        self.links.get(&key)
    }

    /// True when `key` is in the tree and eager.
    pub(crate) fn is_eager(&self, key: Neighbor) -> bool {
        self.links.get(&key).is_some_and(|l| l.eager)
    }

    /// True when `key` is a young link: it joined the tree less than `optimization_hold`
    /// ago and has been eager since (no PRUNE, GRAFT or swap made it a tree edge).
    pub(crate) fn is_young_link(&self, now: Instant, key: Neighbor) -> bool {
        let hold = self.params.optimization_hold;
        self.links
            .get(&key)
            .is_some_and(|l| l.eager && l.role_since == l.joined_at && now - l.joined_at < hold)
    }

    /// What a duplicate from `older` does when the first copy came over `young`: see
    /// [`YoungLinkVerdict`]. The rule applies only when `young` is a young link and `older`
    /// a settled tree edge (eager for `optimization_hold`, with a first copy since: it has
    /// relayed for real); such a link has a young link pruned at most once per
    /// `optimization_hold`.
    pub(crate) fn young_link_verdict(
        &mut self,
        now: Instant,
        older: Neighbor,
        young: Neighbor,
    ) -> YoungLinkVerdict {
        let hold = self.params.optimization_hold;
        if older == young || !self.is_young_link(now, young) {
            return YoungLinkVerdict::NotApplicable;
        }
        let Some(link) = self.links.get_mut(&older) else {
            return YoungLinkVerdict::NotApplicable;
        };
        if !link.is_settled_edge(now, hold) {
            return YoungLinkVerdict::NotApplicable;
        }
        if link.young_pruned_at.is_some_and(|t| now - t < hold) {
            return YoungLinkVerdict::KeepBoth;
        }
        link.young_pruned_at = Some(now);
        YoungLinkVerdict::PruneYoung
    }

    /// True when `key` is in the tree and carries no tree edge: lazy, or eager since it
    /// joined the tree with no message accepted here since then (a new link before the first
    /// message shaped the tree around it). A link made eager later (a first copy over a lazy
    /// link, a GRAFT from a peer that repairs through us) is an edge.
    pub(crate) fn carries_no_edge(&self, key: Neighbor) -> bool {
        self.links.get(&key).is_some_and(|l| {
            !l.eager
                || (l.role_since == l.joined_at
                    && self.last_first_copy_at.is_none_or(|t| l.joined_at > t))
        })
    }

    /// Neighbour up: `key` joins the tree, eager unless `eager` is false (the peer's score
    /// keeps it lazy), on probation for `link_probation` when `probation` is true. `catch_up`
    /// (the ids of the topic held most recently, newest first) is queued for announcement.
    /// Returns true when something was queued (arm the lazy flush); a neighbour already in
    /// the tree is left as it is.
    pub(crate) fn add_link_on_probation(
        &mut self,
        now: Instant,
        key: Neighbor,
        eager: bool,
        catch_up: &[(MessageId, u8)],
        probation: bool,
    ) -> bool {
        if self.links.contains_key(&key) {
            return false;
        }
        let mut link = Link::new(now, eager);
        link.probation = probation;
        link.ihave.extend(catch_up.iter().rev().copied());
        let has_ihave = !link.ihave.is_empty();
        self.links.insert(key, link);
        self.unshaped += 1;
        if eager {
            self.eager.push(key);
        } else {
            self.lazy.push(key);
        }
        has_ihave
    }

    /// True when `key` gave this node the first copy of some message since it joined the tree.
    pub(crate) fn gave_first_copy(&self, key: Neighbor) -> bool {
        self.links
            .get(&key)
            .is_some_and(|l| l.first_copy_at.is_some())
    }

    /// Neighbour down: takes `key` out of the tree; returns whether it was eager (then call
    /// [`Plumtree::refill_eager`]).
    pub(crate) fn remove(&mut self, key: Neighbor) -> bool {
        self.eager.retain(|k| *k != key);
        self.lazy.retain(|k| *k != key);
        let removed = self.links.remove(&key);
        if removed.as_ref().is_some_and(|l| l.shaper.is_none()) {
            self.unshaped = self.unshaped.saturating_sub(1);
        }
        removed.is_some_and(|l| l.eager)
    }

    /// True while `link` is on probation: it joined the tree on probation less than
    /// `link_probation` ago.
    fn on_probation(&self, now: Instant, link: &Link) -> bool {
        link.probation && now - link.joined_at < self.params.link_probation
    }

    /// A message `id` came first over `from`: true when `from` is on probation and some
    /// other eager link is established, so the copy goes now only to the eager links on
    /// probation and is held for the established ones until `until` (or until the tree's
    /// own copy arrives, [`Plumtree::release_held`]).
    /// At most [`MAX_HELD`] messages are held; past that a copy is forwarded as usual.
    pub(crate) fn hold(
        &mut self,
        now: Instant,
        id: MessageId,
        from: Neighbor,
        until: Instant,
    ) -> bool {
        if self.link_on_probation(now, from) != Some(true) || self.held.len() >= MAX_HELD {
            return false;
        }
        let established = self
            .eager
            .iter()
            .any(|k| *k != from && self.link_on_probation(now, *k) == Some(false));
        if established {
            self.held.push((id, until));
        }
        established
    }

    /// A copy of `id` came over an established eager link: true when `id` was held (its hold
    /// ends; the caller forwards it now to the established eager links but that one).
    pub(crate) fn release_held(&mut self, id: &MessageId) -> bool {
        let Some(i) = self.held.iter().position(|(h, _)| h == id) else {
            return false;
        };
        self.held.remove(i);
        true
    }

    /// Held messages whose hold ran out by `now` (the caller forwards them to the
    /// established eager links), oldest first.
    pub(crate) fn due_held(&mut self, now: Instant) -> Vec<MessageId> {
        let mut due = Vec::new();
        self.held.retain(|(id, until)| {
            if *until <= now {
                due.push(*id);
                false
            } else {
                true
            }
        });
        due
    }

    /// True while some message is held.
    pub(crate) fn holds_messages(&self) -> bool {
        !self.held.is_empty()
    }

    /// True when `key` is eager and established (past probation).
    pub(crate) fn is_established_eager(&self, now: Instant, key: Neighbor) -> bool {
        self.is_eager(key) && self.link_on_probation(now, key) == Some(false)
    }

    /// Whether `key`'s link is on probation (None when `key` is not in the tree).
    pub(crate) fn link_on_probation(&self, now: Instant, key: Neighbor) -> Option<bool> {
        self.links.get(&key).map(|l| self.on_probation(now, l))
    }

    /// Moves `key` to the eager set; returns true when it changed role.
    pub(crate) fn make_eager(&mut self, now: Instant, key: Neighbor) -> bool {
        match self.links.get_mut(&key) {
            Some(link) if !link.eager => {
                link.eager = true;
                link.role_since = now;
                self.lazy.retain(|k| *k != key);
                self.eager.push(key);
                true
            }
            _ => false,
        }
    }

    /// Moves `key` to the lazy set; returns true when it changed role.
    pub(crate) fn make_lazy(&mut self, now: Instant, key: Neighbor) -> bool {
        match self.links.get_mut(&key) {
            Some(link) if link.eager => {
                link.eager = false;
                link.role_since = now;
                self.eager.retain(|k| *k != key);
                self.lazy.push(key);
                true
            }
            _ => false,
        }
    }

    /// Demotes the newest eager links until at most α are eager (α was lowered); returns the
    /// demoted ones.
    #[must_use]
    pub(crate) fn trim_eager(&mut self, now: Instant) -> Vec<Neighbor> {
        let mut demoted = Vec::new();
        while self.eager.len() > self.params.alpha {
            let Some(&key) = self.eager.last() else {
                break;
            };
            self.make_lazy(now, key);
            demoted.push(key);
        }
        demoted
    }

    /// Keeps at least α eager links after losing one: promotes random lazy links that
    /// `may_be_eager` allows and queues [`PlumtreeOutput::TellEager`] for each, in promotion
    /// order (the node tells each peer with an empty GRAFT, so the link is eager on both
    /// ends). Returns how many were promoted.
    pub(crate) fn refill_eager(
        &mut self,
        now: Instant,
        rng: &mut impl RngCore,
        may_be_eager: impl Fn(Neighbor) -> bool,
    ) -> usize {
        let mut promoted = 0;
        while self.eager.len() < self.params.alpha {
            let candidates: Vec<Neighbor> = self
                .lazy
                .iter()
                .copied()
                .filter(|k| may_be_eager(*k))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let Some(&key) = candidates.get(random_below(rng, candidates.len())) else {
                break;
            };
            if !self.make_eager(now, key) {
                break;
            }
            self.outputs.push_back(PlumtreeOutput::TellEager(key));
            promoted += 1;
        }
        promoted
    }

    /// `key` gave us a message first: the link is a tree edge for it.
    pub(crate) fn on_first_copy(&mut self, now: Instant, key: Neighbor) {
        if let Some(link) = self.links.get_mut(&key) {
            link.dup_streak = 0;
            link.first_copy_at = Some(now);
        }
    }

    /// A new message of the topic was accepted (from a peer, from validation).
    pub(crate) fn on_new_message(&mut self, now: Instant, id: MessageId) {
        self.last_first_copy_at = Some(now);
        self.shape_links(now, id);
    }

    /// This node has message `id` of the topic for the first time (accepted or its own
    /// broadcast): it shapes every link that joined since the last one ([`Link::shaper`]).
    pub(crate) fn shape_links(&mut self, now: Instant, id: MessageId) {
        if self.unshaped == 0 {
            return;
        }
        for link in self.links.values_mut() {
            if link.shaper.is_none() {
                link.shaper = Some((id, now));
            }
        }
        self.unshaped = 0;
    }

    /// The payload of a message arrived from `key` while the application validates it: the
    /// link is not redundant.
    pub(crate) fn reset_streak(&mut self, key: Neighbor) {
        if let Some(link) = self.links.get_mut(&key) {
            link.dup_streak = 0;
        }
    }

    /// `key` pushed us a duplicate: returns true when the link is redundant and must be
    /// pruned ([`Plumtree::prune`]).
    ///
    /// - A neighbour we treat as lazy still has us as eager (the link is one-sided): prune at
    ///   once.
    /// - An eager neighbour that has not given us a first copy within `graft_timeout` is
    ///   pruned at once, as in textbook Plumtree: with broadcasts that do not overlap, the
    ///   first duplicate marks a link that closes a cycle, whoever the sender, so the eager
    ///   graph becomes one tree after one broadcast.
    /// - An eager neighbour that did give us a first copy that recently, or became eager that
    ///   recently (a GRAFT, a swap: the copy asked for may still come), is pruned only after
    ///   `prune_after_duplicates` duplicates in a row: when broadcasts overlap, two nodes of
    ///   one cycle could otherwise prune two different links of it for messages going
    ///   opposite ways and split the tree (repaired only by GRAFT, after `graft_timeout`).
    /// - An eager neighbour a tree optimisation replaced within `optimization_hold` is pruned
    ///   at once: the duplicate proves the other path.
    /// - A settled tree edge (eager for `optimization_hold` at least, and it gave us a first
    ///   copy since) counts as busy: a duplicate over it means that a new link (a swap's
    ///   shortcut, a GRAFT) closed a cycle somewhere, and that cycle is to be broken where
    ///   it was closed (the replaced link, a link with a streak of duplicates), not at
    ///   whichever settled edge the two copies happened to meet: there a first-duplicate
    ///   prune would leave the tree one long path round the old cycle.
    /// - While a new link is being shaped (for `graft_timeout` after the first message this
    ///   node had since the link joined), only that message's duplicates prune it at once;
    ///   duplicates of other messages count as busy. When the first messages over a new
    ///   mesh overlap, each link is thus shaped by one flood, as in textbook Plumtree:
    ///   without this, a node would also prune the links to its children in one message's
    ///   tree on the duplicates of another, leaving a forest whose pieces GRAFTs join at
    ///   random points, and a deep tree.
    /// - Our last eager link is never pruned.
    #[must_use]
    pub(crate) fn on_duplicate(&mut self, now: Instant, key: Neighbor, id: &MessageId) -> bool {
        let Params {
            prune_after_duplicates: limit,
            graft_timeout: window,
            optimization_hold: hold,
            ..
        } = self.params;
        let Some(link) = self.links.get_mut(&key) else {
            return false;
        };
        link.dup_streak = link.dup_streak.saturating_add(1);
        let settled_edge = link.is_settled_edge(now, hold);
        let shaped_by_another = link
            .shaper
            .is_some_and(|(shaper, at)| shaper != *id && now - at < window);
        let busy = link.first_copy_at.is_some_and(|t| now - t < window)
            || (link.eager && now - link.role_since < window)
            || settled_edge
            || shaped_by_another;
        let replaced = link.replaced_at.is_some_and(|t| now - t < hold);
        if !link.eager {
            return true;
        }
        self.eager.len() > 1 && (replaced || !busy || link.dup_streak >= limit)
    }

    /// Starts the tree over (a rebuild after a failure nearby, see [`crate::rebuild`]):
    /// every link becomes eager and new, as if it had just joined (no tree edge, no duplicate
    /// streak or shortcut tally, shaped by the next message), keeping the ids queued for its
    /// IHAVE. Returns the links, in their new eager order; the caller tells each peer (an
    /// empty GRAFT) so the links are eager on both ends. Nothing of this is random.
    pub(crate) fn rebuild(&mut self, now: Instant) -> Vec<Neighbor> {
        let mut keys = core::mem::take(&mut self.eager);
        keys.append(&mut self.lazy);
        for key in &keys {
            if let Some(link) = self.links.get_mut(key) {
                let ihave = core::mem::take(&mut link.ihave);
                *link = Link::new(now, true);
                link.probation = false;
                link.ihave = ihave;
            }
        }
        self.eager.clone_from(&keys);
        self.unshaped = keys.len();
        keys
    }

    /// Makes `key` lazy and notes the PRUNE the caller sends it.
    pub(crate) fn prune(&mut self, now: Instant, key: Neighbor) {
        if let Some(link) = self.links.get_mut(&key) {
            link.dup_streak = 0;
            link.pruned_at = Some(now);
            link.replaced_at = None;
        }
        self.make_lazy(now, key);
    }

    /// A tree optimisation chose a shortcut over the eager link `key` without pruning it: its
    /// next duplicate within `optimization_hold` prunes it.
    pub(crate) fn mark_replaced(&mut self, now: Instant, key: Neighbor) {
        if let Some(link) = self.links.get_mut(&key) {
            link.replaced_at = Some(now);
        }
    }

    /// Queues the announcement of `id` (received with `hops` hops) for up to β lazy links,
    /// sampled with `rng`, skipping `from`.
    pub(crate) fn announce(
        &mut self,
        rng: &mut impl RngCore,
        from: Option<Neighbor>,
        id: MessageId,
        hops: u8,
    ) -> Announced {
        let beta = self.params.beta;
        let batch_max = self.params.ihave_batch_max;
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        targets.extend(self.lazy.iter().copied().filter(|k| Some(*k) != from));
        if targets.len() > beta {
            // Partial Fisher–Yates: the first β entries become a sample. One 64-bit draw per
            // message, mixed anew for each pick (a full RNG call per pick costs more than the
            // rest of the lazy path).
            let mut bits = rng.next_u64();
            for i in 0..beta {
                bits = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ (i as u64);
                let j = i + (((bits >> 32) as usize * (targets.len() - i)) >> 32);
                targets.swap(i, j);
            }
            targets.truncate(beta);
        }
        let mut done = Announced::default();
        for key in &targets {
            if let Some(link) = self.links.get_mut(key) {
                if link.ihave.len() < batch_max {
                    link.ihave.push((id, hops));
                    done.queued = true;
                } else {
                    done.overflow += 1;
                }
            }
        }
        self.scratch = targets;
        done
    }

    /// Neighbours with an IHAVE batch waiting, in key order.
    pub(crate) fn pending_announcements(&self) -> impl Iterator<Item = Neighbor> + '_ {
        self.links
            .iter()
            .filter(|(_, l)| !l.ihave.is_empty())
            .map(|(k, _)| *k)
    }

    /// Takes `key`'s IHAVE batch (give the emptied buffer back with
    /// [`Plumtree::return_batch`] to keep its allocation).
    pub(crate) fn take_batch(&mut self, key: Neighbor) -> Option<Vec<(MessageId, u8)>> {
        self.links
            .get_mut(&key)
            .map(|l| std::mem::take(&mut l.ihave))
    }

    /// Gives a sent batch's buffer back to `key` (emptied).
    pub(crate) fn return_batch(&mut self, key: Neighbor, mut batch: Vec<(MessageId, u8)>) {
        if let Some(link) = self.links.get_mut(&key) {
            batch.clear();
            link.ihave = batch;
        }
    }

    /// Frees idle IHAVE buffers (maintenance tick).
    pub(crate) fn shrink_if_idle(&mut self) {
        for link in self.links.values_mut() {
            if link.ihave.is_empty() && link.ihave.capacity() > 0 {
                link.ihave = Vec::new();
            }
        }
    }

    /// True while this part of the tree is settled: it has eager links and no running
    /// session of the node ended since `lost_at` + `settle`.
    pub(crate) fn settled(&self, now: Instant, lost_at: Option<Instant>, settle: Duration) -> bool {
        !self.eager.is_empty() && lost_at.is_none_or(|t| now - t >= settle)
    }

    /// How much longer than `graft_timeout` the first GRAFT for an announced id waits while
    /// the tree is settled: the recent largest lateness of the topic's eager copies behind
    /// announcements, at most `graft_timeout_settled − graft_timeout`. Where announcements
    /// never beat the tree (loopback, a LAN: IHAVEs wait for the lazy flush) nothing is put
    /// off and a broken tree is repaired after `graft_timeout`; where the shared tree trails
    /// the mesh by tens of milliseconds (a WAN), GRAFTs wait long enough for the eager copy
    /// instead of pulling a duplicate.
    pub(crate) fn graft_hold(&self) -> Duration {
        let cap = self
            .params
            .graft_timeout_settled
            .saturating_sub(self.params.graft_timeout);
        self.lateness.min(cap)
    }

    /// A message announced at `announced_at` arrived eagerly over `parent` at `now` (GRAFT
    /// sent to `grafted`, if any): unless it is the copy we asked for, note how late the tree
    /// brought it. The estimate is a decaying maximum: a larger lateness is taken at once,
    /// each sample otherwise forgets 1/16 of it.
    pub(crate) fn note_announced_arrival(
        &mut self,
        now: Instant,
        parent: Neighbor,
        grafted: Option<Neighbor>,
        announced_at: Instant,
    ) {
        if grafted == Some(parent) {
            return;
        }
        let lateness = now - announced_at;
        self.lateness = lateness.max(self.lateness * 15 / 16);
    }

    /// Plumtree's optimisation step, averaged over senders. We hold a message that reached us
    /// in `hops` hops over eager link `parent`; lazy link `shortcut` announced it with
    /// `offered` hops, so through it the message would have taken `offered + 1`. `seen_at` is
    /// when the evidence was complete (the message's arrival, or the announcement when it came
    /// first). The difference is added to the shortcut's tally against `parent`, and
    /// `late_us`, how much later the announcement arrived than our copy (µs, negative when it
    /// came first), to its lateness. Once `optimization_samples` messages are counted, the
    /// shortcut saved at least `optimization_threshold` hops on average (or shortened the
    /// longest path by that much) and its announcements were on average no later than
    /// `optimization_max_lateness`, the tally is cleared and true returned: the links should
    /// swap roles ([`Plumtree::swap_ready`]).
    ///
    /// Why the mean: the eager graph is one tree for every sender. Swapping the link to the
    /// part of the tree behind the old parent for one through the shortcut changes the
    /// distance between every node on our side and every node behind it by the shortcut's
    /// saving for that node; the messages that came over the old parent sample those nodes
    /// as senders, so a positive mean saving shortens the tree's paths on the whole (one
    /// message alone would reshape the tree for its sender, at the others' expense). A
    /// shortcut that is not behind the old parent only heard the message through us and
    /// shows a loss, so it is never chosen.
    #[must_use]
    #[allow(clippy::too_many_arguments)] // the evidence of one announcement, as consider_shortcut
    pub(crate) fn tally_shortcut(
        &mut self,
        now: Instant,
        shortcut: Neighbor,
        parent: (Neighbor, ConnId),
        offered: u8,
        hops: u8,
        seen_at: Instant,
        late_us: i64,
    ) -> bool {
        let threshold = self.params.optimization_threshold;
        let needed = self.params.optimization_samples.max(1);
        if threshold == 0 || now - seen_at > OPTIMIZATION_WINDOW || parent.0 == shortcut {
            return false;
        }
        let parent_since = match self.links.get(&parent.0) {
            Some(p) if p.eager => p.role_since,
            _ => return false,
        };
        let saved = i32::from(hops) - i32::from(offered) - 1;
        let Some(q) = self.links.get_mut(&shortcut) else {
            return false;
        };
        if q.eager {
            return false;
        }
        let since = q.role_since.max(parent_since);
        let slots = &mut q.shortcut_tallies;
        let slot = slots
            .iter()
            .position(|t| t.is_some_and(|t| t.parent == parent))
            // A free slot, else the oldest tally makes room.
            .or_else(|| slots.iter().position(Option::is_none))
            .or_else(|| {
                slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, t)| t.map(|t| t.since))
                    .map(|(i, _)| i)
            })
            .unwrap_or(0);
        let Some(entry) = slots.get_mut(slot) else {
            return false;
        };
        let mut tally = match *entry {
            Some(t) if t.parent == parent && t.since >= since => t,
            _ => ShortcutTally {
                parent,
                since: now,
                saved: 0,
                samples: 0,
                late_us: 0,
                longest: Longest::default(),
                longest_before: Longest::default(),
            },
        };
        tally.saved = tally.saved.saturating_add(saved);
        tally.samples = tally.samples.saturating_add(1);
        tally.late_us = tally.late_us.saturating_add(late_us);
        tally.longest = tally.longest.note(hops, offered);
        if tally.samples >= needed.saturating_mul(4) {
            // Keep the recent past: halve the weight of what was counted so far, and start
            // a new window of longest paths (the one before still counts).
            tally.saved /= 2;
            tally.samples /= 2;
            tally.late_us /= 2;
            tally.longest_before = tally.longest;
            tally.longest = Longest::default();
        }
        *entry = Some(tally);
        if tally.samples < needed {
            return false;
        }
        // Two measures of the shared tree, and a swap may worsen neither: the mean saving
        // (the sum of distances between the nodes on both sides of the eager link) and the
        // longest path through the link (the tree's diameter, which bounds every message's
        // hops). Either improving by the threshold is enough.
        let threshold = i32::from(threshold);
        let mean_saves = tally.saved >= threshold * i32::from(tally.samples);
        let longest = tally.longest_saving();
        // Hops are a proxy for time: a path shorter in hops over slower links is no shortcut.
        // The announcement left the shortcut at most one IHAVE flush after its copy would
        // have, so when announcements arrive later than our copies on average (beyond
        // `optimization_max_lateness`), the path over the shortcut is the slower one.
        let max_late_us = crate::time::micros(self.params.optimization_max_lateness);
        let timely = tally.late_us <= max_late_us.saturating_mul(i64::from(tally.samples));
        let swap =
            timely && ((mean_saves && longest >= 0) || (longest >= threshold && tally.saved >= 0));
        if swap {
            *entry = None;
        }
        swap
    }

    /// True when `parent` (eager) and `shortcut` (lazy) both kept their roles for
    /// `optimization_hold`, so a swap is never undone by the next message.
    pub(crate) fn swap_ready(&self, now: Instant, shortcut: Neighbor, parent: Neighbor) -> bool {
        let hold = self.params.optimization_hold;
        let (Some(p), Some(q)) = (self.links.get(&parent), self.links.get(&shortcut)) else {
            return false;
        };
        p.eager && !q.eager && now - p.role_since >= hold && now - q.role_since >= hold
    }

    /// True when no other message of the topic was accepted after `seen_at` (the tree is
    /// taken as unchanged since the evidence of a swap).
    pub(crate) fn unchanged_since(&self, seen_at: Instant) -> bool {
        self.last_first_copy_at.is_none_or(|t| t <= seen_at)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn params() -> Params {
        Params::of(&NodeConfig::default())
    }

    impl Plumtree {
        /// A link on probation (the tests' shorthand).
        fn add_link(
            &mut self,
            now: Instant,
            key: Neighbor,
            eager: bool,
            catch_up: &[(MessageId, u8)],
        ) -> bool {
            self.add_link_on_probation(now, key, eager, catch_up, true)
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn id(n: u8) -> MessageId {
        MessageId([n; 32])
    }

    /// A tree with neighbours `0..n`, all eager, opened at time 0.
    fn tree(n: usize) -> Plumtree {
        let mut t = Plumtree::new(params());
        for k in 0..n {
            assert!(!t.add_link(at(0), k, true, &[]));
        }
        t
    }

    #[test]
    fn only_links_eager_since_they_joined_with_no_message_since_carry_no_edge() {
        let mut t = tree(3);
        assert!(!t.add_link(at(0), 3, false, &[]));
        // Before any message no eager link is a tree edge yet, and a lazy link never is.
        assert!((0..4).all(|k| t.carries_no_edge(k)));
        t.on_new_message(at(10), id(1));
        assert!(!t.carries_no_edge(0));
        assert!(t.carries_no_edge(3));
        // A link opened after the last message is not an edge yet.
        assert!(!t.add_link(at(20), 4, true, &[]));
        assert!(t.carries_no_edge(4));
        // A lazy link made eager at the moment it brings a first copy is an edge at once,
        // and so is a link a peer GRAFTs after our last message.
        assert!(t.make_eager(at(30), 3));
        t.on_first_copy(at(30), 3);
        t.on_new_message(at(30), id(1));
        assert!(!t.carries_no_edge(3));
        assert!(t.make_lazy(at(40), 2));
        assert!(t.make_eager(at(50), 2));
        assert!(!t.carries_no_edge(2));
        assert!(!t.carries_no_edge(99));
    }

    #[test]
    fn only_a_link_added_on_probation_is_on_probation() {
        let mut p = params();
        p.link_probation = Duration::from_secs(3);
        let mut t = Plumtree::new(p);
        t.add_link_on_probation(at(0), 0, true, &[], false);
        t.add_link_on_probation(at(0), 1, true, &[], true);
        assert_eq!(t.link_on_probation(at(1_000), 0), Some(false));
        assert_eq!(t.link_on_probation(at(1_000), 1), Some(true));
        assert_eq!(t.link_on_probation(at(3_000), 1), Some(false));
        // A message first over the probation link is held from the established one only.
        assert!(t.hold(at(1_000), id(1), 1, at(1_080)));
        assert!(!t.hold(at(1_000), id(2), 0, at(1_080)));
    }

    #[test]
    fn a_link_gave_a_first_copy_only_once_it_brought_one() {
        let mut t = tree(2);
        assert!(!t.gave_first_copy(0));
        t.on_first_copy(at(10), 0);
        assert!(t.gave_first_copy(0));
        assert!(!t.gave_first_copy(1));
        assert!(!t.gave_first_copy(9));
    }

    #[test]
    fn every_new_neighbour_is_eager_unless_told_otherwise() {
        let mut t = tree(3);
        assert_eq!(t.eager(), &[0, 1, 2]);
        assert!(!t.add_link(at(0), 7, false, &[]));
        assert_eq!(t.lazy(), &[7]);
        // Already in the tree: left as it is.
        assert!(!t.add_link(at(5), 7, true, &[]));
        assert!(!t.is_eager(7));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_new_neighbour_is_told_the_recent_ids_oldest_first() {
        let mut t = Plumtree::new(params());
        let recent = [(id(3), 2), (id(2), 1), (id(1), 0)];
        assert!(t.add_link(at(0), 4, true, &recent));
        assert_eq!(t.pending_announcements().collect::<Vec<_>>(), vec![4]);
        let batch = t.take_batch(4).unwrap();
        assert_eq!(batch, vec![(id(1), 0), (id(2), 1), (id(3), 2)]);
        t.return_batch(4, batch);
        assert_eq!(t.pending_announcements().count(), 0);
    }

    #[test]
    fn lazy_announcements_go_to_at_most_beta_lazy_links_never_the_sender() {
        let mut p = params();
        p.beta = 2;
        let mut t = Plumtree::new(p);
        for k in 0..6 {
            t.add_link(at(0), k, false, &[]);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let done = t.announce(&mut rng, Some(0), id(9), 3);
        assert!(done.queued);
        let pending: Vec<Neighbor> = t.pending_announcements().collect();
        assert_eq!(pending.len(), 2, "β = 2");
        assert!(!pending.contains(&0), "never announced back to the sender");
        for k in pending {
            assert_eq!(t.take_batch(k).unwrap(), vec![(id(9), 3)]);
        }
        // Eager links are pushed to, never announced to.
        let mut e = tree(3);
        assert_eq!(e.announce(&mut rng, None, id(1), 0), Announced::default());
    }

    #[test]
    fn a_full_ihave_batch_counts_an_overflow() {
        let mut p = params();
        p.ihave_batch_max = 1;
        let mut t = Plumtree::new(p);
        t.add_link(at(0), 0, false, &[]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(t.announce(&mut rng, None, id(1), 0).queued);
        let second = t.announce(&mut rng, None, id(2), 0);
        assert!(!second.queued);
        assert_eq!(second.overflow, 1);
    }

    #[test]
    fn a_duplicate_prunes_an_idle_eager_link_but_never_the_last() {
        let mut t = tree(2);
        let now = at(10_000);
        // Link 0 idle for far longer than graft_timeout: redundant at once.
        assert!(t.on_duplicate(now, 0, &id(0)));
        t.prune(now, 0);
        assert_eq!(t.eager(), &[1]);
        assert_eq!(t.link(0).unwrap().pruned_at, Some(now));
        // The last eager link is never pruned.
        assert!(!t.on_duplicate(now, 1, &id(0)));
        // A lazy-on-our-side link that still pushes is one-sided: prune at once.
        assert!(t.on_duplicate(now, 0, &id(0)));
    }

    #[test]
    fn a_busy_eager_link_is_pruned_only_after_a_streak_of_duplicates() {
        let mut t = tree(3);
        let limit = params().prune_after_duplicates;
        let now = at(10_000);
        t.on_first_copy(now, 0);
        for n in 1..limit {
            assert!(
                !t.on_duplicate(now, 0, &id(0)),
                "duplicate {n} of a busy link"
            );
        }
        assert!(t.on_duplicate(now, 0, &id(0)));
        // A first copy resets the streak.
        t.on_first_copy(now, 1);
        assert!(!t.on_duplicate(now, 1, &id(0)));
    }

    #[test]
    fn a_settled_tree_edge_is_pruned_only_after_a_streak_of_duplicates() {
        let mut t = tree(3);
        let limit = params().prune_after_duplicates;
        let hold = params().optimization_hold;
        // Link 0 gave us a first copy long after it became eager and long before the
        // duplicate (not busy by graft_timeout): a settled edge of the tree.
        t.on_first_copy(at(0) + hold, 0);
        let now = at(0) + hold * 3;
        for n in 1..limit {
            assert!(
                !t.on_duplicate(now, 0, &id(0)),
                "duplicate {n} over a settled edge"
            );
        }
        assert!(t.on_duplicate(now, 0, &id(0)), "a streak prunes it");
        // A link that never gave us a first copy is no edge: its first duplicate prunes it.
        assert!(t.on_duplicate(now, 1, &id(0)));
        // Nor is one whose first copy came before it last became eager.
        t.on_first_copy(at(10), 2);
        assert!(t.make_lazy(at(20), 2));
        assert!(t.make_eager(at(30), 2));
        assert!(t.on_duplicate(now, 2, &id(0)));
    }

    #[test]
    fn a_new_link_is_shaped_by_the_first_message_after_it_joined() {
        let mut t = tree(2);
        let window = params().graft_timeout;
        // Both links joined at 0; message 7 is the first this node has since.
        t.on_new_message(at(1_000), id(7));
        t.on_first_copy(at(1_000), 0);
        let during = at(1_000) + window / 2;
        // A duplicate of another message over a link being shaped: busy, not pruned.
        assert!(!t.on_duplicate(during, 1, &id(8)));
        // A duplicate of the shaping message prunes it at once, as in textbook Plumtree.
        assert!(t.on_duplicate(during, 1, &id(7)));
        // After the shaping window the quiet-link rule applies to every message again.
        let mut t = tree(2);
        t.shape_links(at(1_000), id(7));
        assert!(t.on_duplicate(at(1_000) + window, 1, &id(8)));
        // A link that joins later is shaped by the next message, not by the old one.
        assert!(!t.add_link(at(2_000), 5, true, &[]));
        t.shape_links(at(2_100), id(9));
        assert!(!t.on_duplicate(at(2_120), 5, &id(7)));
        assert!(t.on_duplicate(at(2_120), 5, &id(9)));
    }

    #[test]
    fn young_links_and_settled_edges() {
        let mut t = tree(2);
        let hold = params().optimization_hold;
        let now = at(0) + hold * 2;
        // Link 0 gave a first copy after it joined: settled once eager for `hold`.
        t.on_first_copy(at(10), 0);
        let settled = |t: &Plumtree, now, k| t.link(k).unwrap().is_settled_edge(now, hold);
        assert!(settled(&t, now, 0));
        assert!(!settled(&t, at(10), 0), "not eager long enough");
        assert!(!settled(&t, now, 1), "never gave a first copy");
        assert!(!t.is_young_link(now, 0), "joined long ago");
        // A session that joins now is young until `hold` has passed, unless it changed role.
        assert!(!t.add_link(now, 5, true, &[]));
        assert!(t.is_young_link(now, 5));
        assert!(!t.is_young_link(now + hold, 5));
        assert!(t.make_lazy(now, 5));
        assert!(t.make_eager(now + hold / 2, 5));
        assert!(
            !t.is_young_link(now + hold / 2, 5),
            "grafted: a chosen edge"
        );
    }

    #[test]
    fn a_replaced_link_is_pruned_by_its_next_duplicate() {
        let mut t = tree(3);
        let now = at(10_000);
        t.on_first_copy(now, 2);
        assert!(!t.on_duplicate(now, 2, &id(0)), "busy");
        t.mark_replaced(now, 2);
        assert!(
            t.on_duplicate(now, 2, &id(0)),
            "replaced within optimization_hold"
        );
    }

    #[test]
    fn neighbour_down_repairs_the_eager_set_from_lazy_links() {
        let mut p = params();
        p.alpha = 2;
        let mut t = Plumtree::new(p);
        t.add_link(at(0), 0, true, &[]);
        t.add_link(at(0), 1, true, &[]);
        for k in 2..5 {
            t.add_link(at(0), k, false, &[]);
        }
        assert!(t.remove(0), "was eager");
        assert!(!t.remove(0), "gone");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Link 3's peer may not be eager (its score): never promoted.
        assert_eq!(t.refill_eager(at(5), &mut rng, |k| k != 3), 1);
        let Some(PlumtreeOutput::TellEager(promoted)) = t.poll_output() else {
            panic!("the promoted peer is to be told");
        };
        assert_eq!(t.poll_output(), None);
        assert_ne!(promoted, 3);
        assert_eq!(t.eager().len(), 2);
        assert!(t.is_eager(promoted));
        // Nothing to promote: the tree stays short.
        let mut lone = Plumtree::new(p);
        lone.add_link(at(0), 9, false, &[]);
        assert_eq!(lone.refill_eager(at(5), &mut rng, |_| false), 0);
        assert_eq!(lone.poll_output(), None);
    }

    #[test]
    fn a_lower_alpha_demotes_the_newest_eager_links() {
        let mut p = params();
        p.alpha = 4;
        let mut t = Plumtree::new(p);
        for k in 0..4 {
            t.add_link(at(0), k, true, &[]);
        }
        p.alpha = 2;
        t.set_params(p);
        assert_eq!(t.trim_eager(at(1)), vec![3, 2]);
        assert_eq!(t.eager(), &[0, 1]);
    }

    #[test]
    fn a_shortcut_that_saves_hops_on_average_becomes_a_swap() {
        let (mut t, parent) = shortcut_tree();
        let now = at(1_000);
        // Announced with 1 hop, arrived with 5 over the parent: 3 hops saved each time.
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, 0));
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, 0));
        assert!(t.tally_shortcut(now, 1, parent, 1, 5, now, 0));
        assert!(t.swap_ready(now, 1, 0));
        // The tally was cleared by the swap decision.
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, 0));
        // Evidence older than the optimisation window is ignored.
        assert!(!t.tally_shortcut(at(5_000), 1, parent, 1, 9, at(1_000), 0));
        // A shortcut that only heard the message through us shows a loss.
        for _ in 0..10 {
            assert!(!t.tally_shortcut(now, 1, (0, ConnId(11)), 6, 5, now, 0));
        }
    }

    #[test]
    fn a_shortcut_whose_announcements_come_late_is_no_shortcut() {
        let ms = |n: i64| n * 1000;
        // 3 hops saved each time, but the announcements came 20 ms after our copies: the
        // path is shorter in hops and slower in time (the default allowance is 5 ms).
        let (mut t, parent) = shortcut_tree();
        let now = at(1_000);
        for _ in 0..6 {
            assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, ms(20)));
        }
        // On average within the allowance: one late announcement among early ones.
        let (mut t, parent) = shortcut_tree();
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, ms(12)));
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, ms(2)));
        assert!(t.tally_shortcut(now, 1, parent, 1, 5, now, ms(-3)));
        // Announcements that came before our copies are the strongest evidence.
        let (mut t, parent) = shortcut_tree();
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, ms(-40)));
        assert!(!t.tally_shortcut(now, 1, parent, 1, 5, now, ms(-40)));
        assert!(t.tally_shortcut(now, 1, parent, 1, 5, now, ms(-40)));
    }

    /// A tree with eager link 0 (connection 10) and lazy link 1, swaps allowed after 3
    /// samples saving 2 hops.
    fn shortcut_tree() -> (Plumtree, (Neighbor, ConnId)) {
        let mut p = params();
        p.optimization_threshold = 2;
        p.optimization_samples = 3;
        p.optimization_hold = Duration::from_millis(100);
        let mut t = Plumtree::new(p);
        t.add_link(at(0), 0, true, &[]);
        t.add_link(at(0), 1, false, &[]);
        (t, (0, ConnId(10)))
    }

    #[test]
    fn a_shortcut_that_shortens_the_longest_path_becomes_a_swap() {
        let (mut t, parent) = shortcut_tree();
        let now = at(1_000);
        // The eager link leads to a chain: its far end is 6 hops away over the parent and 3
        // through the shortcut (which hangs in the chain's middle); the near end is 1 hop
        // over the parent and 3 through the shortcut. The mean saving (2/3 hop) is below the
        // threshold, but the longest path through the link shrinks by 3.
        assert!(!t.tally_shortcut(now, 1, parent, 2, 6, now, 0));
        assert!(!t.tally_shortcut(now, 1, parent, 2, 1, now, 0));
        assert!(t.tally_shortcut(now, 1, parent, 0, 2, now, 0));
        // The same maxima with a losing mean (the sum of distances would grow): no swap.
        let (mut t, parent) = shortcut_tree();
        assert!(!t.tally_shortcut(now, 1, parent, 2, 6, now, 0));
        for _ in 0..5 {
            assert!(!t.tally_shortcut(now, 1, parent, 2, 1, now, 0));
        }
    }

    #[test]
    fn a_mean_saving_that_lengthens_the_longest_path_is_no_swap() {
        let (mut t, parent) = shortcut_tree();
        let now = at(1_000);
        // Most messages save 3 hops through the shortcut, but the farthest sender behind the
        // parent (4 hops away) is 6 away through it: the tree's longest path would grow.
        assert!(!t.tally_shortcut(now, 1, parent, 5, 4, now, 0));
        for _ in 0..8 {
            assert!(!t.tally_shortcut(now, 1, parent, 0, 4, now, 0));
        }
    }

    #[test]
    fn no_swap_before_both_links_held_their_roles() {
        let mut p = params();
        p.optimization_hold = Duration::from_millis(100);
        let mut t = Plumtree::new(p);
        t.add_link(at(0), 0, true, &[]);
        t.add_link(at(0), 1, false, &[]);
        assert!(!t.swap_ready(at(50), 1, 0));
        assert!(t.swap_ready(at(100), 1, 0));
        assert!(!t.swap_ready(at(100), 0, 1), "roles the wrong way round");
        t.on_new_message(at(200), id(1));
        assert!(!t.unchanged_since(at(150)));
        assert!(t.unchanged_since(at(200)));
    }

    #[test]
    fn graft_hold_follows_the_tree_lateness_up_to_its_cap() {
        let mut t = tree(1);
        assert_eq!(t.graft_hold(), Duration::ZERO);
        // A copy that arrived 30 ms after its announcement, not the one we grafted.
        t.note_announced_arrival(at(130), 0, None, at(100));
        assert_eq!(t.graft_hold(), Duration::from_millis(30));
        // The copy we asked for says nothing about the tree.
        t.note_announced_arrival(at(10_000), 0, Some(0), at(100));
        assert_eq!(t.graft_hold(), Duration::from_millis(30));
        // Far later: capped at graft_timeout_settled − graft_timeout.
        t.note_announced_arrival(at(20_000), 0, None, at(100));
        let p = params();
        assert_eq!(
            t.graft_hold(),
            p.graft_timeout_settled.saturating_sub(p.graft_timeout)
        );
    }

    #[test]
    fn the_tree_is_settled_with_eager_links_and_no_recent_loss() {
        let settle = Duration::from_millis(500);
        let t = tree(1);
        assert!(t.settled(at(100), None, settle));
        assert!(!t.settled(at(100), Some(at(0)), settle));
        assert!(t.settled(at(500), Some(at(0)), settle));
        let empty = Plumtree::new(params());
        assert!(!empty.settled(at(100), None, settle));
    }
}
