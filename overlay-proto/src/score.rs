//! Peer scoring: a per-peer number that rewards useful work and punishes abuse, in the spirit
//! of gossipsub v1.1 (our own weights and rules).
//!
//! Each peer has a few **components**, plain counters that the node bumps as things happen:
//! first deliveries (the peer gave us a message before anyone else did), invalid messages
//! (bad id or bad origin signature), messages the application's validator rejected, protocol
//! violations, broken promises (a GRAFT the peer
//! never answered), GRAFT / IHAVE / duplicate / SHUFFLE floods. The score is the weighted sum:
//!
//! ```text
//! score = first_delivery_weight × min(first_deliveries, first_delivery_cap)
//!       + Σ penalty_weight(c) × c        (penalty weights are ≤ 0)
//! ```
//!
//! Every `decay_interval` all components are multiplied by `decay_factor`, so old behaviour
//! fades. Three thresholds (`0 ≥ gossip ≥ prune ≥ ban`) give the peer's [`Standing`]: below
//! `gossip_threshold` its IHAVE and GRAFT are ignored, below `prune_threshold` it is kept lazy,
//! below `ban_threshold` the session is closed and its PeerId and addresses are banned for a
//! backoff that doubles with each ban (`ban_base` up to `ban_max`).
//!
//! Everything lives in memory only (amnesia): a restart forgets every score and ban. The book is
//! bounded: connected peers are always tracked; at most `capacity` disconnected peers and
//! banned addresses are remembered (for `retain` after they leave, or until the ban ends).
//! Time is an argument; iteration is over ordered maps, so the output is deterministic.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::peer::PeerId;
use crate::time::Instant;

/// Weights, thresholds and memory of the scoring. Part of [`crate::NodeConfig`]
/// (`[scoring]` in the daemon's TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreConfig {
    /// When false, scores are still computed and shown, but no threshold acts on them.
    pub enabled: bool,
    /// Period of the decay step.
    pub decay_interval: Duration,
    /// Every component is multiplied by this at each decay step (`0 < f < 1`).
    pub decay_factor: f64,
    /// Reward per first delivery (≥ 0).
    pub first_delivery_weight: f64,
    /// First deliveries counted at most (the reward is capped, so it cannot buy much abuse).
    pub first_delivery_cap: f64,
    /// Per message with a bad id or bad origin signature (≤ 0).
    pub invalid_message_weight: f64,
    /// Per protocol violation that closed the session (malformed, oversize, credit, forbidden).
    pub violation_weight: f64,
    /// Per GRAFT sent to the peer after it announced an id, that it never answered.
    pub broken_promise_weight: f64,
    /// Per GRAFT id that was repeated, over the per-frame or per-second limit, not held and
    /// never seen, or sent right after we pruned the peer.
    pub graft_flood_weight: f64,
    /// Per IHAVE id over the per-peer rate or the per-peer share of the missing-id table.
    pub ihave_flood_weight: f64,
    /// Per duplicate message over the per-peer duplicate rate.
    pub duplicate_flood_weight: f64,
    /// Per SHUFFLE over the per-peer rate, or unsolicited SHUFFLE_REPLY.
    pub shuffle_flood_weight: f64,
    /// Per message the application's validator rejected (`ValidationMode::App`) (≤ 0). The
    /// default lets one rejection pass (the application may be stricter than the sender, or
    /// wrong) and bans after a few in a row.
    pub validation_rejected_weight: f64,
    /// Below this, IHAVE and GRAFT from the peer are ignored (≤ 0).
    pub gossip_threshold: f64,
    /// Below this, the peer is moved to lazy and never made eager (≤ `gossip_threshold`).
    pub prune_threshold: f64,
    /// Below this, the session is closed and the peer banned (< `prune_threshold`... or equal).
    pub ban_threshold: f64,
    /// First ban length; doubles with each further ban of the same peer.
    pub ban_base: Duration,
    /// Longest ban.
    pub ban_max: Duration,
    /// How long a disconnected peer's score is remembered.
    pub retain: Duration,
    /// Disconnected peers and banned addresses remembered at most.
    pub capacity: usize,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            enabled: true,
            decay_interval: Duration::from_secs(1),
            decay_factor: 0.9,
            first_delivery_weight: 0.1,
            first_delivery_cap: 100.0,
            invalid_message_weight: -100.0,
            violation_weight: -30.0,
            broken_promise_weight: -2.0,
            graft_flood_weight: -0.5,
            ihave_flood_weight: -0.2,
            duplicate_flood_weight: -0.1,
            shuffle_flood_weight: -5.0,
            validation_rejected_weight: -15.0,
            gossip_threshold: -10.0,
            prune_threshold: -20.0,
            ban_threshold: -50.0,
            ban_base: Duration::from_secs(60),
            ban_max: Duration::from_secs(3600),
            retain: Duration::from_secs(600),
            capacity: 4096,
        }
    }
}

