//! Counters and gauges as plain data. Drivers export them as metrics; tests assert on them.

use serde::{Deserialize, Serialize};

/// Why a frame, message or connection was refused or dropped. Every drop is counted by one of
/// these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// The peer exceeded its message rate (token bucket).
    Quota,
    /// The peer sent past the credit window we granted (inbound), or we had no credit and the
    /// queue was full (outbound).
    Credits,
    /// A frame or message larger than allowed, seen from the header.
    Oversize,
    /// Bytes that do not decode as OAP/1 or as an overlay message.
    Malformed,
    /// Missing or invalid capability token, or an overlay frame before the token.
    Unauth,
    /// A valid token whose caveats or scope forbid the operation.
    Forbidden,
    /// Refused because the node is saturated.
    Degraded,
    /// Refused because `max_sessions` sessions exist.
    MaxSessions,
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// A session queue was full.
    QueueFull,
    /// A message for a peer with no running session.
    NotConnected,
    /// IHAVE ids dropped because a batch was full.
    IhaveOverflow,
    /// A second session with the same peer.
    Duplicate,
    /// A HELLO granting less than the minimum window.
    SmallWindow,
    /// A session whose send queue made no progress for `stall_timeout`.
    Stalled,
    /// A connection from (or a session with) a banned peer or address.
    Banned,
    /// The peer's token expired during the session.
    Expired,
    /// A token bound (`overlay`/`peer` caveat) to another identity than the TLS one.
    WrongPeer,
    /// Refused because `max_preauth` connections are still handshaking.
    PreauthFull,
    /// Refused because `max_preauth_per_ip` connections from that IP are still handshaking.
    PreauthPerIp,
    /// GRAFT ids ignored: repeated, over the per-frame limit or over the per-peer rate.
    GraftFlood,
    /// IHAVE ids ignored: over the per-peer rate or the per-peer share of the missing table.
    IhaveFlood,
    /// SHUFFLE messages ignored: over the per-peer rate, or an unsolicited reply.
    ShuffleFlood,
    /// IHAVE / GRAFT ignored because the peer's score is below `gossip_threshold`.
    LowScore,
    /// A membership entry (HELLO `listen` or SHUFFLE) dropped: unspecified or loopback address
    /// from a non-loopback peer, or an attempt to re-point a pinned PeerId.
    BadAddress,
    /// A GOSSIP whose id is not BLAKE3(origin ‖ nonce ‖ payload).
    BadId,
    /// A GOSSIP without a valid origin signature (missing in `sign` mode, signed by a key
    /// that is not the origin's, or not verifying).
    BadSignature,
    /// A topic refused: a join over `max_topics`, or a TOPICS message naming more than
    /// `max_peer_topics` topics (the session is closed with 413).
    TopicLimit,
    /// A topic message from (or for) a peer that is not in the topic: a payload or control
    /// message of a topic the peer did not announce or its token does not cover, or that this
    /// node is not in.
    NotMember,
}

impl RejectReason {
    /// Number of variants (size of the counter array).
    pub const COUNT: usize = 29;
    /// Every variant, in counter order.
    pub const ALL: [RejectReason; Self::COUNT] = [
        RejectReason::Quota,
        RejectReason::Credits,
        RejectReason::Oversize,
        RejectReason::Malformed,
        RejectReason::Unauth,
        RejectReason::Forbidden,
        RejectReason::Degraded,
        RejectReason::MaxSessions,
        RejectReason::HandshakeTimeout,
        RejectReason::QueueFull,
        RejectReason::NotConnected,
        RejectReason::IhaveOverflow,
        RejectReason::Duplicate,
        RejectReason::SmallWindow,
        RejectReason::Stalled,
        RejectReason::Banned,
        RejectReason::Expired,
        RejectReason::WrongPeer,
        RejectReason::PreauthFull,
        RejectReason::PreauthPerIp,
        RejectReason::GraftFlood,
        RejectReason::IhaveFlood,
        RejectReason::ShuffleFlood,
        RejectReason::LowScore,
        RejectReason::BadAddress,
        RejectReason::BadId,
        RejectReason::BadSignature,
        RejectReason::TopicLimit,
        RejectReason::NotMember,
    ];

