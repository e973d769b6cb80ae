//! Route handlers. Every handler ends with `.into_response()`.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use overlay_proto::score::{PeerScore, Penalty, Standing};
use overlay_proto::{OverlayError as CoreError, SessionInfo, TopicId};
use serde::{Deserialize, Serialize};

use super::backend::OverlayApi;
use super::error::{retry_after_secs, ApiError};
use super::limits::HttpRefusal;
use super::sse::{gossip_response, SseBounds};
use super::HttpState;
use crate::api::{Cursor, CursorError};

/// The Prometheus text exposition content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    (StatusCode::OK, "ok").into_response()
}

/// The body of `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyBody {
    /// The node accepts work.
    pub ready: bool,
    /// Saturated (only when not ready).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
    /// What is missing or saturated (`sessions`, `send_queue`, `shutting_down`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Whole seconds to wait before asking again (also `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// `GET /readyz`: 200 `{"ready":true}`, or 503 with what is missing and a retry hint.
pub async fn readyz<O: OverlayApi>(State(state): State<HttpState<O>>) -> Response {
    let view = state.overlay.readiness();
    if view.ready {
        let body = ReadyBody {
            ready: true,
            degraded: false,
            missing: Vec::new(),
            retry_after: None,
        };
        return (StatusCode::OK, Json(body)).into_response();
    }
    let secs = retry_after_secs(state.config.readyz_retry_after);
    let body = ReadyBody {
        ready: false,
        degraded: true,
        missing: view.missing,
        retry_after: Some(secs),
    };
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// `GET /metrics`: the Prometheus text exposition (rendered at most once per
/// `metrics_cache`).
pub async fn metrics<O: OverlayApi>(State(state): State<HttpState<O>>) -> Response {
    let body = state.metrics_text.text();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// The body of a 202 from `POST /v1/broadcast`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastAccepted {
    /// The message id, 64 lowercase hex digits.
    pub id: String,
}

/// A message to publish from a request body: a body the extractor refused or one over
/// `max_bytes` is answered with the same typed error on every publishing route.
fn message_body(
    body: Result<Bytes, BytesRejection>,
    max_bytes: usize,
) -> Result<Bytes, Box<Response>> {
    let body = body.map_err(|rejection| {
        Box::new(body_rejection(
            rejection.status(),
            rejection.body_text(),
            max_bytes,
        ))
    })?;
    if body.len() > max_bytes {
        return Err(Box::new(ApiError::too_large(max_bytes).into_response()));
    }
    Ok(body)
}

/// `POST /v1/broadcast`: the body is the message; 202 `{"id":"<hex>"}`.
pub async fn broadcast<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match message_body(body, state.config.max_message_bytes) {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    match state.overlay.broadcast(body).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(BroadcastAccepted { id: id.to_hex() }),
        )
            .into_response(),
        Err(e) => {
            tracing::debug!(error = %e, "broadcast refused");
            ApiError::from_overlay(&e).into_response()
        }
    }
}

fn body_rejection(status: StatusCode, text: String, limit: usize) -> Response {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit).into_response()
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        ApiError::unsupported_media_type(text).into_response()
    } else {
        ApiError::bad_request(status, text).into_response()
    }
}

/// The score of a peer in `GET /v1/peers`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ScoreRow {
    /// The weighted score (see `[scoring]` in docs/CONFIG.md).
    pub score: f64,
    /// `good`, `no_control` (IHAVE/GRAFT ignored), `lazy` (kept lazy) or `ban`.
    pub standing: String,
    /// First deliveries (decayed).
    pub first_deliveries: f64,
    /// Penalty counts (decayed) by component: `invalid_message`, `violation`,
    /// `broken_promise`, `graft_flood`, `ihave_flood`, `duplicate_flood`, `shuffle_flood`,
    /// `validation_rejected`.
    pub penalties: std::collections::BTreeMap<String, f64>,
}

impl From<&PeerScore> for ScoreRow {
    fn from(s: &PeerScore) -> Self {
        ScoreRow {
            score: s.score,
            standing: match s.standing {
                Standing::Good => "good",
                Standing::NoControl => "no_control",
                Standing::Lazy => "lazy",
                Standing::Ban => "ban",
            }
            .to_string(),
            first_deliveries: s.components.first_deliveries,
            penalties: Penalty::ALL
                .iter()
                .map(|p| (p.label().to_string(), s.components.penalty(*p)))
                .collect(),
        }
    }
}

/// One row of `GET /v1/peers`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerRow {
    /// `peer:<hex>`.
    pub peer_id: String,
    /// The remote address.
    pub addr: String,
    /// Where the peer accepts connections (from its HELLO), when it said.
    pub listen: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `handshaking`, `running` or `closing`.
    pub state: String,
    /// Negotiated TLS key-exchange group.
    pub kx_group: Option<String>,
    /// Frames we may still send before the peer grants more.
    pub credits: u32,
    /// Frames sent and not yet re-credited.
    pub inflight: u32,
    /// Frames queued waiting for credit.
    pub queued: usize,
    /// Eager (Plumtree push) peer.
    pub eager: bool,
    /// The peer's score and its components.
    pub score: ScoreRow,
}

