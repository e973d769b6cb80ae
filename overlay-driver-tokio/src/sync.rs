//! The atomics of the driver's shared state ([`crate::shared`]).
//!
//! `std::sync::atomic` normally; `loom::sync::atomic` when built with
//! `RUSTFLAGS="--cfg loom"`, so the `loom_overlay` test model-checks every interleaving of the
//! very code the runtime runs. `Arc` stays `std`'s in both builds: loom checks the state
//! behind it, not its reference count.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

pub(crate) use std::sync::Arc;
