//! Per-request tracing: a span carrying `request_id`, `method`, `route` and `status`, an
//! `x-request-id` response header, and the `http_requests_total` / `http_request_duration_seconds`
//! metrics.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A process-unique request id: a random per-process prefix and a counter, 16 hex digits.
pub fn next_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        h.finish() & 0xffff_ffff_0000_0000
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", prefix | (n & 0xffff_ffff))
}

/// Middleware: wraps the request in an `http` span and records its outcome.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = next_request_id();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %method,
        route = %route,
        status = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(elapsed_ms = elapsed.as_secs_f64() * 1e3, "request done");
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    metrics::counter!(
        "http_requests_total",
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let a = next_request_id();
        let b = next_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
