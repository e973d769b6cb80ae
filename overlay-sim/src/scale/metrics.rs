//! The epidemic-broadcast figures: reliability, RMR, LDH, time to last delivery, and delivery
//! latency percentiles.
//!
//! Definitions (the usual ones of the HyParView / Plumtree literature):
//!
//! - **reliability** of a broadcast: the fraction of the live nodes other than the sender that
//!   delivered it within the observation window.
//! - **RMR** (relative message redundancy): `m / (n − 1) − 1`, where `m` is the number of
//!   payload messages (GOSSIP frames carrying the payload, graft answers included) received
//!   by all nodes for the broadcast and `n` the number of nodes that have the message at the
//!   end (the sender and every node that delivered it). 0 means every node received the
//!   payload exactly once. Over several broadcasts, `m` and `n − 1` are summed first.
//! - **LDH** (last-delivery hop): the hop count of the last node to receive the message, here
//!   the largest hop count among its deliveries (a direct neighbour of the sender is hop 1).
//! - **time to last delivery**: from the broadcast to the last delivery within the window.

use serde::Serialize;

/// What one broadcast achieved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BroadcastOutcome {
    /// Index of the sending node.
    pub origin: usize,
    /// Virtual time of the broadcast, in milliseconds.
    pub sent_at_ms: f64,
    /// Live nodes other than the sender.
    pub expected: usize,
    /// Of those, nodes that delivered within the window.
    pub reached: usize,
    /// `reached / expected`.
    pub reliability: f64,
    /// Payload messages received by all nodes over the window, when the broadcast had the
    /// network to itself (sequential runs).
    pub payload_messages: Option<u64>,
    /// Largest hop count delivered (0 when nobody delivered).
    pub ldh: u8,
    /// Time from the broadcast to its last delivery, in milliseconds (0 when nobody
    /// delivered).
    pub last_delivery_ms: f64,
    /// Reliability reached by these times after the broadcast: `(ms, fraction)` for
    /// [`CHECKPOINTS_MS`] within the window (how much came from the tree at once, how much
    /// from repair later).
    pub reliability_by_ms: Vec<(u64, f64)>,
    /// Delivery latency of every delivery, in milliseconds (not serialised).
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

/// Times after a broadcast at which its reliability so far is recorded.
pub const CHECKPOINTS_MS: [u64; 5] = [100, 250, 500, 1000, 2000];

impl BroadcastOutcome {
    /// Fraction of the expected nodes that delivered within `ms` of the broadcast.
    pub fn reliability_within(&self, ms: f64) -> f64 {
        if self.expected == 0 {
            return 1.0;
        }
        let n = self.latencies_ms.iter().filter(|l| **l <= ms).count();
        n as f64 / self.expected as f64
    }

    /// Fills [`BroadcastOutcome::reliability_by_ms`] for the checkpoints inside `window_ms`.
    pub fn record_checkpoints(&mut self, window_ms: f64) {
        self.reliability_by_ms = CHECKPOINTS_MS
            .iter()
            .filter(|c| (**c as f64) < window_ms)
            .map(|c| (*c, self.reliability_within(*c as f64)))
            .collect();
    }

    /// RMR of this broadcast alone, when its payload messages are known and someone
    /// delivered it.
    pub fn rmr(&self) -> Option<f64> {
        rmr(self.payload_messages?, self.reached as u64)
    }
}

/// `payload / reached − 1`, or `None` when nobody was reached.
pub fn rmr(payload_messages: u64, reached: u64) -> Option<f64> {
    (reached > 0).then(|| payload_messages as f64 / reached as f64 - 1.0)
}

/// Figures over a group of broadcasts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Broadcasts in the group.
    pub broadcasts: usize,
    /// Mean reliability.
    pub reliability_mean: f64,
    /// Smallest reliability.
    pub reliability_min: f64,
    /// RMR over the group (payload messages and reached nodes summed first), when known.
    pub rmr: Option<f64>,
    /// Mean LDH.
    pub ldh_mean: f64,
    /// Largest LDH.
    pub ldh_max: u8,
    /// Mean time to last delivery, ms.
    pub last_delivery_mean_ms: f64,
    /// Largest time to last delivery, ms.
    pub last_delivery_max_ms: f64,
    /// Median delivery latency over every delivery, ms.
    pub latency_p50_ms: f64,
    /// 90th percentile delivery latency, ms.
    pub latency_p90_ms: f64,
    /// 99th percentile delivery latency, ms.
    pub latency_p99_ms: f64,
}

