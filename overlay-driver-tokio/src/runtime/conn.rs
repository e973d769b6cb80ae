//! Per-connection tasks: one reader (socket → `Input::Received` on the bus) and one writer
//! (`Transmit` bytes from a bounded queue → socket, batched). Each reports its end once on the
//! bus; the node task turns the first report into `Input::ConnectionClosed` and ignores the
//! rest.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use overlay_proto::{ConnId, OriginAuth, OverlayError as CoreError, Prechecker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore, TryAcquireError};
use tokio::time::{timeout, Instant as TokioInstant};

use super::metrics::{latency, ConnSlot, DriverCounters};
use super::{BusMsg, Received};
use crate::shared::WriteCredit;
use crate::tls::classify_handshake_error;

/// Bytes a waiting reader reads into a buffer inside its own task: a connection waiting for
/// data holds no receive block (what it reads is then copied into one, with whatever else is
/// readable at once).
const WAIT_READ: usize = 512;
/// Smallest receive block.
const MIN_READ_CHUNK: usize = 4 * 1024;
/// Largest receive block, reached after reads that keep filling the block they were given
/// (one TLS record's worth: 64 KiB blocks on every connection of a CPU-starved node were
/// ~700 KiB per node in the mesh benchmark, for no measurable gain).
const MAX_READ_CHUNK: usize = 16 * 1024;
/// Bytes read from all connections of a node and not yet handled by its node task, at most:
/// a reader that would go past it waits (its socket then fills and TCP pushes back on the
/// peer), so reads queued for a CPU-starved node task cannot pin more receive blocks than
/// this plus the block each waiting reader has just filled (the budget is taken after the
/// read). Larger than one read ([`MAX_READ_CHUNK`]); waits are counted
/// (`overlay_read_budget_waits_total`). Below TLS, a busy connection also holds up to
/// [`READ_AHEAD_BYTES`](super::read_ahead::READ_AHEAD_BYTES) of ciphertext read ahead (see
/// `read_ahead`), which a reader waiting for budget no longer refills: TCP still pushes back.
pub(crate) const READ_BUDGET_BYTES: usize = 512 * 1024;

/// Reads without waiting that a reader adds to one hand-over at most.
const FILL_READS: usize = 16;
/// Room below which a reader hands its block over instead of reading more into it.
const FILL_MIN_ROOM: usize = 512;
/// A writer gathers queued frames up to this many bytes into one write.
const WRITE_BATCH: usize = 256 * 1024;
/// Queue-time stamps a writer keeps room for between batches.
const IDLE_STAMPS: usize = 16;
/// Pieces handed to one vectored write call at most (a forwarded gossip frame is two: its
/// header and the payload it shares with the node's other connections).
const MAX_IOVECS: usize = 128;

/// What the node task sends a writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// The bytes of every `Action::Transmit` for this connection that the node task carried
    /// out in one wake-up, in order (one queue slot and one writer wake-up for all of them).
    /// Boxed: the queue's slots are allocated in blocks of 32, and a slot is as large as the
    /// largest message (8 bytes instead of 48 per slot, ≈ 1.3 KiB less per block).
    Data(Box<WriterBatch>),
    /// Flush what is queued, close the TLS stream and stop.
    Close,
}

