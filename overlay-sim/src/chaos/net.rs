//! [`TurmoilNet`]: the driver's pluggable [`Net`] over `turmoil::net`, so the unchanged
//! `svc_overlay` runtime (sessions, writer tasks, TLS, timers) runs on the simulated network.

use std::io;
use std::net::SocketAddr;

use svc_overlay::Net;
use turmoil::net::{TcpListener, TcpStream};

/// Sockets of a turmoil host. Every call must happen inside the simulation (on a host's
/// runtime), which is where the driver's tasks run.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Listener = TcpListener;
    type Stream = TcpStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }

    fn local_addr(&self, listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn peek_first_byte(&self, stream: &mut TcpStream) -> io::Result<Option<u8>> {
        let mut byte = [0u8; 1];
        let n = stream.peek(&mut byte).await?;
        Ok((n == 1).then_some(byte[0]))
    }
}
