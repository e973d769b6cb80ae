//! Membership as its own machine: the passive list, the dials in flight, the choice of whom to
//! dial, reconnect backoff and the shuffle timer and sample.
//!
//! [`Membership`] owns the addresses this node knows but is not connected to (a
//! [`PassiveView`], with jittered exponential backoff per address), its dials in flight with
//! the operator's requests waiting on them, and when the next shuffle is due. It knows
//! nothing of sessions, frames or scores: the [`crate::Node`] tells it what happened (an
//! address learnt, a dial failed or connected, a session lost) and asks it whom to dial and
//! what to send in a SHUFFLE; which peers are connected or banned is the node's answer,
//! passed in as a function. Randomness (evictions, jitter, the dial and sample picks) comes
//! from the generator the caller passes, so the node keeps one seeded stream.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use rand_core::RngCore;

use crate::config::NodeConfig;
use crate::mentions::MentionSketch;
use crate::optimizer::LinkOptimizer;
use crate::passive::{Inserted, KnownPeer, PassiveView};
use crate::peer::{DialId, PeerId};
use crate::plumtree::random_below;
use crate::time::Instant;
use crate::wire::PeerEntry;

/// Consecutive failures after which a learnt (not seed) address is forgotten.
const FORGET_AFTER_FAILURES: u32 = 6;

/// A node with fewer than half its `active_target` sessions whose last
/// `max_concurrent_dials` dials all failed (most of its passive list is dead: a mass failure,
/// a partition) may have this many times as many dials in flight: each dead address costs a
/// round trip or a connect timeout (2 s for a silently dead host), and the few live peers are
/// what bring the node back into the overlay.
pub(crate) const ISOLATED_DIAL_FACTOR: usize = 4;

/// Such a node dials this many addresses per missing session (within its wider limit). Four
/// per missing session reached the survivors sooner still, but left them 2–3 sessions over
/// `active_target` after a 70–90 % kill, where enough of the list was alive.
pub(crate) const DIALS_PER_MISSING_SESSION: usize = 2;

/// The settings the machine uses (from [`NodeConfig`]; fixed for a node's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Sessions the active view aims at.
    pub(crate) active_target: usize,
    /// Dials in flight at once, at most.
    pub(crate) max_concurrent_dials: usize,
    /// Dials in flight at once for a nearly isolated node whose dials keep failing
    /// ([`NodeConfig::max_dials_in_flight`]).
    pub(crate) max_dials_isolated: usize,
    /// First reconnect delay after a failure (doubles per failure).
    pub(crate) backoff_base: Duration,
    /// Longest reconnect delay.
    pub(crate) backoff_max: Duration,
    /// Time between shuffles.
    pub(crate) shuffle_interval: Duration,
}

impl Params {
    /// The machine's settings in `config`.
    pub(crate) fn of(config: &NodeConfig) -> Params {
        Params {
            active_target: config.active_target,
            max_concurrent_dials: config.max_concurrent_dials,
            max_dials_isolated: config.max_dials_in_flight(),
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
            shuffle_interval: config.shuffle_interval,
        }
    }
}

/// What the membership machine asks the node to carry out, in the order it decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MembershipOutput {
    /// Dial `addr` as `dial` (`peer`: who is known to answer there, if anyone).
    Connect {
        /// The dial's id.
        dial: DialId,
        /// Where to.
        addr: SocketAddr,
        /// The peer known to answer there.
        peer: Option<PeerId>,
    },
    /// The dials were abandoned (shutdown): the operator's requests that waited on them, in
    /// dial order, are answered.
    Abandoned {
        /// The requests' tags.
        requests: Vec<u64>,
    },
}

