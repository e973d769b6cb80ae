//! Readiness as one atomic state: ready, not ready, or shutting down (terminal).

use core::fmt;

use crate::sync::{AtomicU8, Ordering};

/// What the readiness flag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    /// The node accepts work.
    Ready,
    /// Saturated or missing something; may become ready again.
    NotReady,
    /// Shutting down: never ready again.
    ShuttingDown,
}

const READY: u8 = 0;
const NOT_READY: u8 = 1;
const SHUTTING_DOWN: u8 = 2;

fn decode(v: u8) -> ReadyState {
    match v {
        READY => ReadyState::Ready,
        NOT_READY => ReadyState::NotReady,
        _ => ReadyState::ShuttingDown,
    }
}

/// Readiness that any task may update and read; once shutting down, updates are refused.
pub struct ReadyFlag {
    state: AtomicU8,
}

impl ReadyFlag {
    /// A flag in the given state (`ready` or not).
    pub fn new(ready: bool) -> ReadyFlag {
        ReadyFlag {
            state: AtomicU8::new(if ready { READY } else { NOT_READY }),
        }
    }

    /// Sets ready or not ready; false (changing nothing) once shutting down.
    pub fn set(&self, ready: bool) -> bool {
        let want = if ready { READY } else { NOT_READY };
        let mut now = self.state.load(Ordering::Acquire);
        loop {
            if now == SHUTTING_DOWN {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(now, want, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(v) => now = v,
            }
        }
    }

    /// Enters shutting down for good. True for the call that did it.
    pub fn shut_down(&self) -> bool {
        self.state.swap(SHUTTING_DOWN, Ordering::AcqRel) != SHUTTING_DOWN
    }

    /// The current state.
    pub fn state(&self) -> ReadyState {
        decode(self.state.load(Ordering::Acquire))
    }
}

impl fmt::Debug for ReadyFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyFlag")
            .field("state", &self.state())
            .finish()
    }
}