impl ScoreConfig {
    /// Checks ranges and the order of the thresholds; the name of the first bad setting.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let finite_le0 = |v: f64| v.is_finite() && v <= 0.0;
        if self.decay_interval.is_zero() {
            return Err(("scoring.decay_interval", "> 0"));
        }
        if !(self.decay_factor > 0.0 && self.decay_factor < 1.0) {
            return Err(("scoring.decay_factor", "0 < value < 1"));
        }
        if !(self.first_delivery_weight.is_finite() && self.first_delivery_weight >= 0.0) {
            return Err(("scoring.first_delivery_weight", ">= 0"));
        }
        if !(self.first_delivery_cap.is_finite() && self.first_delivery_cap >= 0.0) {
            return Err(("scoring.first_delivery_cap", ">= 0"));
        }
        for (name, w) in [
            (
                "scoring.invalid_message_weight",
                self.invalid_message_weight,
            ),
            ("scoring.violation_weight", self.violation_weight),
            ("scoring.broken_promise_weight", self.broken_promise_weight),
            ("scoring.graft_flood_weight", self.graft_flood_weight),
            ("scoring.ihave_flood_weight", self.ihave_flood_weight),
            (
                "scoring.duplicate_flood_weight",
                self.duplicate_flood_weight,
            ),
            ("scoring.shuffle_flood_weight", self.shuffle_flood_weight),
            (
                "scoring.validation_rejected_weight",
                self.validation_rejected_weight,
            ),
        ] {
            if !finite_le0(w) {
                return Err((name, "<= 0"));
            }
        }
        if !(finite_le0(self.gossip_threshold)
            && self.prune_threshold <= self.gossip_threshold
            && self.ban_threshold <= self.prune_threshold
            && self.ban_threshold < 0.0
            && self.ban_threshold.is_finite())
        {
            return Err((
                "scoring.ban_threshold",
                "ban_threshold <= prune_threshold <= gossip_threshold <= 0, ban_threshold < 0",
            ));
        }
        if self.ban_base.is_zero() || self.ban_max < self.ban_base {
            return Err(("scoring.ban_max", "0 < ban_base <= ban_max"));
        }
        if self.capacity == 0 {
            return Err(("scoring.capacity", ">= 1"));
        }
        Ok(())
    }
}

/// Something a peer did that lowers its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Penalty {
    /// A message whose id does not match its content, or whose origin signature is bad.
    InvalidMessage,
    /// A protocol violation that closed the session.
    Violation,
    /// A GRAFT the peer never answered.
    BrokenPromise,
    /// GRAFT abuse (repeated, excess, unknown ids, GRAFT right after PRUNE).
    GraftFlood,
    /// IHAVE ids over the per-peer rate or share.
    IhaveFlood,
    /// Duplicates over the per-peer rate.
    DuplicateFlood,
    /// SHUFFLE over the per-peer rate, or unsolicited SHUFFLE_REPLY.
    ShuffleFlood,
    /// A message the application's validator rejected.
    ValidationRejected,
}

