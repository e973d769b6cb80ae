//! Serving the router: one accepted connection at a time (the overlay port's HTTP
//! connections), or a listener of its own (`METRICS_ADDR`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// The callback the runtime's accept loop hands plain-HTTP connections to.
pub type HttpHandler = Arc<dyn Fn(TcpStream, SocketAddr) + Send + Sync>;

/// Most connections served at once by a [`spawn_listener`] listener.
pub const MAX_LISTENER_CONNS: usize = 256;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a same-port connection waits for the router to be installed.
const ROUTER_WAIT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 on one connection until the client closes it. Each request carries
/// `ConnectInfo(remote)` for the control API's loopback check.
pub async fn serve_connection(router: Router, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%remote, error = %e, "http connection ended with an error");
    }
}

/// A router installed after the node is built. The node needs its HTTP handler before the
/// router (which needs the node) exists; connections that arrive in between wait for it.
///
/// The runtime does not count HTTP connections against `max_conns`, so the handler bounds
/// them itself: at most [`MAX_LISTENER_CONNS`] at once, more are closed at once.
#[derive(Clone)]
pub struct RouterSlot {
    tx: Arc<watch::Sender<Option<Router>>>,
    conns: Arc<Semaphore>,
}

impl Default for RouterSlot {
    fn default() -> Self {
        RouterSlot::new()
    }
}

impl RouterSlot {
    /// An empty slot.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(None);
        RouterSlot {
            tx: Arc::new(tx),
            conns: Arc::new(Semaphore::new(MAX_LISTENER_CONNS)),
        }
    }

    /// Installs (or replaces) the router.
    pub fn set(&self, router: Router) {
        self.tx.send_replace(Some(router));
    }

    /// The router, waiting up to `wait` for it to be installed.
    pub async fn get(&self, wait: Duration) -> Option<Router> {
        let mut rx = self.tx.subscribe();
        let found = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(r)) => r.clone(),
            _ => None,
        }
    }

    /// The handler to give the runtime: serves each connection with the installed router on a
    /// task of its own.
    pub fn handler(&self) -> HttpHandler {
        let slot = self.clone();
        Arc::new(move |stream: TcpStream, remote: SocketAddr| {
            let Ok(permit) = Arc::clone(&slot.conns).try_acquire_owned() else {
                metrics::counter!("http_connections_refused_total").increment(1);
                drop(stream);
                return;
            };
            let slot = slot.clone();
            tokio::spawn(async move {
                match slot.get(ROUTER_WAIT).await {
                    Some(router) => serve_connection(router, stream, remote).await,
                    None => tracing::warn!(%remote, "http connection dropped: router not ready"),
                }
                drop(permit);
            });
        })
    }
}

/// Binds a TCP listener (used for `METRICS_ADDR`).
pub async fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `router` on `listener` until the task is aborted, at most [`MAX_LISTENER_CONNS`]
/// connections at once (more are closed at once).
pub fn spawn_listener(listener: TcpListener, router: Router) -> JoinHandle<()> {
    let slots = Arc::new(Semaphore::new(MAX_LISTENER_CONNS));
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "http listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                metrics::counter!("http_connections_refused_total").increment(1);
                drop(stream);
                continue;
            };
            let router = router.clone();
            tokio::spawn(async move {
                serve_connection(router, stream, remote).await;
                drop(permit);
            });
        }
    })
}
