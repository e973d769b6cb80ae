//! A node's TLS identity: certificate chain, private key and the PeerId derived from them.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use overlay_proto::{PeerId, SigningSeed};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use super::cert;
use super::error::TlsError;
use super::pem;

/// The subject alternative name of development identities. Identity is the PeerId, not a name;
/// this is only there because certificates want one.
pub const DEV_SAN: &str = "svc-overlay.local";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A certificate chain (end-entity first), its private key, and the PeerId derived from the
/// end-entity certificate's SubjectPublicKeyInfo.
///
/// Key material:
/// - the DER private key is held in a [`Zeroizing`] wrapper and wiped when the identity is
///   dropped; PEM input is decoded through wiped buffers (see `from_pem`);
/// - the signing key rustls uses is parsed once at construction straight from that buffer (no
///   intermediate copy) into an aws-lc key object; aws-lc cleanses its allocations when the last
///   `Arc` of the [`CertifiedKey`] (held by this identity and by the configs built from it) is
///   dropped;
/// - for an Ed25519 key, the 32-byte seed the core signs gossip with is a [`SigningSeed`],
///   wiped on drop.
pub struct Identity {
    key: Zeroizing<PrivateKeyDer<'static>>,
    certified: Arc<CertifiedKey>,
    peer_id: PeerId,
    ed25519_seed: Option<SigningSeed>,
}

