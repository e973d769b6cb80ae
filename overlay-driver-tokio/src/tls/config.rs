//! rustls client and server configurations for overlay peers.

use std::path::Path;
use std::sync::Arc;

use overlay_proto::PeerId;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ServerConfig};

use super::error::TlsError;
use super::identity::{Identity, DEV_SAN};
use super::pem;
use super::verify::{PeerClientVerifier, PeerServerVerifier};
use super::ALPN;
use crate::pq::PqMode;

/// Trust and key-exchange options shared by the server and client configurations.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Key-exchange policy.
    pub pq: PqMode,
    /// `None`: pinned self-signed identities (default). `Some`: CA mode, peer certificates must
    /// chain to one of these roots.
    pub ca_roots: Option<Vec<CertificateDer<'static>>>,
}

impl TlsOptions {
    /// Reads a CA bundle (one or more PEM `CERTIFICATE` blocks).
    pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        pem::parse_certs(&bytes, &path.display().to_string())
    }

    /// These options with CA mode enabled from a PEM bundle file.
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self, TlsError> {
        self.ca_roots = Some(TlsOptions::load_ca_file(path)?);
        Ok(self)
    }
}

/// The key-exchange groups offered and accepted in a mode, most preferred first.
pub fn kx_groups(pq: PqMode) -> Vec<&'static dyn SupportedKxGroup> {
    match pq {
        PqMode::Hybrid => vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
        ],
        PqMode::HybridOnly => vec![kx_group::X25519MLKEM768],
        PqMode::Classic => vec![kx_group::X25519, kx_group::SECP256R1],
    }
}

/// The aws-lc-rs provider restricted to the mode's key-exchange groups (TLS 1.3 suites only).
pub fn crypto_provider(pq: PqMode) -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = kx_groups(pq);
    provider
        .cipher_suites
        .retain(|suite| matches!(suite, rustls::SupportedCipherSuite::Tls13(_)));
    Arc::new(provider)
}

/// The server name used for every dial. Identity is by PeerId, so the name is never checked;
/// it is not sent either (SNI is disabled in [`client_config`]).
pub fn server_name() -> ServerName<'static> {
    match ServerName::try_from(DEV_SAN) {
        Ok(name) => name,
        // Unreachable: DEV_SAN is a valid DNS name (checked by a unit test).
        Err(_) => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    }
}

/// The accepting side's configuration: TLS 1.3 only, ALPN `ron/oap1`, client certificate
/// requested and checked by [`PeerClientVerifier`] when presented (a connection without one is
/// a client session), the mode's key-exchange groups.
///
/// Session resumption is disabled (no tickets, no session cache): every session runs a full
/// handshake, so certificates are always verified afresh.
pub fn server_config(
    identity: &Identity,
    opts: &TlsOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider(opts.pq);
    let verifier = PeerClientVerifier::new(Arc::clone(&provider), opts.ca_roots.as_deref())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified_key())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The dialing side's configuration: TLS 1.3 only, ALPN `ron/oap1`, our certificate as client
/// certificate, server checked by [`PeerServerVerifier`] (and required to be `expected_peer`
/// when given), the mode's key-exchange groups. No resumption, no SNI.
pub fn client_config(
    identity: &Identity,
    opts: &TlsOptions,
    expected_peer: Option<PeerId>,
) -> Result<Arc<ClientConfig>, TlsError> {
    dialing_config(opts, expected_peer, Some(identity))
}

/// A client session's configuration (issue #9): like [`client_config`] but with no client
/// certificate, so the node treats the connection as a client session authenticated by its
/// token alone. The server is checked by [`PeerServerVerifier`]: pinned to `expected_peer`
/// when given, chained to the CA in CA mode.
pub fn client_session_config(
    opts: &TlsOptions,
    expected_peer: Option<PeerId>,
) -> Result<Arc<ClientConfig>, TlsError> {
    dialing_config(opts, expected_peer, None)
}

/// The dialing side's configuration, with `identity` as client certificate (a peer) or none
/// (a client session).
fn dialing_config(
    opts: &TlsOptions,
    expected_peer: Option<PeerId>,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = crypto_provider(opts.pq);
    let verifier = PeerServerVerifier::new(
        Arc::clone(&provider),
        opts.ca_roots.as_deref(),
        expected_peer,
    )?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some(identity) => builder
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified_key()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_server_name_is_a_dns_name() {
        assert!(matches!(server_name(), ServerName::DnsName(_)));
    }

    #[test]
    fn group_policy() {
        let names = |pq| {
            kx_groups(pq)
                .iter()
                .map(|g| g.name().as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(PqMode::Hybrid),
            ["X25519MLKEM768", "X25519", "secp256r1"]
        );
        assert_eq!(names(PqMode::HybridOnly), ["X25519MLKEM768"]);
        assert_eq!(names(PqMode::Classic), ["X25519", "secp256r1"]);
    }
}
