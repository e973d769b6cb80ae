//! The library API's error type: the core's typed [`OverlayError`] (one taxonomy for core and
//! library, with its retry hints), or a driver-level failure the core cannot have.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::OverlayError;

use crate::tls::TlsError;

/// Why an [`Overlay`](super::Overlay) operation failed.
///
/// Protocol failures are the core's [`OverlayError`] itself (same meaning, same wire code,
/// same retry hint); the other variants are driver-level failures (sockets, TLS identity,
/// configuration).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A protocol-level failure, typed by the core (timeout, refused, busy, too large, …).
    #[error(transparent)]
    Overlay(#[from] OverlayError),
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

impl Error {
    /// How long a caller should wait before retrying, or `None` when retrying cannot help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Overlay(core) => core.retry_after(),
            Error::Io(_) => Some(Duration::from_secs(1)),
            Error::Tls(_) | Error::Config(_) => None,
        }
    }

    /// The core error, when this is one.
    pub fn as_core(&self) -> Option<OverlayError> {
        match self {
            Error::Overlay(core) => Some(*core),
            Error::Io(_) | Error::Tls(_) | Error::Config(_) => None,
        }
    }

    /// A stable snake_case label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Overlay(core) => core.label(),
            Error::Io(_) => "io",
            Error::Tls(_) => "tls",
            Error::Config(_) => "config",
        }
    }
}

/// `error == OverlayError::Busy` compares with the core error it carries.
impl PartialEq<OverlayError> for Error {
    fn eq(&self, other: &OverlayError) -> bool {
        self.as_core() == Some(*other)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(Arc::new(e))
    }
}

impl From<overlay_proto::ConfigError> for Error {
    fn from(e: overlay_proto::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_keep_their_hints_and_labels() {
        for core in [
            OverlayError::Timeout,
            OverlayError::Refused,
            OverlayError::Crypto,
            OverlayError::Busy,
            OverlayError::Malformed,
            OverlayError::TooLarge,
            OverlayError::Unauthorized,
            OverlayError::Forbidden,
            OverlayError::Quota,
            OverlayError::NotConnected,
            OverlayError::ShuttingDown,
            OverlayError::NotJoined,
            OverlayError::TooManyTopics,
        ] {
            let e = Error::from(core);
            assert_eq!(e.as_core(), Some(core));
            assert_eq!(e, core);
            assert_eq!(e.retry_after(), core.retry_after());
            assert_eq!(e.label(), core.label());
            assert_eq!(e.to_string(), core.to_string());
        }
        assert_eq!(Error::Config("x".into()).retry_after(), None);
        assert_eq!(Error::Config("x".into()).as_core(), None);
        assert!(Error::from(io::Error::other("x")).retry_after().is_some());
    }
}
