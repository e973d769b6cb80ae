//! Step 7: the BLAKE3 keyed MAC chain.
//!
//! ```text
//! tag0 = BLAKE3_keyed(key, CBOR([tid, kid, scope]))      (no domain separator: see the spec)
//! tagi = BLAKE3_keyed(key, tag(i-1) || CBOR(caveat_i))
//! mac  = tag_n
//! ```
//!
//! Every tag but the last is the valid MAC of a shorter token, so the buffers holding tags and
//! preimages are wiped after use.

use super::cbor;
use super::types::{Caveat, Scope};
use crate::keys::MacKey;
use zeroize::{Zeroize, Zeroizing};

/// Typical preimage size: 32-byte tag plus a short caveat, or the init tuple.
const SCRATCH: usize = 256;

fn keyed(key: &MacKey, data: &[u8], out: &mut [u8; 32]) {
    out.copy_from_slice(blake3::keyed_hash(key.as_bytes(), data).as_bytes());
}

/// The chain state over a reusable, wiped-on-drop preimage buffer.
pub(crate) struct Chain<'k> {
    key: &'k MacKey,
    tag: Zeroizing<[u8; 32]>,
    buf: Zeroizing<Vec<u8>>,
}

impl<'k> Chain<'k> {
    /// Starts a chain at `tag0`.
    pub(crate) fn start(key: &'k MacKey, tid: &str, kid: &str, scope: &Scope) -> Self {
        let mut buf = Zeroizing::new(Vec::with_capacity(SCRATCH));
        cbor::write_init(&mut buf, tid, kid, scope);
        let mut tag = Zeroizing::new([0u8; 32]);
        keyed(key, &buf, &mut tag);
        Chain { key, tag, buf }
    }

    /// Continues a chain from an existing (already verified) MAC.
    pub(crate) fn resume(key: &'k MacKey, mac: &[u8; 32]) -> Self {
        Chain {
            key,
            tag: Zeroizing::new(*mac),
            buf: Zeroizing::new(Vec::with_capacity(SCRATCH)),
        }
    }

    /// Appends one caveat.
    pub(crate) fn push(&mut self, caveat: &Caveat) {
        self.buf.zeroize();
        self.buf.extend_from_slice(&*self.tag);
        cbor::write_caveat(&mut self.buf, caveat);
        keyed(self.key, &self.buf, &mut self.tag);
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
