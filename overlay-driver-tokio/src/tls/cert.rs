//! End-entity certificate inspection shared by identities, verifiers and session info.

use std::time::Duration;

use overlay_proto::PeerId;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::CertificateError;
use x509_parser::certificate::X509Certificate;

/// Parses a DER certificate, rejecting trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertificateError::BadEncoding),
    }
}

/// The PeerId of a certificate: BLAKE3 of its DER SubjectPublicKeyInfo.
pub(crate) fn peer_id_of(cert: &X509Certificate<'_>) -> PeerId {
    PeerId::from_spki_der(cert.public_key().raw)
}

/// Derives the PeerId from a DER certificate.
///
/// This is the one function that defines how a certificate maps to an identity: BLAKE3 of the
/// DER `SubjectPublicKeyInfo` exactly as it appears in the certificate.
pub fn peer_id_from_cert(cert: &CertificateDer<'_>) -> Result<PeerId, CertificateError> {
    parse(cert.as_ref()).map(|c| peer_id_of(&c))
}

fn unix(ts: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(ts).unwrap_or(0)))
}

/// Checks that `now` lies within the certificate's validity period.
pub(crate) fn check_validity(
    cert: &X509Certificate<'_>,
    now: UnixTime,
) -> Result<(), CertificateError> {
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now_secs < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: unix(not_before),
        });
    }
    if now_secs > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: unix(not_after),
        });
    }
    Ok(())
}
