//! Token bucket for per-peer message quotas.

use crate::time::Instant;

/// Refills `rate_per_s` tokens per second up to `burst`; each message takes one.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: u64,
    burst: u64,
    rate_per_s: u64,
    last_refill: Instant,
    // Nanoseconds of refill time not yet turned into a whole token.
    carry_nanos: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, rate_per_s: u32, burst: u32) -> Self {
        let burst = u64::from(burst.max(1));
        TokenBucket {
            tokens: burst,
            burst,
            rate_per_s: u64::from(rate_per_s.max(1)),
            last_refill: now,
            carry_nanos: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.as_nanos().saturating_sub(self.last_refill.as_nanos());
        if elapsed == 0 {
            return;
        }
        self.last_refill = now;
        let total = elapsed.saturating_add(self.carry_nanos);
        let per_token = (1_000_000_000 / self.rate_per_s).max(1);
        let new_tokens = total / per_token;
        self.carry_nanos = total % per_token;
        self.tokens = self.tokens.saturating_add(new_tokens).min(self.burst);
        if self.tokens == self.burst {
            self.carry_nanos = 0;
        }
    }

    /// Changes the refill rate and the depth (a reconfigure). Tokens earned so far at the old
    /// rate are kept, up to the new depth.
    pub fn set_limits(&mut self, now: Instant, rate_per_s: u32, burst: u32) {
        self.refill(now);
        self.rate_per_s = u64::from(rate_per_s.max(1));
        self.burst = u64::from(burst.max(1));
        self.tokens = self.tokens.min(self.burst);
        if self.tokens == self.burst {
            self.carry_nanos = 0;
        }
    }

    /// Takes one token; false when the bucket is empty.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Takes up to `n` tokens; returns how many were taken.
    pub fn take_up_to(&mut self, now: Instant, n: u64) -> u64 {
        self.refill(now);
        let taken = self.tokens.min(n);
        self.tokens -= taken;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn refills_at_rate_up_to_burst() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(t0, 10, 2);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        let t2 = t1 + Duration::from_secs(60);
        assert!(b.try_take(t2));
        assert!(b.try_take(t2));
        assert!(!b.try_take(t2));
    }

    #[test]
    fn takes_part_of_a_batch() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(t0, 100, 50);
        assert_eq!(b.take_up_to(t0, 30), 30);
        assert_eq!(b.take_up_to(t0, 30), 20);
        assert_eq!(b.take_up_to(t0, 30), 0);
        assert_eq!(b.take_up_to(t0 + Duration::from_millis(100), 30), 10);
    }

    #[test]
    fn set_limits_keeps_earned_tokens_up_to_the_new_depth() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(t0, 10, 5);
        b.set_limits(t0, 1, 2);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        // The new rate: one token per second, not ten.
        let t1 = t0 + Duration::from_millis(500);
        assert!(!b.try_take(t1));
        let t2 = t0 + Duration::from_millis(1000);
        assert!(b.try_take(t2));
        assert!(!b.try_take(t2));
    }
}