impl Penalty {
    /// Number of variants.
    pub const COUNT: usize = 8;
    /// Every variant, in counter order.
    pub const ALL: [Penalty; Self::COUNT] = [
        Penalty::InvalidMessage,
        Penalty::Violation,
        Penalty::BrokenPromise,
        Penalty::GraftFlood,
        Penalty::IhaveFlood,
        Penalty::DuplicateFlood,
        Penalty::ShuffleFlood,
        Penalty::ValidationRejected,
    ];

    /// The metrics label (`overlay_score_penalties_total{component}`).
    pub fn label(self) -> &'static str {
        match self {
            Penalty::InvalidMessage => "invalid_message",
            Penalty::Violation => "violation",
            Penalty::BrokenPromise => "broken_promise",
            Penalty::GraftFlood => "graft_flood",
            Penalty::IhaveFlood => "ihave_flood",
            Penalty::DuplicateFlood => "duplicate_flood",
            Penalty::ShuffleFlood => "shuffle_flood",
            Penalty::ValidationRejected => "validation_rejected",
        }
    }

    fn weight(self, cfg: &ScoreConfig) -> f64 {
        match self {
            Penalty::InvalidMessage => cfg.invalid_message_weight,
            Penalty::Violation => cfg.violation_weight,
            Penalty::BrokenPromise => cfg.broken_promise_weight,
            Penalty::GraftFlood => cfg.graft_flood_weight,
            Penalty::IhaveFlood => cfg.ihave_flood_weight,
            Penalty::DuplicateFlood => cfg.duplicate_flood_weight,
            Penalty::ShuffleFlood => cfg.shuffle_flood_weight,
            Penalty::ValidationRejected => cfg.validation_rejected_weight,
        }
    }
}

/// The decaying counters behind a score.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ScoreComponents {
    /// First deliveries (uncapped count; the reward uses at most `first_delivery_cap`).
    pub first_deliveries: f64,
    /// Counts by [`Penalty`], in [`Penalty::ALL`] order.
    pub penalties: [f64; Penalty::COUNT],
}

impl ScoreComponents {
    /// The weighted sum.
    pub fn score(&self, cfg: &ScoreConfig) -> f64 {
        let mut s = cfg.first_delivery_weight * self.first_deliveries.min(cfg.first_delivery_cap);
        for (p, c) in Penalty::ALL.iter().zip(self.penalties.iter()) {
            s += p.weight(cfg) * c;
        }
        s
    }

    /// The count of one penalty.
    pub fn penalty(&self, p: Penalty) -> f64 {
        self.penalties.get(p as usize).copied().unwrap_or(0.0)
    }

    fn decay(&mut self, factor: f64) {
        // Below this a counter is noise: snap it to zero so idle entries become clean.
        const FLOOR: f64 = 0.01;
        let snap = |v: f64| if v < FLOOR { 0.0 } else { v };
        self.first_deliveries = snap(self.first_deliveries * factor);
        for c in &mut self.penalties {
            *c = snap(*c * factor);
        }
    }
}

/// What the score allows the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Standing {
    /// No restriction.
    Good,
    /// IHAVE and GRAFT are ignored.
    NoControl,
    /// Also kept lazy.
    Lazy,
    /// Close and ban.
    Ban,
}

/// One peer's score, as shown to operators (`/v1/peers`, `peers()`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PeerScore {
    /// The weighted score.
    pub score: f64,
    /// What it allows.
    pub standing: Standing,
    /// The counters behind it.
    pub components: ScoreComponents,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    components: ScoreComponents,
    /// What a reconfiguration kept of the score: the score under the old weights minus the
    /// score of the same components under the new ones. Added to the weighted sum and decayed
    /// like the components, so a score keeps its value when the weights change and the new
    /// weights act on what happens from then on.
    carry: f64,
    /// Sessions with this peer now.
    connected: u32,
    /// When the last session ended.
    left_at: Instant,
    /// Bans so far (for the backoff).
    bans: u32,
    banned_until: Option<Instant>,
}

impl Entry {
    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| t > now)
    }

    fn score(&self, cfg: &ScoreConfig) -> f64 {
        self.components.score(cfg) + self.carry
    }
}