/// The passive list, dials in flight and the shuffle timer of one node.
#[derive(Debug)]
pub(crate) struct Membership {
    params: Params,
    passive: PassiveView,
    /// Dials in flight, with their addresses.
    dials: BTreeMap<DialId, SocketAddr>,
    /// Tags of the operator's `Input::Dial`s waiting for a dial in flight.
    dial_requests: BTreeMap<DialId, Vec<u64>>,
    next_dial: u64,
    next_shuffle: Instant,
    /// Decisions for the node, oldest first.
    outputs: VecDeque<MembershipOutput>,
    /// When each dial in flight started (its connect time measures the round trip).
    dial_started: BTreeMap<DialId, Instant>,
    /// Latency-aware membership: the probe round and the swap rule.
    optimizer: LinkOptimizer,
    /// Dials that failed since one last connected.
    dials_failed_in_a_row: usize,
    /// How often SHUFFLE entries named each peer.
    mentions: MentionSketch,
}

impl Membership {
    /// Nothing known yet; at most `passive_capacity` addresses; the first shuffle is due one
    /// interval after `now`; mention counts hashed with `mention_key`.
    pub(crate) fn new(
        params: Params,
        optimizer: crate::optimizer::Params,
        passive_capacity: usize,
        now: Instant,
        mention_key: [u64; 2],
    ) -> Membership {
        Membership {
            dial_started: BTreeMap::new(),
            optimizer: LinkOptimizer::new(optimizer, now),
            params,
            passive: PassiveView::new(passive_capacity),
            dials: BTreeMap::new(),
            dial_requests: BTreeMap::new(),
            next_dial: 1,
            next_shuffle: now + params.shuffle_interval,
            outputs: VecDeque::new(),
            dials_failed_in_a_row: 0,
            mentions: MentionSketch::new(mention_key),
        }
    }

    /// The latency optimizer (probe rounds).
    pub(crate) fn optimizer(&self) -> &LinkOptimizer {
        &self.optimizer
    }

    /// The latency optimizer, to run a round.
    pub(crate) fn optimizer_mut(&mut self) -> &mut LinkOptimizer {
        &mut self.optimizer
    }

    /// Dial `dial` connected at `now`: the round trip its connect measured (TCP + TLS 1.3 take
    /// two round trips from the connect to the connection being up), if it is in flight.
    pub(crate) fn dial_rtt(&self, dial: DialId, now: Instant) -> Option<Duration> {
        let started = self.dial_started.get(&dial)?;
        Some(now.saturating_duration_since(*started) / 2)
    }

    /// True when `addr` may be probed at `now`: a passive entry for it has had no failure
    /// since its last success and is out of back-off (an address the list does not hold has
    /// no history against it).
    pub(crate) fn probe_ready(&self, now: Instant, addr: &SocketAddr) -> bool {
        self.passive
            .get(addr)
            .is_none_or(|k| k.failures == 0 && k.next_attempt <= now)
    }

    /// A SHUFFLE or SHUFFLE_REPLY entry named `peer`.
    pub(crate) fn note_mention(&mut self, peer: &PeerId) {
        self.mentions.note(peer);
    }

    /// How many SHUFFLE and SHUFFLE_REPLY entries named `peer` (see [`MentionSketch`]).
    pub(crate) fn mentions(&self, peer: &PeerId) -> u32 {
        self.mentions.estimate(peer)
    }

    /// The passive list.
    pub(crate) fn passive(&self) -> &PassiveView {
        &self.passive
    }

    /// Adds or refreshes `addr` (with `peer`, when known; `seed` when configured, discovered
    /// or dialed by the operator). The caller filtered out its own and banned addresses. One
    /// number is drawn from `rng` whatever happens (it picks the entry a full list evicts).
    pub(crate) fn learn(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        peer: Option<PeerId>,
        seed: bool,
        rng: &mut impl RngCore,
    ) -> Inserted {
        let pick = rng.next_u64() as usize;
        self.passive
            .insert(addr, peer, seed, now, |n| pick % n.max(1))
    }

