//! Trace capture (`--trace-out FILE`): every `(now, input)` the node task handles and the
//! actions it drained, written with [`TraceWriter`] on a dedicated thread so the node task never
//! waits on the disk.
//!
//! The channel to the thread is bounded. When it is full the record is dropped, counted
//! (`overlay_trace_dropped_total`) and the trace is marked incomplete: nothing more is sent, so
//! the file stays a valid, replayable prefix of the run.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use overlay_proto::trace::{TraceHeader, TraceWriter};
use overlay_proto::{Action, Input, Instant};

use super::metrics::DriverCounters;

/// Records buffered between the node task and the writer thread.
const TRACE_CHANNEL: usize = 1 << 16;

enum TraceMsg {
    Record {
        now: Instant,
        input: Input,
        actions: Vec<Action>,
    },
}

/// The node task's end of the trace.
pub(crate) struct TraceSink {
    tx: Option<SyncSender<TraceMsg>>,
    thread: Option<JoinHandle<Result<u64, String>>>,
    incomplete: bool,
    path: PathBuf,
    counters: Arc<DriverCounters>,
}

/// Opens the trace file for writing, readable by its owner only: a trace holds keys, tokens
/// and payloads.
///
/// The last path component is never followed if it is a symbolic link (`O_NOFOLLOW`: the open
/// fails), and an existing file must be a regular file with a single link (no hard link to a
/// file elsewhere); its mode is set to 0600 before it is truncated, so a loose mode is never
/// kept.
fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    let file = opts.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; a trace file is never written through one",
                    path.display()
                ),
            );
        }
        e
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if meta.nlink() > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has {} hard links; a trace file must have one",
                    path.display(),
                    meta.nlink()
                ),
            ));
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.set_len(0)?;
    Ok(file)
}

impl TraceSink {
    /// Creates the file, writes the header and starts the writer thread.
    pub(crate) fn create(
        path: &Path,
        header: &TraceHeader,
        counters: Arc<DriverCounters>,
    ) -> io::Result<TraceSink> {
        let file = create_private(path)?;
        let mut writer =
            TraceWriter::new(BufWriter::new(file), header).map_err(io::Error::other)?;
        let (tx, rx) = sync_channel::<TraceMsg>(TRACE_CHANNEL);
        let thread = std::thread::Builder::new()
            .name("svc-overlay-trace".to_string())
            .spawn(move || {
                // Ends when the sender is dropped (shutdown) after writing what was queued.
                for msg in rx {
                    match msg {
                        TraceMsg::Record {
                            now,
                            input,
                            actions,
                        } => writer
                            .record(now, &input, &actions)
                            .map_err(|e| e.to_string())?,
                    }
                }
                writer.flush().map_err(|e| e.to_string())?;
                Ok(writer.records())
            })?;
        Ok(TraceSink {
            tx: Some(tx),
            thread: Some(thread),
            incomplete: false,
            path: path.to_path_buf(),
            counters,
        })
    }

    /// Queues one record; never blocks.
    pub(crate) fn record(&mut self, now: Instant, input: Input, actions: &[Action]) {
        let Some(tx) = &self.tx else {
            if self.incomplete {
                self.counters.trace_dropped();
            }
            return;
        };
        let msg = TraceMsg::Record {
            now,
            input,
            actions: actions.to_vec(),
        };
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.trace_dropped();
                if !self.incomplete {
                    tracing::error!(
                        path = %self.path.display(),
                        "trace writer cannot keep up (or failed); the trace ends here and is incomplete"
                    );
                }
                self.incomplete = true;
                // Stop sending: the file stays a replayable prefix.
                self.tx = None;
            }
        }
    }

    /// Flushes and closes the file (waits for the writer thread off the runtime's threads).
    pub(crate) async fn finish(mut self) {
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let path = self.path.clone();
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(Ok(records))) => {
                tracing::info!(path = %path.display(), records, incomplete = self.incomplete, "trace written");
            }
            Ok(Ok(Err(e))) => {
                tracing::error!(path = %path.display(), error = %e, "trace write failed")
            }
            Ok(Err(_)) | Err(_) => {
                tracing::error!(path = %path.display(), "trace writer thread crashed")
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::create_private;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn a_new_trace_file_is_0600() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        let path = dir.path().join("t.cbor");
        assert!(create_private(&path).is_ok());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn an_existing_loose_file_is_tightened_and_truncated() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        let path = dir.path().join("t.cbor");
        assert!(std::fs::write(&path, b"old contents").is_ok());
        assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).is_ok());
        let Ok(mut file) = create_private(&path) else {
            panic!("open");
        };
        assert!(file.write_all(b"new").is_ok());
        drop(file);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).ok(), Some(b"new".to_vec()));
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        let target = dir.path().join("victim");
        assert!(std::fs::write(&target, b"precious").is_ok());
        let link = dir.path().join("t.cbor");
        assert!(std::os::unix::fs::symlink(&target, &link).is_ok());
        let err = create_private(&link).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("symbolic link")),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&target).ok(), Some(b"precious".to_vec()));
        // A dangling link is refused too (nothing is created at its target).
        let dangling = dir.path().join("d.cbor");
        let nowhere = dir.path().join("nowhere");
        assert!(std::os::unix::fs::symlink(&nowhere, &dangling).is_ok());
        assert!(create_private(&dangling).is_err());
        assert!(!nowhere.exists());
    }

    #[test]
    fn a_hard_linked_file_is_refused() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        let target = dir.path().join("victim");
        assert!(std::fs::write(&target, b"precious").is_ok());
        let link = dir.path().join("t.cbor");
        assert!(std::fs::hard_link(&target, &link).is_ok());
        assert!(create_private(&link).is_err());
        assert_eq!(std::fs::read(&target).ok(), Some(b"precious".to_vec()));
    }
}
