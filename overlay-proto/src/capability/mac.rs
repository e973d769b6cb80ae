//! Step 7: the BLAKE3 keyed MAC chain.
//!
//! ```text
//! tag0 = BLAKE3_keyed(key, CBOR([tid, kid, scope]))      (no domain separator: see the spec)
//! tagi = BLAKE3_keyed(key, tag(i-1) || CBOR(caveat_i))
//! mac  = tag_n
//! ```
//!
//! Every tag but the last is the valid MAC of a shorter token, so tags are kept only in
//! buffers that are wiped after use (blake3's own hasher state is outside our control).

use super::cbor;
use super::types::{Caveat, Scope};
use crate::keys::MacKey;
use zeroize::Zeroizing;

/// The chain state. The tag lives in a wiped-on-drop array and goes straight into the keyed
/// hasher; the scratch buffer only ever holds public CBOR (the init tuple or one caveat).
pub(crate) struct Chain<'k> {
    key: &'k MacKey,
    tag: Zeroizing<[u8; 32]>,
    cbor: Vec<u8>,
}

impl<'k> Chain<'k> {
    /// Starts a chain at `tag0`.
    pub(crate) fn start(key: &'k MacKey, tid: &str, kid: &str, scope: &Scope) -> Self {
        let mut cbor = Vec::with_capacity(128);
        cbor::write_init(&mut cbor, tid, kid, scope);
        let mut tag = Zeroizing::new([0u8; 32]);
        tag.copy_from_slice(blake3::keyed_hash(key.as_bytes(), &cbor).as_bytes());
        Chain { key, tag, cbor }
    }

    /// Continues a chain from an existing (already verified) MAC.
    pub(crate) fn resume(key: &'k MacKey, mac: &[u8; 32]) -> Self {
        Chain {
            key,
            tag: Zeroizing::new(*mac),
            cbor: Vec::with_capacity(128),
        }
    }

    /// Appends one caveat: `tag = BLAKE3_keyed(key, tag || CBOR(caveat))`.
    pub(crate) fn push(&mut self, caveat: &Caveat) {
        self.cbor.clear();
        cbor::write_caveat(&mut self.cbor, caveat);
        let mut hasher = blake3::Hasher::new_keyed(self.key.as_bytes());
        hasher.update(&*self.tag);
        hasher.update(&self.cbor);
        self.tag.copy_from_slice(hasher.finalize().as_bytes());
        // The hasher holds the key schedule and the previous tag: wipe it.
        zeroize::Zeroize::zeroize(&mut hasher);
    }

    /// Whether the current tag equals `mac`, in constant time.
    pub(crate) fn matches(&self, mac: &[u8; 32]) -> bool {
        blake3::Hash::from_bytes(*self.tag) == *mac
    }

    /// The current tag.
    pub(crate) fn tag(&self) -> [u8; 32] {
        *self.tag
    }
}

/// The MAC of a token with these fields under `key`.
pub fn compute_mac(
    key: &MacKey,
    tid: &str,
    kid: &str,
    scope: &Scope,
    caveats: &[Caveat],
) -> [u8; 32] {
    let mut chain = Chain::start(key, tid, kid, scope);
    for caveat in caveats {
        chain.push(caveat);
    }
    chain.tag()
}

/// The CBOR of the MAC init tuple `[tid, kid, scope]` (the preimage of the first tag).
pub fn mac_init_cbor(tid: &str, kid: &str, scope: &Scope) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    cbor::write_init(&mut out, tid, kid, scope);
    out
}
