//! The connection registry: how many TCP connections are open, admitted against a limit.

use core::fmt;

use crate::sync::{Arc, AtomicUsize, Ordering};

/// Counts open TCP connections (inbound and outbound, handshaking included).
pub struct ConnRegistry {
    live: AtomicUsize,
}

impl ConnRegistry {
    /// An empty registry.
    pub fn new() -> ConnRegistry {
        ConnRegistry {
            live: AtomicUsize::new(0),
        }
    }

    /// Admits one more connection unless `max` are open already. Exact under concurrency:
    /// never more than `max` slots exist at once through this call.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<ConnSlot> {
        let mut live = self.live.load(Ordering::Relaxed);
        loop {
            if live >= max {
                return None;
            }
            match self.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ConnSlot {
                        registry: Arc::clone(self),
                    })
                }
                Err(now) => live = now,
            }
        }
    }

    /// Counts one more connection without a limit (our own dials, bounded by the core).
    pub fn acquire(self: &Arc<Self>) -> ConnSlot {
        self.live.fetch_add(1, Ordering::AcqRel);
        ConnSlot {
            registry: Arc::clone(self),
        }
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl Default for ConnRegistry {
    fn default() -> Self {
        ConnRegistry::new()
    }
}

impl fmt::Debug for ConnRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnRegistry")
            .field("live", &self.live())
            .finish()
    }
}

/// One open connection, counted in its [`ConnRegistry`] until dropped.
pub struct ConnSlot {
    registry: Arc<ConnRegistry>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.registry.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnSlot")
    }
}
