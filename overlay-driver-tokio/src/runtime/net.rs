//! Pluggable IO: the sockets the runtime uses, behind a trait, so the same driver runs over
//! `tokio::net` in the daemon and over a simulated network (turmoil) in the simulator.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// The first byte of a TLS handshake record (`ContentType::Handshake`).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// The socket operations the runtime needs.
///
/// Implementations must be cancel-safe in [`Net::accept`] (the accept loop drops the future
/// when it stops) and must not block the calling thread.
pub trait Net: Clone + Send + Sync + 'static {
    /// A bound listening socket.
    type Listener: Send + Sync + 'static;
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Binds a listener on `addr`.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Waits for the next inbound connection.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Opens a connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The address a listener is bound to (with the real port when bound to port 0).
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Waits for the first byte of an inbound connection without consuming it: `Ok(None)` when
    /// the peer closed before sending anything. Used to tell TLS (`0x16`) from plain HTTP.
    ///
    /// The default (for networks that cannot peek, such as a simulator that carries only
    /// overlay traffic) answers [`TLS_HANDSHAKE_BYTE`] at once.
    fn peek_first_byte(
        &self,
        stream: &mut Self::Stream,
    ) -> impl Future<Output = io::Result<Option<u8>>> + Send {
        let _ = stream;
        async { Ok(Some(TLS_HANDSHAKE_BYTE)) }
    }

    /// Resolves a `host:port` peer address. The default only parses literal socket addresses.
    fn resolve(&self, target: &str) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send {
        let parsed = target
            .trim()
            .parse::<SocketAddr>()
            .map(|addr| vec![addr])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{target}: {e}")));
        async move { parsed }
    }
}

/// [`Net`] over `tokio::net` TCP sockets (`TCP_NODELAY` set on every stream).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Listener = TcpListener;
    type Stream = TcpStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, remote) = listener.accept().await?;
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Ok((stream, remote))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn local_addr(&self, listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn peek_first_byte(&self, stream: &mut TcpStream) -> io::Result<Option<u8>> {
        let mut byte = [0u8; 1];
        let n = stream.peek(&mut byte).await?;
        Ok((n == 1).then_some(byte[0]))
    }

    async fn resolve(&self, target: &str) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host(target.trim()).await?.collect())
    }
}
