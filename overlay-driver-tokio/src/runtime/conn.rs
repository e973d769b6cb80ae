//! Per-connection tasks: one reader (socket → `Input::Received` on the bus) and one writer
//! (`Transmit` bytes from a bounded queue → socket, batched). Each reports its end once on the
//! bus; the node task turns the first report into `Input::ConnectionClosed` and ignores the
//! rest.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use overlay_proto::{ConnId, OriginAuth, OverlayError as CoreError, Prechecker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant as TokioInstant};

use super::metrics::{latency, ConnSlot, DriverCounters};
use super::BusMsg;
use crate::shared::WriteCredit;
use crate::tls::classify_handshake_error;

/// Size of the receive blocks: chunks handed to the core are slices of these blocks (no copy).
const READ_CHUNK: usize = 64 * 1024;
/// A new block is reserved when less than this is left in the current one, so many small
/// reads share one block instead of each pinning a block of its own.
const MIN_READ_ROOM: usize = 8 * 1024;
/// A writer gathers queued frames up to this many bytes into one write.
const WRITE_BATCH: usize = 256 * 1024;
/// Scratch buffers larger than this are released after a batch.
const SCRATCH_KEEP: usize = 1024 * 1024;

/// What the node task sends a writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Bytes of one `Action::Transmit`.
    Data {
        /// Whole frames.
        bytes: Bytes,
        /// When the node task queued them (`write` latency).
        queued_at: TokioInstant,
    },
    /// Flush what is queued, close the TLS stream and stop.
    Close,
}

/// Which task of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The reader task.
    Reader,
    /// The writer task.
    Writer,
}

impl Side {
    /// The `task` label of `service_restarts_total`.
    pub(crate) fn task_label(self) -> &'static str {
        match self {
            Side::Reader => "conn_reader",
            Side::Writer => "conn_writer",
        }
    }
}

/// A stable label for an IO error kind (`errors_total{kind}`).
pub(crate) fn io_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "eof",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => "reset",
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::InvalidData => "invalid_data",
        _ => "io",
    }
}

/// True when the error came out of rustls (a TLS alert or protocol error, not plain IO).
fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// Settings of a reader task.
pub(crate) struct ReaderCtx<S> {
    pub(crate) conn: ConnId,
    pub(crate) bus: mpsc::Sender<BusMsg<S>>,
    pub(crate) read_timeout: Duration,
    /// Dialed by us: in TLS 1.3 the server's verdict on our certificate arrives as an alert on
    /// the first read, which is then a handshake failure.
    pub(crate) outbound: bool,
    /// The node's `origin_auth` mode, for the content checks made here.
    pub(crate) origin_auth: OriginAuth,
    pub(crate) counters: Arc<DriverCounters>,
    pub(crate) slot: Arc<ConnSlot>,
}

/// Reads the socket until EOF, error or the backstop timeout, sending each chunk to the node
/// task with the content-check verdicts of the GOSSIP frames inside it (the core's
/// `Prechecker`: ids recomputed and signatures batch-verified here, on whichever worker thread
/// runs this reader, instead of on the node task; the node decides what to do with them). Whether a quiet peer is dead is the core's decision (its failure detector closes the
/// session long before `read_timeout`); the timeout only guards against a core that never
/// decides, e.g. a connection the core does not know.
pub(crate) async fn reader<S, R>(ctx: ReaderCtx<S>, mut rd: R)
where
    R: AsyncRead + Unpin,
{
    let ReaderCtx {
        conn,
        bus,
        read_timeout,
        outbound,
        origin_auth,
        counters,
        slot,
    } = ctx;
    let mut prechecker = Prechecker::new(origin_auth);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut received_any = false;
    let error = loop {
        if buf.capacity() - buf.len() < MIN_READ_ROOM {
            buf.reserve(READ_CHUNK);
        }
        match timeout(read_timeout, rd.read_buf(&mut buf)).await {
            // Backstop only (see above): counted, so a firing one shows in the metrics.
            Err(_) => {
                counters.error("read", "timeout");
                break Some(CoreError::Timeout);
            }
            Ok(Ok(0)) => break None,
            Ok(Ok(_)) => {
                received_any = true;
                let data = buf.split().freeze();
                let checks = prechecker.scan(&data);
                let msg = BusMsg::Received {
                    conn,
                    data,
                    checks,
                    at: TokioInstant::now(),
                };
                if bus.send(msg).await.is_err() {
                    // The node task is gone: nobody to report to.
                    return;
                }
            }
            Ok(Err(e)) => {
                if outbound && !received_any && is_tls_error(&e) {
                    counters.handshake_failure(classify_handshake_error(&e));
                    break Some(CoreError::Crypto);
                }
                if is_tls_error(&e) {
                    counters.error("read", classify_handshake_error(&e));
                    break Some(CoreError::Crypto);
                }
                // A peer that closes without close_notify is an ordinary close.
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    counters.error("read", io_kind(&e));
                }
                break None;
            }
        }
    };
    drop(slot);
    let _ = bus
        .send(BusMsg::Ended {
            conn,
            side: Side::Reader,
            error,
        })
        .await;
}

