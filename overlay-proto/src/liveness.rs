//! Silent-failure detection for one session: heartbeats out, an adaptive silence deadline in.
//!
//! A peer that dies without closing its connection (power loss, a partition that sends no RST,
//! a frozen process) leaves a TCP stream that is merely quiet. The detector turns quiet into a
//! decision, in the core, from two rules:
//!
//! - **Heartbeat.** A session that has *sent* nothing for `heartbeat` gets a frame: a CREDIT
//!   (returning whatever has been consumed so far, possibly `0/0`; no answer expected, never
//!   blocked by the peer's window) or, every [`PING_EVERY`]-th time and when the window allows,
//!   a PING whose PONG gives a round-trip sample. So a live peer is heard at least every
//!   `heartbeat` plus one tick plus the network's delay.
//! - **Silence deadline.** A session that has *received* nothing for its silence limit is
//!   declared unresponsive. The limit is `timeout`, raised on slow links to
//!   `heartbeat + granularity + srtt + 3 · rto` (`rto = max(200 ms, srtt + 4 · rttvar)`, the
//!   RFC 6298 estimate from PING/PONG samples), and never above `max_timeout`.
//!
//! Why a deadline and not phi-accrual: over TCP a lost segment is not a missing heartbeat but
//! a delay of one retransmission timeout (doubling on each further loss), and it delays
//! everything behind it on the stream. The silence a live peer can cause is therefore
//! bounded by the heartbeat period plus a few RTOs, which is exactly what the limit encodes:
//! at the defaults (500 ms heartbeat, 100 ms tick, 1.5 s limit) a heartbeat may be
//! retransmitted twice (200 + 400 ms) on a link with 50 ms of jitter before the peer is
//! suspected. An inter-arrival distribution (phi) is the wrong model here: with data flowing,
//! arrivals are microseconds apart and the first pause of the application would look fatal.
//! SWIM-style indirect probes answer "is the peer dead or only my link to it?"; for a session
//! overlay both mean the same thing (the session is useless and membership replaces it), so
//! they would add traffic without changing a decision.
//!
//! The node's own stalls do not count against its peers: when the maintenance tick runs late
//! by more than one tick (the process was stopped, starved or suspended), every session is
//! excused for the lateness ([`Liveness::excuse`]).

use core::time::Duration;

use crate::time::Instant;

/// Lower bound of the retransmission-timeout estimate (Linux's `TCP_RTO_MIN`).
pub const MIN_RTO: Duration = Duration::from_millis(200);

/// Every this-many heartbeats is a PING (a round-trip sample); the others are CREDIT frames.
pub const PING_EVERY: u32 = 8;

/// Early round-trip samples a session may have scheduled at once ([`Liveness::probe_rtt_at`]).
const RTT_PROBES: usize = 2;

/// The detector's settings (taken from the node configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Send a heartbeat when nothing was sent for this long (`keepalive_interval`).
    pub heartbeat: Duration,
    /// Silence that makes a peer unresponsive on a fast link (`liveness_timeout`).
    pub timeout: Duration,
    /// The adaptive limit never exceeds this (`idle_timeout`).
    pub max_timeout: Duration,
    /// How late the detector may look at a deadline (the maintenance tick).
    pub granularity: Duration,
}

/// The frame a heartbeat should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// A CREDIT frame returning what was consumed so far (possibly nothing).
    Credit,
    /// A PING: the peer's PONG gives a round-trip sample.
    Ping,
}

/// What the detector wants done with a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Alive,
    /// Send a heartbeat of this kind.
    Heartbeat(Heartbeat),
    /// Nothing was received for longer than the silence limit: close the session.
    Unresponsive {
        /// How long the peer has been silent.
        silent_for: Duration,
    },
}

