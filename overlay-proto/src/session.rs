//! Per-connection session state: handshake phase, credit windows, the bounded outbound queue,
//! quotas and capability limits.

use bytes::{BufMut, BytesMut};
use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::liveness::Liveness;
use crate::peer::{ConnId, DialId, Direction, PeerId};
use crate::ratelimit::TokenBucket;
use crate::time::Instant;
use crate::topic::TopicId;

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

/// Frames waiting for credit, encoded back to back in one buffer.
#[derive(Debug, Default)]
pub struct OutQueue {
    buf: BytesMut,
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

    /// The buffer to encode the next frame into; call [`OutQueue::commit`] with its length.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
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

    /// Moves the oldest frame to `out`; returns its kind index.
    pub fn pop_into(&mut self, out: &mut BytesMut) -> Option<u8> {
        let (len, kind) = self.lens.pop_front()?;
        let len = (len as usize).min(self.buf.len());
        let frame = self.buf.split_to(len);
        out.put_slice(&frame);
        Some(kind)
    }

    /// Drops everything queued; returns the number of frames dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.lens.len();
        self.lens.clear();
        self.buf = BytesMut::new();
        n
    }

    /// Releases buffer memory when nothing is queued.
    pub fn shrink_if_idle(&mut self) {
        if self.lens.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
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
    /// Bytes received and not yet decoded.
    pub recv_buf: BytesMut,
    /// Stream offset of `recv_buf`'s first byte (bytes of whole frames decoded so far).
    pub recv_pos: u64,
    /// Frames ready to transmit at the end of this input.
    pub out: BytesMut,
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
            recv_buf: BytesMut::new(),
            recv_pos: 0,
            out: BytesMut::new(),
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
            self.out = BytesMut::new();
        }
        self.queue.shrink_if_idle();
    }

    /// True when the peer's token covers `topic`.
    pub fn topic_allowed(&self, topic: &TopicId) -> bool {
        self.allowed_topics
            .as_ref()
            .is_none_or(|allowed| allowed.binary_search(topic).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_preserves_frame_boundaries() {
        let mut q = OutQueue::default();
        q.buf_mut().put_slice(b"abc");
        q.commit(3, 0);
        q.buf_mut().put_slice(b"de");
        q.commit(2, 1);
        assert_eq!((q.frames(), q.bytes(), q.front_len()), (2, 5, Some(3)));
        let mut out = BytesMut::new();
        assert_eq!(q.pop_into(&mut out), Some(0));
        assert_eq!(&out[..], b"abc");
        assert_eq!(q.front_len(), Some(2));
        assert_eq!(q.clear(), 1);
        assert_eq!(q.bytes(), 0);
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
