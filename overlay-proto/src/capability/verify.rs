//! Steps 1–9: decoding and verifying tokens.

use super::context::{Decision, RequestCtx, VerifierConfig};
use super::decode::{self, RawCapability};
use super::mac::Chain;
use super::types::Capability;
use super::{b64, eval, AuthError};
use crate::keys::KeyProvider;

/// Steps 3–5 over CBOR bytes that already passed the size check.
fn from_cbor(bytes: &[u8], cfg: &VerifierConfig) -> Result<Capability, AuthError> {
    let RawCapability {
        tid,
        kid,
        scope,
        caveats,
        mac_len,
        mac,
    } = decode::decode_capability(bytes).map_err(|_| AuthError::Malformed("cbor"))?;
    if mac_len != mac.len() {
        return Err(AuthError::Malformed("mac_len"));
    }
    if caveats.len() > cfg.max_caveats {
        return Err(AuthError::Bounds);
    }
    Ok(Capability {
        tid,
        kid,
        scope,
        caveats,
        mac,
    })
}

/// Steps 1–5: base64url-decodes `token`, checks the decoded size, decodes the CBOR, checks the
/// MAC length and the number of caveats. The MAC itself is not checked.
///
/// # Errors
/// `Malformed("base64url")`, `Bounds` (decoded size), `Malformed("cbor")`,
/// `Malformed("mac_len")`, `Bounds` (caveat count), in that order of checking.
pub fn decode_token(token: &[u8], cfg: &VerifierConfig) -> Result<Capability, AuthError> {
    let bytes = b64::decode(token, cfg.max_token_bytes)?;
    from_cbor(&bytes, cfg)
}

/// Like [`decode_token`] for a token already in its binary (CBOR) form: steps 2–5.
///
/// # Errors
/// As [`decode_token`], without the base64url step.
pub fn decode_cbor(cbor: &[u8], cfg: &VerifierConfig) -> Result<Capability, AuthError> {
    if cbor.len() > cfg.max_token_bytes {
        return Err(AuthError::Bounds);
    }
    from_cbor(cbor, cfg)
}

/// Steps 6–9 for a decoded capability.
fn check(
    cap: Capability,
    ctx: &RequestCtx,
    keys: &impl KeyProvider,
    cfg: &VerifierConfig,
) -> Result<Decision, AuthError> {
    let key = keys
        .key_for(&cap.kid, &cap.tid)
        .ok_or(AuthError::UnknownKid)?;
    let mut chain = Chain::start(key, &cap.tid, &cap.kid, &cap.scope);
    for caveat in &cap.caveats {
        chain.push(caveat);
    }
    if !chain.matches(&cap.mac) {
        return Err(AuthError::MacMismatch);
    }
    drop(chain);
    let reasons = eval::evaluate(&cap.caveats, ctx, cfg)?;
    Ok(if reasons.is_empty() {
        Decision::Allow { scope: cap.scope }
    } else {
        Decision::Deny { reasons }
    })
}

/// Verifies a base64url token against a request, exactly like the reference verifier:
/// decode (steps 1–5), key lookup by `(kid, tid)` (6), MAC recomputed over the re-encoded
/// fields and compared in constant time (7), caveat evaluation (8) and the decision (9).
///
/// # Errors
/// Every [`AuthError`] except `PolicyDeny`; time caveats fail with `Expired`/`NotYetValid`
/// (soft reasons collected before are dropped).
pub fn verify_token(
    token: &[u8],
    ctx: &RequestCtx,
    keys: &impl KeyProvider,
    cfg: &VerifierConfig,
) -> Result<Decision, AuthError> {
    check(decode_token(token, cfg)?, ctx, keys, cfg)
}

/// [`verify_token`] for a token in binary (CBOR) form; the size limit applies to `cbor`.
///
/// # Errors
/// As [`verify_token`], without `Malformed("base64url")`.
pub fn verify_cbor(
    cbor: &[u8],
    ctx: &RequestCtx,
    keys: &impl KeyProvider,
    cfg: &VerifierConfig,
) -> Result<Decision, AuthError> {
    check(decode_cbor(cbor, cfg)?, ctx, keys, cfg)
}

/// Verifies several tokens against one request, in order. The first error aborts the batch.
///
/// # Errors
/// The first token's error, as [`verify_token`].
pub fn verify_many(
    tokens: &[&[u8]],
    ctx: &RequestCtx,
    keys: &impl KeyProvider,
    cfg: &VerifierConfig,
) -> Result<Vec<Decision>, AuthError> {
    tokens
        .iter()
        .map(|t| verify_token(t, ctx, keys, cfg))
        .collect()
}
