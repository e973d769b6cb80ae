//! Origin authentication of gossip: Ed25519 signatures by the broadcaster.
//!
//! Origins are self-certifying: a [`PeerId`] is BLAKE3 of the DER SubjectPublicKeyInfo of the
//! node's key, and for Ed25519 that SPKI is a fixed 12-byte prefix followed by the 32-byte
//! public key ([`PeerId::from_ed25519_public`]). A signed GOSSIP carries the origin's public
//! key and a signature over [`signed_message`] (a domain tag followed by the message id, which
//! already covers origin, nonce and payload). A receiver checks that the key hashes to the
//! claimed origin and that the signature verifies, before it stores, forwards or delivers.
//!
//! `ed25519-dalek` is pure Rust and deterministic (RFC 8032 signatures need no randomness),
//! so signing and verifying fit the sans-IO core: same inputs, same bytes.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::peer::{MessageId, PeerId};

/// Domain-separation tag of gossip origin signatures (ASCII, no terminator).
pub const GOSSIP_SIGNATURE_DOMAIN: &[u8] = b"svc-overlay/gossip/v1";
/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of [`signed_message`].
pub const SIGNED_MESSAGE_LEN: usize = GOSSIP_SIGNATURE_DOMAIN.len() + MessageId::LEN;

/// Whether gossip carries and requires origin signatures (`[gossip] origin_auth`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OriginAuth {
    /// Broadcasts are signed; a GOSSIP without a valid signature by its origin is rejected
    /// (400, `bad_signature`). Needs an identity with an Ed25519 signing key.
    #[default]
    Sign,
    /// Broadcasts are not signed and signatures are not checked. Signed frames from others
    /// are accepted and relayed with their signature unchanged (not verified). Ids are still
    /// recomputed.
    None,
}

impl OriginAuth {
    /// `"sign"` or `"none"`, as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginAuth::Sign => "sign",
            OriginAuth::None => "none",
        }
    }
}

impl core::str::FromStr for OriginAuth {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "sign" => Ok(OriginAuth::Sign),
            "none" => Ok(OriginAuth::None),
            _ => Err(()),
        }
    }
}

/// A node's 32-byte Ed25519 secret seed (RFC 8032 private key). Wiped from memory when
/// dropped; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct SigningSeed(pub [u8; 32]);

impl SigningSeed {
    /// The public key of this seed.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        SigningKey::from_bytes(&self.0).verifying_key().to_bytes()
    }

    /// The PeerId of this seed's key.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_ed25519_public(&self.public_key())
    }
}

impl fmt::Debug for SigningSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSeed(<redacted>)")
    }
}

/// The origin's public key and its signature, as carried by a signed GOSSIP.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSignature {
    /// The origin's Ed25519 public key.
    pub key: [u8; PUBLIC_KEY_LEN],
    /// Ed25519 signature of [`signed_message`] of the message id.
    #[serde(with = "sig_bytes")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl fmt::Debug for OriginSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OriginSignature(key {}, sig {}…)",
            hex::encode(&self.key[..4]),
            hex::encode(&self.signature[..4])
        )
    }
}

/// Why an origin signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginAuthError {
    /// The carried key does not hash to the claimed origin (a forged origin).
    #[error("the signing key is not the origin's")]
    ForgedOrigin,
    /// The key is not a valid Ed25519 point.
    #[error("invalid Ed25519 public key")]
    BadKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// The bytes an origin signs for message `id`: [`GOSSIP_SIGNATURE_DOMAIN`] ‖ id.
pub fn signed_message(id: &MessageId) -> [u8; SIGNED_MESSAGE_LEN] {
    let mut out = [0u8; SIGNED_MESSAGE_LEN];
    let (tag, rest) = out.split_at_mut(GOSSIP_SIGNATURE_DOMAIN.len());
    tag.copy_from_slice(GOSSIP_SIGNATURE_DOMAIN);
    rest.copy_from_slice(&id.0);
    out
}

impl OriginSignature {
    /// Checks that `key` is `origin`'s and that the signature of `id` verifies.
    ///
    /// The rule, the same whether one signature or a batch is checked ([`verify_batch`]): the
    /// key hashes to the claimed origin; the key decodes to a curve point that is not of small
    /// order; `s` is canonical and `[8][s]B = [8]R + [8][k]A` holds (the cofactored equation of
    /// ZIP-215, with `k = SHA-512(R ‖ A ‖ message)`). Signatures made by any RFC 8032 signer
    /// satisfy it.
    pub fn verify(&self, origin: &PeerId, id: &MessageId) -> Result<(), OriginAuthError> {
        self.check_key(origin)?;
        let key = ed25519_zebra::VerificationKey::try_from(self.key)
            .map_err(|_| OriginAuthError::BadKey)?;
        key.verify(&Signature::from_bytes(&self.signature), &signed_message(id))
            .map_err(|_| OriginAuthError::BadSignature)
    }

