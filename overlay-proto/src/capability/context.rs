//! Verifier inputs and outputs: [`VerifierConfig`], [`RequestCtx`], [`Decision`], [`DenyReason`].

use super::types::Scope;
use core::net::IpAddr;
use serde::{Deserialize, Serialize};

/// Limits and evaluation settings of the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VerifierConfig {
    /// Largest accepted token after base64url decoding, in bytes (default 4096).
    pub max_token_bytes: usize,
    /// Largest accepted number of caveats (default 64).
    pub max_caveats: usize,
    /// Clock skew allowed for `Exp` and `Nbf`, in seconds (default 60).
    pub clock_skew_secs: u64,
    /// Up to this many caveats are evaluated in token order; above it, grouped by kind
    /// (default 16).
    pub soa_threshold: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            max_token_bytes: 4096,
            max_caveats: 64,
            clock_skew_secs: 60,
            soa_threshold: 16,
        }
    }
}

/// The request a token is checked against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestCtx {
    /// Current time, unix seconds.
    pub now_unix_s: u64,
    /// Request method (compared ASCII case-insensitively with `Method` caveats).
    pub method: String,
    /// Request path (plain prefix match against `PathPrefix`).
    pub path: String,
    /// Address of the peer, for `IpCidr`.
    pub peer_ip: Option<IpAddr>,
    /// Object address; carried for the host, not evaluated.
    pub object_addr: Option<String>,
    /// Request tenant, for `Tenant`.
    pub tenant: String,
    /// Whether the node runs in amnesia mode, for `Amnesia`.
    pub amnesia: bool,
    /// Active policy digest, compared with both `Aud` and `GovPolicyDigest`.
    pub policy_digest_hex: Option<String>,
    /// Extra request facts as a CBOR value; `BytesLe` reads the map key `"len"`.
    /// `None` is the same as CBOR `null`.
    pub extras: Option<ciborium::Value>,
}

/// The verifier's verdict for a token whose MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// Every caveat passed; the token's scope, for the host to enforce.
    Allow {
        /// The token's scope.
        scope: Scope,
    },
    /// At least one soft caveat failed.
    Deny {
        /// Why, in evaluation order.
        reasons: Vec<DenyReason>,
    },
}

/// Why a caveat denied the request. Serializes as `{"reason": "<Name>"}` or
/// `{"reason": "Custom", "detail": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail")]
pub enum DenyReason {
    /// Declared for compatibility; never produced (expiry is an error).
    Expired,
    /// Declared for compatibility; never produced (not-before is an error).
    NotYetValid,
    /// `Aud` did not equal the policy digest.
    BadAudience,
    /// No `Method` entry matched.
    MethodNotAllowed,
    /// The path did not start with the `PathPrefix`.
    PathNotAllowed,
    /// The peer is absent, outside the network, or the network did not parse.
    IpNotAllowed,
    /// `Tenant` did not equal the request's tenant.
    TenantMismatch,
    /// The known request length exceeded `BytesLe`.
    BytesExceed,
    /// Declared for compatibility; never produced (`Rate` is not evaluated).
    RateExceeded,
    /// Other reasons: `amnesia_mismatch`, `gov_policy_digest_mismatch`.
    Custom(String),
}

impl DenyReason {
    /// The serde name of the reason (`"BadAudience"`, …, `"Custom"`).
    pub fn name(&self) -> &str {
        match self {
            DenyReason::Expired => "Expired",
            DenyReason::NotYetValid => "NotYetValid",
            DenyReason::BadAudience => "BadAudience",
            DenyReason::MethodNotAllowed => "MethodNotAllowed",
            DenyReason::PathNotAllowed => "PathNotAllowed",
            DenyReason::IpNotAllowed => "IpNotAllowed",
            DenyReason::TenantMismatch => "TenantMismatch",
            DenyReason::BytesExceed => "BytesExceed",
            DenyReason::RateExceeded => "RateExceeded",
            DenyReason::Custom(_) => "Custom",
        }
    }

    /// The detail text of a `Custom` reason.
    pub fn detail(&self) -> Option<&str> {
        match self {
            DenyReason::Custom(d) => Some(d),
            _ => None,
        }
    }
}
