//! `GET /v1/gossip`: delivered gossip messages as Server-Sent Events.
//!
//! A forwarder task drains the node subscription into a bounded channel with `try_send`; the
//! response stream reads that channel. What waits per client is bounded in events
//! (`sse_buffer`) and in bytes (`sse_buffer_bytes`). A client that falls behind either bound
//! gets one `lagged` event (`{"dropped":N}`: the messages it will not see) and its stream ends
//! (the response carries `Connection: close`). A client that stops reading altogether is
//! closed by the connection's write timeout.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::{self, Stream};
use overlay_proto::Delivery;
use serde::Serialize;
use tokio::sync::mpsc;

use super::backend::GossipSubscription;
use super::limits::{HttpClose, HttpCounters};

/// The JSON of one `data:` event.
#[derive(Debug, Serialize)]
pub struct GossipEvent {
    /// Message id, lowercase hex.
    pub id: String,
    /// The broadcaster, `peer:<hex>`.
    pub origin: String,
    /// The neighbour the message came from, `peer:<hex>`.
    pub from: String,
    /// Overlay hops from the origin.
    pub hops: u8,
    /// The payload, standard base64 with padding.
    pub data_b64: String,
}

impl GossipEvent {
    /// The event for a delivery.
    pub fn from_delivery(d: &Delivery) -> Self {
        GossipEvent {
            id: d.id.to_hex(),
            origin: d.origin.to_string(),
            from: d.from.to_string(),
            hops: d.hops,
            data_b64: base64::engine::general_purpose::STANDARD.encode(&d.payload),
        }
    }
}

/// Bounds of one client's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SseBounds {
    /// Events waiting at most.
    pub(crate) events: usize,
    /// Bytes of `data:` text waiting at most.
    pub(crate) bytes: usize,
    /// Interval of keep-alive comments.
    pub(crate) keep_alive: Duration,
}

/// What the forwarder and the response stream share.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes of the events in the channel.
    queued_bytes: AtomicUsize,
    /// Messages lost when the client fell behind (0: it has not).
    lagged: AtomicU64,
}

/// Moves deliveries from the node subscription into the client's bounded channel until the
/// client goes away, falls behind, or the node stops.
async fn forward<S: GossipSubscription, G: Send + 'static>(
    mut sub: S,
    tx: mpsc::Sender<(String, usize)>,
    shared: Arc<Shared>,
    max_bytes: usize,
    _permits: G,
) {
    loop {
        let delivery = tokio::select! {
            () = tx.closed() => return,
            d = sub.recv() => d,
        };
        let Some(delivery) = delivery else { return };
        let json = serde_json::to_string(&GossipEvent::from_delivery(&delivery))
            .unwrap_or_else(|_| "{}".to_string());
        let size = json.len();
        let queued = shared.queued_bytes.load(Ordering::Relaxed);
        let fits = queued.saturating_add(size) <= max_bytes || queued == 0;
        if fits {
            shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
            match tx.try_send((json, size)) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                }
            }
        }
        // Behind by a bound: this message is lost, and so is what still waits.
        shared.lagged.store(1, Ordering::Relaxed);
        return;
    }
}

/// The SSE response for a new subscriber; `permits` (slots, counters) are held until the
/// stream ends.
pub(crate) fn gossip_response<S: GossipSubscription, G: Send + 'static>(
    sub: S,
    bounds: SseBounds,
    counters: HttpCounters,
    permits: G,
) -> Response {
    let (tx, rx) = mpsc::channel(bounds.events.max(1));
    let shared = Arc::new(Shared::default());
    tokio::spawn(forward(
        sub,
        tx,
        Arc::clone(&shared),
        bounds.bytes.max(1),
        permits,
    ));
    let start = (rx, ClientGauge::new(), shared, counters, false);
    let events = stream::unfold(
        start,
        |(mut rx, gauge, shared, counters, done)| async move {
            if done {
                return None;
            }
            let item = if shared.lagged.load(Ordering::Relaxed) > 0 {
                None
            } else {
                rx.recv().await
            };
            match item {
                Some((json, size)) => {
                    shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    let event = Event::default().data(json);
                    Some((
                        Ok::<Event, Infallible>(event),
                        (rx, gauge, shared, counters, false),
                    ))
                }
                None if shared.lagged.load(Ordering::Relaxed) > 0 => {
                    let dropped = rx.len() as u64 + 1;
                    rx.close();
                    metrics::counter!("http_sse_dropped_total").increment(dropped);
                    counters.closed(HttpClose::SseLagged);
                    let event = Event::default()
                        .event("lagged")
                        .data(format!("{{\"dropped\":{dropped}}}"));
                    Some((Ok(event), (rx, gauge, shared, counters, true)))
                }
                None => None,
            }
        },
    );
    let mut resp = sse(events, bounds.keep_alive);
    // The stream ends only when the client lags or the node stops: never reuse the connection.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn sse<St>(events: St, keep_alive: Duration) -> Response
where
    St: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}

/// Tracks connected SSE clients in the `http_sse_clients` gauge.
struct ClientGauge;

impl ClientGauge {
    fn new() -> Self {
        metrics::gauge!("http_sse_clients").increment(1.0);
        ClientGauge
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        metrics::gauge!("http_sse_clients").decrement(1.0);
    }
}
