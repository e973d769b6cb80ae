//! The shutdown signal: set once by the node task, seen by every task that polls or awaits it.

use core::fmt;

use crate::sync::{AtomicBool, Ordering};

/// A one-way stop signal. Under tokio, [`StopSignal::stopped`] awaits it without missing a
/// trigger that races with the wait.
pub struct StopSignal {
    stopped: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StopSignal {
    /// Not stopped.
    pub fn new() -> StopSignal {
        StopSignal {
            stopped: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Signals stop and wakes every waiter. True for the call that stopped it.
    pub fn stop(&self) -> bool {
        let first = !self.stopped.swap(true, Ordering::AcqRel);
        self.notify.notify_waiters();
        first
    }

    /// True once [`StopSignal::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Resolves once stopped (at once if already stopped). Cancel-safe.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a `stop` after the check wakes this future.
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal::new()
    }
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopSignal")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}
