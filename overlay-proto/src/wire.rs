//! The overlay's own messages, carried in OAP/1 frames (full byte layouts in docs/PROTOCOL.md).
//!
//! After the session opens, every overlay frame is an OAP/1 `EVENT` frame with the overlay's
//! `app_proto_id`; the frame's `code` field names the message [`Kind`], so the receiver can apply
//! quotas and size limits from the 38-byte header before it looks at the body. All integers are
//! big-endian.

use bytes::{BufMut, Bytes};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::origin::{OriginSignature, OriginSigner, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::peer::{MessageId, PeerId};
use crate::topic::TopicId;

/// Largest application payload an overlay message can carry in one frame
/// (1 MiB − 38-byte frame header − 170-byte signed gossip header = 1,048,368, rounded down).
pub const MAX_APP_PAYLOAD: usize = 1_048_300;
/// Most message ids in one IHAVE or GRAFT.
pub const MAX_IHAVE_IDS: usize = 8192;
/// Bytes before the application payload in an unsigned GOSSIP message:
/// `id[32] origin[32] nonce u64 hops u8 auth u8`.
pub const GOSSIP_HEADER_LEN: usize = 32 + 32 + 8 + 1 + 1;
/// Bytes of the origin authentication block of a signed GOSSIP: `key[32] signature[64]`.
pub const GOSSIP_AUTH_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;
/// Bytes before the application payload in a signed GOSSIP message.
pub const SIGNED_GOSSIP_HEADER_LEN: usize = GOSSIP_HEADER_LEN + GOSSIP_AUTH_LEN;
// The largest payload fits one OAP/1 frame with the signed header.
const _: () = assert!(
    MAX_APP_PAYLOAD + SIGNED_GOSSIP_HEADER_LEN + crate::frame::HEADER_LEN
        <= crate::frame::MAX_FRAME_BYTES
);

/// GOSSIP `auth` byte: no origin signature follows.
pub const GOSSIP_AUTH_NONE: u8 = 0;
/// GOSSIP `auth` byte: the origin's Ed25519 key and signature follow.
pub const GOSSIP_AUTH_ED25519: u8 = 1;
/// Bytes per entry of an IHAVE message.
pub const IHAVE_ENTRY_LEN: usize = 32 + 1;
/// Most entries in one SHUFFLE message.
pub const MAX_SHUFFLE_ENTRIES: usize = 64;

/// Overlay message kinds, carried in the OAP/1 `code` field of `EVENT` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum Kind {
    /// Eager push of a gossip message: id, origin, nonce, hops, origin signature, payload.
    Gossip = 0x0101,
    /// Lazy announcement of message ids the sender holds.
    IHave = 0x0102,
    /// Request for messages by id; also makes the sender an eager peer.
    Graft = 0x0103,
    /// The sender received a duplicate from us: move it to lazy.
    Prune = 0x0104,
    /// The receiver grants more send window.
    Credit = 0x0105,
    /// A direct (non-gossip) application message.
    Direct = 0x0106,
    /// Membership exchange: a sample of known peers.
    Shuffle = 0x0107,
    /// Answer to a shuffle, with the responder's sample.
    ShuffleReply = 0x0108,
    /// Keep-alive request.
    Ping = 0x0109,
    /// Keep-alive answer.
    Pong = 0x010A,
    /// The complete set of topics the sender is in, besides the default topic.
    Topics = 0x010B,
    /// GOSSIP of a topic other than the default: `topic[32]`, then a GOSSIP body.
    TopicGossip = 0x010C,
    /// IHAVE of a topic other than the default: `topic[32]`, then IHAVE entries.
    TopicIHave = 0x010D,
    /// GRAFT of a topic other than the default: `topic[32]`, then message ids.
    TopicGraft = 0x010E,
    /// PRUNE of a topic other than the default: `topic[32]`.
    TopicPrune = 0x010F,
    /// Members of a topic: `topic[32]`, then a SHUFFLE body. With no entry it asks the
    /// receiver for members it knows; with entries it answers such a request.
    TopicPeers = 0x0110,
    /// Answer to a GRAFT: the ids asked for that the sender saw but no longer holds (its
    /// GRAFT store dropped them). Sent only to peers that said `graft_miss` in HELLO.
    GraftMiss = 0x0111,
    /// GRAFT_MISS of a topic other than the default: `topic[32]`, then message ids.
    TopicGraftMiss = 0x0112,
    /// A peer's running peers: a SHUFFLE body. With no entry it asks the receiver for the
    /// peers it has running sessions with; with entries it answers such a request. Sent only
    /// to peers that said `running_peers` in HELLO.
    RunningPeers = 0x0113,
}

