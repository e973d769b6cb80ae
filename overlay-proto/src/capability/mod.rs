//! Capability tokens (ron-auth format, see `docs/spec/CAPABILITY.md`).
//!
//! A token is one CBOR-encoded [`Capability`] in base64url without padding. Its MAC is a
//! BLAKE3 keyed chain over the re-encoded `(tid, kid, scope)` and each caveat in order; the key
//! comes from a [`KeyProvider`](crate::keys::KeyProvider) by `(kid, tid)`.
//!
//! Everything here reproduces the reference `ron-auth` verifier bit for bit, quirks included:
//! the declared domain separator is not applied, the decoder accepts what serde_cbor 0.11
//! accepts (and nothing else), `Custom` payloads are re-encoded canonically before they enter
//! the MAC, times compare as `i64` with wrapping arithmetic, and caveats are evaluated in token
//! order up to `soa_threshold` caveats and grouped by kind above it.
//!
//! - [`verify_token`] / [`verify_many`]: steps 1–9 of the spec;
//! - [`decode_token`]: steps 1–5 only (no key, no MAC check);
//! - [`mint`], [`CapabilityBuilder`], [`encode_token`], [`compute_mac`]: issuing;
//! - [`attenuate`]: appending caveats with the root key (equal to minting them all at once);
//! - [`OverlayCaveats`]: the overlay's own `Custom` caveats (`peer` binding, `control` marker).
//!
//! Pure functions: no IO, no clock (the request carries `now`), no panics on any input.

mod b64;
mod cbor;
mod cidr;
mod context;
mod decode;
mod error;
mod eval;
mod mac;
mod mint;
mod overlay_caveats;
mod types;
mod verify;

pub use cbor::canonicalize;
/// The generic CBOR value type of `Custom` payloads and request `extras` (ciborium's), re-exported
/// so that users need no direct dependency.
pub use ciborium::value::{Integer as CborInteger, Value as CborValue};
pub use context::{Decision, DenyReason, RequestCtx, VerifierConfig};
pub use error::AuthError;
pub use mac::{compute_mac, mac_init_cbor};
pub use mint::{attenuate, encode_token, mint, sign, CapabilityBuilder};
pub use overlay_caveats::{
    control_caveat, peer_caveat, OverlayCaveatError, OverlayCaveats, CONTROL_CAVEAT_NAME,
    OVERLAY_CAVEAT_NS, PEER_CAVEAT_NAME,
};
pub use types::{Capability, Caveat, Scope};
pub use verify::{decode_cbor, decode_token, verify_cbor, verify_many, verify_token};
