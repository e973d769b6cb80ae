//! JSON error responses: `{"error":"<kind>","retry_after":N}` with the matching status.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use overlay_proto::OverlayError as CoreError;
use serde::{Deserialize, Serialize};

use crate::api::Error;

/// An HTTP error: a status, a snake_case kind, an optional retry hint and detail text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The response status.
    pub status: StatusCode,
    /// The `error` field: a stable snake_case label.
    pub kind: Cow<'static, str>,
    /// When to retry; sent as `retry_after` (whole seconds, at least 1) and `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Human-readable detail, sent as `detail` when present.
    pub detail: Option<String>,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable snake_case label: one of [`HTTP_ERROR_KINDS`] or a node error's label
    /// ([`ApiError::from_overlay`]).
    pub error: String,
    /// Whole seconds to wait before retrying (also sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `bad_request`: a body or header that does not parse.
pub const BAD_REQUEST: &str = "bad_request";
/// `bad_last_event_id`: a `Last-Event-ID` that is not one of this node's event ids.
pub const BAD_LAST_EVENT_ID: &str = "bad_last_event_id";
/// `busy`: a slot or budget is full; retry later.
pub const BUSY: &str = "busy";
/// `forbidden`: the control API refused the request.
pub const FORBIDDEN: &str = "forbidden";
/// `method_not_allowed`.
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
/// `not_found`.
pub const NOT_FOUND: &str = "not_found";
/// `too_large`: a body over the route's limit.
pub const TOO_LARGE: &str = "too_large";
/// `unsupported_media_type`: a content type the route does not take.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";

/// Every `error` label the HTTP layer answers with on its own (the node's error labels come
/// on top, see [`ApiError::from_overlay`]).
pub const HTTP_ERROR_KINDS: [&str; 8] = [
    BAD_REQUEST,
    BAD_LAST_EVENT_ID,
    BUSY,
    FORBIDDEN,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
];

impl ApiError {
    /// An error with a status and kind.
    pub fn new(status: StatusCode, kind: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            kind: kind.into(),
            retry_after: None,
            detail: None,
        }
    }

    /// Adds a retry hint.
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Adds detail text.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, FORBIDDEN).detail(detail)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, NOT_FOUND)
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED)
    }

    /// 413 `too_large`.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)
            .detail(format!("request body larger than {limit} bytes"))
    }

    /// `bad_request` with a 4xx status (400, or 422 for JSON of the wrong shape).
    pub fn bad_request(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError::new(status, BAD_REQUEST).detail(detail)
    }

    /// 400 `bad_last_event_id`.
    pub fn bad_last_event_id(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, BAD_LAST_EVENT_ID).detail(detail)
    }

    /// 503 `busy`, retry after a second.
    pub fn busy(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY)
            .detail(detail)
            .retry_after(Some(Duration::from_secs(1)))
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE).detail(detail)
    }

    /// Maps a core error to a response (the control API's mapping): `Timeout` 504, `Refused`
    /// / `Crypto` / `Unauthorized` / `Forbidden` / `NotConnected` 502 (the remote side failed),
    /// `Busy` / `ShuttingDown` 503, `Quota` / `TooManyTopics` 429, `TooLarge` 413, `Malformed`
    /// 400, `NotJoined` 409. The retry
    /// hint is [`CoreError::retry_after`] (at least one second for a 503).
    pub fn from_core(err: CoreError) -> Self {
        let status = match err {
            CoreError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            CoreError::Refused
            | CoreError::Crypto
            | CoreError::Unauthorized
            | CoreError::Forbidden
            | CoreError::NotConnected => StatusCode::BAD_GATEWAY,
            CoreError::Busy | CoreError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Quota | CoreError::TooManyTopics => StatusCode::TOO_MANY_REQUESTS,
            CoreError::NotJoined => StatusCode::CONFLICT,
            CoreError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            CoreError::Malformed => StatusCode::BAD_REQUEST,
        };
        let mut e = ApiError::new(status, err.label()).retry_after(err.retry_after());
        if status == StatusCode::SERVICE_UNAVAILABLE && e.retry_after.is_none() {
            e.retry_after = Some(Duration::from_secs(1));
        }
        e
    }

    /// Maps a library error to a response: core errors as [`ApiError::from_core`];
    /// `Config` (e.g. an address that does not parse) 400; driver
    /// failures (`Io`, `Tls`) 502.
    pub fn from_overlay(err: &Error) -> Self {
        if let Some(core) = err.as_core() {
            return ApiError::from_core(core);
        }
        match err {
            Error::Config(detail) => {
                ApiError::new(StatusCode::BAD_REQUEST, err.label()).detail(detail.clone())
            }
            _ => ApiError::new(StatusCode::BAD_GATEWAY, err.label())
                .retry_after(err.retry_after())
                .detail(err.to_string()),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        ApiError::from_core(err)
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.retry_after.map(retry_after_secs);
        let body = ErrorBody {
            error: self.kind.into_owned(),
            retry_after: retry,
            detail: self.detail,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_uses_a_listed_kind() {
        for e in [
            ApiError::forbidden("x"),
            ApiError::not_found(),
            ApiError::method_not_allowed(),
            ApiError::too_large(1),
            ApiError::bad_request(StatusCode::BAD_REQUEST, "x"),
            ApiError::bad_last_event_id("x"),
            ApiError::busy("x"),
            ApiError::unsupported_media_type("x"),
        ] {
            assert!(HTTP_ERROR_KINDS.contains(&e.kind.as_ref()), "{e:?}");
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(500)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn dial_errors_map_to_gateway_statuses() {
        assert_eq!(
            ApiError::from_core(CoreError::Timeout).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        for e in [
            CoreError::Refused,
            CoreError::Crypto,
            CoreError::Unauthorized,
        ] {
            assert_eq!(ApiError::from_core(e).status, StatusCode::BAD_GATEWAY);
        }
        let busy = ApiError::from_core(CoreError::Busy);
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.retry_after.is_some());
        let e = ApiError::from_overlay(&Error::Config("bad".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.detail.as_deref(), Some("bad"));
        let e = ApiError::from_overlay(&Error::Overlay(CoreError::Busy));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.kind, "busy");
    }
}
