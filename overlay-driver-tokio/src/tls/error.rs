//! The TLS layer's error type and the mapping of handshake failures to metric labels.

use std::io;
use std::path::PathBuf;

use overlay_proto::PeerId;
use rustls::{AlertDescription, CertificateError, PeerIncompatible};

use crate::pq::PqMode;

/// Everything that can go wrong while loading identities, building TLS configurations or checking
/// an established session.
///
/// [`TlsError::reason`] gives a short, stable label for metrics (`handshake failures by reason`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A PEM document could not be parsed or did not contain what was expected.
    #[error("{what}: {detail}")]
    Pem {
        /// What was being parsed (e.g. "certificate", "private key", or a file name).
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A secret file (private key, capability key) is accessible by group or others.
    #[error(
        "secret file {} has mode {mode:04o}; it must not be accessible by group or others \
         (chmod 600)",
        path.display()
    )]
    KeyFileMode {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// A certificate could not be parsed or is unusable as an identity.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The private key could not be loaded by the crypto provider (unsupported type or corrupt).
    #[error("unsupported or invalid private key: {0}")]
    BadKey(rustls::Error),
    /// The private key does not belong to the end-entity certificate.
    #[error("private key does not match the certificate: {0}")]
    KeyMismatch(rustls::Error),
    /// The configured CA bundle is empty or contains an unusable certificate.
    #[error("CA bundle: {0}")]
    CaBundle(String),
    /// Generating a development certificate failed.
    #[error("certificate generation failed: {0}")]
    CertGen(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. no usable protocol version / cipher suite).
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    /// The remote peer's certificate key does not hash to the PeerId the dialer expected.
    #[error("peer id mismatch: expected {expected}, peer presented {actual}")]
    PeerIdMismatch {
        /// The PeerId the dialer asked for.
        expected: PeerId,
        /// The PeerId derived from the certificate the peer presented.
        actual: PeerId,
    },
    /// The established session has no peer certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The negotiated ALPN protocol is not `ron/oap1` (or none was negotiated).
    #[error("ALPN: expected `ron/oap1`, negotiated {}", describe_alpn(.negotiated.as_deref()))]
    Alpn {
        /// The negotiated protocol, if any.
        negotiated: Option<Vec<u8>>,
    },
    /// The negotiated key-exchange group is not allowed by the configured [`PqMode`].
    #[error("key exchange group {} is not allowed in pq mode {mode}", group.unwrap_or("<none>"))]
    KxPolicy {
        /// The configured mode.
        mode: PqMode,
        /// The negotiated group, if known.
        group: Option<&'static str>,
    },
    /// The session was inspected before its handshake completed.
    #[error("TLS handshake not complete")]
    HandshakeIncomplete,
}

fn describe_alpn(p: Option<&[u8]>) -> String {
    match p {
        None => "none".to_string(),
        Some(p) => format!("`{}`", String::from_utf8_lossy(p).escape_debug()),
    }
}

impl TlsError {
    /// A short, stable label for metrics.
    ///
    /// Possible values: `io`, `pem`, `key_file_mode`, `bad_certificate`, `bad_key`,
    /// `key_mismatch`, `ca_bundle`, `cert_gen`, `config`, `peer_id_mismatch`, `no_client_cert`,
    /// `alpn`, `kx_policy`, `handshake_incomplete`.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::Io { .. } => "io",
            TlsError::Pem { .. } => "pem",
            TlsError::KeyFileMode { .. } => "key_file_mode",
            TlsError::BadCertificate(_) => "bad_certificate",
            TlsError::BadKey(_) => "bad_key",
            TlsError::KeyMismatch(_) => "key_mismatch",
            TlsError::CaBundle(_) => "ca_bundle",
            TlsError::CertGen(_) => "cert_gen",
            TlsError::Config(_) => "config",
            TlsError::PeerIdMismatch { .. } => "peer_id_mismatch",
            TlsError::NoPeerCertificate => "no_client_cert",
            TlsError::Alpn { .. } => "alpn",
            TlsError::KxPolicy { .. } => "kx_policy",
            TlsError::HandshakeIncomplete => "handshake_incomplete",
        }
    }
}