    /// A dial or session to `addr` failed: back off before the next attempt, uniformly in
    /// `[d/2, d)` for `d = backoff_base · 2^(failures − 1)` up to `backoff_max`. A learnt
    /// address is forgotten after more than six failures in a row; a seed never is. One
    /// number is drawn from `rng` whatever happens.
    pub(crate) fn note_failure(&mut self, now: Instant, addr: SocketAddr, rng: &mut impl RngCore) {
        let Params {
            backoff_base: base,
            backoff_max: max,
            ..
        } = self.params;
        let jitter = rng.next_u64();
        let Some(known) = self.passive.get_mut(&addr) else {
            return;
        };
        known.failures = known.failures.saturating_add(1);
        let exp = known.failures.saturating_sub(1).min(20);
        let delay = base.saturating_mul(1u32 << exp).min(max);
        let nanos = delay.as_nanos() as u64;
        let jittered = nanos / 2 + jitter % (nanos / 2).max(1);
        known.next_attempt = now + Duration::from_nanos(jittered);
        if !known.seed && known.failures > FORGET_AFTER_FAILURES {
            self.passive.remove(&addr);
        }
    }

    /// A session to `addr` started: its failures are forgotten.
    pub(crate) fn note_success(&mut self, addr: &SocketAddr) {
        if let Some(known) = self.passive.get_mut(addr) {
            known.failures = 0;
        }
    }

    /// TLS proved that `peer` answers at `addr` (a dial of ours): pin it against hints.
    pub(crate) fn pin(&mut self, addr: &SocketAddr, peer: PeerId) {
        self.passive.pin(addr, peer);
    }

    /// Forgets `addr` (it is our own).
    pub(crate) fn forget(&mut self, addr: &SocketAddr) {
        self.passive.remove(addr);
    }

    /// Dials in flight.
    pub(crate) fn dials_in_flight(&self) -> usize {
        self.dials.len()
    }

    /// How many dials may be in flight while the node has `sessions` sessions:
    /// `max_concurrent_dials`, or [`ISOLATED_DIAL_FACTOR`] times that for a node with fewer
    /// than half its `active_target` whose last `max_concurrent_dials` dials all failed.
    pub(crate) fn dial_limit(&self, sessions: usize) -> usize {
        let base = self.params.max_concurrent_dials;
        if sessions.saturating_mul(2) < self.params.active_target
            && self.dials_failed_in_a_row >= base
        {
            self.params.max_dials_isolated
        } else {
            base
        }
    }

    /// True while no further dial may start ([`Membership::dial_limit`] in flight).
    pub(crate) fn dial_slots_full(&self, sessions: usize) -> bool {
        self.dials.len() >= self.dial_limit(sessions)
    }

    /// A dial of ours connected (`true`) or failed: counts the failures in a row.
    pub(crate) fn note_dial_result(&mut self, connected: bool) {
        self.dials_failed_in_a_row = if connected {
            0
        } else {
            self.dials_failed_in_a_row.saturating_add(1)
        };
    }

    /// True when a dial to `addr` is in flight.
    pub(crate) fn is_dialing(&self, addr: &SocketAddr) -> bool {
        self.dials.values().any(|a| a == addr)
    }

    /// The dial in flight to `addr`, if any.
    pub(crate) fn dial_to(&self, addr: &SocketAddr) -> Option<DialId> {
        self.dials.iter().find(|(_, a)| *a == addr).map(|(d, _)| *d)
    }

    /// Starts a dial to `addr` and returns its id; queues the [`MembershipOutput::Connect`]
    /// (with the peer known to answer there).
    pub(crate) fn start_dial(&mut self, now: Instant, addr: SocketAddr) -> DialId {
        let dial = DialId(self.next_dial);
        self.next_dial += 1;
        let peer = self.passive.get_mut(&addr).and_then(|k| k.peer);
        self.dials.insert(dial, addr);
        self.dial_started.insert(dial, now);
        self.outputs
            .push_back(MembershipOutput::Connect { dial, addr, peer });
        dial
    }

    /// The next decision for the node to carry out, oldest first.
    pub(crate) fn poll_output(&mut self) -> Option<MembershipOutput> {
        self.outputs.pop_front()
    }

