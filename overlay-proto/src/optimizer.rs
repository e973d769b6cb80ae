//! Latency-aware membership (after X-BOT, the companion of HyParView and Plumtree): bias the
//! active view toward short links, so that the one gossip tree every sender shares is built
//! over short links.
//!
//! [`LinkOptimizer`] runs rounds. A round is due `interval` after the previous one ended; it
//! asks a running peer for its running peers and dials one of them (a *probe*; the node
//! chooses whom to ask and which entry, see `node::optimize`), or gives up when no answer
//! comes within [`ASK_DEADLINE`]. The dial itself measures the
//! candidate: TCP plus TLS 1.3 take two round trips from the connect to the connection being
//! up, so half that time is the candidate's round-trip time (a peer cannot answer a TLS
//! handshake before it sees our ClientHello, so it cannot look faster than its link is). When
//! the candidate is at least `margin_pct` % faster than the slowest *droppable* link (a link
//! the node may give up; the node decides which, see `Node::droppable_links`), the probe
//! becomes a session and the slow link is closed (`CloseReason::Optimized`); otherwise the
//! probe is closed before its handshake. A link with no round-trip estimate is never compared:
//! no estimate, no decision.
//!
//! Churn is bounded: one probe at a time, at most one swap per round, and every round that
//! swaps nothing doubles the wait before the next (up to [`MAX_BACKOFF_ROUNDS`] intervals), so
//! a node whose links are already short stops probing. The swap budget is a burst spent while
//! the node joins: within [`BURST_ROUNDS`] intervals of its start (the wait then doubles up to
//! 4 intervals only), after which what is left is forfeited and one swap comes back per
//! [`REFILL_PERIOD`], so no burst swap reshapes a gossip tree that has formed since. The machine knows nothing of sessions
//! or trees; it holds the round's state and the decision rule, and draws no randomness (the
//! node picks the candidate with its seeded generator).

use core::net::SocketAddr;
use core::time::Duration;

use crate::peer::DialId;
use crate::time::Instant;

/// A round that swaps nothing doubles the wait, up to this many intervals (a power of two).
pub(crate) const MAX_BACKOFF_ROUNDS: u32 = 64;

/// One spent swap comes back after this long: a node swaps its burst while it joins, then
/// about one link per refill period, so a settled overlay keeps its tree.
pub(crate) const REFILL_PERIOD: Duration = Duration::from_secs(300);

/// The burst is spent within this many intervals of the node's start (10 s at the default
/// 250 ms): what is left of it then is forfeited and the budget starts refilling. A node
/// whose rounds had backed off would otherwise spend its burst late, after the gossip tree
/// formed, and every such swap reshapes the tree (the peer that lost the link refills its
/// view with a new link, eager at first).
pub(crate) const BURST_ROUNDS: u32 = 40;

/// Within the burst a round that swaps nothing doubles the wait only up to this many
/// intervals, so that the burst is spent in time.
const BURST_MAX_BACKOFF_ROUNDS: u32 = 4;

/// A swap must shorten the round trip by at least this much, whatever the margin: on a LAN
/// or loopback, where every link takes well under a millisecond, the relative differences are
/// noise (scheduling, TLS work) and a swap would only churn the tree.
pub(crate) const MIN_RTT_SAVING: Duration = Duration::from_millis(5);

/// A request for a running peer's running peers (the round's candidates) that has no answer
/// by then is given up: the round ends without a probe and the next one asks another peer.
const ASK_DEADLINE: Duration = Duration::from_secs(1);

/// A probe whose connection is neither up nor failed by then is given up (the driver's connect
/// and handshake deadlines end it well before).
const PROBE_DEADLINE: Duration = Duration::from_secs(15);

/// The optimizer's settings (from [`crate::NodeConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Rounds run at all (`link_optimization`).
    pub(crate) enabled: bool,
    /// Shortest time between rounds (`link_optimization_interval`).
    pub(crate) interval: Duration,
    /// How much faster, in percent of the slowest droppable link's round trip, a candidate
    /// must be (`link_optimization_margin_pct`).
    pub(crate) margin_pct: u8,
    /// Swaps a node may make in a burst (`link_optimization_swaps`); one comes back every
    /// [`REFILL_PERIOD`], and no round runs while none is left.
    pub(crate) swaps: u32,
}

