//! The driver runtime: maps the sans-IO core onto tokio sockets and TLS.
//!
//! It holds no protocol logic. One **node task** owns the [`overlay_proto::Node`] (no lock):
//! it waits for an input (socket bytes, connection events, application commands) or the
//! core's next deadline, applies it with `Node::handle`, drains `poll_action` and carries each
//! action out. Around it:
//!
//! - [`net`]: the pluggable IO trait ([`Net`]) and its tokio implementation ([`TokioNet`]);
//! - `accept`: listener, `max_conns`, first-byte demultiplexing (TLS vs HTTP), TLS accept
//!   under the handshake deadline, crash-only supervisor;
//! - `dial`: TCP connect + TLS client handshake for `Action::Connect`;
//! - `conn`: one reader and one (batching) writer task per connection, bounded queues;
//! - `read_ahead`: the socket read buffer below TLS, held only while a connection is busy;
//! - [`seeds`]: configured peers: names resolved with backoff, pinned identities;
//! - `trace_out`: trace capture on a dedicated thread;
//! - [`clock`]: `tokio::time` ↔ the core's `Instant`;
//! - `metrics`: driver counters and the mirror of the core's stats.
//!
//! The public entry point is [`crate::api::Overlay`].

pub(crate) mod accept;
pub mod clock;
pub(crate) mod conn;
pub(crate) mod dial;
pub(crate) mod metrics;
pub mod net;
pub(crate) mod node_task;
pub(crate) mod preauth;
pub(crate) mod read_ahead;
pub mod seeds;
pub(crate) mod trace_out;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use overlay_proto::{ConnId, DialId, Direction, OverlayError as CoreError, PeerId};
use tokio_rustls::TlsStream;

pub use self::metrics::DriverStats;
pub use clock::Clock;
pub use net::{Net, TokioNet, TLS_HANDSHAKE_BYTE};

use self::conn::Side;
use self::metrics::ConnSlot;

/// The service name used in [`crate::api::KernelEvent`]s.
pub const SERVICE: &str = "svc-overlay";

/// Receives plain-HTTP connections from the listener's first-byte demultiplexer (the stream
/// has not been read from: the first byte is still there). It must not block: spawn a task.
pub type HttpHandler<S> = Arc<dyn Fn(S, SocketAddr) + Send + Sync>;

/// Socket deadlines of the runtime (the TLS handshake deadline is the core's
/// `NodeConfig::handshake_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Backstop: a connection that delivers nothing for this long is closed. Liveness is
    /// the core's decision (its failure detector closes a silent session after
    /// `NodeConfig::liveness_timeout`, at most `idle_timeout`); keep this above both.
    pub read: Duration,
    /// One batched write (and flush) that takes longer than this closes the connection.
    pub write: Duration,
    /// Graceful shutdown: how long writers may flush before remaining tasks are aborted.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        use crate::config::defaults;
        Timeouts {
            read: defaults::READ,
            write: defaults::WRITE,
            drain: defaults::DRAIN,
        }
    }
}

/// A TLS session ready for the core.
pub(crate) struct Established<S> {
    pub(crate) conn: ConnId,
    /// The TLS stream over the socket (with a read buffer below TLS while busy).
    pub(crate) stream: TlsStream<read_ahead::ReadAhead<S>>,
    /// The TLS-proven identity; `None` for a client session (no client certificate).
    pub(crate) peer: Option<PeerId>,
    pub(crate) remote: SocketAddr,
    pub(crate) direction: Direction,
    pub(crate) dial: Option<DialId>,
    pub(crate) kx_group: Option<String>,
    pub(crate) slot: ConnSlot,
    /// Inbound connections: the pre-auth slot, held until the session finishes START.
    pub(crate) preauth: Option<preauth::PreAuthSlot>,
}

/// What socket-side tasks send the node task (the "bus").
pub(crate) enum BusMsg<S> {
    /// An inbound TLS session finished its handshake.
    Up(Box<Established<S>>),
    /// Bytes read from a connection. Boxed: the bus allocates its slots in blocks of 32, each
    /// as large as the largest message (8 bytes instead of ≈ 120 per slot).
    Received(Box<Received>),
    /// A connection task ended.
    Ended {
        conn: ConnId,
        side: Side,
        error: Option<CoreError>,
    },
}

/// Bytes read from a connection ([`BusMsg::Received`]).
pub(crate) struct Received {
    pub(crate) conn: ConnId,
    pub(crate) data: Bytes,
    /// Content-check verdicts of the GOSSIP frames in `data` (computed by the reader).
    pub(crate) checks: overlay_proto::Prechecked,
    /// When the read completed (`deliver` latency).
    pub(crate) at: tokio::time::Instant,
    /// `data`'s share of the node's read budget, given back once the node task handled it
    /// (see [`conn::READ_BUDGET_BYTES`]).
    pub(crate) budget: tokio::sync::OwnedSemaphorePermit,
}

/// A tiny deterministic generator for retry jitter (not for anything the core decides).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniformly in `[d/2, d)`.
    pub(crate) fn jitter(&mut self, d: Duration) -> Duration {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(2);
        let half = nanos / 2;
        Duration::from_nanos(half + self.next_u64() % half.max(1))
    }
}