    /// The metrics label (`rejected_total{reason}`).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Quota => "quota",
            RejectReason::Credits => "credits",
            RejectReason::Oversize => "oversize",
            RejectReason::Malformed => "malformed",
            RejectReason::Unauth => "unauth",
            RejectReason::Forbidden => "forbidden",
            RejectReason::Degraded => "degraded",
            RejectReason::MaxSessions => "max_sessions",
            RejectReason::HandshakeTimeout => "handshake_timeout",
            RejectReason::QueueFull => "queue_full",
            RejectReason::NotConnected => "not_connected",
            RejectReason::IhaveOverflow => "ihave_overflow",
            RejectReason::Duplicate => "duplicate",
            RejectReason::SmallWindow => "small_window",
            RejectReason::Stalled => "stalled",
            RejectReason::Banned => "banned",
            RejectReason::Expired => "expired",
            RejectReason::WrongPeer => "wrong_peer",
            RejectReason::PreauthFull => "preauth_full",
            RejectReason::PreauthPerIp => "preauth_per_ip",
            RejectReason::GraftFlood => "graft_flood",
            RejectReason::IhaveFlood => "ihave_flood",
            RejectReason::ShuffleFlood => "shuffle_flood",
            RejectReason::LowScore => "low_score",
            RejectReason::BadAddress => "bad_address",
            RejectReason::BadId => "bad_id",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::TopicLimit => "topic_limit",
            RejectReason::NotMember => "not_member",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts by [`RejectReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReasonCounts(pub [u64; RejectReason::COUNT]);

impl ReasonCounts {
    /// Adds one.
    pub fn bump(&mut self, reason: RejectReason) {
        self.add(reason, 1);
    }

    /// Adds `n`.
    pub fn add(&mut self, reason: RejectReason, n: u64) {
        self.0[reason.index()] += n;
    }

    /// The count for one reason.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.0[reason.index()]
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` pairs, in counter order.
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL.iter().map(move |r| (*r, self.get(*r)))
    }
}

