//! Capability MAC keys: 32-byte secrets looked up by `(kid, tid)`, zeroized on drop.

use core::fmt;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 32-byte BLAKE3 MAC key. Wiped from memory when dropped; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct MacKey(pub [u8; 32]);

impl MacKey {
    /// The well-known development key (`"svc-overlay dev key, not secret!"`). Only for
    /// loopback dev mode; the daemon warns loudly when it is in use.
    pub const DEV: MacKey = MacKey(*b"svc-overlay dev key, not secret!");

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<MacKey> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).ok()?;
        Some(MacKey(out))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// A capability token held as a secret: wiped from memory when dropped, never printed.
#[derive(Clone, PartialEq, Eq, Default, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretToken(String);

impl SecretToken {
    /// Wraps token text (base64url).
    pub fn new(token: String) -> Self {
        SecretToken(token)
    }

    /// The token text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretToken {
    fn from(token: String) -> Self {
        SecretToken(token)
    }
}

impl core::ops::Deref for SecretToken {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// One key of a key ring: the `(kid, tid)` it answers for and the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key id, as carried in tokens.
    pub kid: String,
    /// Tenant id, as carried in tokens.
    pub tid: String,
    /// The secret.
    pub key: MacKey,
}

/// Looks up the MAC key for a token's `(kid, tid)`.
pub trait KeyProvider {
    /// The key for exactly this `(kid, tid)` pair, if any.
    fn key_for(&self, kid: &str, tid: &str) -> Option<&MacKey>;
}

/// An ordered list of keys with exact `(kid, tid)` matching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    entries: Vec<KeyEntry>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key for `(kid, tid)`.
    pub fn insert(&mut self, kid: impl Into<String>, tid: impl Into<String>, key: MacKey) {
        let (kid, tid) = (kid.into(), tid.into());
        self.entries.retain(|e| !(e.kid == kid && e.tid == tid));
        self.entries.push(KeyEntry { kid, tid, key });
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in insertion order.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }
}

impl KeyProvider for KeyRing {
    fn key_for(&self, kid: &str, tid: &str) -> Option<&MacKey> {
        self.entries
            .iter()
            .find(|e| e.kid == kid && e.tid == tid)
            .map(|e| &e.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_exact_on_both_fields() {
        let mut ring = KeyRing::new();
        ring.insert("k1", "tenant-a", MacKey([1; 32]));
        assert!(ring.key_for("k1", "tenant-a").is_some());
        assert!(ring.key_for("k1", "tenant-b").is_none());
        assert!(ring.key_for("k2", "tenant-a").is_none());
        ring.insert("k1", "tenant-a", MacKey([2; 32]));
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.key_for("k1", "tenant-a"), Some(&MacKey([2; 32])));
        assert_eq!(format!("{:?}", MacKey([7; 32])), "MacKey(<redacted>)");
        let token = SecretToken::from("abc".to_string());
        assert_eq!(format!("{token:?}"), "SecretToken(<redacted>)");
        assert_eq!(&*token, "abc");
    }
}
