//! Writing the files operators create: new files only (never overwrite), secrets mode 0600
//! from the moment they exist.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::OperatorError;

/// Creates `path` (it must not exist) and writes `contents`. With `secret`, the file is
/// created with mode 0600 (unix), so the secret is never readable by others, not even briefly.
pub(crate) fn write_new(path: &Path, contents: &[u8], secret: bool) -> Result<(), OperatorError> {
    let io = |source| OperatorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file: File = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            OperatorError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a token argument: the text itself, or stdin for `-`.
pub(crate) fn token_arg(arg: &str) -> Result<zeroize::Zeroizing<String>, OperatorError> {
    if arg == "-" {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text).map_err(
            |source| OperatorError::Io {
                path: "<stdin>".into(),
                source,
            },
        )?;
        Ok(zeroize::Zeroizing::new(text.trim().to_string()))
    } else {
        Ok(zeroize::Zeroizing::new(arg.trim().to_string()))
    }
}