impl Params {
    /// The settings in `config`.
    pub(crate) fn of(config: &crate::NodeConfig) -> Params {
        Params {
            enabled: config.link_optimization,
            interval: config.link_optimization_interval,
            margin_pct: config.link_optimization_margin_pct,
            swaps: config.link_optimization_swaps,
        }
    }
}

/// The probe of the current round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    dial: DialId,
    addr: SocketAddr,
    started: Instant,
    /// The candidate's round trip, once its connection is up and it was kept.
    rtt: Option<Duration>,
}

/// What to do with a probe whose connection just came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Not the current probe: an ordinary dial.
    NotProbe,
    /// Clearly faster than the slowest droppable link: run the handshake; the swap is made
    /// when the session runs.
    Keep,
    /// Not clearly faster (or nothing to compare with): close it before the handshake.
    Reject,
}

/// One node's latency optimizer: the round timer, the probe in flight and the swap rule.
#[derive(Debug)]
pub(crate) struct LinkOptimizer {
    params: Params,
    next_round: Instant,
    /// Rounds in a row that swapped nothing (the wait doubles per round, capped).
    idle_rounds: u32,
    probe: Option<Probe>,
    /// When the round asked a running peer for its running peers, while the answer is awaited.
    asked: Option<Instant>,
    /// Swaps left in the budget.
    swaps_left: u32,
    /// When the next spent swap comes back.
    refill_at: Instant,
    /// End of the burst: what is left of it then is forfeited.
    burst_until: Instant,
    /// The burst ended (its rest was forfeited).
    burst_over: bool,
}

impl LinkOptimizer {
    /// The first round is due one interval after `now`.
    pub(crate) fn new(params: Params, now: Instant) -> LinkOptimizer {
        LinkOptimizer {
            params,
            next_round: now + params.interval,
            idle_rounds: 0,
            probe: None,
            asked: None,
            swaps_left: params.swaps,
            refill_at: now,
            burst_until: now + params.interval.saturating_mul(BURST_ROUNDS),
            burst_over: false,
        }
    }

    /// The node starts at `now` (its first input, which may come long after the clock's
    /// epoch, e.g. a node restarted in a simulation): the first round, the budget and the
    /// burst are counted from there.
    pub(crate) fn anchor(&mut self, now: Instant) {
        *self = LinkOptimizer::new(self.params, now);
    }

    fn refill_period(&self) -> Duration {
        REFILL_PERIOD
    }

    /// Applies the swaps that came back by `now`; at the end of the burst, forfeits what is
    /// left of it (the first swap comes back one refill period later).
    fn settle(&mut self, now: Instant) {
        let period = self.refill_period();
        if !self.burst_over && now >= self.burst_until {
            self.burst_over = true;
            self.swaps_left = 0;
            self.refill_at = self.refill_at.max(self.burst_until + period);
        }
        while self.swaps_left < self.params.swaps && self.refill_at <= now {
            self.swaps_left += 1;
            self.refill_at += period;
        }
    }

    /// Swaps left in the budget (as of the last round).
    #[cfg(test)]
    pub(crate) fn swaps_left(&self) -> u32 {
        self.swaps_left
    }

    /// Spends one swap of the budget at `now`.
    fn spend(&mut self, now: Instant) {
        self.settle(now);
        if self.swaps_left >= self.params.swaps {
            self.refill_at = now + self.refill_period();
        }
        self.swaps_left = self.swaps_left.saturating_sub(1);
    }

