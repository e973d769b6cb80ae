//! The seeded plan of a chaos run: every fault (crashes and restarts, partitions, one-way
//! partitions, held links, silent cuts, the saturation burst, message loss) and every
//! broadcast, with its simulated time, drawn from the run's seed before the simulation starts.
//!
//! Network faults (partitions, one-way partitions, holds, cuts, the burst) get disjoint time
//! slots, so repairing one never undoes another; crashes overlap them freely.

use core::time::Duration;

use super::ChaosScenario;

/// A small deterministic generator (SplitMix64) for the plan.
#[derive(Debug, Clone)]
pub struct PlanRng(u64);

impl PlanRng {
    /// A generator for `seed` and a `stream` label (independent sequences per purpose).
    pub fn new(seed: u64, stream: &str) -> PlanRng {
        let mut material = Vec::with_capacity(8 + stream.len());
        material.extend_from_slice(&seed.to_be_bytes());
        material.extend_from_slice(stream.as_bytes());
        let key = blake3::hash(&material);
        let mut first = [0u8; 8];
        first.copy_from_slice(&key.as_bytes()[..8]);
        PlanRng(u64::from_be_bytes(first))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniformly in `[0, n)` (0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// Uniformly in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniformly in `[lo, hi]`, at millisecond resolution.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = lo.as_millis() as u64;
        let hi_ms = (hi.as_millis() as u64).max(lo_ms);
        Duration::from_millis(lo_ms + self.next_u64() % (hi_ms - lo_ms + 1))
    }

    /// Exponentially distributed with `rate` events per second.
    pub fn exponential(&mut self, rate: f64) -> Duration {
        let u = self.unit().max(1e-12);
        Duration::from_secs_f64(-u.ln() / rate)
    }

    /// `k` distinct indices of `0..n`, in random order.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }
}

/// One thing the orchestrator does to the simulated world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Crash a host (its software stops, its connections are reset).
    Crash {
        /// Node index.
        node: usize,
    },
    /// Restart a crashed host (same identity and address, new incarnation).
    Restart {
        /// Node index.
        node: usize,
    },
    /// Drop all traffic between `group` and the other nodes.
    Partition {
        /// One side of the split.
        group: Vec<usize>,
    },
    /// Repair the partition of `group`.
    HealPartition {
        /// The side that was split off.
        group: Vec<usize>,
    },
    /// Drop traffic from `from` to every other node (the other direction still flows).
    OneWay {
        /// The nodes whose messages are dropped.
        from: Vec<usize>,
    },
    /// Repair the one-way partition of `from`.
    HealOneWay {
        /// The nodes whose messages were dropped.
        from: Vec<usize>,
    },
    /// Hold (delay, not drop) every message between `node` and `peers`.
    Hold {
        /// The stalled node.
        node: usize,
        /// The other ends of the held links.
        peers: Vec<usize>,
    },
    /// Silent cut (a partition without RST): every packet to and from `node` is dropped, as
    /// when its cable is pulled. Nothing closes; both sides of each of its sessions only stop
    /// hearing from each other, and only their failure detectors can end the sessions.
    Cut {
        /// The node cut off.
        node: usize,
    },
    /// Reconnect the cut node.
    Uncut {
        /// The node that was cut off.
        node: usize,
    },
    /// Deliver what was held and stop holding.
    Release {
        /// The stalled node.
        node: usize,
        /// The other ends of the held links.
        peers: Vec<usize>,
    },
    /// Saturation burst: hold every link of `node`, then make it broadcast `messages` times.
    BurstStart {
        /// The flooding node.
        node: usize,
        /// Broadcasts attempted.
        messages: usize,
    },
    /// End of the burst: release the flooding node's links.
    BurstEnd {
        /// The flooding node.
        node: usize,
    },
    /// Turn turmoil's random link failures on (with the scenario's rate) or off.
    Loss {
        /// On or off.
        on: bool,
    },
    /// End of the fault phase: repair every link, stop loss, restart every crashed node.
    HealAll,
}

