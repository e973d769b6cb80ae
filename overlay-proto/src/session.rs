//! Per-connection session state: handshake phase, credit windows, the bounded outbound queue,
//! quotas and capability limits.

use bytes::{BufMut, Bytes, BytesMut};
use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::chunks::ChunkBuf;
use crate::frame::Header;
use crate::liveness::Liveness;
use crate::peer::{ConnId, DialId, Direction, PeerId};
use crate::ratelimit::TokenBucket;
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::CreditGrant;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Server side: waiting for the client's HELLO.
    AwaitHello,
    /// Client side: HELLO sent, waiting for the reply.
    AwaitHelloReply,
    /// Server side: HELLO answered, waiting for START with the client's token.
    AwaitStart,
    /// Client side: START sent, waiting for the server's verdict.
    AwaitStartReply,
    /// Open: overlay messages flow.
    Running,
    /// Close requested; nothing more is read or sent.
    Closing,
}

impl Phase {
    /// True before `Running`.
    pub fn is_handshaking(self) -> bool {
        matches!(
            self,
            Phase::AwaitHello | Phase::AwaitHelloReply | Phase::AwaitStart | Phase::AwaitStartReply
        )
    }
}

/// A window in frames and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Frames.
    pub frames: u32,
    /// Bytes.
    pub bytes: u64,
}

impl Window {
    /// True when one frame of `len` bytes fits.
    pub fn fits(&self, len: usize) -> bool {
        self.frames >= 1 && self.bytes >= len as u64
    }

    /// Takes one frame of `len` bytes (call only after `fits`).
    pub fn take(&mut self, len: usize) {
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len as u64);
    }

    /// Adds a grant.
    pub fn add(&mut self, frames: u32, bytes: u64) {
        self.frames = self.frames.saturating_add(frames);
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// Frames waiting for credit, back to back (shared payloads by reference, see
/// [`ChunkBuf`]).
#[derive(Debug, Default)]
pub struct OutQueue {
    buf: ChunkBuf,
    /// Length and kind index of each queued frame.
    lens: VecDeque<(u32, u8)>,
}

impl OutQueue {
    /// Frames queued.
    pub fn frames(&self) -> usize {
        self.lens.len()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The buffer to write the next frame into; call [`OutQueue::commit`] with its length.
    pub fn buf_mut(&mut self) -> &mut ChunkBuf {
        &mut self.buf
    }

    /// Records that a frame of `len` bytes and kind index `kind` was appended to the buffer.
    pub fn commit(&mut self, len: usize, kind: u8) {
        self.lens.push_back((len as u32, kind));
    }

    /// Length of the oldest queued frame.
    pub fn front_len(&self) -> Option<usize> {
        self.lens.front().map(|(l, _)| *l as usize)
    }

    /// Moves the oldest frame to `out` (shared payloads stay shared); returns its kind index.
    pub fn pop_into(&mut self, out: &mut ChunkBuf) -> Option<u8> {
        let (len, kind) = self.lens.pop_front()?;
        self.buf.move_front(len as usize, out);
        Some(kind)
    }

    /// Drops everything queued; returns the number of frames dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.lens.len();
        self.lens.clear();
        self.buf.clear();
        n
    }

    /// Releases buffer memory when nothing is queued.
    pub fn shrink_if_idle(&mut self) {
        if self.lens.is_empty() && (self.buf.capacity() > 0 || self.lens.capacity() > 0) {
            self.buf.clear();
            self.lens = VecDeque::new();
        }
    }
}

/// Limits taken from the peer's capability token (scope and caveats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Bit set of allowed [`crate::wire::Operation`]s.
    pub operations: u8,
    /// Largest message the peer may send.
    pub max_message_bytes: usize,
    /// The token's `Rate` caveat (messages per second, burst), if any: the peer's quota is
    /// never above it, whatever the node's configured quota (also after a reconfigure).
    pub rate_cap: Option<(u32, u32)>,
}