/// The transmits of one node-task wake-up for one connection.
#[derive(Debug)]
pub(crate) struct WriterBatch {
    /// Whole frames, in the order the core emitted them.
    pub(crate) frames: Vec<Bytes>,
    /// Their total length (the credit taken for them).
    pub(crate) bytes: usize,
    /// When the node task queued the first of them (`write` latency).
    pub(crate) queued_at: TokioInstant,
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
    /// The node's read budget ([`READ_BUDGET_BYTES`] permits, one per byte).
    pub(crate) budget: Arc<Semaphore>,
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
        budget,
    } = ctx;
    let mut prechecker = Prechecker::new(origin_auth);
    let mut blocks = ReadBlocks::new();
    let mut received_any = false;
    let mut first = [0u8; WAIT_READ];
    let error = loop {
        match timeout(read_timeout, rd.read(&mut first)).await {
            // Backstop only (see above): counted, so a firing one shows in the metrics.
            Err(_) => {
                counters.error("read", "timeout");
                break Some(CoreError::Timeout);
            }
            Ok(Ok(0)) => break None,
            Ok(Ok(read)) => {
                received_any = true;
                let room = blocks.room();
                blocks
                    .buf
                    .extend_from_slice(first.get(..read).unwrap_or_default());
                // Take what else is already readable (the rest of a burst: more TLS records)
                // into the same block, so the node task gets one message for all of it.
                let read = read + fill_ready(&mut rd, &mut blocks.buf);
                blocks.adapt(read, room);
                // The core decodes frames in place: what it keeps are slices of this block.
                let data = blocks.hand_over(read, room);
                let checks = prechecker.scan(&data);
                let Some(budget) = take_budget(&budget, data.len(), &counters).await else {
                    // The node task is gone.
                    return;
                };
                let msg = BusMsg::Received(Box::new(Received {
                    conn,
                    data,
                    checks,
                    at: TokioInstant::now(),
                    budget,
                }));
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

/// Takes `bytes` of the node's read budget, waiting (counted) while other reads hold it;
/// `None` when the budget was closed.
async fn take_budget(
    budget: &Arc<Semaphore>,
    bytes: usize,
    counters: &DriverCounters,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let permits = u32::try_from(bytes.min(READ_BUDGET_BYTES)).unwrap_or(u32::MAX);
    match Arc::clone(budget).try_acquire_many_owned(permits) {
        Ok(permit) => Some(permit),
        Err(TryAcquireError::Closed) => None,
        Err(TryAcquireError::NoPermits) => {
            counters.read_budget_wait();
            Arc::clone(budget).acquire_many_owned(permits).await.ok()
        }
    }
}

/// Reads into the free part of `buf` while data is ready without waiting (at most
/// [`FILL_READS`] reads); returns the bytes added. An error or end of stream is left for the
/// reader's next (waiting) read to see again: TLS errors and EOF repeat.
fn fill_ready<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> usize {
    let mut added = 0;
    for _ in 0..FILL_READS {
        if buf.capacity() - buf.len() < FILL_MIN_ROOM {
            break;
        }
        match rd.read_buf(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => added += n,
            _ => break,
        }
    }
    added
}

/// A reader's receive blocks. Each read lands in the free part of the current block and is
/// handed over as a slice of it (`split().freeze()`), so the core owns the bytes without a copy
/// and the block is freed once the last slice is dropped. The block size adapts to the traffic:
/// it doubles (up to [`MAX_READ_CHUNK`]) after a read that filled all the room it was given and
/// halves (down to [`MIN_READ_CHUNK`]) after a small read, so a busy connection reads in large
/// pieces. A read that did not fill its room drained the socket: the reader lets the block go
/// (an idle connection holds none), and hands a read smaller than half its block over as an
/// exact-size copy, so bytes queued for the node task do not pin mostly empty blocks.
struct ReadBlocks {
    buf: BytesMut,
    chunk: usize,
}

impl ReadBlocks {
    fn new() -> ReadBlocks {
        ReadBlocks {
            buf: BytesMut::new(),
            chunk: MIN_READ_CHUNK,
        }
    }

    /// The `read` bytes just read into `room`, for the node task (see above).
    fn hand_over(&mut self, read: usize, room: usize) -> Bytes {
        if read >= room {
            // The block is full and more is probably readable: the next read starts a new one.
            return self.buf.split().freeze();
        }
        let block = std::mem::take(&mut self.buf);
        if block.len() < block.capacity() / 2 {
            Bytes::copy_from_slice(&block)
        } else {
            block.freeze()
        }
    }

    /// Room for the next read; starts a new block when less than a quarter of one is left, or
    /// when the current one is much larger than the traffic needs now (the old block lives on
    /// in the slices handed over, and is freed with the last of them).
    fn room(&mut self) -> usize {
        let room = self.buf.capacity() - self.buf.len();
        if room < self.chunk / 4 || room > self.chunk * 2 {
            self.buf = BytesMut::with_capacity(self.chunk);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// Sizes the next block from the last read (`read` bytes into `room`).
    fn adapt(&mut self, read: usize, room: usize) {
        if read >= room {
            self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
        } else if read < self.chunk / 16 {
            self.chunk = (self.chunk / 2).max(MIN_READ_CHUNK);
        }
    }
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
    let mut batch: Vec<Bytes> = Vec::new();
    let mut stamps: Vec<TokioInstant> = Vec::new();
    let mut total = 0usize;
    let error = loop {
        let mut close = false;
        match rx.recv().await {
            // The node task dropped the queue (the reader ended first, or shutdown): close.
            None => close = true,
            Some(WriterMsg::Close) => close = true,
            Some(WriterMsg::Data(data)) => {
                let WriterBatch {
                    frames,
                    bytes,
                    queued_at,
                } = *data;
                total += bytes;
                // The first message's list becomes the batch (no copy, and nothing kept
                // allocated between batches).
                if batch.is_empty() {
                    batch = frames;
                } else {
                    batch.extend(frames);
                }
                stamps.push(queued_at);
                while total < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(WriterMsg::Data(data)) => {
                            total += data.bytes;
                            batch.extend(data.frames);
                            stamps.push(data.queued_at);
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
            let written = timeout(write_timeout, write_batch(&mut wr, &batch)).await;
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
                    for queued_at in &stamps {
                        latency("write", now.saturating_duration_since(*queued_at));
                    }
                }
            }
            credit.give_back(total);
            total = 0;
            // Frees the frames (and their shared payloads' references) and the list: an idle
            // connection keeps no batch memory.
            batch = Vec::new();
            stamps.clear();
            if stamps.capacity() > IDLE_STAMPS {
                stamps = Vec::new();
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

/// The whole batch with vectored writes (no copy into a scratch buffer: TLS encrypts
/// straight from the queued frames, many frames per record), then one flush.
async fn write_batch<W: AsyncWrite + Unpin>(wr: &mut W, batch: &[Bytes]) -> io::Result<()> {
    let mut first = 0;
    let mut offset = 0;
    loop {
        // Skip what is fully written (and empty frames, which a write cannot make progress on).
        while first < batch.len() && batch[first].len() == offset {
            first += 1;
            offset = 0;
        }
        if first == batch.len() {
            break;
        }
        // The slices live on the stack of one poll only, not in the writer task's future
        // (which every connection keeps allocated for its whole life).
        let mut written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut used = 0;
            for (i, bytes) in batch[first..].iter().take(MAX_IOVECS).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &bytes[offset..] } else { bytes });
                used = i + 1;
            }
            std::pin::Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..used])
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 && first < batch.len() {
            let left = batch[first].len() - offset;
            let step = written.min(left);
            offset += step;
            written -= step;
            if offset == batch[first].len() {
                first += 1;
                offset = 0;
            }
        }
    }
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Accepts at most `per_call` bytes per write (vectored or not), like a busy socket.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.per_call);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut budget = self.per_call;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(budget);
                self.out.extend_from_slice(&b[..take]);
                budget -= take;
                n += take;
            }
            self.calls += 1;
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_batch_survives_partial_writes_and_empty_frames() {
        let frames: Vec<Bytes> = vec![
            Bytes::from_static(b"alpha"),
            Bytes::new(),
            Bytes::from_static(b"be"),
            Bytes::from((0..200u8).collect::<Vec<u8>>()),
            Bytes::new(),
        ];
        let batch = frames.clone();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        for per_call in [1, 3, 7, 1000] {
            let mut wr = Trickle {
                out: Vec::new(),
                per_call,
                calls: 0,
            };
            write_batch(&mut wr, &batch).await.unwrap();
            assert_eq!(wr.out, expected, "per_call {per_call}");
            assert_eq!(wr.calls, expected.len().div_ceil(per_call));
        }
        let mut wr = Trickle {
            out: Vec::new(),
            per_call: 4,
            calls: 0,
        };
        let empty = [Bytes::new()];
        write_batch(&mut wr, &empty).await.unwrap();
        assert_eq!(wr.calls, 0);
    }

    #[test]
    fn an_idle_reader_holds_no_block_and_small_reads_are_exact_size() {
        let mut blocks = ReadBlocks::new();
        assert_eq!(blocks.buf.capacity(), 0, "nothing before the first read");
        let room = blocks.room();
        assert_eq!(room, MIN_READ_CHUNK);
        blocks.buf.extend_from_slice(&[1u8; 1100]);
        blocks.adapt(1100, room);
        let data = blocks.hand_over(1100, room);
        assert_eq!(&data[..], &[1u8; 1100][..]);
        assert_eq!(
            blocks.buf.capacity(),
            0,
            "the socket was drained: the block is let go"
        );
        // More than half the block: handed over without a copy, and let go all the same.
        let room = blocks.room();
        blocks.buf.extend_from_slice(&[2u8; 3000]);
        let start = blocks.buf.as_ptr();
        blocks.adapt(3000, room);
        let data = blocks.hand_over(3000, room);
        assert_eq!(data.as_ptr(), start, "a slice of the block");
        assert_eq!(data.len(), 3000);
        assert_eq!(blocks.buf.capacity(), 0);
        // A read that filled its room: the next one goes to a new block.
        let room = blocks.room();
        blocks.buf.resize(room, 3);
        blocks.adapt(room, room);
        assert_eq!(blocks.hand_over(room, room).len(), MIN_READ_CHUNK);
        assert_eq!(blocks.room(), 2 * MIN_READ_CHUNK);
    }

    #[test]
    fn read_blocks_grow_under_load_and_shrink_when_idle() {
        let mut blocks = ReadBlocks::new();
        assert_eq!(blocks.room(), MIN_READ_CHUNK);
        for _ in 0..10 {
            let room = blocks.room();
            blocks.buf.resize(blocks.buf.len() + room, 0);
            blocks.adapt(room, room);
            drop(blocks.buf.split().freeze());
        }
        assert_eq!(blocks.chunk, MAX_READ_CHUNK);
        assert_eq!(blocks.room(), MAX_READ_CHUNK);
        for _ in 0..10 {
            let room = blocks.room();
            blocks.buf.resize(blocks.buf.len() + 10, 0);
            blocks.adapt(10, room);
            drop(blocks.buf.split().freeze());
        }
        assert_eq!(blocks.chunk, MIN_READ_CHUNK);
        // The large block was let go: the reader now holds a small one.
        assert!(blocks.room() <= MIN_READ_CHUNK);
        assert!(blocks.buf.capacity() <= MIN_READ_CHUNK);
    }
}