    /// The checks of the key alone: it is the origin's and not of small order.
    fn check_key(&self, origin: &PeerId) -> Result<(), OriginAuthError> {
        if PeerId::from_ed25519_public(&self.key) != *origin {
            return Err(OriginAuthError::ForgedOrigin);
        }
        let key = VerifyingKey::from_bytes(&self.key).map_err(|_| OriginAuthError::BadKey)?;
        if key.is_weak() {
            return Err(OriginAuthError::BadKey);
        }
        Ok(())
    }
}

/// One signature to check: the signature, the origin it claims, the message id it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedId {
    /// The carried key and signature.
    pub auth: OriginSignature,
    /// The claimed origin.
    pub origin: PeerId,
    /// The message id.
    pub id: MessageId,
}

/// Checks many signatures at once; entry `i` of the result is what
/// [`OriginSignature::verify`] says of `items[i]`, always (the batch equation is cofactored,
/// like the single one, so a batch never accepts what one-by-one checks refuse).
///
/// All signatures are checked together in one multiscalar multiplication; if that fails, each
/// is checked alone to find the bad ones. The batch's random coefficients come from BLAKE3 of
/// the whole batch (no OS randomness: same inputs, same work).
pub fn verify_batch(items: &[SignedId]) -> Vec<Result<(), OriginAuthError>> {
    let mut out: Vec<Result<(), OriginAuthError>> = Vec::with_capacity(items.len());
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut queued = 0usize;
    let mut transcript = blake3::Hasher::new_derive_key("svc-overlay gossip batch verify v1");
    for item in items {
        let checked = item.auth.check_key(&item.origin);
        if checked.is_ok() {
            let message = signed_message(&item.id);
            batch.queue((
                ed25519_zebra::VerificationKeyBytes::from(item.auth.key),
                Signature::from_bytes(&item.auth.signature),
                &message[..],
            ));
            transcript.update(&item.auth.key);
            transcript.update(&item.auth.signature);
            transcript.update(&message);
            queued += 1;
        }
        out.push(checked);
    }
    let all_valid = match queued {
        0 => return out,
        // One signature: the batch would cost more than checking it alone.
        1 => false,
        _ => batch.verify(BatchRng(transcript.finalize_xof())).is_ok(),
    };
    if !all_valid {
        for (result, item) in out.iter_mut().zip(items) {
            if result.is_ok() {
                *result = item.auth.verify(&item.origin, &item.id);
            }
        }
    }
    out
}

/// The coefficients of a batch verification: a BLAKE3 XOF over the batch (a Fiat–Shamir
/// style derivation, so a signer cannot choose its signature knowing its coefficient).
struct BatchRng(blake3::OutputReader);

impl rand_core_06::RngCore for BatchRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for BatchRng {}

/// A loaded Ed25519 signing key (the expanded key is wiped on drop by `ed25519-dalek`).
pub struct OriginSigner {
    key: SigningKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl OriginSigner {
    /// Loads the signing key of `seed`.
    pub fn new(seed: &SigningSeed) -> Self {
        let key = SigningKey::from_bytes(&seed.0);
        let public = key.verifying_key().to_bytes();
        OriginSigner { key, public }
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    /// The PeerId of the key.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_ed25519_public(&self.public)
    }

    /// Signs message `id`.
    pub fn sign(&self, id: &MessageId) -> OriginSignature {
        OriginSignature {
            key: self.public,
            signature: self.key.sign(&signed_message(id)).to_bytes(),
        }
    }
}

impl fmt::Debug for OriginSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OriginSigner({})", self.peer_id().short())
    }
}

