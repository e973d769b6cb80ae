//! The benchmark and model-checking harness of the `svc-overlay` driver.
//!
//! This package holds no code of its own: its targets are the driver's benchmarks
//! (`benches/overlay_bench.rs`, `benches/loopback_latency.rs`) and its loom model
//! (`tests/loom_overlay.rs`), kept under the package name the documented commands use:
//!
//! ```sh
//! cargo bench -p overlay-driver-tokio --bench overlay_bench -- mesh --nodes 32
//! RUSTFLAGS="--cfg loom" cargo test -p overlay-driver-tokio --test loom_overlay
//! ```
//!
//! The driver — the `svc-overlay` daemon and the Rust library `svc_overlay` — is the package
//! `svc-overlay` in the directory above this one.
