//! The token's data model: [`Capability`], [`Scope`] and [`Caveat`].

use serde::{Deserialize, Serialize};

/// What a capability grants. Returned on `Allow`; the verifier itself never enforces it.
///
/// Encoded as a CBOR map with the text keys `prefix`, `methods`, `max_bytes`, in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// Optional resource prefix (for example `/index/`); `null` when absent.
    pub prefix: Option<String>,
    /// Allowed method names (for example `GET`, `PUT`).
    pub methods: Vec<String>,
    /// Maximum payload size in bytes; `null` when absent.
    pub max_bytes: Option<u64>,
}

/// One restriction carried by a token. Encoded adjacently tagged: `{"t": <name>, "v": <content>}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Caveat {
    /// Expiry (unix seconds); hard error `Expired` once `now > v + skew`.
    Exp(u64),
    /// Not-before (unix seconds); hard error `NotYetValid` while `now + skew < v`.
    Nbf(u64),
    /// Audience, compared with the request's policy digest.
    Aud(String),
    /// Allowed request methods (ASCII case-insensitive); an empty list never matches.
    Method(Vec<String>),
    /// Plain string prefix of the request path.
    PathPrefix(String),
    /// Network (`addr/len`) that must contain the peer address.
    IpCidr(String),
    /// Upper bound on the request length taken from the context's `extras["len"]`.
    BytesLe(u64),
    /// Rate hint; never evaluated by the verifier.
    Rate {
        /// Sustained requests per second.
        per_s: u32,
        /// Burst size.
        burst: u32,
    },
    /// Tenant that must equal the request's tenant.
    Tenant(String),
    /// Amnesia-mode flag that must equal the request's.
    Amnesia(bool),
    /// Governance policy digest that must equal the request's.
    GovPolicyDigest(String),
    /// Host-defined caveat; never evaluated by the verifier.
    ///
    /// `cbor` is held as a generic CBOR value and always re-encoded with the reference rules
    /// (tags dropped, shortest integers and floats, map keys sorted, duplicate keys collapsed),
    /// so it is part of the MAC in that canonical form.
    Custom {
        /// Namespace of the caveat.
        ns: String,
        /// Name within the namespace.
        name: String,
        /// Arbitrary CBOR payload.
        cbor: ciborium::Value,
    },
}

/// The kinds of [`Caveat`], in declaration order (their index is the serde variant index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaveatKind {
    Exp,
    Nbf,
    Aud,
    Method,
    PathPrefix,
    IpCidr,
    BytesLe,
    Rate,
    Tenant,
    Amnesia,
    GovPolicyDigest,
    Custom,
}

impl CaveatKind {
    /// All kinds, in declaration order.
    pub(crate) const ALL: [CaveatKind; 12] = [
        CaveatKind::Exp,
        CaveatKind::Nbf,
        CaveatKind::Aud,
        CaveatKind::Method,
        CaveatKind::PathPrefix,
        CaveatKind::IpCidr,
        CaveatKind::BytesLe,
        CaveatKind::Rate,
        CaveatKind::Tenant,
        CaveatKind::Amnesia,
        CaveatKind::GovPolicyDigest,
        CaveatKind::Custom,
    ];

    /// The variant name used as the `t` value.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            CaveatKind::Exp => "Exp",
            CaveatKind::Nbf => "Nbf",
            CaveatKind::Aud => "Aud",
            CaveatKind::Method => "Method",
            CaveatKind::PathPrefix => "PathPrefix",
            CaveatKind::IpCidr => "IpCidr",
            CaveatKind::BytesLe => "BytesLe",
            CaveatKind::Rate => "Rate",
            CaveatKind::Tenant => "Tenant",
            CaveatKind::Amnesia => "Amnesia",
            CaveatKind::GovPolicyDigest => "GovPolicyDigest",
            CaveatKind::Custom => "Custom",
        }
    }

    /// The kind whose name is exactly `name` (as UTF-8 bytes).
    pub(crate) fn from_name(name: &[u8]) -> Option<CaveatKind> {
        Some(match name {
            b"Exp" => CaveatKind::Exp,
            b"Nbf" => CaveatKind::Nbf,
            b"Aud" => CaveatKind::Aud,
            b"Method" => CaveatKind::Method,
            b"PathPrefix" => CaveatKind::PathPrefix,
            b"IpCidr" => CaveatKind::IpCidr,
            b"BytesLe" => CaveatKind::BytesLe,
            b"Rate" => CaveatKind::Rate,
            b"Tenant" => CaveatKind::Tenant,
            b"Amnesia" => CaveatKind::Amnesia,
            b"GovPolicyDigest" => CaveatKind::GovPolicyDigest,
            b"Custom" => CaveatKind::Custom,
            _ => return None,
        })
    }
}

impl Caveat {
    /// This caveat's kind.
    pub(crate) fn kind(&self) -> CaveatKind {
        match self {
            Caveat::Exp(_) => CaveatKind::Exp,
            Caveat::Nbf(_) => CaveatKind::Nbf,
            Caveat::Aud(_) => CaveatKind::Aud,
            Caveat::Method(_) => CaveatKind::Method,
            Caveat::PathPrefix(_) => CaveatKind::PathPrefix,
            Caveat::IpCidr(_) => CaveatKind::IpCidr,
            Caveat::BytesLe(_) => CaveatKind::BytesLe,
            Caveat::Rate { .. } => CaveatKind::Rate,
            Caveat::Tenant(_) => CaveatKind::Tenant,
            Caveat::Amnesia(_) => CaveatKind::Amnesia,
            Caveat::GovPolicyDigest(_) => CaveatKind::GovPolicyDigest,
            Caveat::Custom { .. } => CaveatKind::Custom,
        }
    }

    /// The variant name as carried in the token's `t` field (`"Exp"`, `"Custom"`, …).
    pub fn type_name(&self) -> &'static str {
        self.kind().name()
    }

    /// This caveat's CBOR encoding, exactly the bytes that enter the MAC chain.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        super::cbor::write_caveat(&mut out, self);
        out
    }

    /// Decodes one caveat from CBOR with the same rules as the token decoder.
    ///
    /// # Errors
    /// `Malformed("cbor")` when the bytes are not exactly one acceptable caveat.
    pub fn from_cbor(bytes: &[u8]) -> Result<Caveat, super::AuthError> {
        super::decode::decode_caveat(bytes).map_err(|_| super::AuthError::Malformed("cbor"))
    }
}

/// A decoded (or to-be-encoded) capability token.
///
/// Encoded as a CBOR map with the text keys `tid`, `kid`, `scope`, `caveats`, `mac`, in that order.
#[derive(Debug, Clone, PartialEq)]
pub struct Capability {
    /// Tenant namespace; with `kid` it selects the MAC key.
    pub tid: String,
    /// Key id.
    pub kid: String,
    /// What the token grants.
    pub scope: Scope,
    /// Restrictions, in MAC-chain order.
    pub caveats: Vec<Caveat>,
    /// The final tag of the BLAKE3 keyed MAC chain.
    pub mac: [u8; 32],
}

impl Capability {
    /// The token's CBOR encoding (before base64url), with the reference encoder's rules.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        super::cbor::write_capability(&mut out, self);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in CaveatKind::ALL {
            assert_eq!(CaveatKind::from_name(kind.name().as_bytes()), Some(kind));
        }
        assert_eq!(CaveatKind::from_name(b"exp"), None);
        assert_eq!(CaveatKind::from_name(b"Zenant"), None);
    }
}