impl Kind {
    /// Every kind, for metrics label tables.
    pub const ALL: [Kind; 19] = [
        Kind::Gossip,
        Kind::IHave,
        Kind::Graft,
        Kind::Prune,
        Kind::Credit,
        Kind::Direct,
        Kind::Shuffle,
        Kind::ShuffleReply,
        Kind::Ping,
        Kind::Pong,
        Kind::Topics,
        Kind::TopicGossip,
        Kind::TopicIHave,
        Kind::TopicGraft,
        Kind::TopicPrune,
        Kind::TopicPeers,
        Kind::GraftMiss,
        Kind::TopicGraftMiss,
        Kind::RunningPeers,
    ];

    /// The kind for a frame `code`, if it is one.
    pub fn from_code(code: u16) -> Option<Kind> {
        Some(match code {
            0x0101 => Kind::Gossip,
            0x0102 => Kind::IHave,
            0x0103 => Kind::Graft,
            0x0104 => Kind::Prune,
            0x0105 => Kind::Credit,
            0x0106 => Kind::Direct,
            0x0107 => Kind::Shuffle,
            0x0108 => Kind::ShuffleReply,
            0x0109 => Kind::Ping,
            0x010A => Kind::Pong,
            0x010B => Kind::Topics,
            0x010C => Kind::TopicGossip,
            0x010D => Kind::TopicIHave,
            0x010E => Kind::TopicGraft,
            0x010F => Kind::TopicPrune,
            0x0110 => Kind::TopicPeers,
            0x0111 => Kind::GraftMiss,
            0x0112 => Kind::TopicGraftMiss,
            0x0113 => Kind::RunningPeers,
            _ => return None,
        })
    }

    /// The frame `code` of this kind.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Lowercase label for metrics (`frames_total{kind}`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Gossip => "gossip",
            Kind::IHave => "ihave",
            Kind::Graft => "graft",
            Kind::Prune => "prune",
            Kind::Credit => "credit",
            Kind::Direct => "direct",
            Kind::Shuffle => "shuffle",
            Kind::ShuffleReply => "shuffle_reply",
            Kind::Ping => "ping",
            Kind::Pong => "pong",
            Kind::Topics => "topics",
            Kind::TopicGossip => "topic_gossip",
            Kind::TopicIHave => "topic_ihave",
            Kind::TopicGraft => "topic_graft",
            Kind::TopicPrune => "topic_prune",
            Kind::TopicPeers => "topic_peers",
            Kind::GraftMiss => "graft_miss",
            Kind::TopicGraftMiss => "topic_graft_miss",
            Kind::RunningPeers => "running_peers",
        }
    }

    /// Index into per-kind counter arrays.
    pub fn index(self) -> usize {
        (self.code() - 0x0101) as usize
    }

    /// True when the frame consumes the receiver's credit window (all but CREDIT).
    pub fn uses_credit(self) -> bool {
        self != Kind::Credit
    }

    /// The capability-scope operation this kind belongs to (`scope.methods` entries).
    pub fn operation(self) -> Operation {
        match self {
            Kind::Gossip
            | Kind::IHave
            | Kind::Graft
            | Kind::Prune
            | Kind::Topics
            | Kind::TopicGossip
            | Kind::TopicIHave
            | Kind::TopicGraft
            | Kind::TopicPrune
            | Kind::GraftMiss
            | Kind::TopicGraftMiss => Operation::Gossip,
            Kind::Direct => Operation::Direct,
            Kind::Shuffle | Kind::ShuffleReply | Kind::TopicPeers | Kind::RunningPeers => {
                Operation::Membership
            }
            Kind::Credit | Kind::Ping | Kind::Pong => Operation::Control,
        }
    }
}

