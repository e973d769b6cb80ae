//! The overlay's error taxonomy: one typed error per failure class, each with a wire status code,
//! a metrics label and a retry hint.

use core::time::Duration;
use serde::{Deserialize, Serialize};

/// Why an overlay operation or session failed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    thiserror::Error,
)]
pub enum OverlayError {
    /// A deadline passed (handshake, idle, dial).
    #[error("timed out")]
    Timeout,
    /// The peer or the local node refused (connection refused, max sessions, duplicate).
    #[error("refused")]
    Refused,
    /// TLS or identity failure (certificate mismatch, wrong ALPN, key exchange policy).
    #[error("cryptographic handshake failed")]
    Crypto,
    /// The node is saturated; retry later.
    #[error("busy, retry later")]
    Busy,
    /// Bytes that do not parse as OAP/1 or as an overlay message.
    #[error("malformed input")]
    Malformed,
    /// A frame or message over the configured size.
    #[error("too large")]
    TooLarge,
    /// No token, or a token that failed verification (bad MAC, unknown key, expired).
    #[error("unauthorized")]
    Unauthorized,
    /// A valid token whose caveats or scope deny the operation.
    #[error("forbidden")]
    Forbidden,
    /// The message quota or the credit window was exceeded.
    #[error("quota exceeded")]
    Quota,
    /// No running session with that peer.
    #[error("not connected")]
    NotConnected,
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A publish to a topic this node is not in (join it first), or a leave of the default
    /// topic (every node is in it).
    #[error("not in that topic")]
    NotJoined,
    /// A join past `max_topics`.
    #[error("too many topics")]
    TooManyTopics,
}

impl OverlayError {
    /// The OAP/1 status code sent on the wire for this error.
    pub fn wire_code(self) -> u16 {
        match self {
            OverlayError::Malformed => 400,
            OverlayError::Unauthorized | OverlayError::Crypto => 401,
            OverlayError::Forbidden => 403,
            OverlayError::NotConnected => 404,
            OverlayError::NotJoined => 409,
            OverlayError::Timeout => 408,
            OverlayError::TooLarge => 413,
            OverlayError::Quota | OverlayError::TooManyTopics => 429,
            OverlayError::Busy | OverlayError::Refused | OverlayError::ShuttingDown => 503,
        }
    }

    /// Maps a status code received from a peer back to an error.
    pub fn from_wire_code(code: u16) -> Self {
        match code {
            400 => OverlayError::Malformed,
            401 => OverlayError::Unauthorized,
            403 => OverlayError::Forbidden,
            404 => OverlayError::NotConnected,
            408 => OverlayError::Timeout,
            413 => OverlayError::TooLarge,
            429 => OverlayError::Quota,
            503 => OverlayError::Busy,
            _ => OverlayError::Refused,
        }
    }

    /// A stable snake_case label for metrics (`errors_total{kind}`).
    pub fn label(self) -> &'static str {
        match self {
            OverlayError::Timeout => "timeout",
            OverlayError::Refused => "refused",
            OverlayError::Crypto => "crypto",
            OverlayError::Busy => "busy",
            OverlayError::Malformed => "malformed",
            OverlayError::TooLarge => "too_large",
            OverlayError::Unauthorized => "unauthorized",
            OverlayError::Forbidden => "forbidden",
            OverlayError::Quota => "quota",
            OverlayError::NotConnected => "not_connected",
            OverlayError::ShuttingDown => "shutting_down",
            OverlayError::NotJoined => "not_joined",
            OverlayError::TooManyTopics => "too_many_topics",
        }
    }

    /// How long a caller should wait before retrying, or `None` when a retry cannot help.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            OverlayError::Timeout | OverlayError::Refused => Some(Duration::from_secs(1)),
            OverlayError::Busy | OverlayError::Quota => Some(Duration::from_millis(500)),
            OverlayError::NotConnected => Some(Duration::from_secs(2)),
            OverlayError::Crypto
            | OverlayError::Malformed
            | OverlayError::TooLarge
            | OverlayError::Unauthorized
            | OverlayError::Forbidden
            | OverlayError::ShuttingDown
            | OverlayError::NotJoined
            | OverlayError::TooManyTopics => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_round_trip_for_peer_visible_errors() {
        for e in [
            OverlayError::Malformed,
            OverlayError::Unauthorized,
            OverlayError::Forbidden,
            OverlayError::TooLarge,
            OverlayError::Quota,
            OverlayError::Busy,
            OverlayError::Timeout,
        ] {
            assert_eq!(OverlayError::from_wire_code(e.wire_code()), e);
        }
        assert!(OverlayError::Busy.retry_after().is_some());
        assert!(OverlayError::Forbidden.retry_after().is_none());
    }
}