/// Scores and bans of every peer the node knows about.
#[derive(Debug)]
pub struct ScoreBook {
    cfg: ScoreConfig,
    peers: BTreeMap<PeerId, Entry>,
    banned_addrs: BTreeMap<SocketAddr, Instant>,
    next_decay: Instant,
    /// When the last ban was pronounced.
    last_ban_at: Option<Instant>,
}

impl ScoreBook {
    /// An empty book.
    pub fn new(cfg: ScoreConfig, now: Instant) -> Self {
        let next_decay = now + cfg.decay_interval;
        ScoreBook {
            cfg,
            peers: BTreeMap::new(),
            banned_addrs: BTreeMap::new(),
            next_decay,
            last_ban_at: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ScoreConfig {
        &self.cfg
    }

    fn entry(&mut self, peer: PeerId) -> &mut Entry {
        if !self.peers.contains_key(&peer) {
            self.make_room();
        }
        self.peers.entry(peer).or_default()
    }

    /// Keeps the disconnected entries within `capacity`: forgets the clean ones first, then
    /// the least recently left.
    fn make_room(&mut self) {
        let idle = self.peers.values().filter(|e| e.connected == 0).count();
        if idle < self.cfg.capacity {
            return;
        }
        let victim = self
            .peers
            .iter()
            .filter(|(_, e)| e.connected == 0)
            .min_by_key(|(_, e)| (e.banned_until.is_some(), e.left_at))
            .map(|(p, _)| *p);
        if let Some(p) = victim {
            self.peers.remove(&p);
        }
    }

    /// A session with `peer` started.
    pub fn connected(&mut self, peer: PeerId) {
        let e = self.entry(peer);
        e.connected = e.connected.saturating_add(1);
    }

    /// A session with `peer` ended.
    pub fn disconnected(&mut self, peer: PeerId, now: Instant) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.connected = e.connected.saturating_sub(1);
            e.left_at = now;
        }
    }

    /// The peer gave us a message first.
    pub fn first_delivery(&mut self, peer: PeerId) {
        let e = self.entry(peer);
        e.components.first_deliveries += 1.0;
    }

    /// Records `n` occurrences of `penalty`; returns the peer's new standing.
    pub fn penalize(&mut self, peer: PeerId, penalty: Penalty, n: u32) -> Standing {
        let e = self.entry(peer);
        if let Some(c) = e.components.penalties.get_mut(penalty as usize) {
            *c += f64::from(n);
        }
        self.standing(&peer)
    }