/// Overlay operations a capability's `scope.methods` can allow (case-insensitive names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `gossip`: GOSSIP, IHAVE, GRAFT, PRUNE, GRAFT_MISS, TOPICS and the topic forms of the
    /// first five.
    Gossip,
    /// `direct`: DIRECT.
    Direct,
    /// `membership`: SHUFFLE, SHUFFLE_REPLY, TOPIC_PEERS.
    Membership,
    /// Always allowed: CREDIT, PING, PONG.
    Control,
}

impl Operation {
    /// The name used in `scope.methods`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Gossip => "gossip",
            Operation::Direct => "direct",
            Operation::Membership => "membership",
            Operation::Control => "control",
        }
    }

    /// Bit for a set of allowed operations.
    pub fn bit(self) -> u8 {
        match self {
            Operation::Gossip => 1,
            Operation::Direct => 2,
            Operation::Membership => 4,
            Operation::Control => 8,
        }
    }
}

/// A message body that does not match its kind's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind:?} body")]
pub struct WireError {
    /// The kind being decoded.
    pub kind: Kind,
}

/// A GOSSIP message; the payload is borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipMsg {
    /// Message id (claimed by the sender; receivers recompute it).
    pub id: MessageId,
    /// The broadcaster.
    pub origin: PeerId,
    /// Origin's nonce (part of the id preimage).
    pub nonce: u64,
    /// Hops so far (the sender's own hop count; the receiver is one further).
    pub hops: u8,
    /// The origin's key and signature, when the message is signed.
    pub auth: Option<OriginSignature>,
    /// Application payload (a slice of the received frame, no copy).
    pub payload: Bytes,
}

/// Bytes before the payload of a GOSSIP with (or without) an origin signature.
pub fn gossip_header_len(auth: Option<&OriginSignature>) -> usize {
    match auth {
        Some(_) => SIGNED_GOSSIP_HEADER_LEN,
        None => GOSSIP_HEADER_LEN,
    }
}

/// Writes an unsigned GOSSIP body header (everything before the application payload).
pub fn put_gossip_header(
    out: &mut impl BufMut,
    id: &MessageId,
    origin: &PeerId,
    nonce: u64,
    hops: u8,
) {
    put_gossip_header_with(out, id, origin, nonce, hops, None);
}

/// Writes a GOSSIP body header, signed when `auth` is given:
/// `id[32] origin[32] nonce u64 hops u8 auth u8 [key[32] signature[64]]`.
pub fn put_gossip_header_with(
    out: &mut impl BufMut,
    id: &MessageId,
    origin: &PeerId,
    nonce: u64,
    hops: u8,
    auth: Option<&OriginSignature>,
) {
    out.put_slice(&id.0);
    out.put_slice(&origin.0);
    out.put_u64(nonce);
    out.put_u8(hops);
    match auth {
        None => out.put_u8(GOSSIP_AUTH_NONE),
        Some(a) => {
            out.put_u8(GOSSIP_AUTH_ED25519);
            out.put_slice(&a.key);
            out.put_slice(&a.signature);
        }
    }
}

/// Builds a complete GOSSIP body as an originator does: computes the id over
/// `origin ‖ nonce ‖ payload`, signs it when a signer is given (the origin should then be the
/// signer's PeerId), and returns the id and the body.
pub fn gossip_body(
    origin: &PeerId,
    nonce: u64,
    hops: u8,
    payload: &[u8],
    signer: Option<&OriginSigner>,
) -> (MessageId, Vec<u8>) {
    let id = MessageId::compute(origin, nonce, payload);
    let auth = signer.map(|s| s.sign(&id));
    let mut body = Vec::with_capacity(gossip_header_len(auth.as_ref()) + payload.len());
    put_gossip_header_with(&mut body, &id, origin, nonce, hops, auth.as_ref());
    body.extend_from_slice(payload);
    (id, body)
}

fn array32(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.get(..32)?.try_into().ok()
}

