//! A read buffer below TLS that exists only while a connection is busy.
//!
//! rustls asks its transport for at most a few KiB per read (4 KiB plus what it already
//! buffers), so a busy connection under TLS costs one `recv` system call per 4 KiB. Below the
//! TLS stream, [`ReadAhead`] takes up to [`READ_AHEAD_BYTES`] per `recv` and serves rustls's
//! small reads from that buffer (a copy of ciphertext that is much cheaper than the system
//! calls it saves).
//!
//! An idle connection must not pay for it (10,000 idle sessions × 64 KiB would be 640 MiB):
//! the buffer is allocated only after a read the caller asked for came back full (more was
//! probably waiting), and freed as soon as it is drained after a refill that brought less
//! than [`RELEASE_BELOW`] bytes, or drained with nothing waiting on the socket (the burst is
//! over either way). Without a buffer, reads go straight to
//! the socket as before. Bytes come out in the order they arrived, whatever the read sizes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The buffer's size: bytes one `recv` may take while the connection is busy.
pub(crate) const READ_AHEAD_BYTES: usize = 64 * 1024;
/// A refill that brought fewer bytes than this ends read-ahead once it is drained.
pub(crate) const RELEASE_BELOW: usize = READ_AHEAD_BYTES / 8;

/// A transport stream with a read buffer used only under load (see the module docs); writes
/// pass through unchanged.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Empty while the connection is not busy; else [`READ_AHEAD_BYTES`] long.
    buf: Vec<u8>,
    /// `buf[pos..filled]` is read from the socket and not yet handed out.
    pos: usize,
    filled: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`; no buffer yet.
    pub(crate) fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
        }
    }

    /// Bytes of read buffer this stream holds now (0 when not busy).
    #[cfg(test)]
    fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Copies what is buffered into `out`; frees the buffer when it is drained and the last
    /// refill was small.
    fn serve(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.filled - self.pos);
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.filled && self.filled < RELEASE_BELOW {
            self.buf = Vec::new();
            self.pos = 0;
            self.filled = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pos < this.filled {
            this.serve(out);
            return Poll::Ready(Ok(()));
        }
        if this.buf.is_empty() || out.remaining() >= this.buf.len() {
            // Not busy (or the caller takes as much as the buffer would): straight through.
            let wanted = out.remaining();
            let before = out.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
            let got = out.filled().len() - before;
            if got == wanted && this.buf.is_empty() && wanted < READ_AHEAD_BYTES {
                // The read filled all it was given: more is probably waiting.
                this.buf = vec![0; READ_AHEAD_BYTES];
            }
            return Poll::Ready(Ok(()));
        }
        let mut fill = ReadBuf::new(&mut this.buf);
        if Pin::new(&mut this.inner)
            .poll_read(cx, &mut fill)?
            .is_pending()
        {
            // Drained and nothing waiting: the burst is over, and an idle connection holds
            // no buffer whatever size the burst's last read had.
            this.buf = Vec::new();
            this.pos = 0;
            this.filled = 0;
            return Poll::Pending;
        }
        let got = fill.filled().len();
        this.pos = 0;
        this.filled = got;
        if got == 0 {
            // End of stream: nothing to hand out; let the buffer go.
            this.buf = Vec::new();
            return Poll::Ready(Ok(()));
        }
        this.serve(out);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::AsyncReadExt;

    /// Hands out scripted pieces, one per read (as much of it as fits), counting the reads.
    struct Scripted {
        pieces: VecDeque<Vec<u8>>,
        reads: usize,
        /// With no pieces left: `Pending` (nothing waiting yet) instead of end of stream.
        pending_when_empty: bool,
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            if self.pieces.is_empty() && self.pending_when_empty {
                return Poll::Pending;
            }
            if let Some(mut piece) = self.pieces.pop_front() {
                let n = piece.len().min(out.remaining());
                out.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.pieces.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 31 + seed * 7) % 251) as u8)
            .collect()
    }

    #[tokio::test]
    async fn bytes_come_out_in_order_whatever_the_read_sizes() {
        let sizes = [1, 7, 4096, 5000, 65_536, 100_000, 3, 16_384, 17_000];
        for (round, caller) in [1usize, 100, 4096, 16_709, 70_000].into_iter().enumerate() {
            let pieces: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| pattern(n, i + round))
                .collect();
            let expected: Vec<u8> = pieces.concat();
            let mut rd = ReadAhead::new(Scripted {
                pieces: pieces.into(),
                reads: 0,
                pending_when_empty: false,
            });
            let mut got = Vec::new();
            let mut chunk = vec![0u8; caller];
            loop {
                let n = rd.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(got.len(), expected.len(), "caller reads of {caller}");
            assert!(got == expected, "caller reads of {caller}: order kept");
            assert_eq!(
                rd.buffer_bytes(),
                0,
                "buffer freed at the end of the stream"
            );
        }
    }

    #[tokio::test]
    async fn a_busy_stream_takes_large_pieces_and_an_idle_one_holds_no_buffer() {
        // A burst of 1 MiB arriving as 64 KiB pieces, read 4 KiB at a time (as rustls does).
        let burst: Vec<Vec<u8>> = (0..16).map(|i| pattern(READ_AHEAD_BYTES, i)).collect();
        let expected = burst.concat();
        let mut rd = ReadAhead::new(Scripted {
            pieces: burst.into(),
            reads: 0,
            pending_when_empty: false,
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < expected.len() {
            let n = rd.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == expected);
        // One direct 4 KiB read, then one socket read per 64 KiB (not 16).
        assert!(rd.inner.reads <= 17, "socket reads: {}", rd.inner.reads);
        assert_eq!(
            rd.buffer_bytes(),
            READ_AHEAD_BYTES,
            "still busy: buffer kept"
        );

        // The burst ends: small messages drain the buffer and it is let go.
        rd.inner.pieces.push_back(pattern(300, 99));
        let n = rd.read(&mut chunk).await.unwrap();
        assert_eq!(&chunk[..n], &pattern(300, 99)[..]);
        assert_eq!(rd.buffer_bytes(), 0, "idle again: no buffer");

        // Small reads that never fill the caller's request never allocate one.
        for i in 0..10 {
            rd.inner.pieces.push_back(pattern(100, i));
            let n = rd.read(&mut chunk).await.unwrap();
            assert_eq!(&chunk[..n], &pattern(100, i)[..]);
            assert_eq!(rd.buffer_bytes(), 0);
        }
    }

    #[tokio::test]
    async fn a_burst_that_ends_with_nothing_waiting_lets_the_buffer_go() {
        // A burst of full 64 KiB pieces, then the socket has nothing more for now.
        let burst: Vec<Vec<u8>> = (0..4).map(|i| pattern(READ_AHEAD_BYTES, i)).collect();
        let total: usize = burst.iter().map(Vec::len).sum();
        let mut rd = ReadAhead::new(Scripted {
            pieces: burst.into(),
            reads: 0,
            pending_when_empty: true,
        });
        let mut got = 0;
        let mut chunk = [0u8; 4096];
        while got < total {
            got += rd.read(&mut chunk).await.unwrap();
        }
        assert_eq!(rd.buffer_bytes(), READ_AHEAD_BYTES, "busy: buffer kept");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = ReadBuf::new(&mut chunk);
        assert!(Pin::new(&mut rd).poll_read(&mut cx, &mut out).is_pending());
        assert_eq!(rd.buffer_bytes(), 0, "idle: no buffer");
        // The next burst still comes through in order.
        rd.inner.pieces.push_back(pattern(300, 9));
        let n = rd.read(&mut chunk).await.unwrap();
        assert_eq!(&chunk[..n], &pattern(300, 9)[..]);
    }

    #[tokio::test]
    async fn writes_pass_through() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(1024);
        let mut wa = ReadAhead::new(a);
        wa.write_all(b"hello").await.unwrap();
        wa.flush().await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        b.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        wa.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