    /// The peer's score (0 for an unknown peer).
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map_or(0.0, |e| e.score(&self.cfg))
    }

    /// Puts new weights, thresholds and timers in force at `now` (a live reconfiguration).
    ///
    /// Every score keeps its value: the difference between its value under the old weights
    /// and under the new ones is carried and decays like the components, and the new weights
    /// apply to what peers do from now on. The new thresholds apply at once (the caller
    /// re-checks the standings); bans already running keep their end; a new decay interval
    /// starts at `now`. A smaller `capacity` takes effect as entries are added.
    pub fn reconfigure(&mut self, cfg: ScoreConfig, now: Instant) {
        for e in self.peers.values_mut() {
            let before = e.score(&self.cfg);
            e.carry = before - e.components.score(&cfg);
        }
        if cfg.decay_interval != self.cfg.decay_interval {
            self.next_decay = now + cfg.decay_interval;
        }
        self.cfg = cfg;
    }

    /// What the score allows the peer (always `Good` when scoring is disabled).
    pub fn standing(&self, peer: &PeerId) -> Standing {
        if !self.cfg.enabled {
            return Standing::Good;
        }
        let s = self.score(peer);
        if s < self.cfg.ban_threshold {
            Standing::Ban
        } else if s < self.cfg.prune_threshold {
            Standing::Lazy
        } else if s < self.cfg.gossip_threshold {
            Standing::NoControl
        } else {
            Standing::Good
        }
    }

    /// The operator's view of one peer.
    pub fn view(&self, peer: &PeerId) -> PeerScore {
        let entry = self.peers.get(peer);
        let components = entry.map(|e| e.components).unwrap_or_default();
        PeerScore {
            score: entry.map_or(0.0, |e| e.score(&self.cfg)),
            standing: self.standing(peer),
            components,
        }
    }

    /// First deliveries counted for the peer (decayed).
    pub fn first_deliveries(&self, peer: &PeerId) -> f64 {
        self.peers
            .get(peer)
            .map_or(0.0, |e| e.components.first_deliveries)
    }

    /// When the last ban was pronounced (None: never).
    pub fn last_ban_at(&self) -> Option<Instant> {
        self.last_ban_at
    }

    /// Bans `peer` and `addrs` until `now` + the backoff; returns the ban length.
    pub fn ban(&mut self, peer: PeerId, addrs: &[SocketAddr], now: Instant) -> Duration {
        self.last_ban_at = Some(now);
        let (base, max) = (self.cfg.ban_base, self.cfg.ban_max);
        let e = self.entry(peer);
        let exp = e.bans.min(20);
        e.bans = e.bans.saturating_add(1);
        let length = base.saturating_mul(1u32 << exp).min(max);
        let until = now + length;
        e.banned_until = Some(until);
        for addr in addrs {
            if self.banned_addrs.len() >= self.cfg.capacity && !self.banned_addrs.contains_key(addr)
            {
                // Full: forget the ban that ends first.
                let first = self
                    .banned_addrs
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(a, _)| *a);
                if let Some(a) = first {
                    self.banned_addrs.remove(&a);
                }
            }
            self.banned_addrs.insert(*addr, until);
        }
        length
    }

    /// True while `peer` is banned.
    pub fn is_peer_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers.get(peer).is_some_and(|e| e.banned(now))
    }

    /// True while `addr` is banned.
    pub fn is_addr_banned(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.banned_addrs.get(addr).is_some_and(|t| *t > now)
    }

    /// Peers banned now.
    pub fn bans_active(&self, now: Instant) -> usize {
        self.peers.values().filter(|e| e.banned(now)).count()
    }

    /// When [`ScoreBook::on_tick`] next has work.
    pub fn next_decay(&self) -> Instant {
        self.next_decay
    }

    /// Applies every decay step due by `now`, forgets what is no longer needed.
    pub fn on_tick(&mut self, now: Instant) {
        let mut steps = 0u32;
        while self.next_decay <= now {
            self.next_decay += self.cfg.decay_interval;
            steps += 1;
            if steps >= 64 {
                // Long gap: 0.9^64 is already ~0.001; jump ahead.
                self.next_decay = now + self.cfg.decay_interval;
                break;
            }
        }
        if steps == 0 {
            return;
        }
        let mut factor = 1.0;
        for _ in 0..steps {
            factor *= self.cfg.decay_factor;
        }
        let retain = self.cfg.retain;
        for e in self.peers.values_mut() {
            e.components.decay(factor);
            e.carry = decay_carry(e.carry, factor);
            if e.banned_until.is_some_and(|t| t <= now) {
                e.banned_until = None;
            }
        }
        self.peers
            .retain(|_, e| e.connected > 0 || e.banned_until.is_some() || now - e.left_at < retain);
        self.banned_addrs.retain(|_, t| *t > now);
    }
}

