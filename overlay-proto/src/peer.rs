//! Identities and handles: who a peer is ([`PeerId`]) and which connection or dial an input is about.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): `SEQUENCE(42) {
/// SEQUENCE(5) { OID 1.3.101.112 }, BIT STRING(33) with 0 unused bits }`; the 32 key bytes
/// follow.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A peer's identity: BLAKE3 of the DER SubjectPublicKeyInfo of its TLS certificate, so an
/// identity cannot be claimed without the private key. Shown as `peer:` + 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// Length of a peer id on the wire.
    pub const LEN: usize = 32;
    /// Text prefix of the display form.
    pub const PREFIX: &'static str = "peer:";

    /// Derives a peer id from a DER-encoded SubjectPublicKeyInfo.
    pub fn from_spki_der(spki_der: &[u8]) -> Self {
        PeerId(*blake3::hash(spki_der).as_bytes())
    }

    /// The peer id of an Ed25519 public key: BLAKE3 of its SubjectPublicKeyInfo, which is
    /// [`ED25519_SPKI_PREFIX`] followed by the 32 key bytes (RFC 8410). Equal to
    /// [`PeerId::from_spki_der`] of the certificate that holds the key.
    pub fn from_ed25519_public(key: &[u8; 32]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&ED25519_SPKI_PREFIX);
        hasher.update(key);
        PeerId(*hasher.finalize().as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for logs: the first 8 hex digits.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

/// Error parsing the display form of a [`PeerId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer id: expected `peer:` followed by 64 hex digits")]
pub struct ParsePeerIdError;

impl FromStr for PeerId {
    type Err = ParsePeerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| ParsePeerIdError)?;
        Ok(PeerId(out))
    }
}

/// A connection handle chosen by the driver; unique for the life of a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A dial attempt chosen by the core; echoed back by the driver when the dial ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DialId(pub u64);

impl fmt::Display for DialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// We dialed the peer (we are the TLS client and send HELLO first).
    Outbound,
    /// The peer dialed us.
    Inbound,
}

impl Direction {
    /// `"outbound"` or `"inbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_through_text() {
        let id = PeerId::from_spki_der(b"spki");
        let text = id.to_string();
        assert!(text.starts_with("peer:"));
        assert_eq!(text.len(), 5 + 64);
        assert_eq!(text.parse::<PeerId>(), Ok(id));
        assert_eq!("peer:zz".parse::<PeerId>(), Err(ParsePeerIdError));
    }

    #[test]
    fn ed25519_peer_id_is_the_hash_of_its_spki() {
        let key = [7u8; 32];
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&key);
        assert_eq!(spki.len(), 44);
        assert_eq!(
            PeerId::from_ed25519_public(&key),
            PeerId::from_spki_der(&spki)
        );
    }
}

/// A gossip message id: BLAKE3 of (origin ‖ nonce ‖ payload), so equal payloads from two
/// different broadcasts get different ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 32]);

impl MessageId {
    /// Length of a message id on the wire.
    pub const LEN: usize = 32;

    /// Computes the id of a message originated by `origin` with `nonce`.
    pub fn compute(origin: &PeerId, nonce: u64, payload: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&origin.0);
        hasher.update(&nonce.to_be_bytes());
        hasher.update(payload);
        MessageId(*hasher.finalize().as_bytes())
    }

    /// Computes the id of a message of `topic`: [`MessageId::compute`] in the default topic,
    /// `BLAKE3-keyed(key = topic, origin ‖ nonce ‖ payload)` in any other. The id (and so the
    /// origin signature over it) binds the topic: a relay that moves a message to another
    /// topic makes its id check fail.
    pub fn compute_in(
        topic: &crate::topic::TopicId,
        origin: &PeerId,
        nonce: u64,
        payload: &[u8],
    ) -> Self {
        if topic.is_default() {
            return MessageId::compute(origin, nonce, payload);
        }
        let mut hasher = blake3::Hasher::new_keyed(&topic.0);
        hasher.update(&origin.0);
        hasher.update(&nonce.to_be_bytes());
        hasher.update(payload);
        MessageId(*hasher.finalize().as_bytes())
    }

    /// Lowercase hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", hex::encode(&self.0[..4]))
    }
}
