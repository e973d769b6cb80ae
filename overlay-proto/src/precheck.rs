//! Content checks of GOSSIP frames where the bytes arrive, off the node's task.
//!
//! The content checks of a GOSSIP (the id recomputed over origin ‖ nonce ‖ payload, and in
//! `sign` mode the origin's signature) are a pure function of the frame's bytes and the
//! node's [`OriginAuth`] mode. They are also most of the CPU a node spends per message, and
//! the node's state machine is single-threaded. So a driver may run them where the bytes
//! already are, e.g. in each connection's reader task, in parallel on every core:
//! [`Prechecker::scan`] walks one received chunk, checks every GOSSIP frame that lies wholly
//! inside it (the signatures of one chunk in one batch, see [`verify_batch`]) and returns the
//! verdicts as [`Prechecked`], which travels with the bytes in
//! [`Input::ReceivedPrechecked`](crate::Input::ReceivedPrechecked).
//!
//! The node still decides everything: it uses a verdict only for a frame it decoded itself at
//! the same stream offset with the same id, in the same mode, and only where it would have
//! run the check (a GOSSIP with a new id); anything else it checks inline, with the same
//! functions ([`check_content`]). Verdicts are the same either way (the single and batch
//! signature rules agree), so a node fed the plain bytes, as replay, the simulator and the
//! fuzzers do, gives the same outputs. A [`Prechecked`] can only be made by [`Prechecker`]
//! (its fields are private, it is not deserialized), so no verdict reaches the node that this
//! module did not compute.

use crate::frame::{flags, Header, HEADER_LEN};
use crate::origin::{verify_batch, OriginAuth, OriginSignature, SignedId};
use crate::peer::{MessageId, PeerId};
use crate::stats::RejectReason;
use crate::topic::TopicId;
use crate::wire::{self, Kind};

/// The content checks of one GOSSIP with origin, nonce, claimed id and optional signature:
/// `Err(BadId)` when the id is not BLAKE3(origin ‖ nonce ‖ payload); in `sign` mode
/// `Err(BadSignature)` when the signature is missing or does not verify. In `none` mode a
/// carried signature is neither required nor verified.
pub fn check_content(
    mode: OriginAuth,
    id: &MessageId,
    origin: &PeerId,
    nonce: u64,
    auth: Option<&OriginSignature>,
    payload: &[u8],
) -> Result<(), RejectReason> {
    check_content_in(&TopicId::DEFAULT, mode, id, origin, nonce, auth, payload)
}

/// [`check_content`] for a message of `topic`: the id must be
/// [`MessageId::compute_in`]`(topic, …)`, so a message moved to another topic fails with
/// `BadId`.
pub fn check_content_in(
    topic: &TopicId,
    mode: OriginAuth,
    id: &MessageId,
    origin: &PeerId,
    nonce: u64,
    auth: Option<&OriginSignature>,
    payload: &[u8],
) -> Result<(), RejectReason> {
    check_id(topic, mode, id, origin, nonce, auth, payload)?.map_or(Ok(()), |signed| {
        signed
            .auth
            .verify(&signed.origin, &signed.id)
            .map_err(|_| RejectReason::BadSignature)
    })
}

/// The id check and the signature-presence check; `Ok(Some(_))` when a signature remains to
/// be verified.
fn check_id(
    topic: &TopicId,
    mode: OriginAuth,
    id: &MessageId,
    origin: &PeerId,
    nonce: u64,
    auth: Option<&OriginSignature>,
    payload: &[u8],
) -> Result<Option<SignedId>, RejectReason> {
    if MessageId::compute_in(topic, origin, nonce, payload) != *id {
        return Err(RejectReason::BadId);
    }
    match (mode, auth) {
        (OriginAuth::None, _) => Ok(None),
        (OriginAuth::Sign, None) => Err(RejectReason::BadSignature),
        (OriginAuth::Sign, Some(auth)) => Ok(Some(SignedId {
            auth: *auth,
            origin: *origin,
            id: *id,
        })),
    }
}

/// The verdict of one GOSSIP frame of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameVerdict {
    /// Stream offset of the frame's first header byte.
    at: u64,
    /// The id the frame claims.
    id: MessageId,
    /// What [`check_content`] says of it.
    verdict: Result<(), RejectReason>,
}