/// The fields of a GOSSIP body, borrowed from the bytes (see [`parse_gossip_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipRef<'a> {
    /// Message id (claimed by the sender).
    pub id: MessageId,
    /// The broadcaster.
    pub origin: PeerId,
    /// Origin's nonce.
    pub nonce: u64,
    /// Hops so far.
    pub hops: u8,
    /// The origin's key and signature, when the message is signed.
    pub auth: Option<OriginSignature>,
    /// Application payload.
    pub payload: &'a [u8],
}

/// Parses a GOSSIP body without taking ownership: the payload borrows `body`. An `auth` byte
/// other than 0 or 1, or a signed body too short for its key and signature, is malformed.
pub fn parse_gossip_ref(body: &[u8]) -> Result<GossipRef<'_>, WireError> {
    let err = WireError { kind: Kind::Gossip };
    if body.len() < GOSSIP_HEADER_LEN {
        return Err(err);
    }
    let id = MessageId(array32(body).ok_or(err)?);
    let origin = PeerId(array32(body.get(32..).ok_or(err)?).ok_or(err)?);
    let nonce_bytes: [u8; 8] = body.get(64..72).ok_or(err)?.try_into().map_err(|_| err)?;
    let hops = *body.get(72).ok_or(err)?;
    let (auth, header_len) = match *body.get(73).ok_or(err)? {
        GOSSIP_AUTH_NONE => (None, GOSSIP_HEADER_LEN),
        GOSSIP_AUTH_ED25519 => {
            let key = array32(body.get(GOSSIP_HEADER_LEN..).ok_or(err)?).ok_or(err)?;
            let signature: [u8; SIGNATURE_LEN] = body
                .get(GOSSIP_HEADER_LEN + PUBLIC_KEY_LEN..SIGNED_GOSSIP_HEADER_LEN)
                .ok_or(err)?
                .try_into()
                .map_err(|_| err)?;
            (
                Some(OriginSignature { key, signature }),
                SIGNED_GOSSIP_HEADER_LEN,
            )
        }
        _ => return Err(err),
    };
    Ok(GossipRef {
        id,
        origin,
        nonce: u64::from_be_bytes(nonce_bytes),
        hops,
        auth,
        payload: body.get(header_len..).ok_or(err)?,
    })
}

/// Parses a GOSSIP body; the payload is a zero-copy slice of `body` (same rules as
/// [`parse_gossip_ref`]).
pub fn parse_gossip(body: &Bytes) -> Result<GossipMsg, WireError> {
    let fields = parse_gossip_ref(body)?;
    let header_len = body.len() - fields.payload.len();
    Ok(GossipMsg {
        id: fields.id,
        origin: fields.origin,
        nonce: fields.nonce,
        hops: fields.hops,
        auth: fields.auth,
        payload: body.slice(header_len..),
    })
}

/// Iterates `(id, hops)` entries of an IHAVE body. Errors when the length is not a multiple of
/// the entry size or the batch is too large.
pub fn parse_ihave(body: &[u8]) -> Result<impl Iterator<Item = (MessageId, u8)> + '_, WireError> {
    let err = WireError { kind: Kind::IHave };
    if body.len() % IHAVE_ENTRY_LEN != 0 || body.len() / IHAVE_ENTRY_LEN > MAX_IHAVE_IDS {
        return Err(err);
    }
    Ok(body.chunks_exact(IHAVE_ENTRY_LEN).filter_map(|c| {
        let id = array32(c)?;
        Some((MessageId(id), *c.get(32)?))
    }))
}

/// Iterates ids of a GRAFT body.
pub fn parse_graft(body: &[u8]) -> Result<impl Iterator<Item = MessageId> + '_, WireError> {
    let err = WireError { kind: Kind::Graft };
    if body.len() % MessageId::LEN != 0 || body.len() / MessageId::LEN > MAX_IHAVE_IDS {
        return Err(err);
    }
    Ok(body
        .chunks_exact(MessageId::LEN)
        .filter_map(|c| array32(c).map(MessageId)))
}

/// Parses a GRAFT_MISS body (after any topic prefix): message ids, like GRAFT.
pub fn parse_graft_miss(body: &[u8]) -> Result<impl Iterator<Item = MessageId> + '_, WireError> {
    parse_graft(body).map_err(|_| WireError {
        kind: Kind::GraftMiss,
    })
}