/// Per-peer rate limits on control traffic (see `NodeConfig::graft_rate_per_s` and friends).
#[derive(Debug, Clone, Copy)]
pub struct ControlBuckets {
    /// GRAFT ids.
    pub graft: TokenBucket,
    /// IHAVE ids.
    pub ihave: TokenBucket,
    /// Duplicate messages tolerated before they are scored.
    pub duplicate: TokenBucket,
    /// SHUFFLE messages.
    pub shuffle: TokenBucket,
}

/// What the driver told us about a new connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Driver's connection handle.
    pub conn: ConnId,
    /// TLS-proven identity of the peer.
    pub peer: PeerId,
    /// Remote socket address.
    pub remote: SocketAddr,
    /// Who dialed.
    pub direction: Direction,
    /// For outbound sessions, the dial it answers.
    pub dial: Option<DialId>,
    /// Negotiated TLS group.
    pub kx_group: Option<String>,
}

/// One connection's session.
#[derive(Debug)]
pub struct Session {
    /// Driver's connection handle.
    pub conn: ConnId,
    /// TLS-proven identity of the peer.
    pub peer: PeerId,
    /// Remote socket address.
    pub remote: SocketAddr,
    /// Who dialed.
    pub direction: Direction,
    /// For outbound sessions, the dial it answers.
    pub dial: Option<DialId>,
    /// Negotiated TLS group.
    pub kx_group: Option<String>,
    /// Handshake / running / closing.
    pub phase: Phase,
    /// When the connection came up.
    pub opened_at: Instant,
    /// Failure detector: when the peer was last heard, heartbeats, round-trip estimate.
    pub liveness: Liveness,
    /// When bytes from the peer last arrived (never moved by our own stalls, unlike the
    /// failure detector's clock): a peer not heard since our GRAFT broke no promise yet.
    pub received_at: Instant,
    /// Bytes received and not yet decoded.
    pub recv_buf: BytesMut,
    /// Stream offset of `recv_buf`'s first byte (bytes of whole frames decoded so far).
    pub recv_pos: u64,
    /// Frames ready to transmit at the end of this input.
    pub out: ChunkBuf,
    /// Frames waiting for credit.
    pub queue: OutQueue,
    /// What we may still send.
    pub send_window: Window,
    /// What the peer may still send us.
    pub recv_allowance: Window,
    /// Received since our last grant (returned in the next CREDIT).
    pub recv_since_grant: Window,
    /// The peer's message quota.
    pub rate: TokenBucket,
    /// Limits from the peer's token.
    pub grant: Grant,
    /// The topics the peer announced (TOPICS), ascending; the default topic is implied.
    pub peer_topics: Vec<TopicId>,
    /// The topics the peer's token covers (ascending), or `None` when it does not restrict
    /// topics.
    pub allowed_topics: Option<Vec<TopicId>>,
    /// We asked the peer for members of this topic (TOPIC_PEERS) and wait for the answer.
    pub topic_peers_pending: Option<TopicId>,
    /// The address the peer accepts connections on (from its HELLO).
    pub listen: Option<SocketAddr>,
    /// The peer understands GRAFT_MISS (its HELLO said `graft_miss`).
    pub graft_miss: bool,
    /// The peer answers RUNNING_PEERS requests (its HELLO said `running_peers`).
    pub running_peers: bool,
    /// When we asked the peer for its running peers (RUNNING_PEERS), while its answer is
    /// owed (one answer per request is taken, however late).
    pub running_peers_asked: Option<Instant>,
    /// Frames sent and not yet re-credited.
    pub inflight_frames: u32,
    /// Listed in the node's dirty list this round.
    pub dirty: bool,
    /// Rate limits on the peer's control traffic.
    pub control: ControlBuckets,
    /// Entries of the node's missing-id table this peer's announcements created and that are
    /// still pending.
    pub missing_owned: usize,
    /// Last time the send queue was empty or a queued frame left it.
    pub queue_progress_at: Instant,
    /// When the peer's token stops being valid (`Exp` + skew), if it expires.
    pub token_expires_at: Option<Instant>,
    /// We sent SHUFFLE and wait for the reply.
    pub shuffle_pending: bool,
    /// The session holds a slot of the node's pre-auth budget (inbound, before START).
    pub holds_preauth: bool,
    /// Callers' `Input::Dial` tags waiting for this session to run (reported with
    /// `SessionEvent::Up`, or failed with `Action::DialResult` when it closes first).
    pub dial_requests: Vec<u64>,
}