impl From<&SessionInfo> for PeerRow {
    fn from(s: &SessionInfo) -> Self {
        PeerRow {
            peer_id: s.peer.to_string(),
            addr: s.remote.to_string(),
            listen: s.listen.map(|a| a.to_string()),
            direction: s.direction.as_str().to_string(),
            state: s.state.as_str().to_string(),
            kx_group: s.kx_group.clone(),
            credits: s.send_credit_frames,
            inflight: s.inflight_frames,
            queued: s.queued_frames,
            eager: s.eager,
            score: ScoreRow::from(&s.score),
        }
    }
}

/// `GET /v1/peers`: the node's sessions.
pub async fn peers<O: OverlayApi>(State(state): State<HttpState<O>>) -> Response {
    let rows: Vec<PeerRow> = state
        .overlay
        .peers()
        .await
        .iter()
        .map(PeerRow::from)
        .collect();
    Json(rows).into_response()
}

/// `GET /v1/stats`: the node's counters and gauges.
pub async fn stats<O: OverlayApi>(State(state): State<HttpState<O>>) -> Response {
    Json(state.overlay.stats().await).into_response()
}

/// The body of `POST /v1/dial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialRequest {
    /// `host:port` to dial.
    pub addr: String,
}

/// The body of a 200 from `POST /v1/dial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialDone {
    /// The peer the session runs with, `peer:<hex>`.
    pub peer_id: String,
}

/// `POST /v1/dial` `{"addr":"host:port"}`: 200 `{"peer_id":"peer:…"}` once the session opened.
pub async fn dial<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    body: Result<Json<DialRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(req)) => req,
        Err(rejection) => {
            return body_rejection(
                rejection.status(),
                rejection.body_text(),
                state.config.control_body_limit,
            )
        }
    };
    let addr = req.addr.trim().to_string();
    if addr.is_empty() || addr.len() > 1024 || !addr.contains(':') {
        return ApiError::bad_request(StatusCode::BAD_REQUEST, "`addr` must be host:port")
            .into_response();
    }
    let timeout = state.config.dial_timeout;
    match tokio::time::timeout(timeout, state.overlay.dial(addr)).await {
        Ok(Ok(peer)) => Json(DialDone {
            peer_id: peer.to_string(),
        })
        .into_response(),
        Ok(Err(e)) => ApiError::from_overlay(&e).into_response(),
        Err(_) => ApiError::from_core(CoreError::Timeout).into_response(),
    }
}

/// The body of `PUT /v1/topics/{name}` (201 when newly joined, 200 when the node was in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicJoined {
    /// The topic's name, as given.
    pub topic: String,
    /// The topic id, `BLAKE3(name)` in 64 lowercase hex digits.
    pub id: String,
}

/// A topic name from the path: checked (`docs/PROTOCOL.md`, "Topics"); 400 `bad_request`
/// naming the rule otherwise.
fn topic_of(name: Result<Path<String>, PathRejection>) -> Result<(String, TopicId), ApiError> {
    let name = match name {
        Ok(Path(name)) => name,
        Err(rejection) => {
            return Err(ApiError::bad_request(
                StatusCode::BAD_REQUEST,
                rejection.body_text(),
            ))
        }
    };
    match overlay_proto::validate_topic_name(&name) {
        Ok(()) => {
            let id = TopicId::from_name(&name);
            Ok((name, id))
        }
        Err(e) => Err(ApiError::bad_request(
            StatusCode::BAD_REQUEST,
            e.to_string(),
        )),
    }
}

/// `PUT /v1/topics/{name}`: joins the topic for the operator; 201 when newly joined, 200 when
/// the node was already in it (the default topic always is); 429 `too_many_topics` past
/// `max_topics`.
pub async fn topic_join<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let (topic, id) = match topic_of(name) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = TopicJoined {
        topic,
        id: id.to_hex(),
    };
    match state.overlay.join_topic(id).await {
        Ok(true) => (StatusCode::CREATED, Json(body)).into_response(),
        Ok(false) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => ApiError::from_overlay(&e).into_response(),
    }
}

/// `DELETE /v1/topics/{name}`: ends the operator's hold on the topic; 204 when the node was in
/// it, 404 when not, 409 `not_joined` for the default topic (never left).
pub async fn topic_leave<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let (_, id) = match topic_of(name) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match state.overlay.leave_topic(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::not_found()
            .detail("the node is not in this topic")
            .into_response(),
        Err(e) => ApiError::from_overlay(&e).into_response(),
    }
}