/// Settings of a writer task.
pub(crate) struct WriterCtx<S> {
    pub(crate) conn: ConnId,
    pub(crate) bus: mpsc::Sender<BusMsg<S>>,
    pub(crate) write_timeout: Duration,
    pub(crate) counters: Arc<DriverCounters>,
    pub(crate) slot: Arc<ConnSlot>,
    /// The queue's byte budget: given back once a batch is written.
    pub(crate) credit: Arc<WriteCredit>,
}

/// Writes queued frames (batched) until told to close, the queue is dropped, or an error.
pub(crate) async fn writer<S, W>(ctx: WriterCtx<S>, mut wr: W, mut rx: mpsc::Receiver<WriterMsg>)
where
    W: AsyncWrite + Unpin,
{
    let WriterCtx {
        conn,
        bus,
        write_timeout,
        counters,
        slot,
        credit,
    } = ctx;
    let mut batch: Vec<(Bytes, TokioInstant)> = Vec::new();
    let mut scratch = BytesMut::new();
    let error = loop {
        let mut close = false;
        match rx.recv().await {
            // The node task dropped the queue (the reader ended first, or shutdown): close.
            None => close = true,
            Some(WriterMsg::Close) => close = true,
            Some(WriterMsg::Data { bytes, queued_at }) => {
                let mut total = bytes.len();
                batch.push((bytes, queued_at));
                while total < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(WriterMsg::Data { bytes, queued_at }) => {
                            total += bytes.len();
                            batch.push((bytes, queued_at));
                        }
                        Ok(WriterMsg::Close) => {
                            close = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        if !batch.is_empty() {
            let written = timeout(write_timeout, write_batch(&mut wr, &batch, &mut scratch)).await;
            match written {
                Err(_) => {
                    counters.error("write", "timeout");
                    break Some(CoreError::Timeout);
                }
                Ok(Err(e)) => {
                    counters.error("write", io_kind(&e));
                    break None;
                }
                Ok(Ok(())) => {
                    let now = TokioInstant::now();
                    for (_, queued_at) in &batch {
                        latency("write", now.saturating_duration_since(*queued_at));
                    }
                }
            }
            credit.give_back(batch.iter().map(|(bytes, _)| bytes.len()).sum());
            batch.clear();
            if scratch.capacity() > SCRATCH_KEEP {
                scratch = BytesMut::new();
            }
        }
        if close {
            // close_notify, then the TCP FIN; a peer that stopped reading cannot hold us.
            if let Ok(Err(e)) = timeout(write_timeout, wr.shutdown()).await {
                if e.kind() != io::ErrorKind::NotConnected {
                    counters.error("write", io_kind(&e));
                }
            }
            break None;
        }
    };
    drop(slot);
    let _ = bus
        .send(BusMsg::Ended {
            conn,
            side: Side::Writer,
            error,
        })
        .await;
}

/// One write (and flush) for the whole batch.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &[(Bytes, TokioInstant)],
    scratch: &mut BytesMut,
) -> io::Result<()> {
    match batch {
        [(only, _)] => wr.write_all(only).await?,
        _ => {
            scratch.clear();
            for (bytes, _) in batch {
                scratch.extend_from_slice(bytes);
            }
            wr.write_all(scratch).await?;
        }
    }
    wr.flush().await
}
