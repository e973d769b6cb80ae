//! `GET /v1/gossip`: delivered gossip messages as Server-Sent Events.
//!
//! Every message event carries `id: <cursor>` (the node's delivery order, see
//! [`crate::api::Cursor`]). A client that reconnects with `Last-Event-ID` first gets what it
//! missed and the node still keeps (at most `sse_replay_events` messages and
//! `sse_replay_bytes` payload bytes, node-wide), preceded by one `lagged` event counting the
//! messages after its cursor that are no longer kept; then live events follow on the same
//! stream.
//!
//! A forwarder task drains the node subscription into a bounded channel with `try_send`; the
//! response stream reads that channel. What waits per client is bounded in events
//! (`sse_buffer`) and in bytes (`sse_buffer_bytes`). A client that falls behind either bound
//! (or behind the node's own fan-out) gets one `lagged` event (`{"dropped":N}`: the messages
//! it will not see on this stream) and its stream ends (the response carries
//! `Connection: close`); it may reconnect with the id of the last event it got. A client that
//! stops reading altogether is closed by the connection's write timeout.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::{self, Stream, StreamExt as _};
use overlay_proto::Delivery;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::backend::GossipSubscription;
use super::limits::{HttpClose, HttpCounters};
use crate::api::{Replay, Sequenced};

/// The JSON of one message event's `data:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The JSON of a `lagged` event's `data:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaggedEvent {
    /// Messages this stream will not show: on resume, those after the client's cursor that
    /// are no longer kept; when a live client falls behind, those it lost (its stream ends).
    pub dropped: u64,
}

/// The SSE event of a delivered message: `id: <cursor>`, `data: <GossipEvent JSON>`.
fn message_event(m: &Sequenced) -> (Event, usize) {
    let json = serde_json::to_string(&GossipEvent::from_delivery(&m.delivery))
        .unwrap_or_else(|_| "{}".to_string());
    let size = json.len();
    (Event::default().id(m.cursor.to_string()).data(json), size)
}

fn lagged_event(dropped: u64) -> Event {
    let json = serde_json::to_string(&LaggedEvent { dropped }).unwrap_or_else(|_| "{}".to_string());
    Event::default().event("lagged").data(json)
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
/// client goes away, falls behind (its queue is full, or the node's fan-out skipped messages
/// for it), or the node stops. `after` is the last sequence number the stream already shows
/// (the replay's last), if any.
async fn forward<S: GossipSubscription, G: Send + 'static>(
    mut sub: S,
    tx: mpsc::Sender<(Event, usize)>,
    shared: Arc<Shared>,
    max_bytes: usize,
    mut after: Option<u64>,
    _permits: G,
) {
    loop {
        let item = tokio::select! {
            () = tx.closed() => return,
            d = sub.recv() => d,
        };
        let Some(item) = item else { return };
        let seq = item.cursor.seq;
        let skipped = match after {
            Some(last) if seq <= last => continue,
            Some(last) => seq - last - 1,
            None => 0,
        };
        after = Some(seq);
        if skipped == 0 {
            let (event, size) = message_event(&item);
            let queued = shared.queued_bytes.load(Ordering::Relaxed);
            let fits = queued.saturating_add(size) <= max_bytes || queued == 0;
            if fits {
                shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
                match tx.try_send((event, size)) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    }
                }
            }
        }
        // Behind by a bound: this message is lost (and those skipped), and so is what still
        // waits.
        shared.lagged.store(skipped + 1, Ordering::Relaxed);
        return;
    }
}

/// The SSE response for a new subscriber, after `replay` when it resumes; `permits` (slots,
/// counters) are held until the stream ends.
pub(crate) fn gossip_response<S: GossipSubscription, G: Send + 'static>(
    sub: S,
    replay: Option<Replay>,
    bounds: SseBounds,
    counters: HttpCounters,
    permits: G,
) -> Response {
    let (tx, rx) = mpsc::channel(bounds.events.max(1));
    let shared = Arc::new(Shared::default());
    let replay = replay.unwrap_or_default();
    let after = replay.messages.last().map(|m| m.cursor.seq);
    tokio::spawn(forward(
        sub,
        tx,
        Arc::clone(&shared),
        bounds.bytes.max(1),
        after,
        permits,
    ));
    let missed = (replay.missed > 0).then(|| Ok::<Event, Infallible>(lagged_event(replay.missed)));
    let replayed = replay
        .messages
        .into_iter()
        .map(|m| Ok::<Event, Infallible>(message_event(&m).0));
    let start = (rx, ClientGauge::new(), shared, counters, false);
    let live = stream::unfold(
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
                Some((event, size)) => {
                    shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    Some((
                        Ok::<Event, Infallible>(event),
                        (rx, gauge, shared, counters, false),
                    ))
                }
                None if shared.lagged.load(Ordering::Relaxed) > 0 => {
                    let dropped = rx.len() as u64 + shared.lagged.load(Ordering::Relaxed);
                    rx.close();
                    metrics::counter!("http_sse_dropped_total").increment(dropped);
                    counters.closed(HttpClose::SseLagged);
                    Some((
                        Ok(lagged_event(dropped)),
                        (rx, gauge, shared, counters, true),
                    ))
                }
                None => None,
            }
        },
    );
    let events = stream::iter(missed)
        .chain(stream::iter(replayed))
        .chain(live);
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