/// Outcome of handing one frame to [`Session::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written to the transmit buffer.
    Now,
    /// Waiting in the queue for credit.
    Queued,
    /// Dropped: the queue is full (the caller counts it).
    Dropped,
}

/// Bounds of a session's send queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Frames queued at most.
    pub frames: usize,
    /// Bytes queued at most.
    pub bytes: usize,
}

impl QueueLimits {
    /// The queue's fill ratio, 0 (empty) to 1 (full in frames or bytes).
    pub fn load(&self, queue: &OutQueue) -> f64 {
        (queue.frames() as f64 / self.frames as f64).max(queue.bytes() as f64 / self.bytes as f64)
    }
}

/// One frame's body: copied parts, then a payload shared by reference when it is large
/// enough (see [`ChunkBuf::put_shared`]); `header.len` counts them all.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    /// Copied into the buffer, in order.
    pub parts: &'a [&'a [u8]],
    /// Appended after `parts` (a gossip payload, sent to several peers).
    pub shared: Option<&'a Bytes>,
}

impl<'a> Body<'a> {
    /// A body of copied parts only.
    pub fn copied(parts: &'a [&'a [u8]]) -> Self {
        Body {
            parts,
            shared: None,
        }
    }

    /// Its length in bytes.
    pub fn byte_len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum::<usize>() + self.shared.map_or(0, Bytes::len)
    }
}

/// Appends one frame, `header` then `body`, to `out`.
pub(crate) fn write_frame(out: &mut ChunkBuf, header: &Header, body: Body<'_>) {
    let copied = (header.len as usize).saturating_sub(body.shared.map_or(0, Bytes::len));
    let tail = out.tail_with_room(copied);
    header.write(tail);
    for part in body.parts {
        tail.put_slice(part);
    }
    if let Some(shared) = body.shared {
        out.put_shared(shared);
    }
}

impl Session {
    /// A session that just finished TLS.
    pub fn new(
        now: Instant,
        info: ConnectionInfo,
        rate: TokenBucket,
        control: ControlBuckets,
        grant: Grant,
    ) -> Self {
        let ConnectionInfo {
            conn,
            peer,
            remote,
            direction,
            dial,
            kx_group,
        } = info;
        Session {
            conn,
            peer,
            remote,
            direction,
            dial,
            kx_group,
            phase: match direction {
                Direction::Outbound => Phase::AwaitHelloReply,
                Direction::Inbound => Phase::AwaitHello,
            },
            opened_at: now,
            liveness: Liveness::new(now),
            received_at: now,
            recv_buf: BytesMut::new(),
            recv_pos: 0,
            out: ChunkBuf::default(),
            queue: OutQueue::default(),
            send_window: Window::default(),
            recv_allowance: Window::default(),
            recv_since_grant: Window::default(),
            rate,
            grant,
            peer_topics: Vec::new(),
            allowed_topics: None,
            topic_peers_pending: None,
            listen: None,
            graft_miss: false,
            running_peers: false,
            running_peers_asked: None,
            inflight_frames: 0,
            dirty: false,
            control,
            missing_owned: 0,
            queue_progress_at: now,
            token_expires_at: None,
            shuffle_pending: false,
            holds_preauth: false,
            dial_requests: Vec::new(),
        }
    }

    /// True when open.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// True when this session reaches `addr`: its remote address, or the listen address the
    /// peer advertised.
    pub fn reaches(&self, addr: SocketAddr) -> bool {
        self.remote == addr || self.listen == Some(addr)
    }

