//! The library API's error type, with retry hints.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::OverlayError as CoreError;

use crate::tls::TlsError;

/// Why an [`Overlay`](super::Overlay) operation failed.
///
/// The first variants mirror the core's [`overlay_proto::OverlayError`] (same meaning, same
/// retry hints); the last ones are driver-level failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayError {
    /// A deadline passed (TCP connect, TLS or overlay handshake).
    #[error("timed out")]
    Timeout,
    /// The peer or the local node refused (connection refused, max sessions, duplicate,
    /// self-connection).
    #[error("refused")]
    Refused,
    /// TLS or identity failure (certificate or PeerId mismatch, ALPN, key-exchange policy).
    #[error("cryptographic handshake failed")]
    Crypto,
    /// The node (or the peer) is saturated; retry later.
    #[error("busy, retry later")]
    Busy,
    /// The peer sent (or we were asked to send) something that does not parse.
    #[error("malformed input")]
    Malformed,
    /// A message over the configured (or the peer's token's) size limit.
    #[error("too large")]
    TooLarge,
    /// A capability token is missing or failed verification.
    #[error("unauthorized")]
    Unauthorized,
    /// A valid token whose scope or caveats deny the operation.
    #[error("forbidden")]
    Forbidden,
    /// A message quota or a credit window was exceeded.
    #[error("quota exceeded")]
    Quota,
    /// No running session with that peer.
    #[error("not connected")]
    NotConnected,
    /// The overlay is shutting down (or has stopped).
    #[error("shutting down")]
    ShuttingDown,
    /// A publish to a topic the node is not in, or a leave of the default topic.
    #[error("not in that topic")]
    NotJoined,
    /// A join past the node's `max_topics`.
    #[error("too many topics")]
    TooManyTopics,
    /// A socket or file operation failed.
    #[error("io: {0}")]
    Io(Arc<io::Error>),
    /// The TLS identity or configuration is unusable.
    #[error("tls: {0}")]
    Tls(Arc<TlsError>),
    /// The configuration is invalid (the message names the setting).
    #[error("configuration: {0}")]
    Config(String),
}

impl OverlayError {
    /// How long a caller should wait before retrying, or `None` when retrying cannot help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.as_core() {
            Some(core) => core.retry_after(),
            None => match self {
                OverlayError::Io(_) => Some(Duration::from_secs(1)),
                _ => None,
            },
        }
    }

    /// The core error this corresponds to, when there is one.
    pub fn as_core(&self) -> Option<CoreError> {
        Some(match self {
            OverlayError::Timeout => CoreError::Timeout,
            OverlayError::Refused => CoreError::Refused,
            OverlayError::Crypto => CoreError::Crypto,
            OverlayError::Busy => CoreError::Busy,
            OverlayError::Malformed => CoreError::Malformed,
            OverlayError::TooLarge => CoreError::TooLarge,
            OverlayError::Unauthorized => CoreError::Unauthorized,
            OverlayError::Forbidden => CoreError::Forbidden,
            OverlayError::Quota => CoreError::Quota,
            OverlayError::NotConnected => CoreError::NotConnected,
            OverlayError::ShuttingDown => CoreError::ShuttingDown,
            OverlayError::NotJoined => CoreError::NotJoined,
            OverlayError::TooManyTopics => CoreError::TooManyTopics,
            OverlayError::Io(_) | OverlayError::Tls(_) | OverlayError::Config(_) => return None,
        })
    }

    /// A stable snake_case label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            OverlayError::Io(_) => "io",
            OverlayError::Tls(_) => "tls",
            OverlayError::Config(_) => "config",
            other => other.as_core().map_or("other", CoreError::label),
        }
    }
}

impl From<CoreError> for OverlayError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Timeout => OverlayError::Timeout,
            CoreError::Refused => OverlayError::Refused,
            CoreError::Crypto => OverlayError::Crypto,
            CoreError::Busy => OverlayError::Busy,
            CoreError::Malformed => OverlayError::Malformed,
            CoreError::TooLarge => OverlayError::TooLarge,
            CoreError::Unauthorized => OverlayError::Unauthorized,
            CoreError::Forbidden => OverlayError::Forbidden,
            CoreError::Quota => OverlayError::Quota,
            CoreError::NotConnected => OverlayError::NotConnected,
            CoreError::ShuttingDown => OverlayError::ShuttingDown,
            CoreError::NotJoined => OverlayError::NotJoined,
            CoreError::TooManyTopics => OverlayError::TooManyTopics,
        }
    }
}

impl From<io::Error> for OverlayError {
    fn from(e: io::Error) -> Self {
        OverlayError::Io(Arc::new(e))
    }
}

impl From<TlsError> for OverlayError {
    fn from(e: TlsError) -> Self {
        OverlayError::Tls(Arc::new(e))
    }
}

impl From<overlay_proto::ConfigError> for OverlayError {
    fn from(e: overlay_proto::ConfigError) -> Self {
        OverlayError::Config(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_round_trip_with_their_hints() {
        for core in [
            CoreError::Timeout,
            CoreError::Refused,
            CoreError::Crypto,
            CoreError::Busy,
            CoreError::Malformed,
            CoreError::TooLarge,
            CoreError::Unauthorized,
            CoreError::Forbidden,
            CoreError::Quota,
            CoreError::NotConnected,
            CoreError::ShuttingDown,
        ] {
            let e = OverlayError::from(core);
            assert_eq!(e.as_core(), Some(core));
            assert_eq!(e.retry_after(), core.retry_after());
            assert_eq!(e.label(), core.label());
        }
        assert_eq!(OverlayError::Config("x".into()).retry_after(), None);
        assert!(OverlayError::from(io::Error::other("x"))
            .retry_after()
            .is_some());
    }
}