/// Serde for 64-byte arrays (serde derives arrays only up to 32).
mod sig_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: serde_bytes_compat::ByteBuf = Deserialize::deserialize(d)?;
        v.0.try_into()
            .map_err(|_| serde::de::Error::custom("expected 64 signature bytes"))
    }

    mod serde_bytes_compat {
        /// Accepts a byte string or a sequence of bytes.
        pub struct ByteBuf(pub Vec<u8>);

        impl<'de> serde::Deserialize<'de> for ByteBuf {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = ByteBuf;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v.to_vec()))
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<ByteBuf, A::Error> {
                        let mut out = Vec::with_capacity(64);
                        while let Some(b) = seq.next_element::<u8>()? {
                            if out.len() >= 64 {
                                return Err(serde::de::Error::custom("too many bytes"));
                            }
                            out.push(b);
                        }
                        Ok(ByteBuf(out))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(n: u8) -> SigningSeed {
        SigningSeed([n; 32])
    }

    #[test]
    fn rfc8032_test_vector_1_public_key() {
        // RFC 8032 §7.1 TEST 1: secret key 9d61…7f60 → public key d75a…511a.
        let mut sk = [0u8; 32];
        hex::decode_to_slice(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            &mut sk,
        )
        .unwrap();
        assert_eq!(
            hex::encode(SigningSeed(sk).public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn signatures_verify_and_bind_the_origin_and_the_id() {
        let signer = OriginSigner::new(&seed(1));
        let origin = signer.peer_id();
        assert_eq!(origin, seed(1).peer_id());
        let id = MessageId::compute(&origin, 7, b"payload");
        let sig = signer.sign(&id);
        assert_eq!(sig.verify(&origin, &id), Ok(()));
        // Another id: bad signature.
        let other = MessageId::compute(&origin, 8, b"payload");
        assert_eq!(
            sig.verify(&origin, &other),
            Err(OriginAuthError::BadSignature)
        );
        // Another origin claimed with this key: forged.
        let mallory = seed(2).peer_id();
        assert_eq!(
            sig.verify(&mallory, &id),
            Err(OriginAuthError::ForgedOrigin)
        );
        // A flipped signature bit.
        let mut bad = sig;
        bad.signature[10] ^= 1;
        assert_eq!(bad.verify(&origin, &id), Err(OriginAuthError::BadSignature));
    }

    #[test]
    fn secrets_are_not_printed_and_modes_parse() {
        assert_eq!(format!("{:?}", seed(3)), "SigningSeed(<redacted>)");
        assert!(!format!("{:?}", OriginSigner::new(&seed(3))).contains("03030303"));
        assert_eq!("sign".parse(), Ok(OriginAuth::Sign));
        assert_eq!("none".parse(), Ok(OriginAuth::None));
        assert_eq!("Sign".parse::<OriginAuth>(), Err(()));
        assert_eq!(OriginAuth::default(), OriginAuth::Sign);
    }

    #[test]
    fn batches_agree_with_one_by_one_checks() {
        let signers: Vec<OriginSigner> = (10..16).map(|n| OriginSigner::new(&seed(n))).collect();
        let mut items: Vec<SignedId> = signers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = MessageId::compute(&s.peer_id(), i as u64, b"batch");
                SignedId {
                    auth: s.sign(&id),
                    origin: s.peer_id(),
                    id,
                }
            })
            .collect();
        assert!(verify_batch(&items).iter().all(Result::is_ok));
        assert!(verify_batch(&[]).is_empty());
        // One bad signature, one forged origin: found, the others pass.
        items[2].auth.signature[5] ^= 1;
        items[4].origin = signers[0].peer_id();
        let results = verify_batch(&items);
        for (i, (r, item)) in results.iter().zip(&items).enumerate() {
            assert_eq!(*r, item.auth.verify(&item.origin, &item.id), "item {i}");
        }
        assert_eq!(results[2], Err(OriginAuthError::BadSignature));
        assert_eq!(results[4], Err(OriginAuthError::ForgedOrigin));
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
    }

    /// A signer can add a small-order point to `R`: RFC 8032's cofactorless check refuses
    /// that signature, a cofactorless batch accepts it for some batches and not others. Here
    /// one rule (cofactored) says the same thing alone and in every batch, so two honest
    /// relays never disagree about a message.
    #[test]
    fn a_torsioned_signature_gets_one_verdict_alone_and_in_batches() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let signer = OriginSigner::new(&seed(20));
        let id = MessageId::compute(&signer.peer_id(), 1, b"torsion");
        let mut auth = signer.sign(&id);
        let mut r = [0u8; 32];
        r.copy_from_slice(&auth.signature[..32]);
        let point = CompressedEdwardsY(r).decompress().unwrap() + EIGHT_TORSION[1];
        auth.signature[..32].copy_from_slice(point.compress().as_bytes());
        let single = auth.verify(&signer.peer_id(), &id);
        let crafted = SignedId {
            auth,
            origin: signer.peer_id(),
            id,
        };
        for n in 1..6u8 {
            let mut items: Vec<SignedId> = (0..n)
                .map(|k| {
                    let s = OriginSigner::new(&seed(30 + k));
                    let id = MessageId::compute(&s.peer_id(), 2, b"other");
                    SignedId {
                        auth: s.sign(&id),
                        origin: s.peer_id(),
                        id,
                    }
                })
                .collect();
            items.insert(usize::from(n) / 2, crafted);
            let results = verify_batch(&items);
            assert_eq!(results[usize::from(n) / 2], single, "batch of {}", n + 1);
        }
    }

    #[test]
    fn small_order_keys_are_refused() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let key = EIGHT_TORSION[1].compress().to_bytes();
        let auth = OriginSignature {
            key,
            signature: [0; 64],
        };
        let origin = PeerId::from_ed25519_public(&key);
        let id = MessageId([3; 32]);
        assert_eq!(auth.verify(&origin, &id), Err(OriginAuthError::BadKey));
        let item = SignedId { auth, origin, id };
        assert_eq!(
            verify_batch(&[item, item]),
            vec![Err(OriginAuthError::BadKey); 2]
        );
    }

    #[test]
    fn signature_survives_cbor() {
        let signer = OriginSigner::new(&seed(4));
        let sig = signer.sign(&MessageId([1; 32]));
        let mut buf = Vec::new();
        ciborium::into_writer(&sig, &mut buf).unwrap();
        let back: OriginSignature = ciborium::from_reader(&buf[..]).unwrap();
        assert_eq!(back, sig);
    }
}
