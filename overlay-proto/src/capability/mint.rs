//! Minting and attenuating tokens (both need the root key).

use super::context::VerifierConfig;
use super::mac::{compute_mac, Chain};
use super::types::{Capability, Caveat, Scope};
use super::verify::decode_token;
use super::{b64, AuthError};
use crate::keys::MacKey;

/// The token text for a capability: CBOR, then base64url without padding.
pub fn encode_token(cap: &Capability) -> String {
    b64::encode(&cap.to_cbor())
}

/// Signs a capability: computes its MAC over the fields.
pub fn sign(key: &MacKey, tid: &str, kid: &str, scope: Scope, caveats: Vec<Caveat>) -> Capability {
    let mac = compute_mac(key, tid, kid, &scope, &caveats);
    Capability {
        tid: tid.to_string(),
        kid: kid.to_string(),
        scope,
        caveats,
        mac,
    }
}

/// Mints a token: the same bytes as the reference's `sign_and_encode_b64url`.
pub fn mint(key: &MacKey, tid: &str, kid: &str, scope: Scope, caveats: Vec<Caveat>) -> String {
    encode_token(&sign(key, tid, kid, scope, caveats))
}

/// Extends a token's caveats by continuing its MAC chain with the same root key. The result is
/// byte-identical to minting all the caveats at once.
///
/// # Errors
/// Any decoding error of `token` (steps 1–5); `MacMismatch` when `token` was not made with
/// `key`; `Bounds` when the result would have more than `max_caveats` caveats or more than
/// `max_token_bytes` bytes (it could not be verified).
pub fn attenuate(
    token: &[u8],
    key: &MacKey,
    extra: Vec<Caveat>,
    cfg: &VerifierConfig,
) -> Result<String, AuthError> {
    let mut cap = decode_token(token, cfg)?;
    if cap.caveats.len().saturating_add(extra.len()) > cfg.max_caveats {
        return Err(AuthError::Bounds);
    }
    let mut check = Chain::start(key, &cap.tid, &cap.kid, &cap.scope);
    for caveat in &cap.caveats {
        check.push(caveat);
    }
    if !check.matches(&cap.mac) {
        return Err(AuthError::MacMismatch);
    }
    drop(check);
    let mut chain = Chain::resume(key, &cap.mac);
    for caveat in &extra {
        chain.push(caveat);
    }
    cap.mac = chain.tag();
    cap.caveats.extend(extra);
    let cbor = cap.to_cbor();
    if cbor.len() > cfg.max_token_bytes {
        return Err(AuthError::Bounds);
    }
    Ok(b64::encode(&cbor))
}

/// Builds and mints a capability step by step.
///
/// ```
/// use overlay_proto::capability::{Caveat, CapabilityBuilder, Scope};
/// use overlay_proto::MacKey;
/// let token = CapabilityBuilder::new("tenant-a", "k1", Scope::default())
///     .caveat(Caveat::Exp(1_700_003_600))
///     .mint(&MacKey([7; 32]));
/// assert!(!token.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilityBuilder {
    tid: String,
    kid: String,
    scope: Scope,
    caveats: Vec<Caveat>,
}

impl CapabilityBuilder {
    /// Starts a capability for `(tid, kid)` with a scope and no caveats.
    pub fn new(tid: impl Into<String>, kid: impl Into<String>, scope: Scope) -> Self {
        CapabilityBuilder {
            tid: tid.into(),
            kid: kid.into(),
            scope,
            caveats: Vec::new(),
        }
    }

    /// Appends a caveat.
    pub fn caveat(mut self, caveat: Caveat) -> Self {
        self.caveats.push(caveat);
        self
    }

    /// Appends several caveats.
    pub fn caveats(mut self, caveats: impl IntoIterator<Item = Caveat>) -> Self {
        self.caveats.extend(caveats);
        self
    }

    /// The signed capability.
    pub fn sign(self, key: &MacKey) -> Capability {
        sign(key, &self.tid, &self.kid, self.scope, self.caveats)
    }

    /// The token text.
    pub fn mint(self, key: &MacKey) -> String {
        encode_token(&self.sign(key))
    }
}
