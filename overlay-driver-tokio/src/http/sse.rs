//! `GET /v1/gossip`: delivered gossip messages as Server-Sent Events.
//!
//! A forwarder task drains the node subscription into a bounded channel with `try_send`; the
//! response stream reads that channel. A client that reads slower than messages arrive loses
//! messages (counted, and announced with one `lagged` event once it catches up) instead of
//! growing memory: at most `buffer` events wait per client.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::{self, Stream};
use overlay_proto::Delivery;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::backend::GossipSubscription;

/// One SSE item: a delivery, or the number of deliveries this client missed.
#[derive(Debug)]
enum Item {
    Delivery(Delivery),
    Lagged(u64),
}

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

fn to_event(item: Item) -> Event {
    match item {
        Item::Delivery(d) => {
            let json = serde_json::to_string(&GossipEvent::from_delivery(&d))
                .unwrap_or_else(|_| "{}".to_string());
            Event::default().data(json)
        }
        Item::Lagged(n) => Event::default()
            .event("lagged")
            .data(format!("{{\"dropped\":{n}}}")),
    }
}

/// Moves deliveries from the node subscription into the client's bounded channel until the
/// client goes away or the node stops.
async fn forward<S: GossipSubscription>(
    mut sub: S,
    tx: mpsc::Sender<Item>,
    _permit: OwnedSemaphorePermit,
) {
    let mut dropped: u64 = 0;
    loop {
        let delivery = tokio::select! {
            () = tx.closed() => return,
            d = sub.recv() => d,
        };
        let Some(delivery) = delivery else { return };
        if dropped > 0 {
            match tx.try_send(Item::Lagged(dropped)) {
                Ok(()) => dropped = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        match tx.try_send(Item::Delivery(delivery)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                metrics::counter!("http_sse_dropped_total").increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// The SSE response for a new subscriber.
pub fn gossip_response<S: GossipSubscription>(
    sub: S,
    buffer: usize,
    keep_alive: Duration,
    permit: OwnedSemaphorePermit,
) -> Response {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    tokio::spawn(forward(sub, tx, permit));
    let events = stream::unfold((rx, ClientGauge::new()), |(mut rx, guard)| async move {
        let item = rx.recv().await?;
        Some((Ok::<Event, Infallible>(to_event(item)), (rx, guard)))
    });
    sse(events, keep_alive)
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
