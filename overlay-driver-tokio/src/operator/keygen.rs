//! `svc-overlay keygen --out DIR`: a self-signed node identity on disk.
//!
//! The identity comes from the daemon's own generator ([`Identity::generate_dev`]), so a key
//! written here is exactly the kind of identity the daemon makes for itself in dev mode.

use std::path::Path;

use base64::Engine as _;
use rustls::pki_types::PrivateKeyDer;
use zeroize::Zeroizing;

use super::{files, OperatorError};
use crate::tls::Identity;

/// The certificate file written into the output directory.
pub const CERT_FILE: &str = "cert.pem";
/// The private key file written into the output directory (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// Writes `DIR/cert.pem` and `DIR/key.pem` and returns the identity's PeerId text.
pub(crate) fn keygen(dir: &Path) -> Result<String, OperatorError> {
    std::fs::create_dir_all(dir).map_err(|source| OperatorError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(OperatorError::Exists(path.clone()));
        }
    }
    let identity = Identity::generate_dev().map_err(|e| OperatorError::Failed(e.to_string()))?;
    let key_pem = private_key_pem(identity.private_key());
    files::write_new(&key_path, key_pem.as_bytes(), true)?;
    files::write_new(&cert_path, identity.cert_pem().as_bytes(), false)?;
    // A round trip through the daemon's loader: what was written is what the daemon reads.
    let loaded = Identity::from_pem_files(&cert_path, &key_path)
        .map_err(|e| OperatorError::Failed(format!("the written identity does not load: {e}")))?;
    Ok(loaded.peer_id().to_string())
}

/// PEM of a private key, built in wiped buffers (a PEM crate would leave unwiped copies of the
/// key behind).
fn private_key_pem(key: &PrivateKeyDer<'_>) -> Zeroizing<String> {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let der = key.secret_der();
    let mut b64 = Zeroizing::new(String::with_capacity(der.len().div_ceil(3) * 4));
    base64::engine::general_purpose::STANDARD.encode_string(der, &mut b64);
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 80));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}