/// Per-session detector state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// When the peer was last heard (any bytes received), moved forward by our own stalls.
    heard_at: Instant,
    /// When we last sent a frame.
    sent_at: Instant,
    /// The PING awaiting its PONG, if any.
    ping_sent_at: Option<Instant>,
    /// Smoothed round-trip time, once sampled.
    srtt: Option<Duration>,
    /// Round-trip variation.
    rttvar: Duration,
    /// Heartbeats sent so far.
    heartbeats: u32,
    /// The lowest round trip sampled: by our dial (TCP + TLS handshake) or by a PONG.
    min_rtt: Option<Duration>,
    /// Send a PING as soon as possible after each of these instants (latency-aware
    /// membership wants round-trip samples early, and again once the node's start is over).
    rtt_probes: [Option<Instant>; RTT_PROBES],
    /// The peer sent a PONG we did not ask for: its round-trip samples cannot be trusted.
    unsolicited_pong: bool,
}

impl Liveness {
    /// A detector for a session that opened at `now`.
    pub fn new(now: Instant) -> Self {
        Liveness {
            heard_at: now,
            sent_at: now,
            ping_sent_at: None,
            srtt: None,
            rttvar: Duration::ZERO,
            heartbeats: 0,
            min_rtt: None,
            rtt_probes: [None; RTT_PROBES],
            unsolicited_pong: false,
        }
    }

    /// Our dial measured the round trip while connecting.
    pub fn set_handshake_rtt(&mut self, rtt: Duration) {
        self.sampled(rtt);
    }

    /// A round-trip sample: the lowest so far is kept.
    fn sampled(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
    }

    /// Asks for an early round-trip sample: a PING goes out at the first poll at or after
    /// `at` that may send one. At most [`RTT_PROBES`] are pending; more are ignored.
    pub fn probe_rtt_at(&mut self, at: Instant) {
        if let Some(slot) = self.rtt_probes.iter_mut().find(|p| p.is_none()) {
            *slot = Some(at);
        }
    }

    /// The round trip to compare links by: the lowest sample (the dial's or a PONG's),
    /// `None` when none was taken. The lowest, not the smoothed estimate: a sample includes
    /// the time either node took to get to the frame, and a node busy starting (every dial
    /// handshaking at once) or forwarding a burst measures its fastest links at tens of
    /// milliseconds; the link itself is never faster than its lowest sample. The figure is
    /// never raised: a path that becomes slower later keeps its old one (links are judged
    /// in a node's first seconds, and once per 5 minutes after). A peer that
    /// answered a PING it was never sent (a sample it could forge by answering early) ranks
    /// as the slowest link there is (`Duration::MAX`), so that sending such PONGs cannot keep
    /// its link from being replaced.
    pub fn rtt(&self) -> Option<Duration> {
        if self.unsolicited_pong {
            return Some(Duration::MAX);
        }
        self.min_rtt
    }

    /// Bytes arrived from the peer.
    pub fn heard(&mut self, now: Instant) {
        self.heard_at = self.heard_at.max(now);
    }

    /// A frame left for the peer.
    pub fn sent(&mut self, now: Instant) {
        self.sent_at = self.sent_at.max(now);
    }

    /// When the peer was last heard (moved forward by excused stalls).
    #[cfg(test)]
    pub fn heard_at(&self) -> Instant {
        self.heard_at
    }

