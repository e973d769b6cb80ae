//! `svc-overlay cap-key new --out FILE`: a random capability (MAC) key.

use std::path::Path;

use zeroize::Zeroizing;

use super::{files, OperatorError};

/// Writes 32 random bytes from the OS as 64 lowercase hex digits and a newline (mode 0600).
pub(crate) fn new_key(path: &Path) -> Result<(), OperatorError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut key[..])
        .map_err(|e| OperatorError::Failed(format!("no randomness from the OS: {e}")))?;
    let mut text = Zeroizing::new([b'\n'; 65]);
    hex::encode_to_slice(&key[..], &mut text[..64])
        .map_err(|e| OperatorError::Failed(format!("hex encoding: {e}")))?;
    files::write_new(path, &text[..], true)
}
