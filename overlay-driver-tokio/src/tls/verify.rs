//! Certificate verifiers for overlay peers.
//!
//! Default trust model, "pinned self-signed identities": a peer's identity is the PeerId derived
//! from its certificate's public key, so no chain is validated. Each verifier instead
//! - parses the end-entity certificate (x509-parser) and checks its validity period,
//! - verifies the TLS 1.3 `CertificateVerify` signature with the certificate's key, proving the
//!   peer holds the private key of the identity it claims,
//! - on the dialing side, rejects a server whose PeerId is not the one expected (if known).
//!
//! With a CA bundle configured, certificates must also chain to one of its roots (webpki,
//! including extended-key-usage checks: server certificates need `serverAuth`, client certificates
//! `clientAuth`, when the extension is present). The PeerId is still the leaf's.
//!
//! Server names are never checked: every dial uses the same fixed name, identity is by PeerId.

use std::sync::Arc;

use overlay_proto::PeerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::cert;
use super::error::{verifier_error, TlsError};

/// Builds a root store from a CA bundle; an empty bundle is an error.
fn root_store(ca_roots: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    if ca_roots.is_empty() {
        return Err(TlsError::CaBundle("no CA certificates".to_string()));
    }
    let mut roots = RootCertStore::empty();
    for (i, root) in ca_roots.iter().enumerate() {
        roots
            .add(root.clone())
            .map_err(|e| TlsError::CaBundle(format!("certificate #{i}: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// Parses the end-entity certificate and checks its validity period; returns its PeerId.
fn check_end_entity(
    end_entity: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<PeerId, rustls::Error> {
    let parsed = cert::parse(end_entity.as_ref())?;
    cert::check_validity(&parsed, now)?;
    Ok(cert::peer_id_of(&parsed))
}

fn tls13_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// Verifies the server's certificate on the dialing side.
#[derive(Debug)]
pub struct PeerServerVerifier {
    provider: Arc<CryptoProvider>,
    roots: Option<Arc<RootCertStore>>,
    expected: Option<PeerId>,
}

impl PeerServerVerifier {
    /// A verifier for the pinned model (`ca_roots` = `None`) or CA mode, optionally requiring the
    /// server to be `expected`.
    pub fn new(
        provider: Arc<CryptoProvider>,
        ca_roots: Option<&[CertificateDer<'static>]>,
        expected: Option<PeerId>,
    ) -> Result<Self, TlsError> {
        let roots = ca_roots.map(root_store).transpose()?;
        Ok(PeerServerVerifier {
            provider,
            roots,
            expected,
        })
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = check_end_entity(end_entity, now)?;
        if let Some(roots) = &self.roots {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        if let Some(expected) = self.expected {
            if expected != actual {
                return Err(verifier_error(TlsError::PeerIdMismatch {
                    expected,
                    actual,
                }));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Configurations built by this module are TLS 1.3 only.
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies a connecting peer's client certificate on the accepting side. A certificate is
/// requested but not required: a connection without one is a *client session* (issue #9),
/// authenticated by its START token alone and never a peer. A certificate that is presented
/// must pass every check (validity period, CA when configured) or the handshake fails.
#[derive(Debug)]
pub struct PeerClientVerifier {
    provider: Arc<CryptoProvider>,
    ca: Option<Arc<dyn ClientCertVerifier>>,
}

impl PeerClientVerifier {
    /// A verifier for the pinned model (`ca_roots` = `None`) or CA mode.
    pub fn new(
        provider: Arc<CryptoProvider>,
        ca_roots: Option<&[CertificateDer<'static>]>,
    ) -> Result<Self, TlsError> {
        let ca = match ca_roots {
            None => None,
            Some(ca_roots) => {
                let roots = root_store(ca_roots)?;
                let webpki =
                    WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| TlsError::CaBundle(e.to_string()))?;
                Some(webpki)
            }
        };
        Ok(PeerClientVerifier { provider, ca })
    }
}

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.ca {
            Some(ca) => ca.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_end_entity(end_entity, now)?;
        if let Some(ca) = &self.ca {
            ca.verify_client_cert(end_entity, intermediates, now)?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Configurations built by this module are TLS 1.3 only.
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
