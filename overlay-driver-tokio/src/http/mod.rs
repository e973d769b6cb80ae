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
//! | `PUT /v1/topics/{name}` | join a topic → 201 (new) or 200 (already in it) `{"topic":…,"id":…}` |
//! | `DELETE /v1/topics/{name}` | leave a topic → 204, or 404 when not in it |
//! | `POST /v1/topics/{name}/broadcast` | body = message → 202 `{"id":"<hex>"}`, 409 when not in the topic |
//! | `GET /v1/topics/{name}/gossip` | the topic's deliveries as Server-Sent Events (409 when not in the topic) |
//! | `GET /v1/openapi.json` | the OpenAPI 3.1 description of these routes (`docs/openapi.json`) |
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
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use overlay_proto::NodeConfig;
use tokio::sync::Semaphore;

pub use auth::{
    bearer_token, host_names_listener, is_simple_content_type, ControlAuth, ControlRefusal,
    ControlRequest,
};
pub use backend::{GossipSubscription, OverlayApi, ReadinessView};
pub use error::{retry_after_secs, ApiError, ErrorBody, HTTP_ERROR_KINDS};
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

/// One route of the HTTP layer: its method and path. The router is built from
/// [`Endpoint::ALL`], and `docs/openapi.json` (served at `GET /v1/openapi.json`) describes
/// exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `POST /v1/broadcast`.
    Broadcast,
    /// `GET /v1/peers`.
    Peers,
    /// `GET /v1/stats`.
    Stats,
    /// `POST /v1/dial`.
    Dial,
    /// `GET /v1/gossip`.
    Gossip,
    /// `GET /v1/openapi.json`.
    OpenApi,
    /// `PUT /v1/topics/{name}`.
    TopicJoin,
    /// `DELETE /v1/topics/{name}`.
    TopicLeave,
    /// `POST /v1/topics/{name}/broadcast`.
    TopicBroadcast,
    /// `GET /v1/topics/{name}/gossip`.
    TopicGossip,
}

impl Endpoint {
    /// Every route.
    pub const ALL: [Endpoint; 13] = [
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Metrics,
        Endpoint::Broadcast,
        Endpoint::Peers,
        Endpoint::Stats,
        Endpoint::Dial,
        Endpoint::Gossip,
        Endpoint::OpenApi,
        Endpoint::TopicJoin,
        Endpoint::TopicLeave,
        Endpoint::TopicBroadcast,
        Endpoint::TopicGossip,
    ];

    /// The HTTP method.
    pub fn method(self) -> Method {
        match self {
            Endpoint::Broadcast | Endpoint::Dial | Endpoint::TopicBroadcast => Method::POST,
            Endpoint::TopicJoin => Method::PUT,
            Endpoint::TopicLeave => Method::DELETE,
            Endpoint::Healthz
            | Endpoint::Readyz
            | Endpoint::Metrics
            | Endpoint::Peers
            | Endpoint::Stats
            | Endpoint::Gossip
            | Endpoint::OpenApi
            | Endpoint::TopicGossip => Method::GET,
        }
    }

    /// The path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Healthz => "/healthz",
            Endpoint::Readyz => "/readyz",
            Endpoint::Metrics => "/metrics",
            Endpoint::Broadcast => "/v1/broadcast",
            Endpoint::Peers => "/v1/peers",
            Endpoint::Stats => "/v1/stats",
            Endpoint::Dial => "/v1/dial",
            Endpoint::Gossip => "/v1/gossip",
            Endpoint::OpenApi => "/v1/openapi.json",
            Endpoint::TopicJoin | Endpoint::TopicLeave => "/v1/topics/{name}",
            Endpoint::TopicBroadcast => "/v1/topics/{name}/broadcast",
            Endpoint::TopicGossip => "/v1/topics/{name}/gossip",
        }
    }

    /// Part of the control API (`/v1/…`: behind the control check).
    pub fn is_control(self) -> bool {
        self.path().starts_with("/v1/")
    }

    /// Whether a router with `routes` serves this endpoint.
    pub fn served_by(self, routes: Routes) -> bool {
        match self {
            Endpoint::Healthz | Endpoint::Readyz => true,
            Endpoint::Metrics => routes != Routes::Control,
            _ => routes != Routes::Public,
        }
    }

    /// The handler, for the method of [`Endpoint::method`].
    fn method_router<O: OverlayApi>(self, broadcast_limit: usize) -> MethodRouter<HttpState<O>> {
        let filter = MethodFilter::try_from(self.method()).unwrap_or(MethodFilter::GET);
        match self {
            Endpoint::Healthz => on(filter, handlers::healthz),
            Endpoint::Readyz => on(filter, handlers::readyz::<O>),
            Endpoint::Metrics => on(filter, handlers::metrics::<O>),
            Endpoint::Broadcast => {
                on(filter, handlers::broadcast::<O>).layer(DefaultBodyLimit::max(broadcast_limit))
            }
            Endpoint::Peers => on(filter, handlers::peers::<O>),
            Endpoint::Stats => on(filter, handlers::stats::<O>),
            Endpoint::Dial => on(filter, handlers::dial::<O>),
            Endpoint::Gossip => on(filter, handlers::gossip::<O>),
            Endpoint::OpenApi => on(filter, handlers::openapi),
            Endpoint::TopicJoin => on(filter, handlers::topic_join::<O>),
            Endpoint::TopicLeave => on(filter, handlers::topic_leave::<O>),
            Endpoint::TopicBroadcast => on(filter, handlers::topic_broadcast::<O>)
                .layer(DefaultBodyLimit::max(broadcast_limit)),
            Endpoint::TopicGossip => on(filter, handlers::topic_gossip::<O>),
        }
    }
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
    let mut app = Router::new();
    let mut control = Router::new();
    for endpoint in Endpoint::ALL.into_iter().filter(|e| e.served_by(routes)) {
        let handler = endpoint.method_router::<O>(broadcast_limit);
        if endpoint.is_control() {
            control = control.route(endpoint.path(), handler);
        } else {
            app = app.route(endpoint.path(), handler);
        }
    }
    if routes != Routes::Public {
        app = app.merge(control.route_layer(from_fn_with_state(gate, auth::require_control)));
    }
    app.fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn(trace::trace_request))
        .with_state(state)
}