/// A snapshot of a node's counters (monotonic) and gauges (current values).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeStats {
    /// Client sessions: gauges and counters.
    #[serde(default)]
    pub clients: crate::client::ClientStats,
    /// Gauge: sessions in Running state.
    pub sessions_running: usize,
    /// Gauge: sessions still handshaking.
    pub sessions_handshaking: usize,
    /// Gauge: topics this node is in, the default topic included.
    #[serde(default)]
    pub topics_joined: usize,
    /// Gauge: eager (Plumtree) peers of the default topic.
    pub eager_peers: usize,
    /// Gauge: lazy (Plumtree) peers of the default topic.
    pub lazy_peers: usize,
    /// Gauge: known peers not connected.
    pub passive_peers: usize,
    /// Gauge: dials in flight.
    pub dials_in_flight: usize,
    /// Gauge: frames queued for credit, summed over sessions.
    pub queued_frames: usize,
    /// Gauge: bytes queued for credit, summed over sessions.
    pub queued_bytes: usize,
    /// Gauge: ids in the seen cache.
    pub seen_len: usize,
    /// Gauge: messages kept for GRAFT.
    pub store_len: usize,
    /// Gauge: bytes kept for GRAFT (payloads, signatures and a fixed per-message
    /// overhead: what `store_bytes` bounds).
    pub store_bytes: usize,
    /// Counters: messages that left the GRAFT store (or were never stored), by why.
    #[serde(default)]
    pub store_evictions: crate::StoreEvictions,
    /// Gauge: false while saturated.
    pub ready: bool,
    /// Counter: sessions that reached Running.
    pub sessions_opened: u64,
    /// Counter: sessions closed, any reason.
    pub sessions_closed: u64,
    /// Counter: handshakes that failed (timeout, auth, malformed…).
    pub handshake_failures: u64,
    /// Counter: dials started.
    pub dials_started: u64,
    /// Counter: dials that failed.
    pub dials_failed: u64,
    /// Counter: operator dials (`Input::Dial`) refused as `Busy` because
    /// `max_concurrent_dials` dials were in flight.
    pub dials_refused: u64,
    /// Counter: addresses not kept because the passive list was full (`passive_capacity`) of
    /// entries they may not replace.
    pub passive_dropped: u64,
    /// Counter: frames received.
    pub frames_in: u64,
    /// Counter: frames sent.
    pub frames_out: u64,
    /// Counter: bytes received.
    pub bytes_in: u64,
    /// Counter: bytes sent.
    pub bytes_out: u64,
    /// Counter: broadcasts originated here.
    pub gossip_originated: u64,
    /// Counter: first-time deliveries to the application.
    pub gossip_delivered: u64,
    /// Counter: duplicate gossip payloads received.
    pub gossip_duplicates: u64,
    /// Counter: gossip payloads sent (eager pushes and graft answers).
    pub gossip_sent: u64,
    /// Counter: sum of hop counts of delivered messages.
    pub delivered_hops_sum: u64,
    /// Counter: largest hop count delivered.
    pub delivered_hops_max: u8,
    /// Counter: IHAVE ids sent.
    pub ihave_sent: u64,
    /// Counter: IHAVE ids received.
    pub ihave_received: u64,
    /// Counter: GRAFT requests sent.
    pub grafts_sent: u64,
    /// Counter: GRAFT requests received.
    pub grafts_received: u64,
    /// Counter: ids answered with GRAFT_MISS (asked for by a GRAFT, seen here but no longer
    /// held).
    pub graft_misses_sent: u64,
    /// Counter: ids received in GRAFT_MISS answers to our GRAFTs (the next announcer is asked
    /// at once).
    pub graft_misses_received: u64,
    /// Counter: ids of GRAFT_MISS answers that came within `graft_miss_grace` of the peer's
    /// own IHAVE for them (counted, not scored: the store's hold is bounded).
    pub graft_misses_too_soon: u64,
    /// Counter: ids in GRAFT_MISS frames that answered no GRAFT of ours (ignored).
    pub graft_misses_unsolicited: u64,
    /// Counter: RUNNING_PEERS requests a probe round sent (its probe is drawn from the answer).
    pub link_probe_asks: u64,
    /// Counter: link-optimisation probes dialed (`link_optimization`).
    pub link_probes: u64,
    /// Counter: probes closed before their handshake, not clearly faster than the slowest
    /// droppable link.
    pub link_probes_rejected: u64,
    /// Counter: slow links closed for a faster probe (`CloseReason::Optimized`).
    pub links_optimized: u64,
    /// Counter: PRUNE sent.
    pub prunes_sent: u64,
    /// Counter: PRUNE received.
    pub prunes_received: u64,
    /// Counter: tree optimisation swaps (a lazy link with a shorter path made eager, the
    /// eager link it replaces pruned).
    pub tree_swaps: u64,
    /// Counter: new messages that came first over a link on probation and were held back
    /// from the established eager links (`link_probation`).
    pub gossip_held: u64,
    /// Counter: held messages forwarded to the established eager links (the tree's copy
    /// came, or `graft_timeout` passed).
    pub gossip_released: u64,
    /// Counter: duplicates over established eager links not taken as redundant because the
    /// first copy came over a link on probation.
    pub tree_edges_spared: u64,
    /// Counter: duplicates over a settled tree edge whose first copy came over a young link,
    /// where the young link stayed because that edge had a young link pruned within
    /// `optimization_hold` (the rate limit on that rule; the duplicate was judged by the
    /// usual rules).
    pub young_links_kept: u64,
    /// Counter: direct messages delivered.
    pub direct_delivered: u64,
    /// Counter: overlay frames received, by [`crate::wire::Kind`] index.
    pub frames_in_by_kind: [u64; crate::wire::Kind::ALL.len()],
    /// Counter: overlay frames sent, by [`crate::wire::Kind`] index.
    pub frames_out_by_kind: [u64; crate::wire::Kind::ALL.len()],
    /// Counter: inbound rejects and outbound drops, by reason.
    pub rejected: ReasonCounts,
    /// Counter: readiness transitions to not-ready.
    pub degraded_transitions: u64,
    /// Gauge: inbound connections still in HELLO/START (the pre-auth budget in use).
    pub preauth_sessions: usize,
    /// Counter: score penalties by [`crate::score::Penalty`] (in `Penalty::ALL` order),
    /// summed over occurrences.
    pub score_penalties: [u64; crate::score::Penalty::COUNT],
    /// Counter: peers banned.
    pub peers_banned: u64,
    /// Gauge: peers banned now.
    pub bans_active: usize,
    /// Gauge: lowest score among running sessions (0 with none).
    pub lowest_score: f64,
    /// Counter: sessions closed by the failure detector (`CloseReason::PeerUnresponsive`).
    pub peers_unresponsive: u64,
    /// Counter: heartbeat frames sent (CREDIT or PING on a session that sent nothing else).
    pub heartbeats_sent: u64,
    /// Counter: tree rebuilds after a failure nearby (`tree_rebuild_losses` running sessions
    /// lost to closed connections within `tree_settle`): every link made eager and new.
    pub tree_rebuilds: u64,
    /// Counter: links that joined a tree lazy (pruned at once) because they opened while the
    /// node was repairing it after a failure nearby (a running session lost to a closed
    /// connection within `tree_settle`).
    pub links_joined_lazy: u64,
}