    /// The operator's dial `request` waits for `dial`.
    pub(crate) fn wait_for(&mut self, dial: DialId, request: u64) {
        self.dial_requests.entry(dial).or_default().push(request);
    }

    /// Operator requests waiting on dials in flight.
    pub(crate) fn requests_waiting(&self) -> usize {
        self.dial_requests.values().map(Vec::len).sum()
    }

    /// `dial` ended (connected or failed): its address, if it was in flight, and the requests
    /// that waited for it.
    #[must_use]
    pub(crate) fn finish_dial(&mut self, dial: DialId) -> (Option<SocketAddr>, Vec<u64>) {
        let requests = self.dial_requests.remove(&dial).unwrap_or_default();
        self.dial_started.remove(&dial);
        (self.dials.remove(&dial), requests)
    }

    /// Shutdown: every dial is abandoned; queues [`MembershipOutput::Abandoned`] with the
    /// requests that waited, in dial order.
    pub(crate) fn abandon_dials(&mut self) {
        self.dials.clear();
        self.dial_started.clear();
        let requests = std::mem::take(&mut self.dial_requests)
            .into_values()
            .flatten()
            .collect();
        self.outputs
            .push_back(MembershipOutput::Abandoned { requests });
    }

    /// Whom to dial so that `sessions` (running sessions and our dials still handshaking)
    /// plus the dials in flight reach `active_target`, within the free dial slots (a nearly
    /// isolated node whose dials keep failing dials [`DIALS_PER_MISSING_SESSION`] addresses
    /// per missing session instead, within its wider [`Membership::dial_limit`], since most
    /// of what it dials is dead): addresses
    /// out of backoff at `now` that `usable` allows (not connected, not banned), those with
    /// the fewest failures in a row first, picked at random with `rng` among equals.
    #[must_use]
    pub(crate) fn choose_dials(
        &self,
        now: Instant,
        sessions: usize,
        rng: &mut impl RngCore,
        usable: impl Fn(&SocketAddr, &KnownPeer) -> bool,
    ) -> Vec<SocketAddr> {
        let active = sessions + self.dials.len();
        let limit = self.dial_limit(sessions);
        let room = limit.saturating_sub(self.dials.len());
        let want = if limit > self.params.max_concurrent_dials {
            self.params
                .active_target
                .saturating_sub(sessions)
                .saturating_mul(DIALS_PER_MISSING_SESSION)
                .saturating_sub(self.dials.len())
        } else {
            self.params.active_target.saturating_sub(active)
        };
        let n = want.min(room);
        if n == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<(u32, SocketAddr)> = self
            .passive
            .iter()
            .filter(|(_, k)| k.next_attempt <= now)
            .filter(|(a, k)| usable(a, k))
            .map(|(a, k)| (k.failures, *a))
            .collect();
        // Fewest failures first: after a mass failure most of the list is dead, and an
        // address that already failed (out of its short first back-off) must not be drawn
        // again before the ones never tried. Random within a tier; the sort is stable over
        // the list's address order, so the pick stays deterministic.
        candidates.sort_by_key(|(failures, _)| *failures);
        let n = n.min(candidates.len());
        for i in 0..n {
            let tier = candidates[i].0;
            let tier_len = candidates[i..].partition_point(|(f, _)| *f == tier);
            let j = i + random_below(rng, tier_len);
            candidates.swap(i, j);
        }
        candidates.truncate(n);
        candidates.into_iter().map(|(_, a)| a).collect()
    }

    /// True once per `shuffle_interval`: the periodic shuffle is due at `now`.
    pub(crate) fn shuffle_due(&mut self, now: Instant) -> bool {
        if self.next_shuffle > now {
            return false;
        }
        self.next_shuffle = now + self.params.shuffle_interval;
        true
    }

