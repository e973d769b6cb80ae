//! The event stream of a broadcast domain: a [`Topic`] that splits into a [`TopicSender`]
//! (broadcast) and an [`EventStream`] of [`Event`]s — deliveries, neighbours coming and going,
//! and how many events a slow reader lost ([`Event::Lagged`]: lag is an item, never silent).
//!
//! Today a node has one broadcast domain ([`Overlay::topic`]); when topics arrive a `Topic`
//! gains the id it was joined under, and the types here stay as they are.
//!
//! Pure translation: the node task turns the core's `Action::Deliver` and `Action::Session`
//! into [`Event`]s in the order the core produced them.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use overlay_proto::{CloseReason, Delivery, MessageId, PeerId};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::{Overlay, OverlayError};
use crate::runtime::metrics::DriverCounters;

/// Something that happened in a broadcast domain, in the order the node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A gossip message reached this node for the first time.
    Received(Delivery),
    /// A session with a neighbour reached Running: gossip flows with it.
    NeighborUp(PeerId),
    /// A running session with a neighbour ended.
    NeighborDown {
        /// The neighbour.
        peer: PeerId,
        /// Why the session ended.
        reason: CloseReason,
    },
    /// This stream fell behind and lost `dropped` events (the oldest ones); the next item is
    /// the oldest event still buffered.
    Lagged {
        /// Events lost.
        dropped: u64,
    },
}

/// A handle on one broadcast domain: broadcast with it, read its [`Event`]s from it, or
/// [`split`](Topic::split) it to do both from different tasks.
pub struct Topic {
    sender: TopicSender,
    events: EventStream,
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic").finish_non_exhaustive()
    }
}

impl Topic {
    pub(super) fn new(overlay: &Overlay, rx: broadcast::Receiver<Event>) -> Topic {
        Topic {
            sender: TopicSender {
                overlay: overlay.clone(),
            },
            events: EventStream::new(
                rx,
                overlay.shared.finished.clone(),
                Arc::clone(&overlay.shared.counters),
            ),
        }
    }

    /// Broadcasts `payload` to the domain (see [`TopicSender::broadcast`]).
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<MessageId, OverlayError> {
        self.sender.broadcast(payload).await
    }

    /// The next event, or `None` once the node has stopped and every event before was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The sending half and the event stream, to use from different tasks.
    pub fn split(self) -> (TopicSender, EventStream) {
        (self.sender, self.events)
    }
}

/// The sending half of a [`Topic`]. Cheap to clone; it keeps the node running like an
/// [`Overlay`] clone does.
#[derive(Clone)]
pub struct TopicSender {
    overlay: Overlay,
}

impl fmt::Debug for TopicSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicSender").finish_non_exhaustive()
    }
}

impl TopicSender {
    /// Broadcasts `payload` to the domain; resolves with its id once it is queued for this
    /// node's peers. [`OverlayError::TooLarge`] when it is over the node's `max_payload`.
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<MessageId, OverlayError> {
        self.overlay.broadcast(payload).await
    }
}

type Boxed = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// The receiving half of a [`Topic`]: a [`Stream`] of [`Event`]s that ends when the node stops.
/// Bounded: a reader that falls behind gets one [`Event::Lagged`] for what it lost.
pub struct EventStream {
    inner: Boxed,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

struct Source {
    rx: broadcast::Receiver<Event>,
    finished: watch::Receiver<bool>,
    counters: Arc<DriverCounters>,
    ended: bool,
}

/// Counts a loss and turns it into its item.
fn lagged(counters: &DriverCounters, n: u64) -> Event {
    counters.lagged(n);
    tracing::warn!(lost = n, "event stream lagging; events lost");
    Event::Lagged { dropped: n }
}

impl Source {
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        tokio::select! {
            biased;
            got = self.rx.recv() => match got {
                Ok(event) => Some(event),
                Err(RecvError::Lagged(n)) => Some(lagged(&self.counters, n)),
                Err(RecvError::Closed) => None,
            },
            _ = self.finished.wait_for(|done| *done) => {
                // Stopped: hand out what was already sent, then end.
                match self.rx.try_recv() {
                    Ok(event) => Some(event),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Some(lagged(&self.counters, n)),
                    Err(_) => {
                        self.ended = true;
                        None
                    }
                }
            }
        }
    }
}

impl EventStream {
    fn new(
        rx: broadcast::Receiver<Event>,
        finished: watch::Receiver<bool>,
        counters: Arc<DriverCounters>,
    ) -> EventStream {
        let source = Source {
            rx,
            finished,
            counters,
            ended: false,
        };
        EventStream {
            inner: Box::pin(futures_util::stream::unfold(source, |mut s| async move {
                s.next().await.map(|event| (event, s))
            })),
        }
    }

    /// The next event, or `None` once the node has stopped and every event before was read.
    pub async fn recv(&mut self) -> Option<Event> {
        futures_util::StreamExt::next(&mut self.inner).await
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}
