//! The socket wrapper that tells a connection's [`ConnState`] when the client makes us wait:
//! reads that find no data, the first byte of a request head, writes that block.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::guard::ConnState;

/// A stream that reports its progress to the connection state.
pub(crate) struct GuardedIo<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> GuardedIo<S> {
    pub(crate) fn new(inner: S, state: Arc<ConnState>) -> Self {
        GuardedIo { inner, state }
    }

    fn note_write<T>(&self, poll: &Poll<io::Result<T>>) {
        match poll {
            Poll::Pending => self.state.on_write_blocked(),
            Poll::Ready(_) => self.state.on_write_progress(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Pending => self.state.on_read_wait(),
            Poll::Ready(Ok(())) => self.state.on_read(buf.filled().len() - before),
            Poll::Ready(Err(_)) => {}
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // A flush of a TCP stream is always ready: it says nothing about the client reading, so
    // it only ever marks a block, never progress.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if poll.is_pending() {
            self.state.on_write_blocked();
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        if poll.is_pending() {
            self.state.on_write_blocked();
        }
        poll
    }
}
