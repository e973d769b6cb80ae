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

/// Creates the file readable by its owner only: a trace holds keys, tokens and payloads.
fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
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