/// The Plumtree kinds of a topic: the default topic uses GOSSIP / IHAVE / GRAFT / PRUNE /
/// GRAFT_MISS, any
/// other topic their `TOPIC_*` forms, whose body starts with the topic id.
pub fn kind_in_topic(kind: Kind, topic: &TopicId) -> Kind {
    if topic.is_default() {
        return kind;
    }
    match kind {
        Kind::Gossip => Kind::TopicGossip,
        Kind::IHave => Kind::TopicIHave,
        Kind::Graft => Kind::TopicGraft,
        Kind::Prune => Kind::TopicPrune,
        Kind::GraftMiss => Kind::TopicGraftMiss,
        other => other,
    }
}

/// Splits the `topic[32]` prefix off the body of a `TOPIC_*` message. A prefix naming the
/// default topic is malformed (the default topic has its own kinds).
pub fn split_topic(kind: Kind, body: &Bytes) -> Result<(TopicId, Bytes), WireError> {
    let err = WireError { kind };
    let topic = TopicId(array32(body).ok_or(err)?);
    if topic.is_default() {
        return Err(err);
    }
    Ok((topic, body.slice(TopicId::LEN..)))
}

/// Writes a TOPICS body: `count u16`, then `count` topic ids in ascending byte order.
pub fn put_topics<'a>(out: &mut impl BufMut, topics: impl ExactSizeIterator<Item = &'a TopicId>) {
    out.put_u16(u16::try_from(topics.len()).unwrap_or(u16::MAX));
    for t in topics.take(usize::from(u16::MAX)) {
        out.put_slice(&t.0);
    }
}

/// Parses a TOPICS body: exactly `count` ids, strictly ascending (so no repeats), none the
/// default topic, at most `max` of them.
pub fn parse_topics(body: &[u8], max: usize) -> Result<Vec<TopicId>, WireError> {
    let err = WireError { kind: Kind::Topics };
    let (count, rest) = body.split_at_checked(2).ok_or(err)?;
    let count = usize::from(u16::from_be_bytes(count.try_into().map_err(|_| err)?));
    if count > max || rest.len() != count * TopicId::LEN {
        return Err(err);
    }
    let mut topics: Vec<TopicId> = Vec::with_capacity(count);
    for chunk in rest.chunks_exact(TopicId::LEN) {
        let topic = TopicId(array32(chunk).ok_or(err)?);
        if topic.is_default() || topics.last().is_some_and(|last| *last >= topic) {
            return Err(err);
        }
        topics.push(topic);
    }
    Ok(topics)
}

/// A CREDIT body: more frames and bytes the receiver of this message may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditGrant {
    /// Additional frames.
    pub frames: u32,
    /// Additional bytes.
    pub bytes: u32,
}

/// Writes a CREDIT body.
pub fn put_credit(out: &mut impl BufMut, grant: CreditGrant) {
    out.put_u32(grant.frames);
    out.put_u32(grant.bytes);
}

/// Parses a CREDIT body.
pub fn parse_credit(body: &[u8]) -> Result<CreditGrant, WireError> {
    let err = WireError { kind: Kind::Credit };
    let raw: [u8; 8] = body.try_into().map_err(|_| err)?;
    let (f, b) = raw.split_at(4);
    Ok(CreditGrant {
        frames: u32::from_be_bytes(f.try_into().map_err(|_| err)?),
        bytes: u32::from_be_bytes(b.try_into().map_err(|_| err)?),
    })
}

/// One known peer in a SHUFFLE message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEntry {
    /// Its identity.
    pub peer: PeerId,
    /// Where it accepts connections.
    pub addr: SocketAddr,
}

/// Writes a SHUFFLE / SHUFFLE_REPLY body: a count byte, then per entry the peer id, an address
/// family byte (4 or 6), the IP bytes and the port.
pub fn put_shuffle(out: &mut impl BufMut, entries: &[PeerEntry]) {
    let n = entries.len().min(MAX_SHUFFLE_ENTRIES);
    out.put_u8(n as u8);
    for e in entries.iter().take(n) {
        out.put_slice(&e.peer.0);
        match e.addr.ip() {
            IpAddr::V4(ip) => {
                out.put_u8(4);
                out.put_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.put_u8(6);
                out.put_slice(&ip.octets());
            }
        }
        out.put_u16(e.addr.port());
    }
}