/// Maps a failed tokio-rustls handshake (`TlsAcceptor::accept` / `TlsConnector::connect`, or the
/// first read after a client handshake, where TLS 1.3 reports the server's verdict on the client
/// certificate) to a metrics label.
///
/// Labels, beyond those of [`TlsError::reason`] (which are returned when one of this module's
/// verifiers rejected the peer, e.g. `peer_id_mismatch`):
/// - `bad_certificate`, `cert_expired`, `unknown_issuer`: our side rejected the peer's certificate;
/// - `no_client_cert`: the client sent no certificate (server side), or the server said so
///   (client side);
/// - `peer_rejected_cert`: the peer rejected our certificate or signature;
/// - `alpn`: no common ALPN protocol;
/// - `kx_policy`: no common key-exchange group (e.g. `hybrid-only` vs a classic peer), as seen by
///   the side that chose; the other side sees `handshake_failure`;
/// - `protocol_version`: the peer does not speak TLS 1.3;
/// - `handshake_failure`, `incompatible`, `alert`: other refusals (alert or parameters);
/// - `protocol`, `decrypt`: malformed or misbehaving peer;
/// - `eof`, `timeout`, `reset`, `io`: transport problems;
/// - `other`: anything else.
pub fn classify_handshake_error(err: &io::Error) -> &'static str {
    if let Some(inner) = err.get_ref() {
        if let Some(tls) = inner.downcast_ref::<TlsError>() {
            return tls.reason();
        }
        if let Some(rustls_err) = inner.downcast_ref::<rustls::Error>() {
            return classify_rustls_error(rustls_err);
        }
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof => "eof",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => "reset",
        _ => "io",
    }
}

/// Maps a `rustls::Error` to a metrics label; see [`classify_handshake_error`].
pub fn classify_rustls_error(err: &rustls::Error) -> &'static str {
    match err {
        rustls::Error::InvalidCertificate(cert_err) => classify_certificate_error(cert_err),
        rustls::Error::NoCertificatesPresented => "no_client_cert",
        rustls::Error::NoApplicationProtocol => "alpn",
        rustls::Error::PeerIncompatible(inc) => match inc {
            PeerIncompatible::NoKxGroupsInCommon => "kx_policy",
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => "protocol_version",
            _ => "incompatible",
        },
        rustls::Error::AlertReceived(alert) => classify_alert(*alert),
        rustls::Error::DecryptError => "decrypt",
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::PeerSentOversizedRecord => "protocol",
        rustls::Error::Other(other) => match other.0.downcast_ref::<TlsError>() {
            Some(tls) => tls.reason(),
            None => "other",
        },
        _ => "other",
    }
}

fn classify_certificate_error(err: &CertificateError) -> &'static str {
    match err {
        CertificateError::Other(other) => match other.0.downcast_ref::<TlsError>() {
            Some(tls) => tls.reason(),
            None => "bad_certificate",
        },
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => "cert_expired",
        CertificateError::UnknownIssuer => "unknown_issuer",
        _ => "bad_certificate",
    }
}

fn classify_alert(alert: AlertDescription) -> &'static str {
    match alert {
        AlertDescription::CertificateRequired => "no_client_cert",
        AlertDescription::NoApplicationProtocol => "alpn",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied
        | AlertDescription::DecryptError => "peer_rejected_cert",
        _ => "alert",
    }
}

/// Returns this module's typed error when a handshake failed because one of its verifiers
/// rejected the peer (e.g. [`TlsError::PeerIdMismatch`] with both ids).
pub fn typed_handshake_error(err: &io::Error) -> Option<&TlsError> {
    let inner = err.get_ref()?;
    if let Some(tls) = inner.downcast_ref::<TlsError>() {
        return Some(tls);
    }
    let other = match inner.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other,
        rustls::Error::Other(other) => other,
        _ => return None,
    };
    other.0.downcast_ref::<TlsError>()
}

/// Wraps one of our errors so a rustls verifier can return it; [`classify_handshake_error`] and
/// [`typed_handshake_error`] recover it.
pub(crate) fn verifier_error(err: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
        std::sync::Arc::new(err),
    )))
}