/// Content-check verdicts of the GOSSIP frames of one received chunk, made by
/// [`Prechecker::scan`]. Empty by default (the node then checks inline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prechecked {
    mode: OriginAuth,
    verdicts: Vec<FrameVerdict>,
    /// Index of the next verdict to match (frames are decoded in stream order).
    next: usize,
}

impl Prechecked {
    /// Number of frames checked.
    pub fn len(&self) -> usize {
        self.verdicts.len()
    }

    /// True when no frame was checked.
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }

    /// The verdict of the frame at stream offset `at` claiming `id`, if it was checked in
    /// `mode`. Frames are asked in stream order; verdicts of frames passed over are skipped.
    pub(crate) fn take(
        &mut self,
        at: u64,
        id: &MessageId,
        mode: OriginAuth,
    ) -> Option<Result<(), RejectReason>> {
        if mode != self.mode {
            return None;
        }
        while let Some(v) = self.verdicts.get(self.next) {
            if v.at < at {
                self.next += 1;
                continue;
            }
            if v.at == at && v.id == *id {
                self.next += 1;
                return Some(v.verdict);
            }
            return None;
        }
        None
    }
}

/// Walks the plaintext byte stream of one connection, chunk by chunk, and checks the GOSSIP
/// frames it finds (see the module docs). Pure: no clock, no IO, no randomness.
#[derive(Debug, Clone)]
pub struct Prechecker {
    mode: OriginAuth,
    /// Stream offset of the next chunk's first byte.
    pos: u64,
    /// Stream offset where the next frame starts.
    next_frame: u64,
    /// The first bytes of a header cut by the end of a chunk.
    partial: [u8; HEADER_LEN],
    partial_len: usize,
    /// The stream is no longer framed as expected (a bad header): nothing more is checked;
    /// the node closes such a session itself.
    lost: bool,
}

impl Prechecker {
    /// A checker for a new connection, for a node in `mode`.
    pub fn new(mode: OriginAuth) -> Self {
        Prechecker {
            mode,
            pos: 0,
            next_frame: 0,
            partial: [0; HEADER_LEN],
            partial_len: 0,
            lost: false,
        }
    }

    /// Checks the GOSSIP frames lying wholly in `chunk`, the next bytes of the stream. Frames
    /// cut by a chunk boundary are left to the node.
    pub fn scan(&mut self, chunk: &[u8]) -> Prechecked {
        let start = self.pos;
        self.pos += chunk.len() as u64;
        let mut out = Prechecked {
            mode: self.mode,
            verdicts: Vec::new(),
            next: 0,
        };
        if self.lost {
            return out;
        }
        if self.partial_len > 0 {
            // Complete a header cut by the previous chunk; its frame is not checked.
            let need = HEADER_LEN - self.partial_len;
            let take = need.min(chunk.len());
            let (head, _) = chunk.split_at(take);
            if let Some(dst) = self
                .partial
                .get_mut(self.partial_len..self.partial_len + take)
            {
                dst.copy_from_slice(head);
            }
            self.partial_len += take;
            if self.partial_len < HEADER_LEN {
                return out;
            }
            self.partial_len = 0;
            let header = self.partial;
            match frame_len(&header) {
                Some(len) => self.next_frame += len as u64,
                None => {
                    self.lost = true;
                    return out;
                }
            }
        }
        let end = self.pos;
        let mut signed: Vec<SignedId> = Vec::new();
        let mut signed_at: Vec<usize> = Vec::new();
        while self.next_frame < end {
            let Some(off) = self
                .next_frame
                .checked_sub(start)
                .and_then(|o| usize::try_from(o).ok())
            else {
                self.lost = true;
                break;
            };
            let Some(bytes) = chunk.get(off..) else {
                break;
            };
            if bytes.len() < HEADER_LEN {
                if let Some(dst) = self.partial.get_mut(..bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                self.partial_len = bytes.len();
                break;
            }
            let Some(len) = frame_len(bytes) else {
                self.lost = true;
                break;
            };
            if let (Some(frame), Some(header)) = (bytes.get(..len), Header::read(bytes)) {
                if is_gossip(&header) {
                    if let Some(body) = frame.get(HEADER_LEN..) {
                        self.check_frame(
                            self.next_frame,
                            body,
                            &mut out,
                            &mut signed,
                            &mut signed_at,
                        );
                    }
                }
            }
            self.next_frame += len as u64;
        }
        if !signed.is_empty() {
            for (result, index) in verify_batch(&signed).into_iter().zip(signed_at) {
                if let Some(v) = out.verdicts.get_mut(index) {
                    v.verdict = result.map_err(|_| RejectReason::BadSignature);
                }
            }
        }
        out
    }

    /// Checks one GOSSIP body; a signature to verify is set aside for the chunk's batch.
    fn check_frame(
        &self,
        at: u64,
        body: &[u8],
        out: &mut Prechecked,
        signed: &mut Vec<SignedId>,
        signed_at: &mut Vec<usize>,
    ) {
        // A body the node cannot parse is closed as malformed before any content check.
        let Ok(g) = wire::parse_gossip_ref(body) else {
            return;
        };
        let verdict = match check_id(
            &TopicId::DEFAULT,
            self.mode,
            &g.id,
            &g.origin,
            g.nonce,
            g.auth.as_ref(),
            g.payload,
        ) {
            Err(reason) => Err(reason),
            Ok(None) => Ok(()),
            Ok(Some(item)) => {
                signed.push(item);
                signed_at.push(out.verdicts.len());
                // Set from the batch's result.
                Err(RejectReason::BadSignature)
            }
        };
        out.verdicts.push(FrameVerdict {
            at,
            id: g.id,
            verdict,
        });
    }
}

/// The length of the frame whose header starts `bytes`, when the header passes the OAP/1
/// header checks (the node closes a session on any other).
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let header = crate::frame::peek(bytes).ok()??;
    let len = header.len as usize;
    (len >= HEADER_LEN).then_some(len)
}

