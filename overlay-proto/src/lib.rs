//! # overlay-proto
//!
//! The deterministic, sans-IO core of svc-overlay. A [`Node`] is a state machine: feed it
//! [`Input`]s with [`Node::handle`], then drain [`Node::poll_action`] until it returns `None`,
//! and wake it again at [`Node::poll_timeout`]. It performs no IO, reads no clock (time is an
//! argument) and draws randomness only from a seeded generator it owns, so the same inputs
//! give the same actions, bit for bit — in the daemon, in the simulator and in trace replay.
//!
//! The OAP/1 codec ([`frame`]) and the capability-token verifier ([`capability`]) are pure
//! functions and live here too.
//!
//! Feature `test-util`: `mesh`, a deterministic in-memory network of nodes with virtual time
//! (the core's own tests, the simulator and benchmarks use it; the daemon does not build it).

// Public modules: the pure codecs and verifiers users call directly, the protocol vocabulary
// of client sessions, origin authentication and peer scores, the GOSSIP content checks the
// driver runs in its readers, and trace files. Everything else is internal; the types callers
// use are re-exported below.
pub mod capability;
pub mod client;
pub mod frame;
#[cfg(any(test, feature = "test-util"))]
pub mod mesh;
pub mod origin;
pub mod precheck;
pub mod score;
pub mod trace;
pub mod wire;

mod action;
mod cache;
mod chunks;
mod config;
mod error;
mod idhash;
mod input;
mod keys;
mod liveness;
mod membership;
mod mentions;
mod node;
mod optimizer;
mod passive;
mod peer;
mod plumtree;
mod preauth;
mod ratelimit;
mod rebuild;
// Public with `test-util` only, so benchmarks can measure a session's size.
#[cfg(feature = "test-util")]
pub mod session;
#[cfg(not(feature = "test-util"))]
mod session;
mod sessions;
mod stats;
mod time;
mod topic;

pub use action::{
    Action, CloseReason, Delivery, DialOutcome, NeighborChange, NeighborDownReason, SessionEvent,
};
pub use cache::StoreEvictions;
pub use chunks::Chunks;
pub use client::{ClientEvent, ClientInfo, ClientLimits, ClientRejectReason, ClientStats};
pub use config::{
    AuthConfig, ConfigError, LiveSettings, NodeConfig, ReconfigureError, OVERLAY_APP_PROTO_ID,
};
pub use error::OverlayError;
pub use input::Input;
pub use keys::{KeyEntry, KeyProvider, KeyRing, MacKey, SecretToken};
pub use node::{
    Node, NodeIdentity, SessionInfo, SessionState, ValidationMode, ValidationStats, Verdict,
};
pub use origin::{OriginAuth, OriginSignature, OriginSigner, SigningSeed};
pub use peer::{
    ConnId, DialId, Direction, MessageId, ParsePeerIdError, PeerId, ED25519_SPKI_PREFIX,
};
pub use preauth::PreAuthBudget;
pub use precheck::{Prechecked, Prechecker};
pub use stats::{NodeStats, ReasonCounts, RejectReason};
pub use time::Instant;
pub use topic::{
    validate_topic_name, TopicId, TopicNameError, DEFAULT_TOPIC_NAME, MAX_TOPIC_NAME_LEN,
};
