//! [`AuthError`]: why a token could not be verified at all.

/// A hard verification failure (as opposed to a [`super::Decision::Deny`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AuthError {
    /// The token does not decode: `"base64url"`, `"cbor"` or `"mac_len"`.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Over a configured limit (decoded size or number of caveats).
    #[error("bounds exceeded")]
    Bounds,
    /// The key provider has no key for the token's `(kid, tid)`.
    #[error("unknown kid")]
    UnknownKid,
    /// The recomputed MAC differs from the token's.
    #[error("mac mismatch")]
    MacMismatch,
    /// An `Exp` caveat has passed (beyond the clock skew).
    #[error("expired")]
    Expired,
    /// An `Nbf` caveat is still ahead (beyond the clock skew).
    #[error("not yet valid")]
    NotYetValid,
    /// Declared for compatibility with the reference; never produced.
    #[error("policy deny")]
    PolicyDeny,
}

impl AuthError {
    /// The reference spelling used in test vectors and metrics: `Malformed(base64url)`,
    /// `Bounds`, `UnknownKid`, `MacMismatch`, `Expired`, `NotYetValid`, `PolicyDeny`.
    pub fn label(&self) -> String {
        match self {
            AuthError::Malformed(what) => format!("Malformed({what})"),
            other => other.kind().to_string(),
        }
    }

    /// The variant name without detail (`"Malformed"`, `"Bounds"`, …), allocation-free.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "Malformed",
            AuthError::Bounds => "Bounds",
            AuthError::UnknownKid => "UnknownKid",
            AuthError::MacMismatch => "MacMismatch",
            AuthError::Expired => "Expired",
            AuthError::NotYetValid => "NotYetValid",
            AuthError::PolicyDeny => "PolicyDeny",
        }
    }
}