/// `POST /v1/topics/{name}/broadcast`: the body is the message; 202 `{"id":"<hex>"}`, 409
/// `not_joined` when the node is not in the topic.
pub async fn topic_broadcast<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (_, id) = match topic_of(name) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = match message_body(body, state.config.max_message_bytes) {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    match state.overlay.publish(id, body).await {
        Ok(mid) => (
            StatusCode::ACCEPTED,
            Json(BroadcastAccepted { id: mid.to_hex() }),
        )
            .into_response(),
        Err(e) => {
            tracing::debug!(error = %e, "topic broadcast refused");
            ApiError::from_overlay(&e).into_response()
        }
    }
}

/// `GET /v1/topics/{name}/gossip`: the topic's deliveries as Server-Sent Events, exactly like
/// `GET /v1/gossip` (same cursor format, `Last-Event-ID` resume, `lagged` events and budgets)
/// over the topic's own numbering and replay ring; 409 `not_joined` when the node is not in
/// the topic. The stream ends when the node leaves the topic.
pub async fn topic_gossip<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    name: Result<Path<String>, PathRejection>,
    request: axum::extract::Request,
) -> Response {
    let (_, id) = match topic_of(name) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let counters = &state.config.counters;
    let cursor = match last_event_id(request.headers()) {
        Ok(c) => c,
        Err(e) => return bad_cursor(counters, &e),
    };
    // Admitted first: a refused stream must not switch the topic's replay ring on or copy a
    // replay (the permits are released on every early return below).
    let (permits, bounds) = match admit_stream(&state, &request) {
        Ok(admitted) => admitted,
        Err(detail) => return ApiError::busy(detail).into_response(),
    };
    let (sub, replay) = match state.overlay.resume_topic(id, cursor) {
        None => return ApiError::from_core(CoreError::NotJoined).into_response(),
        Some(Err(e)) => return bad_cursor(counters, &e),
        Some(Ok(resumed)) => resumed,
    };
    let replay = cursor.map(|_| {
        counters.resumed(&replay);
        replay
    });
    gossip_response(sub, replay, bounds, counters.clone(), permits)
}

/// The stream budgets every gossip stream passes, per address and then in total, and the
/// buffer bounds it gets; a refusal is counted and comes back as the 503 `busy` detail.
fn admit_stream<O: OverlayApi>(
    state: &HttpState<O>,
    request: &axum::extract::Request,
) -> Result<
    (
        (tokio::sync::OwnedSemaphorePermit, super::budgets::IpSlot),
        SseBounds,
    ),
    &'static str,
> {
    let counters = &state.config.counters;
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(a)| a.ip());
    let Some(per_ip) = state.sse_per_ip.try_acquire(ip) else {
        counters.refused(HttpRefusal::SsePerIp);
        return Err("too many gossip streams from this address");
    };
    let Ok(permit) = state.sse_slots.clone().try_acquire_owned() else {
        counters.refused(HttpRefusal::Sse);
        return Err("too many gossip subscribers");
    };
    let bounds = SseBounds {
        events: state.config.sse_buffer,
        bytes: state.config.sse_buffer_bytes,
        keep_alive: state.config.sse_keep_alive,
    };
    Ok(((permit, per_ip), bounds))
}

/// The header a reconnecting SSE client names its last event with.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The cursor of a `Last-Event-ID` header: `Ok(None)` without one (or an empty one, which the
/// SSE standard uses for "no id").
fn last_event_id(headers: &axum::http::HeaderMap) -> Result<Option<Cursor>, CursorError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| CursorError::Malformed)?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some)
}

fn bad_cursor(counters: &super::HttpCounters, e: &CursorError) -> Response {
    counters.refused(HttpRefusal::LastEventId);
    ApiError::bad_last_event_id(e.to_string()).into_response()
}

/// `GET /v1/gossip`: Server-Sent Events, one `id:`/`data:` event per delivered message; with
/// `Last-Event-ID`, what the client missed first (bounded). Streams are capped in total and
/// per address.
pub async fn gossip<O: OverlayApi>(
    State(state): State<HttpState<O>>,
    request: axum::extract::Request,
) -> Response {
    let counters = &state.config.counters;
    let cursor = match last_event_id(request.headers()) {
        Ok(c) => c,
        Err(e) => return bad_cursor(counters, &e),
    };
    let ((permit, per_ip), bounds) = match admit_stream(&state, &request) {
        Ok(admitted) => admitted,
        Err(detail) => return ApiError::busy(detail).into_response(),
    };
    let (sub, replay) = match cursor {
        None => (state.overlay.subscribe(), None),
        Some(after) => match state.overlay.resume(Some(after)) {
            Ok((sub, replay)) => {
                counters.resumed(&replay);
                (sub, Some(replay))
            }
            Err(e) => return bad_cursor(counters, &e),
        },
    };
    gossip_response(sub, replay, bounds, counters.clone(), (permit, per_ip))
}

/// The OpenAPI 3.1 description of these routes (`docs/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// `GET /v1/openapi.json`: the OpenAPI 3.1 description of the HTTP API.
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response()
}

/// Fallback: 404 JSON.
pub async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

/// Method fallback: 405 JSON.
pub async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
