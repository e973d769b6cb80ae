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
//! | `GET /v1/gossip` | Server-Sent Events, one per delivered message (`id:` a resume cursor; `Last-Event-ID` replays what was missed) |
//!
//! The `/v1` routes are the control API: allowed from loopback peers (without a browser's
//! marks), or with `Authorization: Bearer <control token>`; see [`ControlAuth`] for the rules
//! and `docs/HTTP.md` for the client's view.
//!
//! The router is generic over [`OverlayApi`] (implemented for [`crate::api::Overlay`]) and is
//! served either one connection at a time on the overlay port ([`RouterSlot`], behind the
//! runtime's first-byte demultiplexer) or on its own listener ([`spawn_listener`]). Either way
//! an [`HttpGuard`] admits each connection and the connection is watched for stalls
//! ([`HttpLimits`]); every refusal and forced close is counted ([`HttpCounters`]).

mod auth;
mod backend;
mod bodies;
mod budgets;
mod conn_io;
mod error;
mod guard;
pub mod handlers;
mod limits;
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

pub use auth::{
    bearer_token, host_names_listener, is_simple_content_type, ControlAuth, ControlRefusal,
    ControlRequest,
};
pub use backend::{GossipSubscription, OverlayApi, ReadinessView};
pub use error::{retry_after_secs, ApiError};
pub use guard::HttpGuard;
pub use limits::{HttpClose, HttpCounters, HttpLimits, HttpRefusal, HttpStats};
pub use serve::{bind_listener, spawn_listener, ConnMeta, HttpHandler, RouterSlot};
pub use sse::{GossipEvent, LaggedEvent};
pub use trace::{next_request_id, REQUEST_ID_HEADER};

/// Renders the Prometheus exposition text (e.g. a `PrometheusHandle::render`).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the HTTP layer.
#[derive(Clone)]
pub struct HttpConfig {
    /// Control API authorisation.
    pub auth: ControlAuth,
    /// Largest `POST /v1/broadcast` body (the node's `max_message_bytes`); larger → 413.
    pub max_message_bytes: usize,
    /// Largest body of the other routes.
    pub control_body_limit: usize,
    /// How long `POST /v1/dial` waits for the session to open before answering 504.
    pub dial_timeout: Duration,
    /// Connection limits of each HTTP listener (each has its own budget).
    pub limits: HttpLimits,
    /// Counters shared by the router and the listeners' guards.
    pub counters: HttpCounters,
    /// Most control requests (`/v1/…` except the gossip stream) served at once; more → 503.
    pub max_control_inflight: usize,
    /// Events waiting per SSE client; a client further behind gets `lagged` and is closed.
    pub sse_buffer: usize,
    /// Bytes of events waiting per SSE client; a client further behind gets `lagged` and is
    /// closed.
    pub sse_buffer_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub sse_keep_alive: Duration,
    /// Most concurrent `GET /v1/gossip` clients; more → 503.
    pub max_sse_clients: usize,
    /// Most concurrent `GET /v1/gossip` clients from one address; more → 503.
    pub max_sse_per_ip: usize,
    /// The retry hint of a 503 from `/readyz`.
    pub readyz_retry_after: Duration,
    /// How long a rendered `/metrics` text is reused (zero: rendered for every scrape).
    pub metrics_cache: Duration,
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
            limits: HttpLimits::default(),
            counters: HttpCounters::new(),
            max_control_inflight: 32,
            sse_buffer: 1024,
            sse_buffer_bytes: 1 << 20,
            sse_keep_alive: Duration::from_secs(15),
            max_sse_clients: 64,
            max_sse_per_ip: 4,
            readyz_retry_after: Duration::from_secs(1),
            metrics_cache: Duration::from_millis(500),
            metrics: None,
        }
    }

    /// These settings with a metrics renderer.
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }

    /// A connection guard for one listener with these limits and counters.
    pub fn guard(&self) -> HttpGuard {
        HttpGuard::new(self.limits.clone(), self.counters.clone())
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("auth", &self.auth)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("control_body_limit", &self.control_body_limit)
            .field("dial_timeout", &self.dial_timeout)
            .field("limits", &self.limits)
            .field("max_control_inflight", &self.max_control_inflight)
            .field("sse_buffer", &self.sse_buffer)
            .field("sse_buffer_bytes", &self.sse_buffer_bytes)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .field("max_sse_clients", &self.max_sse_clients)
            .field("max_sse_per_ip", &self.max_sse_per_ip)
            .field("readyz_retry_after", &self.readyz_retry_after)
            .field("metrics_cache", &self.metrics_cache)
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
    sse_per_ip: budgets::PerIpSlots,
    metrics_text: Arc<budgets::MetricsCache>,
}

impl<O: Clone> Clone for HttpState<O> {
    fn clone(&self) -> Self {
        HttpState {
            overlay: self.overlay.clone(),
            config: Arc::clone(&self.config),
            sse_slots: Arc::clone(&self.sse_slots),
            sse_per_ip: self.sse_per_ip.clone(),
            metrics_text: Arc::clone(&self.metrics_text),
        }
    }
}

/// Which routes a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Probes, metrics and the control API (the overlay port when the control API has no
    /// listener of its own).
    All,
    /// Probes and metrics (the metrics listener; the overlay port with `--control-addr`).
    Public,
    /// Probes and the control API (the `--control-addr` listener).
    Control,
}

/// Builds the router over a node with every route ([`Routes::All`]).
pub fn router<O: OverlayApi>(overlay: O, config: HttpConfig) -> Router {
    router_with(overlay, config, Routes::All)
}

/// Builds the router over a node with the given routes.
pub fn router_with<O: OverlayApi>(overlay: O, config: HttpConfig, routes: Routes) -> Router {
    let gate = auth::ControlGate {
        auth: Arc::new(config.auth.clone()),
        slots: Arc::new(Semaphore::new(config.max_control_inflight.max(1))),
        counters: config.counters.clone(),
        default_listener: overlay.local_addr(),
    };
    let broadcast_limit = config.max_message_bytes;
    let body_limit = config.control_body_limit;
    let state = HttpState {
        overlay,
        sse_slots: Arc::new(Semaphore::new(config.max_sse_clients.max(1))),
        sse_per_ip: budgets::PerIpSlots::new(config.max_sse_per_ip.max(1)),
        metrics_text: Arc::new(budgets::MetricsCache::new(
            config.metrics.clone(),
            config.metrics_cache,
        )),
        config: Arc::new(config),
    };
    let mut app = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz::<O>));
    if routes != Routes::Control {
        app = app.route("/metrics", get(handlers::metrics::<O>));
    }
    if routes != Routes::Public {
        let control = Router::new()
            .route(
                "/v1/broadcast",
                post(handlers::broadcast::<O>).layer(DefaultBodyLimit::max(broadcast_limit)),
            )
            .route("/v1/peers", get(handlers::peers::<O>))
            .route("/v1/stats", get(handlers::stats::<O>))
            .route("/v1/dial", post(handlers::dial::<O>))
            .route("/v1/gossip", get(handlers::gossip::<O>))
            .route_layer(from_fn_with_state(gate, auth::require_control));
        app = app.merge(control);
    }
    app.fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn(trace::trace_request))
        .with_state(state)
}
