//! Secret files: capability verification keys, the node's token and the TLS private key.
//!
//! Every secret file must be mode 0600 or stricter on unix (no group or other bits). Contents
//! are read into zeroizing buffers and never appear in errors or `Debug` output.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use overlay_proto::MacKey;
use zeroize::Zeroizing;

use super::error::DaemonConfigError;

/// Largest key file accepted (64 hex digits plus whitespace).
const MAX_KEY_FILE_BYTES: u64 = 4096;
/// Largest token accepted (file or `OVERLAY_TOKEN`).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Refuses a file readable, writable or executable by group or others.
#[cfg(unix)]
pub fn check_private(setting: &'static str, path: &Path) -> Result<(), DaemonConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| DaemonConfigError::Read {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(DaemonConfigError::Read {
            setting,
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DaemonConfigError::Permissions {
            setting,
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Permissions are not checked on non-unix platforms; only existence is.
#[cfg(not(unix))]
pub fn check_private(setting: &'static str, path: &Path) -> Result<(), DaemonConfigError> {
    check_readable(setting, path)
}

/// Checks that `path` is an existing regular file (used for certificates and the CA bundle).
pub fn check_readable(setting: &'static str, path: &Path) -> Result<(), DaemonConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| DaemonConfigError::Read {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(DaemonConfigError::Read {
            setting,
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        })
    }
}

/// Reads a whole secret file (after the permission check) into a zeroizing buffer sized up
/// front so no unzeroized reallocation copies are left behind.
fn read_secret(
    setting: &'static str,
    path: &Path,
    max: u64,
) -> Result<Zeroizing<String>, DaemonConfigError> {
    check_private(setting, path)?;
    let read_err = |e: std::io::Error| DaemonConfigError::Read {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > max {
        return Err(DaemonConfigError::Secret {
            setting,
            path: path.to_path_buf(),
            reason: format!("file is {len} bytes; at most {max} accepted"),
        });
    }
    let cap = usize::try_from(len).unwrap_or(0).saturating_add(1);
    let mut text = Zeroizing::new(String::with_capacity(cap));
    // `take` bounds the read even if the file grows after the size check.
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| DaemonConfigError::Secret {
            setting,
            path: path.to_path_buf(),
            reason: format!("not readable as UTF-8 text ({})", e.kind()),
        })?;
    if text.len() as u64 > max {
        return Err(DaemonConfigError::Secret {
            setting,
            path: path.to_path_buf(),
            reason: format!("file is larger than {max} bytes"),
        });
    }
    Ok(text)
}

/// Reads a capability verification key: exactly 64 hex digits (surrounding whitespace is
/// ignored).
pub fn read_mac_key(setting: &'static str, path: &Path) -> Result<MacKey, DaemonConfigError> {
    let text = read_secret(setting, path, MAX_KEY_FILE_BYTES)?;
    let trimmed = text.trim();
    if trimmed.len() != 64 {
        return Err(DaemonConfigError::Secret {
            setting,
            path: path.to_path_buf(),
            reason: format!(
                "expected exactly 64 hex digits, found {} characters",
                trimmed.len()
            ),
        });
    }
    MacKey::from_hex(trimmed).ok_or_else(|| DaemonConfigError::Secret {
        setting,
        path: path.to_path_buf(),
        reason: "expected exactly 64 hex digits (0-9, a-f)".to_string(),
    })
}

/// Reads the node's token from a file; surrounding whitespace is ignored.
pub fn read_token_file(
    setting: &'static str,
    path: &Path,
) -> Result<Zeroizing<String>, DaemonConfigError> {
    let text = read_secret(setting, path, MAX_TOKEN_BYTES as u64)?;
    let token = Zeroizing::new(text.trim().to_string());
    check_token(&token).map_err(|reason| DaemonConfigError::Secret {
        setting,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    })?;
    Ok(token)
}

/// Checks token text without revealing it: non-empty, bounded, printable ASCII without
/// whitespace.
pub fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("the token is empty");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err("the token is longer than 16384 bytes");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without whitespace (base64url text)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    #[test]
    fn token_text_rules() {
        assert_eq!(check_token("abc-_=."), Ok(()));
        assert!(check_token("").is_err());
        assert!(check_token("a b").is_err());
        assert!(check_token("a\u{e9}").is_err());
        assert!(check_token(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    #[test]
    fn oversized_and_non_utf8_secret_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = private_file(dir.path(), "big.key", &"0".repeat(5000));
        let e = read_mac_key("cap_key", &big).unwrap_err();
        assert!(e.to_string().contains("at most 4096"), "{e}");

        let path = dir.path().join("bin.token");
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = read_token_file("token_file", &path).unwrap_err();
        assert!(matches!(e, DaemonConfigError::Secret { .. }), "{e:?}");

        let ok = private_file(dir.path(), "t", "  tok\n");
        assert_eq!(read_token_file("token_file", &ok).unwrap().as_str(), "tok");
        let empty = private_file(dir.path(), "e", "\n");
        assert!(read_token_file("token_file", &empty).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_not_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_private("key", dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
