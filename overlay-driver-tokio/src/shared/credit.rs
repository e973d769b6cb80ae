//! The byte budget of a connection's writer queue: the node task takes credit for each
//! transmit it queues, the writer gives it back once the bytes are written.

use core::fmt;

use crate::sync::{AtomicUsize, Ordering};

/// Bytes queued for one connection's writer, bounded by a capacity.
pub struct WriteCredit {
    queued: AtomicUsize,
    capacity: usize,
}

impl WriteCredit {
    /// A budget of `capacity` bytes, all free.
    pub fn new(capacity: usize) -> WriteCredit {
        WriteCredit {
            queued: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Takes `bytes` of credit; false (taking nothing) when that would exceed the capacity.
    /// An empty queue always admits one item, however large, so no single frame is stuck.
    pub fn try_take(&self, bytes: usize) -> bool {
        let mut queued = self.queued.load(Ordering::Relaxed);
        loop {
            let next = queued.saturating_add(bytes);
            if queued > 0 && next > self.capacity {
                return false;
            }
            match self.queued.compare_exchange_weak(
                queued,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }

    /// Gives back `bytes` of credit taken earlier (written, or never queued).
    pub fn give_back(&self, bytes: usize) {
        let mut queued = self.queued.load(Ordering::Relaxed);
        loop {
            // Never below zero, even if a caller gives back more than it took.
            let next = queued.saturating_sub(bytes);
            match self.queued.compare_exchange_weak(
                queued,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => queued = now,
            }
        }
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl fmt::Debug for WriteCredit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteCredit")
            .field("queued", &self.queued())
            .field("capacity", &self.capacity)
            .finish()
    }
}