impl Fault {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        fn list(v: &[usize]) -> String {
            let names: Vec<String> = v.iter().map(|i| i.to_string()).collect();
            format!("[{}]", names.join(","))
        }
        match self {
            Fault::Crash { node } => format!("crash node {node}"),
            Fault::Restart { node } => format!("restart node {node}"),
            Fault::Partition { group } => format!("partition {} from the rest", list(group)),
            Fault::HealPartition { group } => format!("heal partition of {}", list(group)),
            Fault::OneWay { from } => {
                format!("one-way partition: drop traffic from {}", list(from))
            }
            Fault::HealOneWay { from } => format!("heal one-way partition of {}", list(from)),
            Fault::Hold { node, peers } => format!("hold links of node {node} to {}", list(peers)),
            Fault::Release { node, peers } => {
                format!("release links of node {node} to {}", list(peers))
            }
            Fault::Cut { node } => format!("silent cut of node {node} (no RST)"),
            Fault::Uncut { node } => format!("reconnect cut node {node}"),
            Fault::BurstStart { node, messages } => {
                format!("burst: node {node} stalled and floods {messages} broadcasts")
            }
            Fault::BurstEnd { node } => format!("burst end: release node {node}"),
            Fault::Loss { on } => {
                format!("random link failures {}", if *on { "on" } else { "off" })
            }
            Fault::HealAll => "heal all: repair links, restart crashed nodes".to_string(),
        }
    }
}

/// One scheduled broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedBroadcast {
    /// Sequence number (also in the payload).
    pub seq: u64,
    /// When.
    pub at: Duration,
    /// The preferred origin (the orchestrator takes the next running node when it is down).
    pub origin: usize,
}

/// The whole plan of a run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Faults in time order (ties keep their insertion order).
    pub faults: Vec<(Duration, Fault)>,
    /// Broadcasts in time order.
    pub broadcasts: Vec<PlannedBroadcast>,
    /// End of the fault phase: everything is repaired here.
    pub heal_at: Duration,
    /// The flooding node and the burst window, when there is a burst.
    pub burst: Option<(usize, Duration, Duration)>,
    /// Silent cuts: the node and its cut window.
    pub cuts: Vec<(usize, Duration, Duration)>,
}