/// Parses a SHUFFLE / SHUFFLE_REPLY body.
pub fn parse_shuffle(kind: Kind, body: &[u8]) -> Result<Vec<PeerEntry>, WireError> {
    let err = WireError { kind };
    let (&count, mut rest) = body.split_first().ok_or(err)?;
    if count as usize > MAX_SHUFFLE_ENTRIES {
        return Err(err);
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let peer = PeerId(array32(rest).ok_or(err)?);
        let family = *rest.get(32).ok_or(err)?;
        rest = rest.get(33..).ok_or(err)?;
        let ip = match family {
            4 => {
                let o: [u8; 4] = rest.get(..4).ok_or(err)?.try_into().map_err(|_| err)?;
                rest = rest.get(4..).ok_or(err)?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = rest.get(..16).ok_or(err)?.try_into().map_err(|_| err)?;
                rest = rest.get(16..).ok_or(err)?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return Err(err),
        };
        let p: [u8; 2] = rest.get(..2).ok_or(err)?.try_into().map_err(|_| err)?;
        rest = rest.get(2..).ok_or(err)?;
        out.push(PeerEntry {
            peer,
            addr: SocketAddr::new(ip, u16::from_be_bytes(p)),
        });
    }
    if !rest.is_empty() {
        return Err(err);
    }
    Ok(out)
}

/// The overlay keys this node adds to HELLO (request) and the HELLO reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HelloOverlay {
    /// Overlay protocol version (1).
    pub overlay: u16,
    /// The sender's peer id (`peer:<hex>`); must equal the TLS-proven identity.
    pub peer_id: String,
    /// The address the sender accepts connections on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Initial credit window granted to the other side, in frames.
    pub credit_frames: u32,
    /// Initial credit window granted to the other side, in bytes.
    pub credit_bytes: u32,
    /// The sender answers a GRAFT for ids it no longer holds with GRAFT_MISS, and accepts
    /// GRAFT_MISS answers (absent, i.e. false, from peers that predate it).
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub graft_miss: bool,
    /// The sender answers RUNNING_PEERS requests (absent, i.e. false, from peers that predate
    /// it): only such peers are asked.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub running_peers: bool,
}