impl Summary {
    /// Summarises `outcomes`. `payload_total` gives the group's payload messages when they
    /// were counted for the group as a whole (concurrent broadcasts); otherwise the
    /// per-broadcast counts are summed (and the RMR is unknown if any is missing).
    pub fn of(outcomes: &[BroadcastOutcome], payload_total: Option<u64>) -> Summary {
        let n = outcomes.len();
        let reached: u64 = outcomes.iter().map(|o| o.reached as u64).sum();
        let payload = payload_total.or_else(|| {
            outcomes
                .iter()
                .map(|o| o.payload_messages)
                .sum::<Option<u64>>()
        });
        let mut latencies: Vec<f64> = outcomes
            .iter()
            .flat_map(|o| o.latencies_ms.iter().copied())
            .collect();
        latencies.sort_by(f64::total_cmp);
        Summary {
            broadcasts: n,
            reliability_mean: mean(outcomes.iter().map(|o| o.reliability)),
            reliability_min: outcomes
                .iter()
                .map(|o| o.reliability)
                .fold(f64::NAN, f64::min),
            rmr: payload.and_then(|p| rmr(p, reached)),
            ldh_mean: mean(outcomes.iter().map(|o| f64::from(o.ldh))),
            ldh_max: outcomes.iter().map(|o| o.ldh).max().unwrap_or(0),
            last_delivery_mean_ms: mean(outcomes.iter().map(|o| o.last_delivery_ms)),
            last_delivery_max_ms: outcomes
                .iter()
                .map(|o| o.last_delivery_ms)
                .fold(0.0, f64::max),
            latency_p50_ms: percentile(&latencies, 50.0),
            latency_p90_ms: percentile(&latencies, 90.0),
            latency_p99_ms: percentile(&latencies, 99.0),
        }
    }
}

/// Arithmetic mean; NaN for an empty sequence.
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Nearest-rank percentile `p` (0–100) of an ascending slice; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted.get(idx).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(reached: usize, expected: usize, payload: Option<u64>, ldh: u8) -> BroadcastOutcome {
        BroadcastOutcome {
            origin: 0,
            sent_at_ms: 0.0,
            expected,
            reached,
            reliability: reached as f64 / expected as f64,
            payload_messages: payload,
            ldh,
            last_delivery_ms: f64::from(ldh) * 10.0,
            reliability_by_ms: Vec::new(),
            latencies_ms: (1..=reached).map(|i| i as f64).collect(),
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn rmr_is_zero_for_a_perfect_tree_and_sums_before_dividing() {
        assert_eq!(outcome(99, 99, Some(99), 5).rmr(), Some(0.0));
        assert_eq!(outcome(0, 99, Some(0), 0).rmr(), None);
        let s = Summary::of(
            &[outcome(10, 10, Some(20), 3), outcome(30, 30, Some(30), 7)],
            None,
        );
        assert_eq!(s.rmr, Some(50.0 / 40.0 - 1.0));
        assert_eq!(s.ldh_max, 7);
        assert_eq!(s.ldh_mean, 5.0);
        let unknown = Summary::of(&[outcome(10, 10, None, 3)], None);
        assert_eq!(unknown.rmr, None);
        let total = Summary::of(&[outcome(10, 10, None, 3)], Some(15));
        assert_eq!(total.rmr, Some(0.5));
    }

    #[test]
    fn reliability_by_checkpoint_counts_deliveries_within_the_time() {
        let mut o = outcome(4, 8, None, 2);
        o.latencies_ms = vec![50.0, 120.0, 400.0, 1500.0];
        assert_eq!(o.reliability_within(100.0), 0.125);
        o.record_checkpoints(1000.0);
        assert_eq!(
            o.reliability_by_ms,
            vec![(100, 0.125), (250, 0.25), (500, 0.375)]
        );
    }

    #[test]
    fn reliability_mean_and_min() {
        let s = Summary::of(&[outcome(5, 10, None, 1), outcome(10, 10, None, 1)], None);
        assert_eq!(s.reliability_mean, 0.75);
        assert_eq!(s.reliability_min, 0.5);
    }
}
