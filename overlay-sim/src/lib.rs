//! # overlay-sim
//!
//! The svc-overlay simulator, in three modes:
//!
//! - **Large-scale mode** ([`scale`]): thousands of `overlay-proto` cores in one process on the
//!   core's discrete-event network ([`overlay_proto::mesh`]): virtual time, per-connection
//!   latency drawn uniformly from a seeded range, no sockets and no TLS. Scenarios measure the
//!   standard epidemic-broadcast figures: reliability, relative message redundancy (RMR),
//!   last-delivery hop (LDH) and time to last delivery.
//! - **Trace replay** ([`replay`]): feeds a trace captured by `svc-overlay --trace-out` into a
//!   fresh core and checks every action against the recording.
//! - **Chaos** ([`chaos`]): the real tokio driver on turmoil hosts under seeded faults.
//! - **Liveness** ([`liveness`]): the failure detector on the mesh: the mass-kill table with
//!   kind and silent kills, detection times, false positives under loss and jitter.
//!
//! Every run ends with a `digest: <hex>` line that fingerprints every decision of the run: the
//! same command twice gives the same digest. The command-line front end is in [`cli`], one
//! subcommand per mode.

pub mod chaos;
pub mod cli;
pub mod error;
pub mod liveness;
pub mod pair;
pub mod progress;
pub mod replay;
pub mod report;
pub mod scale;

pub use error::SimError;

/// Process exit code of a run whose invariants held (or a replay without divergence).
pub const EXIT_OK: u8 = 0;
/// Process exit code of a run that broke an invariant, or a replay that diverged.
pub const EXIT_FAILED: u8 = 1;
/// Process exit code of a usage, input or IO error (also clap's code for bad arguments).
pub const EXIT_ERROR: u8 = 2;