/// The JSON payload of the overlay's HELLO request: the reference key `ua` first, then the
/// overlay keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HelloRequestBody {
    /// User agent (reference key).
    pub ua: Option<String>,
    /// Overlay keys.
    #[serde(flatten)]
    pub overlay: HelloOverlay,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn gossip_round_trip_is_zero_copy() {
        let id = MessageId([1; 32]);
        let origin = PeerId([2; 32]);
        let mut buf = BytesMut::new();
        put_gossip_header(&mut buf, &id, &origin, 7, 3);
        buf.put_slice(b"hello");
        let body = buf.freeze();
        let msg = parse_gossip(&body).unwrap();
        assert_eq!(
            (msg.id, msg.origin, msg.nonce, msg.hops, msg.auth),
            (id, origin, 7, 3, None)
        );
        assert_eq!(&msg.payload[..], b"hello");
        assert!(parse_gossip(&body.slice(..73)).is_err());
        // An unknown auth byte is malformed.
        let mut bad = body.to_vec();
        bad[73] = 2;
        assert!(parse_gossip(&Bytes::from(bad)).is_err());
    }

    #[test]
    fn signed_gossip_layout() {
        let signer = OriginSigner::new(&crate::origin::SigningSeed([5; 32]));
        let origin = signer.peer_id();
        let (id, body) = gossip_body(&origin, 9, 0, b"signed", Some(&signer));
        assert_eq!(body.len(), SIGNED_GOSSIP_HEADER_LEN + 6);
        assert_eq!(body[73], GOSSIP_AUTH_ED25519);
        assert_eq!(&body[74..106], &signer.public_key());
        let body = Bytes::from(body);
        let msg = parse_gossip(&body).unwrap();
        assert_eq!(msg.id, id);
        assert_eq!(id, MessageId::compute(&origin, 9, b"signed"));
        assert_eq!(&msg.payload[..], b"signed");
        let auth = msg.auth.unwrap();
        assert_eq!(auth.verify(&origin, &id), Ok(()));
        // Truncated inside the signature: malformed, never a short payload.
        assert!(parse_gossip(&body.slice(..SIGNED_GOSSIP_HEADER_LEN - 1)).is_err());
        // Re-encoding gives the same bytes.
        let mut again = BytesMut::new();
        put_gossip_header_with(&mut again, &id, &origin, 9, 0, Some(&auth));
        again.put_slice(b"signed");
        assert_eq!(&again[..], &body[..]);
    }

    #[test]
    fn shuffle_round_trip_and_rejects_trailing_bytes() {
        let entries = vec![
            PeerEntry {
                peer: PeerId([3; 32]),
                addr: "127.0.0.1:9415".parse().unwrap(),
            },
            PeerEntry {
                peer: PeerId([4; 32]),
                addr: "[::1]:9416".parse().unwrap(),
            },
        ];
        let mut buf = BytesMut::new();
        put_shuffle(&mut buf, &entries);
        assert_eq!(parse_shuffle(Kind::Shuffle, &buf).unwrap(), entries);
        buf.put_u8(0);
        assert!(parse_shuffle(Kind::Shuffle, &buf).is_err());
        assert!(parse_shuffle(Kind::Shuffle, &[]).is_err());
        assert!(parse_shuffle(Kind::Shuffle, &[1, 0]).is_err());
    }

    #[test]
    fn ihave_graft_credit_layouts() {
        let mut buf = BytesMut::new();
        buf.put_slice(&[9; 32]);
        buf.put_u8(4);
        let got: Vec<_> = parse_ihave(&buf).unwrap().collect();
        assert_eq!(got, vec![(MessageId([9; 32]), 4)]);
        assert!(parse_ihave(&buf[..10]).is_err());
        let ids: Vec<_> = parse_graft(&[5; 64]).unwrap().collect();
        assert_eq!(ids, vec![MessageId([5; 32]), MessageId([5; 32])]);
        assert!(parse_graft(&[5; 33]).is_err());
        let mut c = BytesMut::new();
        put_credit(
            &mut c,
            CreditGrant {
                frames: 3,
                bytes: 4,
            },
        );
        assert_eq!(
            parse_credit(&c).unwrap(),
            CreditGrant {
                frames: 3,
                bytes: 4
            }
        );
        assert!(parse_credit(&c[..7]).is_err());
    }

    #[test]
    fn kinds_round_trip_through_codes() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(Kind::from_code(k.code()), Some(*k));
            assert_eq!(k.index(), i);
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(0x0114), None);
    }

    #[test]
    fn hello_body_keeps_ua_first() {
        let body = HelloRequestBody {
            ua: Some("svc-overlay/0.1.0".into()),
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: "peer:00".into(),
                listen: None,
                credit_frames: 8,
                credit_bytes: 9,
                graft_miss: false,
                running_peers: false,
            },
        };
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.starts_with("{\"ua\":\"svc-overlay/0.1.0\",\"overlay\":1"));
        assert!(!json.contains("graft_miss"), "false is left out");
        assert!(!json.contains("running_peers"), "false is left out");
        let back: HelloRequestBody = serde_json::from_str(&json).unwrap();
        assert_eq!(back, body);
        let with = HelloRequestBody {
            overlay: HelloOverlay {
                graft_miss: true,
                ..body.overlay.clone()
            },
            ..body
        };
        let json = serde_json::to_string(&with).unwrap();
        assert!(json.ends_with(",\"graft_miss\":true}"), "{json}");
        // A peer that predates a key reads the rest of the body unchanged.
        let both: HelloRequestBody =
            serde_json::from_str(&json.replace("}", ",\"running_peers\":true}")).unwrap();
        assert!(both.overlay.graft_miss && both.overlay.running_peers);
        assert_eq!(
            serde_json::from_str::<HelloRequestBody>(&json).unwrap(),
            with
        );
    }
}
