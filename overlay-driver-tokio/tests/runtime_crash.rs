//! Crash-only tasks: a panicking connection reader or accept loop is counted, reported as a
//! kernel event and recovered from (connection closed, loop restarted), while the node keeps
//! running. Faults are injected through a custom [`Net`], which also shows the IO layer is
//! pluggable from outside the crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use overlay_proto::{NodeConfig, SessionState};
use runtime_common::*;
use svc_overlay::{KernelEvent, Net, OverlayBuilder, TokioNet};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Tokio sockets with injectable panics.
#[derive(Clone, Default)]
struct FaultyNet {
    /// Accept calls that panic before accepting.
    accept_panics: Arc<AtomicUsize>,
    /// When set, the next read on any stream panics (and clears it).
    read_panic: Arc<AtomicBool>,
}

struct FaultyStream {
    inner: TcpStream,
    read_panic: Arc<AtomicBool>,
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_panic.swap(false, Ordering::SeqCst) {
            panic!("injected read panic");
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Net for FaultyNet {
    type Listener = TcpListener;
    type Stream = FaultyStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TokioNet.bind(addr).await
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(FaultyStream, SocketAddr)> {
        let armed = self
            .accept_panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            panic!("injected accept panic");
        }
        let (inner, remote) = TokioNet.accept(listener).await?;
        Ok((
            FaultyStream {
                inner,
                read_panic: Arc::clone(&self.read_panic),
            },
            remote,
        ))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<FaultyStream> {
        Ok(FaultyStream {
            inner: TokioNet.connect(addr).await?,
            read_panic: Arc::clone(&self.read_panic),
        })
    }

    fn local_addr(&self, listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn peek_first_byte(&self, stream: &mut FaultyStream) -> io::Result<Option<u8>> {
        TokioNet.peek_first_byte(&mut stream.inner).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_accept_loop_and_reader_are_recovered() {
    let net = FaultyNet::default();
    net.accept_panics.store(1, Ordering::SeqCst);
    let server = OverlayBuilder::with_net(net.clone())
        .bind(loopback())
        .node_config(NodeConfig::default())
        .seed(31)
        .build()
        .await
        .unwrap();
    let mut events = server.events();

    // The accept loop panicked at its first accept and was restarted: dialing works.
    let peer = overlay(32).await;
    bounded("dial after accept restart", peer.dial(server.local_addr()))
        .await
        .unwrap();
    assert_eq!(server.driver_stats().restarts.get("accept"), Some(&1));

    // The next read of the session's reader panics: the connection is closed and counted.
    net.read_panic.store(true, Ordering::SeqCst);
    peer.broadcast(Bytes::from_static(b"trigger"))
        .await
        .unwrap();
    wait_until("reader crash counted", || async {
        server.driver_stats().restarts.get("conn_reader") == Some(&1)
    })
    .await;
    let mut crash_events = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, KernelEvent::ServiceCrashed { .. }) {
            crash_events += 1;
        }
    }
    assert!(crash_events >= 1);

    // The node keeps running: the peer's membership redials and gossip flows again.
    wait_until("session back", || async {
        server
            .peers()
            .await
            .iter()
            .any(|s| s.peer == peer.peer_id() && s.state == SessionState::Running)
    })
    .await;
    let mut sub = server.deliveries();
    let id = bounded("broadcast", peer.broadcast(Bytes::from_static(b"after")))
        .await
        .unwrap();
    // The new session's catch-up IHAVE may bring back "trigger" (its read was lost to the
    // crash) before or after "after": wait for "after", allowing only that one first.
    let trigger = bounded("delivery", sub.recv()).await.unwrap();
    if trigger.id != id {
        assert_eq!(&trigger.payload[..], b"trigger");
        assert_eq!(bounded("delivery", sub.recv()).await.unwrap().id, id);
    }

    bounded("shutdown", server.shutdown()).await;
    bounded("shutdown", peer.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_shuts_the_node_down() {
    let a = overlay(33).await;
    let b = overlay(34).await;
    let mut b_events = b.events();
    bounded("dial", a.dial(b.local_addr())).await.unwrap();
    let a_id = a.peer_id();
    drop(a);
    loop {
        match bounded("session down", b_events.recv()).await.unwrap() {
            KernelEvent::SessionDown { peer, reason } => {
                assert_eq!(peer, a_id);
                assert_eq!(
                    reason, "busy",
                    "closed by the peer's graceful shutdown (503)"
                );
                break;
            }
            _ => continue,
        }
    }
    bounded("shutdown", b.shutdown()).await;
}