/// Draws the plan of `s` from its seed.
pub fn plan(s: &ChaosScenario) -> Plan {
    let warmup = s.warmup;
    let heal_at = s.warmup + s.duration;
    let end_broadcasts = heal_at + s.settle.saturating_sub(s.drain);
    let mut faults: Vec<(Duration, Fault)> = Vec::new();

    // Network faults in disjoint slots of the fault phase.
    let mut net_rng = PlanRng::new(s.seed, "network faults");
    let mut kinds: Vec<u8> = Vec::new();
    kinds.extend(std::iter::repeat_n(0u8, s.partitions));
    kinds.extend(std::iter::repeat_n(1u8, s.oneway));
    kinds.extend(std::iter::repeat_n(2u8, s.holds));
    if s.burst {
        kinds.push(3);
    }
    kinds.extend(std::iter::repeat_n(4u8, s.cuts));
    for i in (1..kinds.len()).rev() {
        let j = net_rng.below(i + 1);
        kinds.swap(i, j);
    }
    let mut burst = None;
    let mut cuts = Vec::new();
    if !kinds.is_empty() && !s.duration.is_zero() {
        let slot = s.duration / kinds.len() as u32;
        for (i, kind) in kinds.iter().enumerate() {
            let slot_start = warmup + slot * i as u32;
            let len = net_rng
                .duration(s.fault_min, s.fault_max)
                .min(slot.mul_f64(0.8));
            let room = slot.saturating_sub(len);
            let start = slot_start + net_rng.duration(Duration::ZERO, room.mul_f64(0.5));
            let end = start + len;
            match kind {
                0 => {
                    let size = 1 + net_rng.below((s.nodes / 2).max(1));
                    let mut group = net_rng.sample(s.nodes, size);
                    group.sort_unstable();
                    faults.push((
                        start,
                        Fault::Partition {
                            group: group.clone(),
                        },
                    ));
                    faults.push((end, Fault::HealPartition { group }));
                }
                1 => {
                    let size = 1 + net_rng.below((s.nodes / 4).max(1));
                    let mut from = net_rng.sample(s.nodes, size);
                    from.sort_unstable();
                    faults.push((start, Fault::OneWay { from: from.clone() }));
                    faults.push((end, Fault::HealOneWay { from }));
                }
                2 => {
                    let node = net_rng.below(s.nodes);
                    let size = 1 + net_rng.below(s.nodes.saturating_sub(1).max(1));
                    let mut peers: Vec<usize> = net_rng
                        .sample(s.nodes, size + 1)
                        .into_iter()
                        .filter(|&p| p != node)
                        .take(size)
                        .collect();
                    peers.sort_unstable();
                    faults.push((
                        start,
                        Fault::Hold {
                            node,
                            peers: peers.clone(),
                        },
                    ));
                    faults.push((end, Fault::Release { node, peers }));
                }
                4 => {
                    let node = net_rng.below(s.nodes);
                    faults.push((start, Fault::Cut { node }));
                    faults.push((end, Fault::Uncut { node }));
                    cuts.push((node, start, end));
                }
                _ => {
                    let node = net_rng.below(s.nodes);
                    let len = s.burst_hold.min(slot.mul_f64(0.8));
                    faults.push((
                        start,
                        Fault::BurstStart {
                            node,
                            messages: s.burst_messages,
                        },
                    ));
                    faults.push((start + len, Fault::BurstEnd { node }));
                    burst = Some((node, start, start + len));
                }
            }
        }
    }

    if s.loss > 0.0 && !s.duration.is_zero() {
        faults.push((warmup, Fault::Loss { on: true }));
        faults.push((heal_at, Fault::Loss { on: false }));
    }

    // Churn: a Poisson process of crashes over the fault phase.
    let mut churn_rng = PlanRng::new(s.seed, "churn");
    let mut down_until: Vec<Duration> = vec![Duration::ZERO; s.nodes];
    if s.churn > 0.0 && s.nodes > 1 {
        let mut t = warmup;
        loop {
            t += churn_rng.exponential(s.churn);
            if t >= heal_at {
                break;
            }
            let down_now = down_until.iter().filter(|&&d| d > t).count();
            if down_now >= s.max_down {
                continue;
            }
            let candidates: Vec<usize> = (0..s.nodes)
                .filter(|&n| down_until[n] <= t)
                .filter(|&n| match burst {
                    // The flooding node stays up from a little before its burst until after.
                    Some((node, from, to)) => {
                        n != node || t + s.down_max < from || t > to + Duration::from_secs(1)
                    }
                    None => true,
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let node = candidates[churn_rng.below(candidates.len())];
            let back = (t + churn_rng.duration(s.down_min, s.down_max)).min(heal_at);
            down_until[node] = back;
            faults.push((t, Fault::Crash { node }));
            if back < heal_at {
                faults.push((back, Fault::Restart { node }));
            }
        }
    }
    faults.push((heal_at, Fault::HealAll));
    faults.sort_by_key(|(t, _)| *t);

    // Broadcasts at a steady rate with jitter, from random nodes.
    let mut bc_rng = PlanRng::new(s.seed, "broadcasts");
    let mut broadcasts = Vec::new();
    if s.rate > 0.0 {
        let mut t = warmup;
        let mut seq = 0u64;
        loop {
            t += bc_rng.exponential(s.rate);
            if t >= end_broadcasts {
                break;
            }
            broadcasts.push(PlannedBroadcast {
                seq,
                at: t,
                origin: bc_rng.below(s.nodes),
            });
            seq += 1;
        }
    }
    Plan {
        faults,
        broadcasts,
        heal_at,
        burst,
        cuts,
    }
}
