//! Strict base64url (RFC 4648 §5, no padding) with the size bound applied to the decoded length.

use super::AuthError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Number of bytes an unpadded base64 text of `n` characters decodes to, or `None` when no
/// valid text has that length (`n % 4 == 1`).
fn decoded_len(n: usize) -> Option<usize> {
    let tail = match n % 4 {
        0 => 0,
        2 => 1,
        3 => 2,
        _ => return None,
    };
    Some(n / 4 * 3 + tail)
}

/// True when `text` is valid unpadded base64url, checked in fixed-size pieces so that an
/// oversized text costs no allocation. Pieces of whole quads decode independently, so this is
/// the same verdict as decoding the text in one go.
fn is_valid(text: &[u8]) -> bool {
    const CHUNK: usize = 1024;
    let mut scratch = [0u8; CHUNK];
    text.chunks(CHUNK)
        .all(|piece| URL_SAFE_NO_PAD.decode_slice(piece, &mut scratch).is_ok())
}

/// Steps 1 and 2: decodes `text`; any decoding problem is `Malformed("base64url")`, a valid text
/// whose decoded length exceeds `max_bytes` is `Bounds`.
pub(crate) fn decode(text: &[u8], max_bytes: usize) -> Result<Vec<u8>, AuthError> {
    const BAD: AuthError = AuthError::Malformed("base64url");
    let len = decoded_len(text.len()).ok_or(BAD)?;
    if len > max_bytes {
        return Err(if is_valid(text) {
            AuthError::Bounds
        } else {
            BAD
        });
    }
    let mut out = Vec::with_capacity(len + 3);
    URL_SAFE_NO_PAD
        .decode_vec(text, &mut out)
        .map_err(|_| BAD)?;
    Ok(out)
}

/// Encodes bytes as unpadded base64url.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness_and_bounds() {
        assert_eq!(decode(b"", 10), Ok(vec![]));
        assert_eq!(decode(b"AQ", 10), Ok(vec![1]));
        assert_eq!(
            decode(b"AR", 10),
            Err(AuthError::Malformed("base64url")),
            "trailing bits"
        );
        assert_eq!(
            decode(b"AQ==", 10),
            Err(AuthError::Malformed("base64url")),
            "padding"
        );
        assert_eq!(
            decode(b"A", 10),
            Err(AuthError::Malformed("base64url")),
            "length"
        );
        assert_eq!(
            decode(b"+/8", 10),
            Err(AuthError::Malformed("base64url")),
            "std alphabet"
        );
        assert_eq!(decode(b"-_8", 10), Ok(vec![0xfb, 0xff]));
        assert_eq!(
            decode(b"AQ\n", 10),
            Err(AuthError::Malformed("base64url")),
            "whitespace"
        );
        assert_eq!(decode(b"AAAA", 3), Ok(vec![0, 0, 0]));
        assert_eq!(decode(b"AAAAAA", 3), Err(AuthError::Bounds));
        assert_eq!(decode(b"AAAA*A", 3), Err(AuthError::Malformed("base64url")));
        let big = vec![b'A'; 6000];
        assert_eq!(decode(&big, 4096), Err(AuthError::Bounds));
        let mut big_bad = big.clone();
        big_bad[4321] = b'=';
        assert_eq!(
            decode(&big_bad, 4096),
            Err(AuthError::Malformed("base64url"))
        );
        let mut big_tail = vec![b'A'; 6002];
        big_tail[6001] = b'B';
        assert_eq!(
            decode(&big_tail, 4096),
            Err(AuthError::Malformed("base64url"))
        );
    }
}
