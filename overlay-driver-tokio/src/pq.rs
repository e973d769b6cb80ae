//! Post-quantum key-exchange policy.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

/// Which TLS 1.3 key-exchange groups a node offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PqMode {
    /// Prefer `X25519MLKEM768`, allow classic `X25519` / `secp256r1` peers.
    #[default]
    Hybrid,
    /// Only `X25519MLKEM768`; classic-only peers fail the handshake.
    HybridOnly,
    /// Classic groups only (no post-quantum share).
    Classic,
}

impl PqMode {
    /// The flag spelling: `hybrid`, `hybrid-only` or `classic`.
    pub fn as_str(self) -> &'static str {
        match self {
            PqMode::Hybrid => "hybrid",
            PqMode::HybridOnly => "hybrid-only",
            PqMode::Classic => "classic",
        }
    }
}

impl fmt::Display for PqMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--pq` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pq mode `{0}`: expected hybrid, hybrid-only or classic")]
pub struct ParsePqModeError(pub String);

impl FromStr for PqMode {
    type Err = ParsePqModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hybrid" => Ok(PqMode::Hybrid),
            "hybrid-only" => Ok(PqMode::HybridOnly),
            "classic" => Ok(PqMode::Classic),
            other => Err(ParsePqModeError(other.to_string())),
        }
    }
}
