//! # svc-overlay
//!
//! The tokio driver for the `overlay-proto` core: TLS sessions over TCP, HTTP health, metrics and
//! the control API, and the Rust library API. It holds no protocol logic of its own.
//!
//! Built with `--cfg loom` (the `loom_overlay` test) the crate is only its shared state
//! ([`shared`] on loom's atomics): tokio has no `net` module under that flag.

/// The README's Rust snippets, compiled as doc tests (`cargo test --doc`) so they stay true.
#[cfg(all(doctest, not(loom)))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[cfg(not(loom))]
pub mod api;
#[cfg(not(loom))]
pub mod client;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
pub mod daemon;
#[cfg(not(loom))]
pub mod feed;
#[cfg(not(loom))]
pub mod http;
#[cfg(not(loom))]
pub mod operator;
#[cfg(not(loom))]
pub mod pq;
#[cfg(not(loom))]
mod runtime;
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
    DialTarget, DirectMessage, DirectSubscription, Error, Event, EventStream, KernelEvent, Overlay,
    OverlayBuilder, OverlayError, PendingValidation, Readiness, SessionHandle, Subscription, Topic,
    TopicSender, Validator,
};
#[cfg(not(loom))]
pub use runtime::{DriverStats, HttpHandler, Net, Timeouts, TokioNet, TLS_HANDSHAKE_BYTE};

/// The core types library users touch, re-exported so a `svc_overlay` dependency is enough.
#[cfg(not(loom))]
pub use overlay_proto::{
    CloseReason, Delivery, Direction, LiveSettings, MessageId, NeighborDownReason, NodeConfig,
    NodeStats, PeerId, SessionInfo, TopicId, ValidationMode, ValidationStats, Verdict,
};

/// The sans-IO core (`overlay-proto`) this crate drives, for everything not re-exported above.
#[cfg(not(loom))]
pub use overlay_proto as proto;
