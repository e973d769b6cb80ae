//! The HTTP layer: health, readiness, Prometheus metrics and the control API (axum).
//!
//! | route | |
//! |---|---|
//! | `GET /healthz` | 200 `ok` |
//! | `GET /readyz` | 200 `{"ready":true}`, or 503 `{"ready":false,"degraded":true,"missing":[…],"retry_after":N}` with `Retry-After` |
//! | `GET /metrics` | Prometheus text exposition |
//! | `POST /v1/broadcast` | body = message → 202 `{"id":"<hex>"}` |
//! | `GET /v1/peers` | sessions as JSON |
//! | `GET /v1/stats` | the node's counters and gauges as JSON |
//! | `POST /v1/dial` | `{"addr":"host:port"}` → 200 `{"peer_id":"peer:…"}` |
//! | `GET /v1/gossip` | Server-Sent Events, one per delivered message |
//!
//! The `/v1` routes are the control API: allowed from loopback peers, or with
//! `Authorization: Bearer <capability token>` verified against the node's key ring with the
//! HTTP method and path as request context ([`ControlAuth`]); otherwise 403.
//!
//! The router is generic over [`OverlayApi`] (implemented for [`crate::api::Overlay`]) and is
//! served either one connection at a time on the overlay port ([`serve_connection`], behind
//! the runtime's first-byte demultiplexer) or on its own listener ([`spawn_listener`]).

mod auth;
mod backend;
mod error;
pub mod handlers;
mod overlay;
mod serve;
mod sse;
mod trace;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use overlay_proto::NodeConfig;
use tokio::sync::Semaphore;

pub use auth::{bearer_token, ControlAuth};
pub use backend::{GossipSubscription, OverlayApi, ReadinessView};
pub use error::{retry_after_secs, ApiError};
pub use serve::{
    bind_listener, serve_connection, spawn_listener, HttpHandler, RouterSlot, MAX_LISTENER_CONNS,
};
pub use sse::GossipEvent;
pub use trace::{next_request_id, REQUEST_ID_HEADER};

/// Renders the Prometheus exposition text (e.g. a `PrometheusHandle::render`).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the HTTP layer.
#[derive(Clone)]
pub struct HttpConfig {
    /// Control API authorisation for non-loopback peers.
    pub auth: ControlAuth,
    /// Largest `POST /v1/broadcast` body (the node's `max_message_bytes`); larger → 413.
    pub max_message_bytes: usize,
    /// Largest body of the other routes.
    pub control_body_limit: usize,
    /// How long `POST /v1/dial` waits for the session to open before answering 504.
    pub dial_timeout: Duration,
    /// Events buffered per SSE client before messages are dropped for it.
    pub sse_buffer: usize,
    /// Interval of SSE keep-alive comments.
    pub sse_keep_alive: Duration,
    /// Most concurrent `GET /v1/gossip` clients; more → 503.
    pub max_sse_clients: usize,
    /// The retry hint of a 503 from `/readyz`.
    pub readyz_retry_after: Duration,
    /// The metrics exposition; `None` serves an empty body.
    pub metrics: Option<MetricsRender>,
}

impl HttpConfig {
    /// Defaults matching a node's configuration (body limit, control authorisation).
    pub fn new(node: &NodeConfig) -> Self {
        HttpConfig {
            auth: ControlAuth::from_auth_config(&node.auth),
            max_message_bytes: node.max_message_bytes,
            control_body_limit: 64 * 1024,
            dial_timeout: node
                .handshake_timeout
                .saturating_add(Duration::from_secs(10)),
            sse_buffer: 1024,
            sse_keep_alive: Duration::from_secs(15),
            max_sse_clients: 256,
            readyz_retry_after: Duration::from_secs(1),
            metrics: None,
        }
    }

    /// These settings with a metrics renderer.
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("auth", &self.auth)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("control_body_limit", &self.control_body_limit)
            .field("dial_timeout", &self.dial_timeout)
            .field("sse_buffer", &self.sse_buffer)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .field("max_sse_clients", &self.max_sse_clients)
            .field("readyz_retry_after", &self.readyz_retry_after)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// The state shared by the handlers.
pub struct HttpState<O> {
    /// The node.
    pub overlay: O,
    /// Settings.
    pub config: Arc<HttpConfig>,
    /// Free `GET /v1/gossip` slots.
    pub sse_slots: Arc<Semaphore>,
}

impl<O: Clone> Clone for HttpState<O> {
    fn clone(&self) -> Self {
        HttpState {
            overlay: self.overlay.clone(),
            config: Arc::clone(&self.config),
            sse_slots: Arc::clone(&self.sse_slots),
        }
    }
}

/// Builds the router over a node.
pub fn router<O: OverlayApi>(overlay: O, config: HttpConfig) -> Router {
    let auth = Arc::new(config.auth.clone());
    let broadcast_limit = config.max_message_bytes;
    let body_limit = config.control_body_limit;
    let state = HttpState {
        overlay,
        sse_slots: Arc::new(Semaphore::new(config.max_sse_clients.max(1))),
        config: Arc::new(config),
    };
    let control = Router::new()
        .route(
            "/v1/broadcast",
            post(handlers::broadcast::<O>).layer(DefaultBodyLimit::max(broadcast_limit)),
        )
        .route("/v1/peers", get(handlers::peers::<O>))
        .route("/v1/stats", get(handlers::stats::<O>))
        .route("/v1/dial", post(handlers::dial::<O>))
        .route("/v1/gossip", get(handlers::gossip::<O>))
        .route_layer(from_fn_with_state(auth, auth::require_control));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz::<O>))
        .route("/metrics", get(handlers::metrics::<O>))
        .merge(control)
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn(trace::trace_request))
        .with_state(state)
}