    /// True when a round should start at `now`: enabled, no request or probe in flight, timer
    /// expired and a swap left in the budget.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        self.settle(now);
        self.params.enabled
            && self.probe.is_none()
            && self.asked.is_none()
            && self.next_round <= now
            && self.swaps_left > 0
    }

    /// The round asked a running peer for its running peers at `now`; its probe is drawn from
    /// the answer.
    pub(crate) fn start_ask(&mut self, now: Instant) {
        self.asked = Some(now);
    }

    /// True while a request sent at `asked` is awaited at `now` (before [`ASK_DEADLINE`]).
    pub(crate) fn awaits(asked: Instant, now: Instant) -> bool {
        now.saturating_duration_since(asked) < ASK_DEADLINE
    }

    /// The answer to the request sent at `asked` came: true when the round is waiting for
    /// that request (it may now dial its probe); false for an answer to a request the round
    /// gave up on.
    pub(crate) fn take_answer(&mut self, asked: Instant) -> bool {
        if self.asked == Some(asked) {
            self.asked = None;
            true
        } else {
            false
        }
    }

    /// The round found nothing to do (no link with a known round trip, no candidate): try
    /// again one interval later, without backing off.
    pub(crate) fn skip(&mut self, now: Instant) {
        self.next_round = now + self.params.interval;
    }

    /// The round dials `addr` (dial `dial`) as its probe.
    pub(crate) fn start_probe(&mut self, now: Instant, dial: DialId, addr: SocketAddr) {
        self.probe = Some(Probe {
            dial,
            addr,
            started: now,
            rtt: None,
        });
    }

    /// The dial of the probe in flight, if any.
    pub(crate) fn probe_dial(&self) -> Option<DialId> {
        self.probe.map(|p| p.dial)
    }

    /// The address the probe dials, if any.
    pub(crate) fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe.map(|p| p.addr)
    }

    /// True when `candidate` is at least `margin_pct` % faster than `worst`, and at least
    /// [`MIN_RTT_SAVING`] faster.
    pub(crate) fn clearly_faster(&self, candidate: Duration, worst: Duration) -> bool {
        let margin = u128::from(self.params.margin_pct.min(99));
        candidate.as_nanos() * 100 <= worst.as_nanos() * (100 - margin)
            && worst.saturating_sub(candidate) >= MIN_RTT_SAVING
    }

    /// The link a kept probe of round trip `rtt`, whose peer SHUFFLE entries named
    /// `probe_named` times, replaces, of `links` (key, how many SHUFFLE entries named its
    /// peer, round trip): of those it is clearly faster than and named at least as often as
    /// the probe (a flooded candidate never replaces a quiet peer), the most named (what a
    /// flood pushes), then the slowest, then the lowest key.
    pub(crate) fn link_to_replace<K: Ord + Copy>(
        &self,
        rtt: Duration,
        probe_named: u32,
        links: impl IntoIterator<Item = (K, u32, Duration)>,
    ) -> Option<K> {
        links
            .into_iter()
            .filter(|(_, named, w)| *named >= probe_named && self.clearly_faster(rtt, *w))
            .max_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)).then(b.0.cmp(&a.0)))
            .map(|(key, _, _)| key)
    }

    /// True when a link of round trip `worst` could be replaced at all (it is longer than
    /// [`MIN_RTT_SAVING`]); no probe is worth dialing otherwise.
    pub(crate) fn worth_probing(worst: Duration) -> bool {
        worst > MIN_RTT_SAVING
    }

    /// Dial `dial`'s connection came up at `now`, after measuring `rtt`; `worst` is the round
    /// trip of the slowest droppable link (`None`: no link may be dropped or none has an
    /// estimate) and `eligible` is false when the peer may not be preferred (its score). A
    /// rejected probe ends the round (with back-off).
    pub(crate) fn judge(
        &mut self,
        now: Instant,
        dial: DialId,
        rtt: Duration,
        worst: Option<Duration>,
        eligible: bool,
    ) -> Judgement {
        if self.probe.is_none_or(|p| p.dial != dial) {
            return Judgement::NotProbe;
        }
        let faster = worst.is_some_and(|w| self.clearly_faster(rtt, w));
        if faster && eligible && self.may_swap(now) {
            if let Some(probe) = self.probe.as_mut() {
                probe.rtt = Some(rtt);
            }
            Judgement::Keep
        } else {
            self.finish(now, false);
            Judgement::Reject
        }
    }

    /// True when a swap is left in the budget at `now`. A probe still in flight when the
    /// burst ends is not kept, and a kept one does not swap: what is left of the burst is
    /// forfeited then, whatever was under way.
    pub(crate) fn may_swap(&mut self, now: Instant) -> bool {
        self.settle(now);
        self.swaps_left > 0
    }

    /// The kept probe `dial` runs now: its measured round trip (to compare once more with the
    /// slowest droppable link before swapping), or `None` when it is not the kept probe.
    pub(crate) fn kept_probe_rtt(&self, dial: DialId) -> Option<Duration> {
        self.probe.filter(|p| p.dial == dial).and_then(|p| p.rtt)
    }

    /// The round ends at `now`: after a swap the next round is one interval away; after a
    /// round that swapped nothing the wait doubles (up to `MAX_BACKOFF_ROUNDS` intervals).
    pub(crate) fn finish(&mut self, now: Instant, swapped: bool) {
        self.probe = None;
        if swapped {
            self.spend(now);
            self.idle_rounds = 0;
            self.next_round = now + self.params.interval;
        } else {
            self.idle_rounds = self.idle_rounds.saturating_add(1);
            let cap = if now < self.burst_until {
                BURST_MAX_BACKOFF_ROUNDS
            } else {
                MAX_BACKOFF_ROUNDS
            };
            let factor = 1u32 << self.idle_rounds.min(cap.trailing_zeros());
            self.next_round = now + self.params.interval.saturating_mul(factor);
        }
    }

    /// Ends the round when its probe is gone: `alive` tells whether the probe's dial or
    /// session still exists; a probe past its deadline is given up too. A request unanswered
    /// for [`ASK_DEADLINE`] ends the round as well (without back-off).
    pub(crate) fn check_probe(&mut self, now: Instant, alive: impl FnOnce(DialId) -> bool) {
        if self.asked.is_some_and(|at| !Self::awaits(at, now)) {
            self.asked = None;
            self.skip(now);
        }
        let Some(probe) = self.probe else {
            return;
        };
        if !alive(probe.dial) || now.saturating_duration_since(probe.started) >= PROBE_DEADLINE {
            self.finish(now, false);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};

    fn params() -> Params {
        Params {
            enabled: true,
            interval: Duration::from_secs(1),
            margin_pct: 30,
            swaps: 3,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 7000)
    }

    /// The first 100 ms step from `now` at which a round is due.
    fn next_due(o: &mut LinkOptimizer, now: Instant) -> Instant {
        let mut next = now;
        while !o.due(next) {
            next += ms(100);
        }
        next
    }

    #[test]
    fn a_round_is_due_once_per_interval_and_never_while_a_probe_is_in_flight() {
        let mut o = LinkOptimizer::new(params(), at(0));
        assert!(!o.due(at(999)));
        assert!(o.due(at(1000)));
        o.start_probe(at(1000), DialId(1), addr(1));
        assert_eq!(o.probe_addr(), Some(addr(1)));
        assert!(!o.due(at(5000)), "one probe at a time");
        o.finish(at(1100), true);
        assert!(!o.due(at(2099)));
        assert!(o.due(at(2100)));
        o.skip(at(2100));
        assert!(o.due(at(3100)), "a skipped round does not back off");
    }

    #[test]
    fn a_request_holds_the_round_until_its_answer_or_its_deadline() {
        let mut o = LinkOptimizer::new(params(), at(0));
        assert!(o.due(at(1000)));
        o.start_ask(at(1000));
        assert!(
            !o.due(at(1500)),
            "no second round while the answer is awaited"
        );
        assert!(!o.take_answer(at(900)), "an answer to an older request");
        assert!(o.take_answer(at(1000)), "the awaited answer");
        assert!(!o.take_answer(at(1000)), "one answer per request");
        o.start_ask(at(2000));
        o.check_probe(at(2999), |_| true);
        assert!(!o.due(at(2999)));
        o.check_probe(at(3000), |_| true);
        assert!(!o.take_answer(at(2000)), "given up at the deadline");
        assert!(!o.due(at(3999)));
        assert!(
            o.due(at(4000)),
            "the next round one interval later, no back-off"
        );
        assert!(LinkOptimizer::awaits(at(2000), at(2999)));
        assert!(!LinkOptimizer::awaits(at(2000), at(3000)));
    }

    #[test]
    fn disabled_never_runs_a_round() {
        let mut o = LinkOptimizer::new(
            Params {
                enabled: false,
                ..params()
            },
            at(0),
        );
        assert!(!o.due(at(1_000_000)));
        o.check_probe(at(1_000_000), |_| true);
        assert!(!o.due(at(2_000_000)));
    }

    #[test]
    fn the_margin_is_respected() {
        let mut o = LinkOptimizer::new(params(), at(0));
        assert!(o.clearly_faster(ms(70), ms(100)));
        assert!(!o.clearly_faster(ms(71), ms(100)));
        // Loopback: 10 times faster, but 0.9 ms saved is noise.
        let us = Duration::from_micros;
        assert!(!o.clearly_faster(us(100), us(1000)));
        assert!(o.clearly_faster(ms(1), ms(8)));
        assert!(!LinkOptimizer::worth_probing(ms(5)));
        assert!(LinkOptimizer::worth_probing(ms(6)));
        o.start_probe(at(1000), DialId(1), addr(1));
        // 35 ms against a worst of 48 ms: only 27 % faster.
        let j = o.judge(at(1100), DialId(1), ms(35), Some(ms(48)), true);
        assert_eq!(j, Judgement::Reject);
        assert_eq!(o.probe_dial(), None, "a rejection ends the round");
        o.start_probe(at(3000), DialId(2), addr(2));
        let j = o.judge(at(3100), DialId(2), ms(33), Some(ms(48)), true);
        assert_eq!(j, Judgement::Keep);
        assert_eq!(o.kept_probe_rtt(DialId(2)), Some(ms(33)));
        assert_eq!(o.kept_probe_rtt(DialId(1)), None);
    }

    #[test]
    fn the_link_replaced_is_the_most_named_of_those_clearly_slower_and_named_enough() {
        let o = LinkOptimizer::new(params(), at(0));
        // Probe at 20 ms: only links of at least ~28.6 ms (30 % margin) qualify.
        let links = [
            (1u32, 0, ms(50)),
            (2, 5, ms(30)),
            (3, 9, ms(25)),
            (4, 0, ms(40)),
        ];
        assert_eq!(
            o.link_to_replace(ms(20), 0, links),
            Some(2),
            "most named qualifying"
        );
        let unnamed = [(1u32, 0, ms(50)), (2, 0, ms(30)), (4, 0, ms(50))];
        assert_eq!(
            o.link_to_replace(ms(20), 0, unnamed),
            Some(1),
            "slowest, lowest key"
        );
        assert_eq!(o.link_to_replace(ms(20), 0, [(1u32, 7, ms(25))]), None);
        // Never a link whose peer SHUFFLEs named less than the probe's (a flooded candidate
        // does not replace a quiet peer).
        let mixed = [(1u32, 0, ms(50)), (2, 2, ms(40)), (3, 4, ms(30))];
        assert_eq!(o.link_to_replace(ms(20), 3, mixed), Some(3));
        assert_eq!(o.link_to_replace(ms(20), 5, mixed), None);
    }

    #[test]
    fn unknown_round_trips_and_ineligible_peers_never_swap() {
        let mut o = LinkOptimizer::new(params(), at(0));
        o.start_probe(at(1000), DialId(1), addr(1));
        assert_eq!(
            o.judge(at(1100), DialId(1), ms(1), None, true),
            Judgement::Reject,
            "nothing to compare with: no decision"
        );
        o.start_probe(at(5000), DialId(2), addr(2));
        assert_eq!(
            o.judge(at(5100), DialId(2), ms(1), Some(ms(50)), false),
            Judgement::Reject,
            "a peer below the gossip threshold is never preferred"
        );
        assert_eq!(
            o.judge(at(5100), DialId(9), ms(1), Some(ms(50)), true),
            Judgement::NotProbe,
            "other dials are not judged"
        );
    }

    #[test]
    fn rounds_without_a_swap_back_off_up_to_the_cap_and_a_swap_resets() {
        let mut o = LinkOptimizer::new(params(), at(0));
        // Past the burst (40 rounds of 1 s), with the budget back.
        let mut now = at(40_000) + REFILL_PERIOD * 3;
        let mut waits = Vec::new();
        for n in 0..8u32 {
            assert!(o.due(now), "round {n}");
            o.start_probe(now, DialId(u64::from(n) + 1), addr(1));
            o.finish(now, false);
            let next = next_due(&mut o, now);
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 64, 64]);
        o.start_probe(now, DialId(100), addr(1));
        o.finish(now, true);
        assert!(o.due(now + ms(1000)));
    }

    #[test]
    fn the_swap_budget_is_spent_and_comes_back_one_per_refill_period() {
        // 3 swaps, one back every `REFILL_PERIOD` (300 s).
        let mut o = LinkOptimizer::new(params(), at(0));
        let mut now = at(1000);
        for n in 0..3u64 {
            assert!(o.due(now), "swap {n}");
            o.start_probe(now, DialId(n + 1), addr(1));
            o.finish(now, true);
            now += ms(1000);
        }
        assert_eq!(o.swaps_left(), 0);
        assert!(!o.due(now + ms(50_000)), "no round without a swap left");
        // The first swap (at 1 s) would come back at 301 s, but the burst ended at 40 s
        // (40 rounds of 1 s): the first swap comes back one refill period after that.
        assert!(!o.due(at(339_999)));
        assert!(o.due(at(340_000)));
        assert_eq!(o.swaps_left(), 1);
        // Long idle: the budget refills to its size, never beyond.
        assert!(o.due(at(10_000_000)));
        assert_eq!(o.swaps_left(), 3);
    }

    #[test]
    fn the_burst_counts_from_the_start_not_from_the_clock_epoch() {
        // A node built at the epoch that starts 100 s later (a restart in a simulation).
        let mut o = LinkOptimizer::new(params(), at(0));
        o.anchor(at(100_000));
        assert!(
            !o.due(at(100_500)),
            "the first round is one interval after the start"
        );
        assert!(o.due(at(101_000)));
        assert_eq!(o.swaps_left(), 3, "the burst is not forfeited at once");
        assert!(o.may_swap(at(139_999)));
        assert!(!o.may_swap(at(140_000)), "40 rounds of 1 s after the start");
    }

    #[test]
    fn a_probe_in_flight_when_the_burst_ends_is_not_kept() {
        let mut o = LinkOptimizer::new(params(), at(0));
        // Dialed in the last round of the burst (40 s), connected after its end.
        assert!(o.due(at(39_500)));
        o.start_probe(at(39_500), DialId(1), addr(1));
        let late = o.judge(at(40_100), DialId(1), ms(5), Some(ms(40)), true);
        assert_eq!(
            late,
            Judgement::Reject,
            "the rest of the burst is forfeited"
        );
        assert!(!o.may_swap(at(40_100)));
        // The same probe within the burst is kept.
        let mut o = LinkOptimizer::new(params(), at(0));
        o.start_probe(at(39_500), DialId(1), addr(1));
        let kept = o.judge(at(39_900), DialId(1), ms(5), Some(ms(40)), true);
        assert_eq!(kept, Judgement::Keep);
    }

    #[test]
    fn the_burst_is_spent_early_and_its_rest_is_forfeited_at_its_end() {
        // Within the burst (40 s here) an idle round waits at most 4 intervals.
        let mut o = LinkOptimizer::new(params(), at(0));
        let mut now = at(1000);
        let mut waits = Vec::new();
        while now < at(30_000) {
            assert!(o.due(now));
            o.start_probe(now, DialId(1), addr(1));
            o.finish(now, false);
            let next = next_due(&mut o, now);
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits[..4], [2, 4, 4, 4]);
        assert_eq!(o.swaps_left(), 3, "nothing spent yet");
        // One swap spent late in the burst; at its end the other two are gone.
        o.start_probe(at(38_000), DialId(2), addr(2));
        o.finish(at(38_000), true);
        assert!(o.due(at(39_999)), "the burst still runs");
        assert!(!o.due(at(40_000)), "the rest of the burst is forfeited");
        assert_eq!(o.swaps_left(), 0);
        // The first swap comes back one refill period after the burst ended.
        assert!(!o.due(at(339_999)));
        assert!(o.due(at(340_000)));
        assert_eq!(o.swaps_left(), 1);
    }

    #[test]
    fn a_vanished_or_overdue_probe_ends_the_round() {
        let mut o = LinkOptimizer::new(params(), at(0));
        o.start_probe(at(1000), DialId(1), addr(1));
        o.check_probe(at(1100), |_| true);
        assert_eq!(o.probe_dial(), Some(DialId(1)));
        o.check_probe(at(1200), |_| false);
        assert_eq!(o.probe_dial(), None);
        o.start_probe(at(5000), DialId(2), addr(2));
        o.check_probe(at(5000) + PROBE_DEADLINE, |_| true);
        assert_eq!(o.probe_dial(), None);
    }

    #[test]
    fn the_same_inputs_give_the_same_decisions() {
        let run = || {
            let mut o = LinkOptimizer::new(params(), at(0));
            let mut out = Vec::new();
            let mut now = at(0);
            for n in 1..=50u64 {
                now += ms(250);
                if o.due(now) {
                    o.start_probe(now, DialId(n), addr(1));
                    let j = o.judge(now, DialId(n), ms(10 + n % 40), Some(ms(40)), true);
                    if j == Judgement::Keep {
                        o.finish(now, true);
                    }
                    out.push((n, j));
                }
            }
            out
        };
        assert_eq!(run(), run());
        assert!(!run().is_empty());
    }
}
