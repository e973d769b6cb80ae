//! # svc-overlay
//!
//! The tokio driver for the `overlay-proto` core: TLS sessions over TCP, HTTP health, metrics and
//! the control API, and the Rust library API. It holds no protocol logic of its own.

pub mod api;
pub mod config;
pub mod daemon;
pub mod http;
pub mod operator;
pub mod pq;
pub mod runtime;
// Public only in the loom build, for the `loom_overlay` model-checking test.
#[cfg(loom)]
pub mod shared;
#[cfg(not(loom))]
pub(crate) mod shared;
mod sync;
pub mod telemetry;
pub mod tls;

pub use api::{
    DialTarget, DirectMessage, DirectSubscription, KernelEvent, Overlay, OverlayBuilder,
    OverlayError, Readiness, SessionHandle, Subscription,
};
pub use runtime::{DriverStats, HttpHandler, Net, Timeouts, TokioNet};