/// Whether the header is one of an overlay GOSSIP frame (the node checks the rest).
fn is_gossip(h: &Header) -> bool {
    Kind::from_code(h.code) == Some(Kind::Gossip)
        && h.flags & flags::EVENT != 0
        && h.flags & flags::RESP == 0
        && h.cap_len == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::origin::{OriginSigner, SigningSeed};
    use crate::wire::{HelloOverlay, HelloRequestBody};
    use crate::{Action, ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity};
    use bytes::{BufMut, Bytes, BytesMut};
    use core::net::SocketAddr;

    fn frame(flags: u16, code: u16, app: u16, body: &[u8]) -> Vec<u8> {
        let h = Header {
            len: (HEADER_LEN + body.len()) as u32,
            ver: 1,
            flags,
            code,
            app_proto_id: app,
            tenant_id: 0,
            cap_len: 0,
            corr_id: 0,
        };
        let mut out = BytesMut::new();
        h.write(&mut out);
        out.put_slice(body);
        out.to_vec()
    }

    fn gossip(body: &[u8]) -> Vec<u8> {
        frame(
            flags::EVENT,
            Kind::Gossip.code(),
            crate::OVERLAY_APP_PROTO_ID,
            body,
        )
    }

    fn signer(n: u8) -> OriginSigner {
        OriginSigner::new(&SigningSeed([n; 32]))
    }

    #[test]
    fn verdicts_carry_stream_offsets_across_chunks() {
        let o = signer(9);
        let (id1, good) = wire::gossip_body(&o.peer_id(), 1, 0, b"one", Some(&o));
        let (id2, mut bad) = wire::gossip_body(&o.peer_id(), 2, 0, b"two", Some(&o));
        if let Some(last) = bad.last_mut() {
            *last ^= 1;
        }
        let (id3, unsigned) = wire::gossip_body(&o.peer_id(), 3, 0, b"three", None);
        let f1 = gossip(&good);
        let f2 = gossip(&bad);
        let f3 = gossip(&unsigned);
        let ping = frame(
            flags::EVENT,
            Kind::Ping.code(),
            crate::OVERLAY_APP_PROTO_ID,
            &[],
        );
        let mut stream = ping.clone();
        stream.extend(&f1);
        stream.extend(&f2);
        stream.extend(&f3);
        let at1 = ping.len() as u64;
        let at2 = at1 + f1.len() as u64;
        let at3 = at2 + f2.len() as u64;

        // One chunk: every GOSSIP frame checked, signatures in one batch.
        let mut all = Prechecker::new(OriginAuth::Sign).scan(&stream);
        assert_eq!(all.len(), 3);
        assert_eq!(all.take(at1, &id1, OriginAuth::Sign), Some(Ok(())));
        assert_eq!(
            all.take(at2, &id2, OriginAuth::Sign),
            Some(Err(RejectReason::BadId))
        );
        assert_eq!(
            all.take(at3, &id3, OriginAuth::Sign),
            Some(Err(RejectReason::BadSignature)),
            "unsigned in sign mode"
        );

        // Cut inside f1's header and inside f2's body: only f3 lies wholly in one chunk.
        let cut1 = at1 as usize + 10;
        let cut2 = at2 as usize + 60;
        let mut checker = Prechecker::new(OriginAuth::None);
        assert!(checker.scan(&stream[..cut1]).is_empty());
        assert!(checker.scan(&stream[cut1..cut2]).is_empty());
        let mut last = checker.scan(&stream[cut2..]);
        assert_eq!(last.len(), 1);
        assert_eq!(last.take(at3, &id3, OriginAuth::None), Some(Ok(())));

        // A verdict is given only for its own offset, id and mode.
        let mut again = Prechecker::new(OriginAuth::Sign).scan(&stream);
        assert_eq!(again.take(at1, &id1, OriginAuth::None), None, "other mode");
        assert_eq!(
            again.take(at1 + 1, &id1, OriginAuth::Sign),
            None,
            "other offset"
        );
        assert_eq!(again.take(at2, &id1, OriginAuth::Sign), None, "other id");
    }

    #[test]
    fn a_bad_header_stops_the_walk() {
        let o = signer(9);
        let (_, body) = wire::gossip_body(&o.peer_id(), 1, 0, b"one", None);
        let mut stream = vec![0u8; HEADER_LEN];
        stream.extend(gossip(&body));
        let mut checker = Prechecker::new(OriginAuth::None);
        assert!(checker.scan(&stream).is_empty());
        assert!(checker.scan(&gossip(&body)).is_empty(), "lost for good");
    }

    /// The node takes the verdict that comes with the bytes instead of checking itself: a
    /// frame with a wrong id and a (made-up) passing verdict is delivered. Only this module
    /// can make such a verdict; the driver's come from `Prechecker::scan`.
    #[test]
    fn the_node_uses_the_verdict_that_comes_with_the_bytes() {
        let mut cfg = NodeConfig::default();
        cfg.auth.require_token = false;
        cfg.origin_auth = OriginAuth::None;
        let identity = NodeIdentity::from_signing_seed(SigningSeed([0xC0; 32]), None);
        let mut node = Node::new(cfg, identity, 7).unwrap();
        let peer = signer(1);
        let conn = ConnId(1);
        let mut now = Instant::ZERO;
        node.handle(
            now,
            Input::ConnectionUp {
                conn,
                peer: peer.peer_id(),
                direction: Direction::Inbound,
                remote: SocketAddr::from(([10, 0, 0, 1], 40_000)),
                dial: None,
                kx_group: None,
            },
        );
        let hello = HelloRequestBody {
            ua: None,
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: peer.peer_id().to_string(),
                listen: None,
                credit_frames: 1024,
                credit_bytes: 64 << 20,
                graft_miss: false,
                running_peers: false,
            },
        };
        let mut opening = frame(flags::REQ, 0, 0, &serde_json::to_vec(&hello).unwrap());
        opening.extend(frame(
            flags::START | flags::REQ,
            0,
            crate::OVERLAY_APP_PROTO_ID,
            &[],
        ));
        let at = opening.len() as u64;
        now += core::time::Duration::from_millis(1);
        node.handle(
            now,
            Input::Received {
                conn,
                data: Bytes::from(opening),
            },
        );
        while node.poll_action().is_some() {}
        let (id, mut body) = wire::gossip_body(&peer.peer_id(), 1, 0, b"payload", None);
        if let Some(last) = body.last_mut() {
            *last ^= 1;
        }
        let checks = Prechecked {
            mode: OriginAuth::None,
            verdicts: vec![FrameVerdict {
                at,
                id,
                verdict: Ok(()),
            }],
            next: 0,
        };
        now += core::time::Duration::from_millis(1);
        node.handle(
            now,
            Input::ReceivedPrechecked {
                conn,
                data: Bytes::from(gossip(&body)),
                checks,
            },
        );
        let mut delivered = false;
        while let Some(a) = node.poll_action() {
            delivered |= matches!(a, Action::Deliver(d) if d.id == id);
        }
        assert!(delivered, "the passing verdict was used");
        assert_eq!(node.stats().rejected.get(RejectReason::BadId), 0);
    }
}