    /// The smoothed round-trip time, once a PING was answered.
    #[cfg(test)]
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission-timeout estimate: `max(200 ms, srtt + 4 · rttvar)`.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt + self.rttvar * 4).max(MIN_RTO),
            None => MIN_RTO,
        }
    }

    /// The silence after which the peer is unresponsive.
    pub fn silence_limit(&self, cfg: &LivenessConfig) -> Duration {
        let adaptive =
            cfg.heartbeat + cfg.granularity + self.srtt.unwrap_or(Duration::ZERO) + self.rto() * 3;
        cfg.timeout.max(adaptive).min(cfg.max_timeout)
    }

    /// The frame the next heartbeat should be. `can_ping` is false when a PING would have to
    /// wait for credit (a heartbeat must leave now).
    pub fn next_heartbeat(&self, can_ping: bool) -> Heartbeat {
        if can_ping && self.ping_sent_at.is_none() && self.heartbeats % PING_EVERY == 0 {
            Heartbeat::Ping
        } else {
            Heartbeat::Credit
        }
    }

    /// What to do at `now`.
    pub fn poll(&self, now: Instant, cfg: &LivenessConfig, can_ping: bool) -> Verdict {
        let silent_for = now.saturating_duration_since(self.heard_at);
        if silent_for >= self.silence_limit(cfg) {
            return Verdict::Unresponsive { silent_for };
        }
        let probe_due = self.rtt_probes.iter().flatten().any(|at| *at <= now);
        if probe_due && can_ping && self.ping_sent_at.is_none() {
            // An early sample is due (and a heartbeat may be too: this PING is it).
            return Verdict::Heartbeat(Heartbeat::Ping);
        }
        if now.saturating_duration_since(self.sent_at) >= cfg.heartbeat {
            return Verdict::Heartbeat(self.next_heartbeat(can_ping));
        }
        Verdict::Alive
    }

    /// A heartbeat of `kind` left at `now`.
    pub fn heartbeat_sent(&mut self, now: Instant, kind: Heartbeat) {
        self.heartbeats = self.heartbeats.wrapping_add(1);
        self.sent(now);
        if kind == Heartbeat::Ping && self.ping_sent_at.is_none() {
            self.ping_sent_at = Some(now);
            // This PING is the sample every early probe due by now asked for.
            for slot in &mut self.rtt_probes {
                if slot.is_some_and(|at| at <= now) {
                    *slot = None;
                }
            }
        }
    }

    /// A PONG arrived: the round trip of the outstanding PING, if any, is a sample. An
    /// unsolicited PONG gives no sample and makes the session's round trip untrusted
    /// ([`Liveness::rtt`] ranks it slowest from then on).
    pub fn pong(&mut self, now: Instant) {
        let Some(sent) = self.ping_sent_at.take() else {
            self.unsolicited_pong = true;
            return;
        };
        let sample = now.saturating_duration_since(sent);
        self.sampled(sample);
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// Our own node did not run for `pause`: that time does not count as the peer's silence.
    pub fn excuse(&mut self, pause: Duration, now: Instant) {
        self.heard_at = (self.heard_at + pause).min(now);
        if let Some(sent) = self.ping_sent_at.as_mut() {
            *sent = (*sent + pause).min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Instant {
        Instant::ZERO + ms(n)
    }

    fn defaults() -> LivenessConfig {
        LivenessConfig {
            heartbeat: ms(500),
            timeout: ms(1500),
            max_timeout: ms(30_000),
            granularity: ms(100),
        }
    }

    /// Runs the detector on a 100 ms tick until `until`, the way the node does, with the peer's
    /// frames arriving at `arrivals`; answers heartbeats by itself. Returns the time the peer
    /// was declared unresponsive, if it was.
    fn run(arrivals: &[u64], until: u64, cfg: &LivenessConfig) -> Option<u64> {
        let mut l = Liveness::new(at(0));
        let mut next = arrivals.iter().copied().peekable();
        let mut t = 0;
        while t <= until {
            while let Some(a) = next.next_if(|a| *a <= t) {
                l.heard(at(a));
            }
            match l.poll(at(t), cfg, true) {
                Verdict::Unresponsive { .. } => return Some(t),
                Verdict::Heartbeat(kind) => l.heartbeat_sent(at(t), kind),
                Verdict::Alive => {}
            }
            t += cfg.granularity.as_millis() as u64;
        }
        None
    }

    #[test]
    fn an_early_probe_pings_once_and_its_pong_gives_the_round_trip() {
        let cfg = defaults();
        let mut l = Liveness::new(at(0));
        assert_eq!(l.rtt(), None);
        l.probe_rtt_at(at(200));
        assert_eq!(l.poll(at(100), &cfg, true), Verdict::Alive);
        assert_eq!(
            l.poll(at(200), &cfg, false),
            Verdict::Alive,
            "waits for credit"
        );
        assert_eq!(
            l.poll(at(300), &cfg, true),
            Verdict::Heartbeat(Heartbeat::Ping)
        );
        l.heartbeat_sent(at(300), Heartbeat::Ping);
        assert_eq!(l.poll(at(400), &cfg, true), Verdict::Alive, "one at a time");
        l.pong(at(342));
        assert_eq!(l.rtt(), Some(ms(42)));
        assert_eq!(l.poll(at(500), &cfg, true), Verdict::Alive, "known now");
    }

    #[test]
    fn links_are_compared_by_their_lowest_sample_and_two_early_probes_ping_twice() {
        let cfg = defaults();
        let mut l = Liveness::new(at(0));
        // A dial made while the node was busy starting measured 30 ms.
        l.set_handshake_rtt(ms(30));
        l.probe_rtt_at(at(0));
        l.probe_rtt_at(at(1500));
        l.probe_rtt_at(at(1600)); // a third is ignored: two at most
        assert_eq!(
            l.poll(at(0), &cfg, true),
            Verdict::Heartbeat(Heartbeat::Ping)
        );
        l.heartbeat_sent(at(0), Heartbeat::Ping);
        l.pong(at(40));
        assert_eq!(l.rtt(), Some(ms(30)), "a slower sample never raises it");
        l.sent(at(1000));
        l.heard(at(1000));
        assert_eq!(l.poll(at(1499), &cfg, true), Verdict::Alive);
        assert_eq!(
            l.poll(at(1500), &cfg, true),
            Verdict::Heartbeat(Heartbeat::Ping),
            "the second early sample"
        );
        l.heartbeat_sent(at(1500), Heartbeat::Ping);
        l.pong(at(1502));
        assert_eq!(l.rtt(), Some(ms(2)), "the lowest sample");
        assert_eq!(
            l.srtt(),
            Some((ms(40) * 7 + ms(2)) / 8),
            "the RTO's estimate is smoothed"
        );
        l.sent(at(1900));
        l.heard(at(1900));
        assert_eq!(l.poll(at(1900), &cfg, true), Verdict::Alive, "no third");
    }

    #[test]
    fn the_dial_gives_a_round_trip_until_a_pong_and_an_unsolicited_pong_ranks_it_slowest() {
        let mut l = Liveness::new(at(0));
        l.set_handshake_rtt(ms(30));
        assert_eq!(l.rtt(), Some(ms(30)));
        l.heartbeat_sent(at(0), Heartbeat::Ping);
        l.pong(at(20));
        assert_eq!(
            l.rtt(),
            Some(ms(20)),
            "a faster PONG sample wins over the dial's"
        );
        l.pong(at(25));
        assert_eq!(
            l.rtt(),
            Some(Duration::MAX),
            "a PONG nobody asked for: untrusted, ranks slowest"
        );
    }

    #[test]
    fn a_frozen_peer_is_declared_unresponsive_within_the_bound() {
        let cfg = defaults();
        // The peer's heartbeats arrive every 500 ms, then it freezes right after one.
        let arrivals: Vec<u64> = (1..=10).map(|k| k * 500 + 37).collect();
        let last = *arrivals.last().unwrap_or(&0);
        let declared = run(&arrivals, 20_000, &cfg).expect("a frozen peer must be detected");
        let after = declared - last;
        assert!(
            (1500..=1600).contains(&after),
            "detected {after} ms after the last frame (limit 1500 ms + one 100 ms tick)"
        );
    }

    #[test]
    fn a_slow_but_alive_peer_with_jitter_and_retransmissions_is_not_suspected() {
        let cfg = defaults();
        // Heartbeats every 500 ms + up to 100 ms tick, 50 ms of jitter, and every seventh one
        // delayed by two back-to-back retransmissions (200 + 400 ms).
        let mut arrivals = Vec::new();
        let mut sent = 0u64;
        for k in 0..200u64 {
            sent += 500 + (k * 37) % 100;
            let jitter = (k * 53) % 50;
            let rto = if k % 7 == 3 { 600 } else { 0 };
            arrivals.push(sent + 10 + jitter + rto);
        }
        arrivals.sort_unstable();
        let end = *arrivals.last().unwrap_or(&0);
        assert_eq!(run(&arrivals, end, &cfg), None);
    }

    #[test]
    fn the_limit_grows_with_the_measured_round_trip_and_is_capped() {
        let cfg = defaults();
        let mut l = Liveness::new(at(0));
        assert_eq!(
            l.silence_limit(&cfg),
            ms(1500),
            "no sample: the configured timeout"
        );
        // A 400 ms round trip (intercontinental): rto = 400 + 4 * 200 = 1.2 s.
        l.heartbeat_sent(at(0), Heartbeat::Ping);
        l.pong(at(400));
        assert_eq!(l.srtt(), Some(ms(400)));
        assert_eq!(l.rto(), ms(1200));
        assert_eq!(l.silence_limit(&cfg), ms(500 + 100 + 400 + 3600));
        let capped = LivenessConfig {
            max_timeout: ms(2000),
            ..cfg
        };
        assert_eq!(l.silence_limit(&capped), ms(2000));
        // Fast, steady samples bring it back to the configured floor.
        for k in 1..40u64 {
            l.heartbeat_sent(at(k * 1000), Heartbeat::Ping);
            l.pong(at(k * 1000 + 20));
        }
        assert_eq!(l.rto(), MIN_RTO);
        assert_eq!(l.silence_limit(&cfg), ms(1500));
    }

    #[test]
    fn unsolicited_pongs_are_ignored_and_pings_are_spaced() {
        let mut l = Liveness::new(at(0));
        l.pong(at(10));
        assert_eq!(l.srtt(), None);
        assert_eq!(l.next_heartbeat(true), Heartbeat::Ping);
        assert_eq!(
            l.next_heartbeat(false),
            Heartbeat::Credit,
            "no credit: CREDIT"
        );
        l.heartbeat_sent(at(0), Heartbeat::Ping);
        // Until the PONG and for the next PING_EVERY - 1 heartbeats: CREDIT.
        for k in 1..PING_EVERY {
            assert_eq!(l.next_heartbeat(true), Heartbeat::Credit);
            l.heartbeat_sent(at(u64::from(k) * 500), Heartbeat::Credit);
        }
        assert_eq!(
            l.next_heartbeat(true),
            Heartbeat::Credit,
            "the first PING is still unanswered"
        );
        l.pong(at(4000));
        assert_eq!(l.next_heartbeat(true), Heartbeat::Ping);
    }

    #[test]
    fn heartbeats_follow_what_was_sent_not_what_was_received() {
        let cfg = defaults();
        let mut l = Liveness::new(at(0));
        l.heard(at(450));
        assert_eq!(l.poll(at(400), &cfg, true), Verdict::Alive);
        assert_eq!(
            l.poll(at(500), &cfg, true),
            Verdict::Heartbeat(Heartbeat::Ping)
        );
        l.sent(at(500));
        assert_eq!(l.poll(at(900), &cfg, true), Verdict::Alive);
    }

    #[test]
    fn our_own_stall_is_excused() {
        let cfg = defaults();
        let mut l = Liveness::new(at(0));
        l.heard(at(1000));
        // The node did not run from 1.1 s to 4.1 s; the peer's bytes wait in the socket.
        l.excuse(ms(3000), at(4100));
        assert_eq!(l.heard_at(), at(4000));
        assert!(matches!(
            l.poll(at(4100), &cfg, true),
            Verdict::Heartbeat(_)
        ));
        // Excusing never moves past the present.
        l.excuse(ms(10_000), at(4200));
        assert_eq!(l.heard_at(), at(4200));
    }
}
