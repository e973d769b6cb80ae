//! # svc-overlay
//!
//! The tokio driver for the `overlay-proto` core: TLS sessions over TCP, HTTP health, metrics and
//! the control API, and the Rust library API. It holds no protocol logic of its own.

pub mod config;
pub mod http;
pub mod pq;
pub mod telemetry;
pub mod tls;