/// A reconfiguration's carry after a decay step (snapped to zero when it is noise, like the
/// components).
fn decay_carry(carry: f64, factor: f64) -> f64 {
    let next = carry * factor;
    if next.abs() < 0.01 {
        0.0
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn defaults_are_valid_and_bad_orders_are_named() {
        assert_eq!(ScoreConfig::default().check(), Ok(()));
        let bad = ScoreConfig {
            prune_threshold: -5.0,
            ..ScoreConfig::default()
        };
        assert_eq!(bad.check().map_err(|e| e.0), Err("scoring.ban_threshold"));
        let bad = ScoreConfig {
            graft_flood_weight: 1.0,
            ..ScoreConfig::default()
        };
        assert_eq!(
            bad.check().map_err(|e| e.0),
            Err("scoring.graft_flood_weight")
        );
    }

    #[test]
    fn standing_follows_the_thresholds() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(1);
        book.connected(p);
        assert_eq!(book.standing(&p), Standing::Good);
        // 60 ids × -0.2 = -12: below gossip (-10).
        assert_eq!(
            book.penalize(p, Penalty::IhaveFlood, 60),
            Standing::NoControl
        );
        // 2 broken promises more: -16; 3 more: -22 (below prune, -20).
        assert_eq!(book.penalize(p, Penalty::BrokenPromise, 5), Standing::Lazy);
        assert_eq!(book.penalize(p, Penalty::Violation, 1), Standing::Ban);
        let view = book.view(&p);
        assert_eq!(view.standing, Standing::Ban);
        assert!((view.score - (-12.0 - 10.0 - 30.0)).abs() < 1e-9);
        assert_eq!(view.components.penalty(Penalty::IhaveFlood), 60.0);
    }

    #[test]
    fn one_validation_rejection_does_not_ban_and_a_few_in_a_row_do() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(9);
        book.connected(p);
        // -15: IHAVE/GRAFT ignored for a while, still eager, not banned.
        assert_eq!(
            book.penalize(p, Penalty::ValidationRejected, 1),
            Standing::NoControl
        );
        // One a second: -15, -28.5 (lazy), -40.65, then -51.6: banned at the fourth.
        let mut standings = Vec::new();
        for s in 1..=3 {
            book.on_tick(at(s));
            standings.push(book.penalize(p, Penalty::ValidationRejected, 1));
        }
        assert_eq!(standings, [Standing::Lazy, Standing::Lazy, Standing::Ban]);
        // One rejection now and then never adds up to a ban: one every 10 s peaks at
        // 15 / (1 - 0.9^10) ≈ 23.
        let q = peer(10);
        book.connected(q);
        for s in 0..30 {
            let standing = book.penalize(q, Penalty::ValidationRejected, 1);
            assert_ne!(standing, Standing::Ban, "after {s} rejections");
            book.on_tick(at(4 + 10 * (s + 1)));
        }
        assert_eq!(Penalty::ValidationRejected.label(), "validation_rejected");
        let bad = ScoreConfig {
            validation_rejected_weight: 0.5,
            ..ScoreConfig::default()
        };
        assert_eq!(
            bad.check().map_err(|e| e.0),
            Err("scoring.validation_rejected_weight")
        );
    }

    #[test]
    fn first_deliveries_are_capped() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(2);
        for _ in 0..1000 {
            book.first_delivery(p);
        }
        assert!((book.score(&p) - 10.0).abs() < 1e-9);
        // A capped reward does not outweigh one violation.
        book.penalize(p, Penalty::Violation, 1);
        assert!(book.score(&p) < 0.0);
    }

    #[test]
    fn components_decay_over_time() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(3);
        book.connected(p);
        book.penalize(p, Penalty::GraftFlood, 100);
        assert!((book.score(&p) + 50.0).abs() < 1e-9);
        book.on_tick(at(1));
        assert!((book.score(&p) + 45.0).abs() < 1e-9);
        book.on_tick(at(30));
        assert!(book.score(&p) > -3.0, "{}", book.score(&p));
        book.on_tick(at(200));
        assert_eq!(book.score(&p), 0.0);
    }

    #[test]
    fn bans_back_off_and_expire() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(4);
        let addr: SocketAddr = "10.0.0.1:9415".parse().unwrap();
        assert_eq!(book.ban(p, &[addr], at(0)), Duration::from_secs(60));
        assert!(book.is_peer_banned(&p, at(59)));
        assert!(book.is_addr_banned(&addr, at(59)));
        assert!(!book.is_peer_banned(&p, at(60)));
        book.on_tick(at(61));
        assert!(!book.is_addr_banned(&addr, at(61)));
        assert_eq!(book.ban(p, &[addr], at(61)), Duration::from_secs(120));
        for _ in 0..10 {
            book.ban(p, &[], at(61));
        }
        assert_eq!(book.ban(p, &[], at(61)), Duration::from_secs(3600));
        assert_eq!(book.bans_active(at(62)), 1);
    }

    #[test]
    fn the_book_remembers_when_it_last_banned() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        assert_eq!(book.last_ban_at(), None);
        let _ = book.ban(peer(4), &[], at(5));
        let _ = book.ban(peer(5), &[], at(9));
        assert_eq!(book.last_ban_at(), Some(at(9)));
    }

    #[test]
    fn disabled_scoring_never_acts() {
        let cfg = ScoreConfig {
            enabled: false,
            ..ScoreConfig::default()
        };
        let mut book = ScoreBook::new(cfg, at(0));
        let p = peer(5);
        assert_eq!(
            book.penalize(p, Penalty::InvalidMessage, 10),
            Standing::Good
        );
        assert!(book.score(&p) < -100.0);
    }

    #[test]
    fn the_book_is_bounded_and_remembers_leavers_for_a_while() {
        let cfg = ScoreConfig {
            capacity: 4,
            ..ScoreConfig::default()
        };
        let mut book = ScoreBook::new(cfg, at(0));
        for n in 0..10 {
            let p = peer(n);
            book.connected(p);
            book.penalize(p, Penalty::BrokenPromise, 1);
            book.disconnected(p, at(u64::from(n)));
        }
        assert!(book.peers.len() <= 5, "{}", book.peers.len());
        // The most recent leaver is still remembered.
        assert!(book.score(&peer(9)) < 0.0);
        book.on_tick(at(10_000));
        assert!(book.peers.is_empty());
    }

    #[test]
    fn reconfigured_weights_keep_scores_and_apply_from_now_on() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(6);
        book.connected(p);
        // 10 × -2.0 = -20 under the default weight.
        book.penalize(p, Penalty::BrokenPromise, 10);
        assert!((book.score(&p) + 20.0).abs() < 1e-9);
        let harsher = ScoreConfig {
            broken_promise_weight: -5.0,
            ban_threshold: -60.0,
            ..ScoreConfig::default()
        };
        book.reconfigure(harsher.clone(), at(0));
        assert_eq!(book.config(), &harsher);
        // The score keeps its value ...
        assert!((book.score(&p) + 20.0).abs() < 1e-9, "{}", book.score(&p));
        assert!((book.view(&p).score + 20.0).abs() < 1e-9);
        // ... and the next broken promise costs the new weight.
        book.penalize(p, Penalty::BrokenPromise, 1);
        assert!((book.score(&p) + 25.0).abs() < 1e-9, "{}", book.score(&p));
        // Carry and components decay together: one step of 0.9.
        book.on_tick(at(1));
        assert!((book.score(&p) + 22.5).abs() < 1e-9, "{}", book.score(&p));
        // Decayed to nothing eventually, carry included.
        book.on_tick(at(100));
        book.on_tick(at(200));
        assert_eq!(book.score(&p), 0.0);
    }

    #[test]
    fn reconfigured_thresholds_apply_at_once() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let p = peer(7);
        book.connected(p);
        book.penalize(p, Penalty::BrokenPromise, 6);
        assert_eq!(book.standing(&p), Standing::NoControl);
        let stricter = ScoreConfig {
            gossip_threshold: -5.0,
            prune_threshold: -8.0,
            ban_threshold: -10.0,
            ..ScoreConfig::default()
        };
        book.reconfigure(stricter, at(0));
        assert_eq!(book.standing(&p), Standing::Ban);
    }

    #[test]
    fn a_new_decay_interval_starts_now() {
        let mut book = ScoreBook::new(ScoreConfig::default(), at(0));
        let slower = ScoreConfig {
            decay_interval: Duration::from_secs(10),
            ..ScoreConfig::default()
        };
        book.reconfigure(slower, at(3));
        assert_eq!(book.next_decay(), at(13));
    }
}
