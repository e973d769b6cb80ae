//! PEM reading and writing.
//!
//! Certificates are public and go through `rustls-pemfile`. Private keys are decoded here instead,
//! so that every intermediate buffer holding key material (the base64 text and the decoded DER)
//! is a `Zeroizing` buffer sized up front, and is wiped when dropped.

use base64::Engine as _;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use zeroize::Zeroizing;

use super::error::TlsError;

/// The largest PEM input accepted for a key or certificate chain.
pub(crate) const MAX_PEM_LEN: usize = 1024 * 1024;

fn pem_error(what: &str, detail: impl Into<String>) -> TlsError {
    TlsError::Pem {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// Parses every `CERTIFICATE` block of a PEM document (other blocks are ignored).
pub(crate) fn parse_certs(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(pem_error(what, "input larger than 1 MiB"));
    }
    let mut reader = pem;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(what, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

#[derive(Clone, Copy)]
enum KeyKind {
    Pkcs8,
    Sec1,
    Pkcs1,
}

fn key_kind(label: &str) -> Result<Option<KeyKind>, &'static str> {
    match label {
        "PRIVATE KEY" => Ok(Some(KeyKind::Pkcs8)),
        "EC PRIVATE KEY" => Ok(Some(KeyKind::Sec1)),
        "RSA PRIVATE KEY" => Ok(Some(KeyKind::Pkcs1)),
        "ENCRYPTED PRIVATE KEY" => Err("encrypted private keys are not supported"),
        _ => Ok(None),
    }
}

/// Parses exactly one private key (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` or PKCS#1
/// `RSA PRIVATE KEY`) from a PEM document. Other blocks (e.g. `EC PARAMETERS`) are skipped.
pub(crate) fn parse_private_key(
    pem: &[u8],
    what: &str,
) -> Result<Zeroizing<PrivateKeyDer<'static>>, TlsError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(pem_error(what, "input larger than 1 MiB"));
    }
    let text = std::str::from_utf8(pem).map_err(|_| pem_error(what, "not UTF-8 text"))?;
    let mut found: Option<Zeroizing<PrivateKeyDer<'static>>> = None;
    // (kind, label) of the block being read, if inside one we care about.
    let mut current: Option<(KeyKind, &str)> = None;
    let mut skipping: Option<&str> = None;
    // Sized to the whole input so it never reallocates (which would leave an unwiped copy).
    let mut b64 = Zeroizing::new(Vec::<u8>::with_capacity(pem.len()));

    for raw_line in text.lines() {
        let line = raw_line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if current.is_some() || skipping.is_some() {
                return Err(pem_error(what, "nested BEGIN line"));
            }
            match key_kind(label).map_err(|e| pem_error(what, e))? {
                Some(kind) => {
                    if found.is_some() {
                        return Err(pem_error(what, "more than one private key"));
                    }
                    current = Some((kind, label));
                    b64.clear();
                }
                None => skipping = Some(label),
            }
            continue;
        }
        if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some(open) = skipping.take() {
                if open != label {
                    return Err(pem_error(what, "mismatched END line"));
                }
                continue;
            }
            let Some((kind, open)) = current.take() else {
                return Err(pem_error(what, "END line without BEGIN"));
            };
            if open != label {
                return Err(pem_error(what, "mismatched END line"));
            }
            found = Some(decode_key(&b64, kind, what)?);
            b64.clear();
            continue;
        }
        if current.is_some() {
            if line.contains(':') {
                // RFC 1421 headers such as `Proc-Type: 4,ENCRYPTED` (legacy OpenSSL encryption).
                return Err(pem_error(
                    what,
                    "PEM headers (legacy encrypted keys) are not supported",
                ));
            }
            for &byte in line.as_bytes() {
                if !byte.is_ascii_whitespace() {
                    b64.push(byte);
                }
            }
        }
    }
    if current.is_some() || skipping.is_some() {
        return Err(pem_error(what, "missing END line"));
    }
    found.ok_or_else(|| {
        pem_error(
            what,
            "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block found",
        )
    })
}

fn decode_key(
    b64: &[u8],
    kind: KeyKind,
    what: &str,
) -> Result<Zeroizing<PrivateKeyDer<'static>>, TlsError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut der = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(b64.len())]);
    let len = engine
        .decode_slice(b64, der.as_mut_slice())
        .map_err(|e| pem_error(what, format!("bad base64: {e}")))?;
    if len == 0 {
        return Err(pem_error(what, "empty private key block"));
    }
    der.truncate(len);
    // Move (not copy) the buffer into the key type, which is itself wiped on drop.
    let bytes = std::mem::take(&mut *der);
    let key = match kind {
        KeyKind::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)),
        KeyKind::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(bytes)),
        KeyKind::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(bytes)),
    };
    Ok(Zeroizing::new(key))
}

/// Encodes DER blocks as PEM with the given label (64-column base64, `\n` line endings).
pub(crate) fn encode(label: &str, ders: &[&[u8]]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN ");
        out.push_str(label);
        out.push_str("-----\n");
        let b64 = engine.encode(der);
        let mut rest = b64.as_str();
        while !rest.is_empty() {
            let (line, tail) = rest.split_at(rest.len().min(64));
            out.push_str(line);
            out.push('\n');
            rest = tail;
        }
        out.push_str("-----END ");
        out.push_str(label);
        out.push_str("-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip_and_errors() {
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x00];
        let pem = encode("PRIVATE KEY", &[&der]);
        let key = parse_private_key(pem.as_bytes(), "k").unwrap();
        assert_eq!(key.secret_der(), &der);

        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            encode("EC PRIVATE KEY", &[&der])
        );
        let key = parse_private_key(with_params.as_bytes(), "k").unwrap();
        assert!(matches!(&*key, PrivateKeyDer::Sec1(_)));

        let two = format!("{pem}{pem}");
        assert!(parse_private_key(two.as_bytes(), "k").is_err());
        assert!(parse_private_key(b"nothing here", "k").is_err());
        let enc = encode("ENCRYPTED PRIVATE KEY", &[&der]);
        assert!(parse_private_key(enc.as_bytes(), "k").is_err());
        let truncated = &pem[..pem.len() - 10];
        assert!(parse_private_key(truncated.as_bytes(), "k").is_err());
    }

    #[test]
    fn cert_blocks_are_found() {
        let pem = encode("CERTIFICATE", &[b"abc", b"defg"]);
        let certs = parse_certs(pem.as_bytes(), "c").unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1].as_ref(), b"defg");
        assert!(parse_certs(b"", "c").is_err());
    }
}