    /// Up to `limit` SHUFFLE entries: `own` (always kept, first), then a uniform sample of
    /// `running` (the connected peers' listen addresses) and of the passive peers with a
    /// known identity and no recent failure.
    pub(crate) fn sample(
        &self,
        own: Option<PeerEntry>,
        running: impl Iterator<Item = PeerEntry>,
        limit: usize,
        rng: &mut impl RngCore,
    ) -> Vec<PeerEntry> {
        let mut pool: Vec<PeerEntry> = own.into_iter().collect();
        let own = pool.len();
        pool.extend(running);
        for (addr, k) in self.passive.iter() {
            if let Some(peer) = k.peer {
                if k.failures == 0 {
                    pool.push(PeerEntry { peer, addr: *addr });
                }
            }
        }
        let rest = pool.len() - own;
        let take = limit.saturating_sub(own).min(rest);
        for i in 0..take {
            let j = own + i + random_below(rng, rest - i);
            pool.swap(own + i, j);
        }
        pool.truncate((own + take).min(limit));
        pool
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn params() -> Params {
        Params {
            active_target: 3,
            max_concurrent_dials: 2,
            max_dials_isolated: 2 * ISOLATED_DIAL_FACTOR,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            shuffle_interval: Duration::from_secs(10),
        }
    }

    fn opt_params() -> crate::optimizer::Params {
        crate::optimizer::Params {
            enabled: true,
            interval: Duration::from_secs(1),
            margin_pct: 30,
            swaps: 8,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 7000)
    }

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(3)
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_learnt_addresses_are_forgotten() {
        let mut m = Membership::new(params(), opt_params(), 16, at(0), [7, 7]);
        let mut rng = rng();
        m.learn(at(0), addr(1), Some(peer(1)), false, &mut rng);
        m.learn(at(0), addr(2), None, true, &mut rng);
        for failures in 1..=6u32 {
            m.note_failure(at(0), addr(1), &mut rng);
            let k = m.passive().iter().find(|(a, _)| **a == addr(1)).unwrap().1;
            let d = (Duration::from_millis(100) * (1 << (failures - 1))).min(params().backoff_max);
            let wait = k.next_attempt - at(0);
            assert!(
                wait >= d / 2 && wait < d,
                "failure {failures}: {wait:?} for {d:?}"
            );
        }
        m.note_failure(at(0), addr(1), &mut rng);
        assert_eq!(
            m.passive().len(),
            1,
            "a learnt address is forgotten after 7 failures"
        );
        for _ in 0..10 {
            m.note_failure(at(0), addr(2), &mut rng);
        }
        assert_eq!(m.passive().len(), 1, "a seed is never forgotten");
        m.note_success(&addr(2));
        assert_eq!(m.passive().iter().next().unwrap().1.failures, 0);
    }

    #[test]
    fn dials_fill_the_active_view_within_the_dial_slots_skipping_backoff_and_unusable() {
        let mut m = Membership::new(params(), opt_params(), 16, at(0), [7, 7]);
        let mut rng = rng();
        for n in 1..=5 {
            m.learn(at(0), addr(n), Some(peer(n)), false, &mut rng);
        }
        m.note_failure(at(0), addr(1), &mut rng);
        // Two of three wanted: two dial slots. Address 2 is connected already.
        let chosen = m.choose_dials(at(0), 0, &mut rng, |a, _| *a != addr(2));
        assert_eq!(chosen.len(), 2);
        assert!(!chosen.contains(&addr(1)), "in backoff");
        assert!(!chosen.contains(&addr(2)), "not usable");
        for a in &chosen {
            let _dial = m.start_dial(at(0), *a);
        }
        assert!(m.dial_slots_full(0));
        assert!(m.choose_dials(at(0), 0, &mut rng, |_, _| true).is_empty());
        // The view is full once sessions + dials reach the target.
        let (done, _) = m.finish_dial(DialId(1));
        assert!(done.is_some());
        assert!(m.choose_dials(at(0), 2, &mut rng, |_, _| true).is_empty());
        assert_eq!(m.choose_dials(at(0), 1, &mut rng, |_, _| true).len(), 1);
    }

    #[test]
    fn an_isolated_node_whose_dials_keep_failing_dials_more_at_once() {
        let mut m = Membership::new(params(), opt_params(), 64, at(0), [7, 7]);
        let mut rng = rng();
        for n in 1..=40 {
            m.learn(at(0), addr(n), Some(peer(n)), false, &mut rng);
        }
        // Two slots (max_concurrent_dials = 2) until two dials in a row failed.
        assert_eq!(m.dial_limit(0), 2);
        m.note_dial_result(false);
        assert_eq!(m.dial_limit(0), 2, "one failure is not a dead list");
        m.note_dial_result(false);
        let wide = 2 * ISOLATED_DIAL_FACTOR;
        assert_eq!(m.dial_limit(0), wide);
        // With no session the node dials two addresses per missing session (6), past
        // active_target (3), within the wider limit (8).
        let chosen = m.choose_dials(at(0), 0, &mut rng, |_, _| true);
        assert_eq!(chosen.len(), 3 * DIALS_PER_MISSING_SESSION);
        for a in &chosen {
            let _dial = m.start_dial(at(0), *a);
        }
        assert!(!m.dial_slots_full(0));
        assert!(m.choose_dials(at(0), 0, &mut rng, |_, _| true).is_empty());
        // With one session of three it is still short of half its view: as wide.
        assert_eq!(m.dial_limit(1), wide);
        // With half its view or more it keeps the usual limit, failures or not.
        assert_eq!(m.dial_limit(2), 2);
        assert!(m.dial_slots_full(2));
        assert!(m.choose_dials(at(0), 2, &mut rng, |_, _| true).is_empty());
        // Two per missing session, less the dials in flight (five once one ended): none
        // more with one session (4 − 5), one more with none (6 − 5).
        let (_, _) = m.finish_dial(DialId(1));
        assert!(m.choose_dials(at(0), 1, &mut rng, |_, _| true).is_empty());
        assert_eq!(m.choose_dials(at(0), 0, &mut rng, |_, _| true).len(), 1);
        // One dial that connects ends it.
        m.note_dial_result(true);
        assert_eq!(m.dial_limit(0), 2);
        assert!(m.choose_dials(at(0), 0, &mut rng, |_, _| true).is_empty());
    }

    #[test]
    fn dials_try_addresses_never_failed_before_those_that_failed() {
        let mut m = Membership::new(params(), opt_params(), 16, at(0), [7, 7]);
        let mut rng = rng();
        for n in 1..=8 {
            m.learn(at(0), addr(n), Some(peer(n)), false, &mut rng);
        }
        // Addresses 1..=5 failed once (a mass failure); their back-off is over by 1 s.
        for n in 1..=5 {
            m.note_failure(at(0), addr(n), &mut rng);
        }
        m.note_failure(at(0), addr(1), &mut rng);
        for round in 0..20 {
            let chosen = m.choose_dials(at(1_000), 0, &mut rng, |_, _| true);
            // Two slots: both go to the three never-failed addresses, whatever the draw.
            assert_eq!(chosen.len(), 2, "round {round}");
            assert!(
                chosen
                    .iter()
                    .all(|a| [addr(6), addr(7), addr(8)].contains(a)),
                "round {round}: {chosen:?}"
            );
        }
        // With the untried ones connected, one failure comes before two.
        let rest = |a: &SocketAddr, _: &KnownPeer| ![addr(6), addr(7), addr(8)].contains(a);
        for round in 0..20 {
            let chosen = m.choose_dials(at(10_000), 0, &mut rng, rest);
            assert_eq!(chosen.len(), 2, "round {round}");
            assert!(!chosen.contains(&addr(1)), "round {round}: {chosen:?}");
        }
    }

    #[test]
    fn a_dial_measures_its_round_trip_and_probes_need_a_clean_record() {
        let mut m = Membership::new(params(), opt_params(), 16, at(0), [7, 7]);
        let mut rng = rng();
        let dial = m.start_dial(at(100), addr(9));
        // TCP + TLS 1.3: two round trips from the connect to the connection being up.
        assert_eq!(m.dial_rtt(dial, at(180)), Some(Duration::from_millis(40)));
        let _ = m.finish_dial(dial);
        assert_eq!(m.dial_rtt(dial, at(180)), None);
        m.learn(at(0), addr(1), Some(peer(1)), false, &mut rng);
        m.learn(at(0), addr(2), None, false, &mut rng);
        m.learn(at(0), addr(3), Some(peer(3)), false, &mut rng);
        m.learn(at(0), addr(4), Some(peer(4)), false, &mut rng);
        m.note_failure(at(0), addr(3), &mut rng);
        // 3 failed since its last success; an address the list does not hold has no history.
        assert!(m.probe_ready(at(10_000), &addr(1)));
        assert!(!m.probe_ready(at(10_000), &addr(3)));
        assert!(m.probe_ready(at(0), &addr(9)));
        m.note_success(&addr(3));
        assert!(
            m.probe_ready(at(10_000), &addr(3)),
            "a success clears the record"
        );
        // SHUFFLE mentions count per peer, whether or not the list holds its address.
        m.note_mention(&peer(1));
        m.note_mention(&peer(1));
        m.note_mention(&peer(9));
        m.forget(&addr(1));
        assert_eq!(m.mentions(&peer(1)), 2);
        assert_eq!(m.mentions(&peer(9)), 1);
        assert_eq!(m.mentions(&peer(8)), 0);
    }

    #[test]
    fn operator_requests_wait_on_their_dial_and_are_handed_back() {
        let mut m = Membership::new(params(), opt_params(), 16, at(0), [7, 7]);
        let dial = m.start_dial(at(0), addr(1));
        assert_eq!(
            m.poll_output(),
            Some(MembershipOutput::Connect {
                dial,
                addr: addr(1),
                peer: None
            })
        );
        assert_eq!(m.dial_to(&addr(1)), Some(dial));
        assert!(m.is_dialing(&addr(1)));
        m.wait_for(dial, 7);
        m.wait_for(dial, 8);
        assert_eq!(m.requests_waiting(), 2);
        assert_eq!(m.finish_dial(dial), (Some(addr(1)), vec![7, 8]));
        assert_eq!(m.finish_dial(dial), (None, vec![]));
        let d2 = m.start_dial(at(0), addr(2));
        m.wait_for(d2, 9);
        m.abandon_dials();
        assert_eq!(m.dials_in_flight(), 0);
        let outputs: Vec<_> = std::iter::from_fn(|| m.poll_output()).collect();
        assert_eq!(
            outputs,
            vec![
                MembershipOutput::Connect {
                    dial: d2,
                    addr: addr(2),
                    peer: None
                },
                MembershipOutput::Abandoned { requests: vec![9] }
            ]
        );
    }

    #[test]
    fn the_shuffle_is_due_once_per_interval_and_its_sample_keeps_our_entry() {
        let mut m = Membership::new(params(), opt_params(), 16, at(0), [7, 7]);
        let mut rng = rng();
        assert!(!m.shuffle_due(at(9_999)));
        assert!(m.shuffle_due(at(10_000)));
        assert!(!m.shuffle_due(at(10_000)));
        for n in 1..=6 {
            m.learn(at(0), addr(n), Some(peer(n)), false, &mut rng);
        }
        m.learn(at(0), addr(7), None, false, &mut rng);
        m.note_failure(at(0), addr(6), &mut rng);
        let own = PeerEntry {
            peer: peer(0),
            addr: addr(100),
        };
        let running = [PeerEntry {
            peer: peer(50),
            addr: addr(50),
        }];
        let sample = m.sample(Some(own), running.iter().copied(), 4, &mut rng);
        assert_eq!(sample.len(), 4);
        assert_eq!(sample[0], own);
        let all = m.sample(Some(own), running.into_iter(), 100, &mut rng);
        // Ours, the running peer, and passive peers 1-5 (7 has no identity, 6 failed).
        assert_eq!(all.len(), 7);
        assert!(!all.iter().any(|e| e.addr == addr(6) || e.addr == addr(7)));
    }
}
