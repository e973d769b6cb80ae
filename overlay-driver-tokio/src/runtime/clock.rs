//! The runtime's clock: the core's [`Instant`] is the time elapsed on `tokio::time` since the
//! runtime started (turmoil drives that clock in the simulator).

use std::time::Duration;

use overlay_proto::Instant;

/// Converts between `tokio::time::Instant` and the core's epoch-relative [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
}

/// Far enough in the future to mean "never", small enough not to overflow `tokio` timers.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    /// The core's time for a `tokio` instant (epoch when earlier than the start).
    pub fn at(&self, t: tokio::time::Instant) -> Instant {
        Instant::from_duration(t.saturating_duration_since(self.start))
    }

    /// The `tokio` instant of a core deadline.
    pub fn deadline(&self, t: Instant) -> tokio::time::Instant {
        let since = t.since_epoch().min(FAR_FUTURE);
        self.start
            .checked_add(since)
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR_FUTURE)
    }
}