impl Identity {
    /// Builds an identity from a chain and key, checking that the key belongs to the end-entity
    /// certificate and that aws-lc-rs can sign with it.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: Zeroizing<PrivateKeyDer<'static>>,
    ) -> Result<Identity, TlsError> {
        let leaf_der = chain
            .first()
            .ok_or_else(|| TlsError::BadCertificate("empty certificate chain".to_string()))?;
        let leaf = cert::parse(leaf_der.as_ref())
            .map_err(|e| TlsError::BadCertificate(format!("end-entity certificate: {e}")))?;
        let peer_id = cert::peer_id_of(&leaf);
        if let Err(e) = cert::check_validity(&leaf, UnixTime::now()) {
            tracing::warn!(%peer_id, error = %e, "own TLS certificate is not currently valid; peers will refuse it");
        }
        let signing_key =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(TlsError::BadKey)?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => return Err(TlsError::KeyMismatch(e)),
        }
        let ed25519_seed = ed25519_seed_of(&key, &peer_id)?;
        Ok(Identity {
            key,
            certified: Arc::new(certified),
            peer_id,
            ed25519_seed,
        })
    }

    /// Generates an in-memory, self-signed development identity (Ed25519, so it can sign
    /// gossip; SAN `svc-overlay.local`, valid from one day ago to one year ahead). Nothing is
    /// written to disk.
    ///
    /// Note: rcgen keeps its own serialized copy of the key inside its `KeyPair`, which is not
    /// wiped on drop unless rcgen's `zeroize` feature is enabled (it is not in this crate).
    pub fn generate_dev() -> Result<Identity, TlsError> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::new(vec![DEV_SAN.to_string()])?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "svc-overlay peer");
        params.distinguished_name = dn;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + since_epoch.saturating_sub(DAY);
        params.not_after = epoch + since_epoch.saturating_add(365 * DAY);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params.self_signed(&key_pair)?;
        let key = Zeroizing::new(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key_pair.serialize_der(),
        )));
        Identity::new(vec![certificate.der().clone()], key)
    }

    /// Loads an identity from PEM: `cert_pem` holds the chain (end-entity first), `key_pem` one
    /// unencrypted private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, TlsError> {
        let chain = pem::parse_certs(cert_pem, "certificate")?;
        let key = pem::parse_private_key(key_pem, "private key")?;
        Identity::new(chain, key)
    }

    /// Loads an identity from PEM files. On unix the key file must not be accessible by group
    /// or others (mode 0600 or stricter); see [`check_secret_file_mode`].
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Io {
            path: cert.to_path_buf(),
            source,
        })?;
        let chain = pem::parse_certs(&cert_pem, &cert.display().to_string())?;
        let key_pem = read_secret_file(key)?;
        let key = pem::parse_private_key(&key_pem, &key.display().to_string())?;
        Identity::new(chain, key)
    }

    /// The PeerId derived from the end-entity certificate's public key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The Ed25519 seed of the identity's key (the core signs gossip with it), or `None` when
    /// the key is not Ed25519.
    pub fn ed25519_seed(&self) -> Option<&SigningSeed> {
        self.ed25519_seed.as_ref()
    }

    /// The signature algorithm of the identity's key, for messages (`ED25519`, `ECDSA`, `RSA`).
    pub fn key_algorithm(&self) -> String {
        format!("{:?}", self.certified.key.algorithm())
    }

    /// The certificate chain as PEM (end-entity first).
    pub fn cert_pem(&self) -> String {
        let ders: Vec<&[u8]> = self.certified.cert.iter().map(|c| c.as_ref()).collect();
        pem::encode("CERTIFICATE", &ders)
    }

    /// The certificate chain (end-entity first).
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// The private key, borrowed. A caller that needs an owned copy (`clone_key`) should wrap it
    /// in [`Zeroizing`] so it is wiped too.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The chain and loaded signing key, as rustls certificate resolvers want them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            key: Zeroizing::new(self.key.clone_key()),
            certified: Arc::clone(&self.certified),
            peer_id: self.peer_id,
            ed25519_seed: self.ed25519_seed.clone(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .field("chain_len", &self.certified.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The Ed25519 seed of a PKCS#8 key (v1 or v2 layout, RFC 8410), when the key is Ed25519. Its
/// public key must be the certificate's: the PeerId derived from it must equal `peer_id`.
fn ed25519_seed_of(
    key: &PrivateKeyDer<'static>,
    peer_id: &PeerId,
) -> Result<Option<SigningSeed>, TlsError> {
    let PrivateKeyDer::Pkcs8(pkcs8) = key else {
        return Ok(None);
    };
    // Not Ed25519 (ECDSA, RSA): no seed. The decoder checks the algorithm identifier.
    let Ok(signing) = ed25519_dalek::SigningKey::from_pkcs8_der(pkcs8.secret_pkcs8_der()) else {
        return Ok(None);
    };
    let seed = SigningSeed(signing.to_bytes());
    if seed.peer_id() != *peer_id {
        return Err(TlsError::BadCertificate(
            "the Ed25519 private key does not belong to the end-entity certificate".to_string(),
        ));
    }
    Ok(Some(seed))
}

/// Checks that a secret file (TLS private key, capability key) is not accessible by group or
/// others: on unix its mode must be 0600 or stricter (no bits in `0o077`). The error names the
/// file and its mode. On other platforms this only checks that the file exists.
pub fn check_secret_file_mode(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_mode(path, &meta)
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), TlsError> {
    Ok(())
}

/// Reads a secret file into a wiped buffer, checking its mode on the open handle (so the file
/// checked is the file read).
pub(crate) fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    let io_err = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(TlsError::Pem {
            what: path.display().to_string(),
            detail: "not a regular file".to_string(),
        });
    }
    check_mode(path, &meta)?;
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if len > pem::MAX_PEM_LEN {
        return Err(TlsError::Pem {
            what: path.display().to_string(),
            detail: "file larger than 1 MiB".to_string(),
        });
    }
    // A fixed, pre-zeroed buffer read in place: no reallocation, so no unwiped copies.
    let mut buf = Zeroizing::new(vec![0u8; len + 4096]);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(TlsError::Pem {
                what: path.display().to_string(),
                detail: "file grew while being read".to_string(),
            });
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_identities_are_ed25519_with_the_seed_of_their_peer_id() {
        let id = Identity::generate_dev().unwrap();
        assert_eq!(id.key_algorithm(), "ED25519");
        let seed = id.ed25519_seed().unwrap();
        assert_eq!(seed.peer_id(), id.peer_id());
        assert!(format!("{id:?}").contains("redacted"));
        // Through PEM, as `--cert/--key` files: the same seed (PKCS#8 v1 or v2 both decode).
        let key_pem = pem::encode("PRIVATE KEY", &[id.private_key().secret_der()]);
        let loaded = Identity::from_pem(id.cert_pem().as_bytes(), key_pem.as_bytes()).unwrap();
        assert_eq!(loaded.peer_id(), id.peer_id());
        assert_eq!(loaded.ed25519_seed(), Some(seed));
        assert_eq!(loaded.clone().ed25519_seed(), Some(seed));
    }

    #[test]
    fn ecdsa_identities_have_no_signing_seed() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![DEV_SAN.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let id = Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(id.key_algorithm(), "ECDSA");
        assert!(id.ed25519_seed().is_none());
    }
}