    /// Releases idle buffer memory (called from the maintenance tick).
    pub fn shrink_if_idle(&mut self) {
        if self.recv_buf.is_empty() && self.recv_buf.capacity() > 0 {
            self.recv_buf = BytesMut::new();
        }
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out.clear();
        }
        self.queue.shrink_if_idle();
    }

    /// True when the peer's token covers `topic`.
    pub fn topic_allowed(&self, topic: &TopicId) -> bool {
        self.allowed_topics
            .as_ref()
            .is_none_or(|allowed| allowed.binary_search(topic).is_ok())
    }

    /// Sends one frame (`header`, then `body`; `header.len` is the whole frame's length) at
    /// `now`. A frame that needs no credit (`uses_credit` false) is written at once. Others
    /// are written while the peer's window allows and nothing waits before them; else they
    /// wait in the bounded queue (`kind` is recorded for the counters), and beyond `limits`
    /// they are dropped. The queue's stall clock starts when it stops being empty.
    pub fn send(
        &mut self,
        now: Instant,
        header: &Header,
        body: Body<'_>,
        uses_credit: bool,
        kind: u8,
        limits: QueueLimits,
    ) -> Sent {
        let len = header.len as usize;
        if !uses_credit {
            write_frame(&mut self.out, header, body);
        } else if self.queue.frames() == 0 && self.send_window.fits(len) {
            self.send_window.take(len);
            self.inflight_frames = self.inflight_frames.saturating_add(1);
            write_frame(&mut self.out, header, body);
        } else if self.queue.frames() < limits.frames && self.queue.bytes() + len <= limits.bytes {
            if self.queue.frames() == 0 {
                self.queue_progress_at = now;
            }
            write_frame(self.queue.buf_mut(), header, body);
            self.queue.commit(len, kind);
            return Sent::Queued;
        } else {
            return Sent::Dropped;
        }
        self.liveness.sent(now);
        Sent::Now
    }

    /// The peer returned credit: its window grows and that many frames are no longer in
    /// flight.
    pub fn on_credit(&mut self, grant: CreditGrant) {
        self.send_window.add(grant.frames, u64::from(grant.bytes));
        self.inflight_frames = self.inflight_frames.saturating_sub(grant.frames);
    }

    /// Moves queued frames into the transmit buffer, oldest first, while the peer's window
    /// allows; `sent` is called with each frame's kind. Returns how many moved.
    pub fn drain_queue(&mut self, now: Instant, mut sent: impl FnMut(u8)) -> u64 {
        let mut moved = 0u64;
        while let Some(len) = self.queue.front_len() {
            if !self.send_window.fits(len) {
                break;
            }
            self.send_window.take(len);
            self.inflight_frames = self.inflight_frames.saturating_add(1);
            if let Some(kind) = self.queue.pop_into(&mut self.out) {
                sent(kind);
            }
            moved += 1;
        }
        if moved > 0 {
            self.queue_progress_at = now;
            self.liveness.sent(now);
        }
        moved
    }

    /// True once half of the receive window (`window`) was consumed since the last grant.
    pub fn credit_due(&self, window: Window) -> bool {
        let used = self.recv_since_grant;
        used.frames >= (window.frames / 2).max(1) || used.bytes >= (window.bytes / 2).max(1)
    }

    /// Returns everything consumed since the last grant to the receive allowance; the grant
    /// to send the peer in a CREDIT frame (possibly `0/0`: a heartbeat).
    pub fn take_credit_grant(&mut self) -> CreditGrant {
        let used = self.recv_since_grant;
        self.recv_allowance.add(used.frames, used.bytes);
        self.recv_since_grant = Window::default();
        CreditGrant {
            frames: used.frames,
            bytes: used.bytes.min(u64::from(u32::MAX)) as u32,
        }
    }

    /// Marks the session as having bytes to flush; true when it was not marked yet (the
    /// caller lists it once).
    pub fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    /// A session for unit tests: every rate bucket 100/s with a burst of 100.
    #[cfg(test)]
    pub(crate) fn with_test_buckets(now: Instant, info: ConnectionInfo, grant: Grant) -> Session {
        let bucket = || TokenBucket::new(now, 100, 100);
        let control = ControlBuckets {
            graft: bucket(),
            ihave: bucket(),
            duplicate: bucket(),
            shuffle: bucket(),
        };
        Session::new(now, info, bucket(), control, grant)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;
    use crate::chunks::Chunks;

    #[test]
    fn queue_preserves_frame_boundaries() {
        let mut q = OutQueue::default();
        q.buf_mut().tail_mut().put_slice(b"abc");
        q.commit(3, 0);
        q.buf_mut().tail_mut().put_slice(b"de");
        q.commit(2, 1);
        assert_eq!((q.frames(), q.bytes(), q.front_len()), (2, 5, Some(3)));
        let mut out = ChunkBuf::default();
        assert_eq!(q.pop_into(&mut out), Some(0));
        assert_eq!(out.take(), Chunks::from(&b"abc"[..]));
        assert_eq!(q.front_len(), Some(2));
        assert_eq!(q.clear(), 1);
        assert_eq!(q.bytes(), 0);
    }

    fn session(now: Instant) -> Session {
        let info = ConnectionInfo {
            conn: ConnId(1),
            peer: PeerId([1; 32]),
            remote: SocketAddr::from(([127, 0, 0, 1], 7000)),
            direction: Direction::Outbound,
            dial: None,
            kx_group: None,
        };
        let grant = Grant {
            operations: 0,
            max_message_bytes: 1024,
            rate_cap: None,
        };
        Session::with_test_buckets(now, info, grant)
    }

    fn header(len: usize) -> Header {
        Header {
            len: len as u32,
            ver: 1,
            flags: crate::frame::flags::EVENT,
            code: 0,
            app_proto_id: 0,
            tenant_id: 0,
            cap_len: 0,
            corr_id: 0,
        }
    }

    const LIMITS: QueueLimits = QueueLimits {
        frames: 2,
        bytes: 1 << 20,
    };

    #[test]
    fn frames_wait_for_credit_in_a_bounded_queue_and_leave_in_order() {
        let t0 = Instant::ZERO;
        let mut s = session(t0);
        let frame = crate::frame::HEADER_LEN + 4;
        // No credit yet: queued (the stall clock starts), then dropped beyond the bound.
        let later = t0 + core::time::Duration::from_millis(5);
        assert_eq!(
            s.send(
                later,
                &header(frame),
                Body::copied(&[b"aaaa"]),
                true,
                3,
                LIMITS
            ),
            Sent::Queued
        );
        assert_eq!(s.queue_progress_at, later);
        assert_eq!(
            s.send(
                later,
                &header(frame),
                Body::copied(&[b"bbbb"]),
                true,
                4,
                LIMITS
            ),
            Sent::Queued
        );
        assert_eq!(
            s.send(
                later,
                &header(frame),
                Body::copied(&[b"cccc"]),
                true,
                5,
                LIMITS
            ),
            Sent::Dropped
        );
        assert!(s.out.is_empty());
        assert_eq!(LIMITS.load(&s.queue), 1.0);
        // A frame that needs no credit goes out at once.
        assert_eq!(
            s.send(
                later,
                &header(frame),
                Body::copied(&[b"zzzz"]),
                false,
                9,
                LIMITS
            ),
            Sent::Now
        );
        s.out.clear();
        // One frame of credit: the oldest queued frame leaves, and only that one.
        s.on_credit(CreditGrant {
            frames: 1,
            bytes: 1 << 16,
        });
        let mut kinds = Vec::new();
        assert_eq!(s.drain_queue(later, |k| kinds.push(k)), 1);
        assert_eq!(kinds, vec![3]);
        assert!(s.out.take().to_bytes().ends_with(b"aaaa"));
        assert_eq!(s.inflight_frames, 1);
        // More credit: the rest drains, later frames go straight out.
        s.on_credit(CreditGrant {
            frames: 4,
            bytes: 1 << 16,
        });
        assert_eq!(s.inflight_frames, 0);
        assert_eq!(s.drain_queue(later, |k| kinds.push(k)), 1);
        assert_eq!(kinds, vec![3, 4]);
        assert_eq!(
            s.send(
                later,
                &header(frame),
                Body::copied(&[b"dddd"]),
                true,
                6,
                LIMITS
            ),
            Sent::Now
        );
        assert!(s.out.take().to_bytes().ends_with(b"dddd"));
        assert!(s.mark_dirty());
        assert!(!s.mark_dirty());
    }

    #[test]
    fn a_shared_payload_is_sent_by_reference_with_the_same_bytes_and_credit() {
        let t0 = Instant::ZERO;
        let payload = Bytes::from(vec![0x5a; 1024]);
        let len = crate::frame::HEADER_LEN + 3 + payload.len();
        let shared = Body {
            parts: &[b"hdr"],
            shared: Some(&payload),
        };
        let copied: &[&[u8]] = &[b"hdr", &payload];
        assert_eq!(shared.byte_len(), Body::copied(copied).byte_len());
        let grant = CreditGrant {
            frames: 1,
            bytes: len as u32,
        };
        let (mut by_ref, mut by_copy) = (session(t0), session(t0));
        // One frame goes out now, one waits for credit, on both sessions alike.
        for s in [&mut by_ref, &mut by_copy] {
            s.on_credit(grant);
        }
        for _ in 0..2 {
            by_ref.send(t0, &header(len), shared, true, 1, LIMITS);
            by_copy.send(t0, &header(len), Body::copied(copied), true, 1, LIMITS);
        }
        assert_eq!(by_ref.queue.bytes(), len);
        assert_eq!(by_ref.send_window, by_copy.send_window);
        assert_eq!(
            by_ref.send_window,
            Window::default(),
            "credit taken exactly"
        );
        for s in [&mut by_ref, &mut by_copy] {
            s.on_credit(grant);
            assert_eq!(s.drain_queue(t0, |_| {}), 1);
        }
        assert_eq!(by_ref.send_window, by_copy.send_window);
        assert_eq!(by_ref.inflight_frames, by_copy.inflight_frames);
        let (sent, expected) = (by_ref.out.take(), by_copy.out.take());
        assert_eq!(sent, expected, "the same bytes on the wire");
        assert_eq!(sent.len(), 2 * len);
        // Both frames carry the payload as a reference to the caller's buffer.
        let refs = sent
            .pieces()
            .iter()
            .filter(|p| p.as_ptr() == payload.as_ptr())
            .count();
        assert_eq!(refs, 2);
    }

    #[test]
    fn credit_is_returned_once_half_the_window_is_used() {
        let mut s = session(Instant::ZERO);
        let window = Window {
            frames: 8,
            bytes: 1000,
        };
        s.recv_since_grant = Window {
            frames: 3,
            bytes: 100,
        };
        assert!(!s.credit_due(window));
        s.recv_since_grant.add(1, 0);
        assert!(s.credit_due(window));
        let grant = s.take_credit_grant();
        assert_eq!((grant.frames, grant.bytes), (4, 100));
        assert_eq!(
            s.recv_allowance,
            Window {
                frames: 4,
                bytes: 100
            }
        );
        // Nothing used since: a 0/0 grant (the heartbeat).
        let grant = s.take_credit_grant();
        assert_eq!((grant.frames, grant.bytes), (0, 0));
        s.recv_since_grant = Window {
            frames: 0,
            bytes: 500,
        };
        assert!(s.credit_due(window), "half the bytes");
    }

    #[test]
    fn window_accounting() {
        let mut w = Window {
            frames: 1,
            bytes: 10,
        };
        assert!(w.fits(10));
        assert!(!w.fits(11));
        w.take(10);
        assert!(!w.fits(0));
        w.add(2, 5);
        assert_eq!(
            w,
            Window {
                frames: 2,
                bytes: 5
            }
        );
    }
}
