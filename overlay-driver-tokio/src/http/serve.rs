//! Serving the router over guarded connections: one accepted connection at a time (the overlay
//! port's HTTP connections, behind the runtime's first-byte demultiplexer), or a listener of
//! its own (`METRICS_ADDR`, `--control-addr`).
//!
//! Every connection is admitted by an [`HttpGuard`] (budget, per-address cap, eviction, probe
//! reserve) and watched until it closes: header, idle, body and write timeouts, and a bound on
//! pipelined requests (see [`super::HttpLimits`]).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Response};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use super::bodies::{TimedBody, TrackedBody};
use super::conn_io::GuardedIo;
use super::error::ApiError;
use super::guard::{ConnState, ConnTicket, HttpGuard};
use super::limits::{HttpClose, HttpRefusal};

/// The callback the runtime's accept loop hands plain-HTTP connections to.
pub type HttpHandler = Arc<dyn Fn(TcpStream, SocketAddr) + Send + Sync>;

/// How long a same-port connection waits for the router to be installed.
const ROUTER_WAIT: Duration = Duration::from_secs(10);

/// Facts about the connection a request came on, inserted as a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMeta {
    /// The listener's local address (what a legitimate `Host` header names).
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Paths a probe-reserve connection may ask for.
fn is_probe(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// Serves one request of a guarded connection.
async fn handle(
    router: Router,
    state: Arc<ConnState>,
    meta: ConnMeta,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<TrackedBody<Body>> {
    if state.on_request() {
        state.counters().refused(HttpRefusal::Pipeline);
    }
    let mut resp = if state.probe_only && !is_probe(req.uri().path()) {
        state.counters().refused(HttpRefusal::ProbeOnly);
        ApiError::busy("the server is at its connection limit; only probes are served")
            .into_response()
    } else {
        let within = state.limits().body_timeout;
        let mut req = req.map(|b| Body::new(TimedBody::new(b, within, Arc::clone(&state))));
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut().insert(meta);
        match router.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    };
    if state.wants_close() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.map(|b| TrackedBody::new(b, state))
}

/// Resolves when the connection must close: a timeout ran out or it was evicted.
async fn watchdog(state: &ConnState) -> HttpClose {
    let tick = (state.limits().shortest_timeout() / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(500));
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let killed = state.killed_for();
    tokio::pin!(killed);
    loop {
        tokio::select! {
            why = &mut killed => return why,
            _ = every.tick() => {
                if let Some(why) = state.overdue() {
                    return why;
                }
            }
        }
    }
}

/// Serves HTTP/1.1 on one admitted connection until the client closes it or the connection
/// runs into a limit.
async fn serve_guarded(router: Router, stream: TcpStream, remote: SocketAddr, ticket: ConnTicket) {
    let _ = stream.set_nodelay(true);
    let state = Arc::clone(&ticket.state);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let meta = ConnMeta { local, tls: false };
    let svc_state = Arc::clone(&state);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fut = handle(router.clone(), Arc::clone(&svc_state), meta, remote, req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let limits = state.limits();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The watchdog enforces the precise header and idle timeouts; this is a backstop.
        .header_read_timeout(limits.header_timeout.saturating_add(limits.idle_timeout))
        .keep_alive(true);
    let io = TokioIo::new(GuardedIo::new(stream, Arc::clone(&state)));
    let conn = builder.serve_connection(io, service);
    tokio::select! {
        done = conn => {
            if let Err(e) = done {
                tracing::debug!(%remote, error = %e, "http connection ended with an error");
            }
        }
        why = watchdog(&state) => {
            state.counters().closed(why);
            tracing::debug!(%remote, reason = why.label(), "http connection closed by the server");
        }
    }
    drop(ticket);
}

/// A router installed after the node is built. The node needs its HTTP handler before the
/// router (which needs the node) exists; connections that arrive in between wait for it.
///
/// The runtime does not count HTTP connections against `max_conns`; the slot's [`HttpGuard`]
/// budgets them instead.
#[derive(Clone)]
pub struct RouterSlot {
    tx: Arc<watch::Sender<Option<Router>>>,
    guard: HttpGuard,
}

impl RouterSlot {
    /// An empty slot whose connections are admitted by `guard`.
    pub fn new(guard: HttpGuard) -> Self {
        let (tx, _rx) = watch::channel(None);
        RouterSlot {
            tx: Arc::new(tx),
            guard,
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

    /// The handler to give the runtime: admits each connection and serves it with the
    /// installed router on a task of its own; refused connections are closed at once.
    pub fn handler(&self) -> HttpHandler {
        let slot = self.clone();
        Arc::new(move |stream: TcpStream, remote: SocketAddr| {
            let Some(ticket) = slot.guard.admit(remote.ip()) else {
                drop(stream);
                return;
            };
            let slot = slot.clone();
            tokio::spawn(async move {
                match slot.get(ROUTER_WAIT).await {
                    Some(router) => serve_guarded(router, stream, remote, ticket).await,
                    None => tracing::warn!(%remote, "http connection dropped: router not ready"),
                }
            });
        })
    }
}

/// Binds a TCP listener (used for `METRICS_ADDR` and `--control-addr`).
pub async fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `router` on `listener` until the task is aborted; `guard` admits the connections
/// (refused ones are closed at once).
pub fn spawn_listener(listener: TcpListener, router: Router, guard: HttpGuard) -> JoinHandle<()> {
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
            let Some(ticket) = guard.admit(remote.ip()) else {
                drop(stream);
                continue;
            };
            tokio::spawn(serve_guarded(router.clone(), stream, remote, ticket));
        }
    })
}
