//! # svc-overlay
//!
//! The tokio driver for the `overlay-proto` core: TLS sessions over TCP, HTTP health, metrics and
//! the control API, and the Rust library API. It holds no protocol logic of its own.
//!
//! Built with `--cfg loom` (the `loom_overlay` test) the crate is only its shared state
//! ([`shared`] on loom's atomics): tokio has no `net` module under that flag.

#[cfg(not(loom))]
pub mod api;
#[cfg(not(loom))]
pub mod client;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
pub mod daemon;
#[cfg(not(loom))]
pub mod http;
#[cfg(not(loom))]
pub mod operator;
#[cfg(not(loom))]
pub mod pq;
#[cfg(not(loom))]
pub mod runtime;
// Public only in the loom build, for the `loom_overlay` model-checking test.
#[cfg(loom)]
pub mod shared;
#[cfg(not(loom))]
pub(crate) mod shared;
mod sync;
#[cfg(not(loom))]
pub mod telemetry;
#[cfg(not(loom))]
pub mod tls;

#[cfg(not(loom))]
pub use api::{
    DialTarget, DirectMessage, DirectSubscription, KernelEvent, Overlay, OverlayBuilder,
    OverlayError, Readiness, SessionHandle, Subscription,
};
#[cfg(not(loom))]
pub use runtime::{DriverStats, HttpHandler, Net, Timeouts, TokioNet};
