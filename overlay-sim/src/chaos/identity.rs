//! Seeded node identities: each simulated host gets an Ed25519 key derived from the run's seed
//! and its index, and a self-signed certificate with a fixed serial number and validity window,
//! so its PeerId (BLAKE3 of the SubjectPublicKeyInfo) is the same in every run with that seed.
//! Ed25519 signatures are deterministic too, so the certificate bytes repeat exactly.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use svc_overlay::tls::{Identity, TlsError, DEV_SAN};
use zeroize::Zeroizing;

/// DER prefix of a PKCS#8 v1 `PrivateKeyInfo` holding an Ed25519 key (RFC 8410): version 0,
/// algorithm id-Ed25519, then the 32-byte seed as an OCTET STRING inside the OCTET STRING.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// BLAKE3 key-derivation context of identity seeds.
const CONTEXT: &str = "svc-overlay chaos 2025 node identity v1";

/// The 32 secret bytes of node `index` in a run with `seed`.
pub fn key_seed(seed: u64, index: usize) -> Zeroizing<[u8; 32]> {
    let mut material = [0u8; 16];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..].copy_from_slice(&(index as u64).to_be_bytes());
    Zeroizing::new(blake3::derive_key(CONTEXT, &material))
}

/// The TLS identity of node `index` in a run with `seed`: Ed25519, SAN `svc-overlay.local`,
/// serial `index + 1`, valid from 2000-01-01 to 2099-12-31 (so real-clock validity checks in
/// rustls pass whenever the simulation runs).
pub fn node_identity(seed: u64, index: usize) -> Result<Identity, TlsError> {
    let secret = key_seed(seed, index);
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&ED25519_PKCS8_PREFIX);
    der.extend_from_slice(secret.as_ref());
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_slice());
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ED25519)?;
    let mut params = CertificateParams::new(vec![DEV_SAN.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("svc-overlay chaos node {index}"),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from(index as u64 + 1));
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key_pair)?;
    let key = Zeroizing::new(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        der.as_slice().to_vec(),
    )));
    Identity::new(vec![cert.der().clone()], key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn identities_repeat_and_differ() {
        let a = node_identity(7, 0).unwrap();
        let b = node_identity(7, 0).unwrap();
        let c = node_identity(7, 1).unwrap();
        let d = node_identity(8, 0).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        assert_eq!(a.cert_chain(), b.cert_chain());
        assert_ne!(a.peer_id(), c.peer_id());
        assert_ne!(a.peer_id(), d.peer_id());
    }
}
