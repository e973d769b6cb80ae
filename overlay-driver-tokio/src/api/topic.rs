//! The event stream of a topic: a [`Topic`] that splits into a [`TopicSender`]
//! (broadcast) and an [`EventStream`] of [`Event`]s — deliveries, neighbours coming and going,
//! and how many events a slow reader lost ([`Event::Lagged`]: lag is an item, never silent).
//!
//! [`Overlay::topic`] is the default topic; [`Overlay::subscribe`] joins any other and keeps
//! the node in it until every half of every `Topic` of it is dropped (or
//! [`Topic::leave`]), unless the operator joined it too ([`Overlay::join`]).
//!
//! Pure translation: the node task turns the core's `Action::Deliver` and
//! `Action::TopicNeighbor` into [`Event`]s in the order the core produced them; the
//! [`TopicBus`] only routes them to the topic's readers and counts who holds a topic. Each
//! topic other than the default one also has its own [`DeliveryLog`] (numbering, live fan-out,
//! replay ring kept on demand) for the resumable HTTP stream `GET /v1/topics/{name}/gossip`;
//! it goes when the node leaves the topic, which ends those streams.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use overlay_proto::{Delivery, MessageId, NeighborDownReason, PeerId, TopicId};
use tokio::sync::{mpsc, watch};

use super::{DeliveryLog, Error, Overlay, ReplayBounds};
use crate::feed;
use crate::runtime::metrics::DriverCounters;
use crate::runtime::node_task::Command;

/// Something that happened in a broadcast domain, in the order the node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A gossip message reached this node for the first time.
    Received(Delivery),
    /// The peer became a neighbour in this topic: a running session with it, and it is in
    /// the topic too (it announced the topic, and its token covers it). Joining the topic
    /// yields one for every member already connected, on the streams open at that moment (a
    /// later handle of a topic already joined sees only changes from then on).
    NeighborUp(PeerId),
    /// The peer is no longer a neighbour in this topic: its session ended
    /// ([`NeighborDownReason::Closed`]) or it left the topic ([`NeighborDownReason::Left`]).
    /// Leaving the topic yourself reports nothing: the stream ends.
    NeighborDown {
        /// The neighbour.
        peer: PeerId,
        /// Why it is no longer a neighbour here.
        reason: NeighborDownReason,
    },
    /// This stream fell behind and lost `dropped` events (the oldest ones); the next item is
    /// the oldest event still buffered.
    Lagged {
        /// Events lost.
        dropped: u64,
    },
}

/// A handle on one topic: broadcast with it, read its [`Event`]s from it, or
/// [`split`](Topic::split) it to do both from different tasks. A topic other than the default
/// one is left when the last half of the last `Topic` of it is dropped.
pub struct Topic {
    sender: TopicSender,
    events: EventStream,
}

/// Routes each topic's events to its readers, and counts who holds each topic other than the
/// default one (library subscriptions and the operator's join), so that the node task leaves
/// a topic only when nobody holds it. Shared by the API and the node task; its lock is never
/// held across an `.await`.
pub(crate) struct TopicBus {
    /// The default topic's readers (the feed holds only what they have yet to read).
    default: feed::Sender<Event>,
    buffer: usize,
    /// Bounds of each topic's replay ring (the same as the default topic's).
    replay: ReplayBounds,
    /// How far a live reader of a topic's delivery log may fall behind.
    log_capacity: usize,
    others: Mutex<BTreeMap<TopicId, Channel>>,
}

/// The readers and holders of one topic.
struct Channel {
    tx: feed::Sender<Event>,
    /// Library subscriptions alive.
    holders: usize,
    /// Joined by the operator (HTTP, `--topic`) until left.
    operator: bool,
    /// The core confirmed the join.
    joined: bool,
    /// The topic's numbered deliveries for resumable streams (its ring and its live slots
    /// are allocated by the first such stream).
    log: Arc<DeliveryLog>,
}

impl TopicBus {
    /// A bus whose channels buffer `buffer` events per reader, and whose topics' delivery
    /// logs keep at most `replay` for resuming (each) and let a live reader fall
    /// `log_capacity` messages behind.
    pub(crate) fn new(buffer: usize, replay: ReplayBounds, log_capacity: usize) -> TopicBus {
        let buffer = buffer.max(1);
        TopicBus {
            default: feed::channel(buffer),
            buffer,
            replay,
            log_capacity,
            others: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<TopicId, Channel>> {
        self.others.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn channel<'a>(
        &self,
        others: &'a mut BTreeMap<TopicId, Channel>,
        topic: TopicId,
    ) -> &'a mut Channel {
        others.entry(topic).or_insert_with(|| Channel {
            tx: feed::channel(self.buffer),
            holders: 0,
            operator: false,
            joined: false,
            // A fresh epoch per stay in the topic: cursors of an earlier stay (or of another
            // topic) resume from the start of this one.
            log: Arc::new(DeliveryLog::keeping_on_demand(
                DeliveryLog::random_epoch(),
                self.replay,
                self.log_capacity,
            )),
        })
    }

    /// A reader of the default topic.
    pub(crate) fn default_events(&self) -> feed::Receiver<Event> {
        self.default.subscribe()
    }

    /// One more library subscription of `topic`: its reader, made before the join so that
    /// nothing delivered after it is missed.
    pub(crate) fn hold(&self, topic: TopicId) -> feed::Receiver<Event> {
        let mut others = self.lock();
        let channel = self.channel(&mut others, topic);
        channel.holders += 1;
        channel.tx.subscribe()
    }

    /// A library subscription of `topic` ended.
    pub(crate) fn release(&self, topic: TopicId) {
        if let Some(channel) = self.lock().get_mut(&topic) {
            channel.holders = channel.holders.saturating_sub(1);
        }
    }

    /// Marks (or clears) the operator's hold on `topic`; returns whether it was held by the
    /// operator before.
    pub(crate) fn set_operator(&self, topic: TopicId, on: bool) -> bool {
        let mut others = self.lock();
        if !on && !others.contains_key(&topic) {
            return false;
        }
        let channel = self.channel(&mut others, topic);
        std::mem::replace(&mut channel.operator, on)
    }

    /// The core confirmed the join of `topic`.
    pub(crate) fn set_joined(&self, topic: TopicId) {
        if let Some(channel) = self.lock().get_mut(&topic) {
            channel.joined = true;
        }
    }

    /// Forgets `topic` when nobody holds it any more; true when forgotten (the node task then
    /// leaves it).
    pub(crate) fn forget_if_unheld(&self, topic: TopicId) -> bool {
        let mut others = self.lock();
        match others.get(&topic) {
            Some(c) if c.holders == 0 && !c.operator => {
                others.remove(&topic);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// A reader of `topic`'s events, when the node is in it (for [`Overlay::topic_events`],
    /// which does not hold the topic).
    pub(crate) fn events(&self, topic: TopicId) -> Option<feed::Receiver<Event>> {
        if topic.is_default() {
            return Some(self.default.subscribe());
        }
        self.lock()
            .get(&topic)
            .filter(|c| c.joined)
            .map(|c| c.tx.subscribe())
    }

    /// The delivery log of `topic` (a topic other than the default one), when the node is in
    /// it.
    pub(crate) fn log(&self, topic: TopicId) -> Option<Arc<DeliveryLog>> {
        self.lock()
            .get(&topic)
            .filter(|c| c.joined)
            .map(|c| Arc::clone(&c.log))
    }

    /// Numbers a delivery of `topic` (not the default one) in its delivery log, then hands
    /// it to its event readers: a reader that has seen it can resume from the log and find it
    /// there.
    pub(crate) fn deliver(&self, topic: TopicId, delivery: Delivery) {
        let (log, readers) = {
            let others = self.lock();
            let Some(c) = others.get(&topic) else {
                return;
            };
            let readers = (c.tx.receiver_count() > 0).then(|| c.tx.clone());
            (Arc::clone(&c.log), readers)
        };
        match readers {
            Some(readers) => {
                log.publish(delivery.clone());
                let _ = readers.send(Event::Received(delivery));
            }
            None => {
                log.publish(delivery);
            }
        }
    }

    /// Sends an event to `topic`'s readers (none is fine).
    pub(crate) fn send(&self, topic: TopicId, event: Event) {
        if topic.is_default() {
            self.default.send(event);
            return;
        }
        if let Some(c) = self.lock().get(&topic) {
            if c.tx.receiver_count() > 0 {
                let _ = c.tx.send(event);
            }
        }
    }
}

/// Keeps the node in a topic while any half of a [`Topic`] of it lives.
struct Membership {
    topic: TopicId,
    bus: Arc<TopicBus>,
    cmd: mpsc::Sender<Command>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.bus.release(self.topic);
        // The node task checks the holders again when it handles this, so the order against
        // a concurrent subscribe does not matter.
        let leave = Command::Leave {
            topic: self.topic,
            reply: None,
        };
        if let Err(mpsc::error::TrySendError::Full(leave)) = self.cmd.try_send(leave) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let cmd = self.cmd.clone();
                handle.spawn(async move {
                    let _ = cmd.send(leave).await;
                });
            }
        }
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic").finish_non_exhaustive()
    }
}

impl Topic {
    /// The default topic's handle (never left).
    pub(super) fn default_topic(overlay: &Overlay) -> Topic {
        let rx = overlay.shared.topics.default_events();
        Topic::new(overlay, TopicId::DEFAULT, rx, None)
    }

    /// A handle on `topic` holding the subscription made with [`TopicBus::hold`].
    pub(super) fn held(overlay: &Overlay, topic: TopicId, rx: feed::Receiver<Event>) -> Topic {
        let membership = Arc::new(Membership {
            topic,
            bus: Arc::clone(&overlay.shared.topics),
            cmd: overlay.shared.cmd.clone(),
        });
        Topic::new(overlay, topic, rx, Some(membership))
    }

    fn new(
        overlay: &Overlay,
        topic: TopicId,
        rx: feed::Receiver<Event>,
        membership: Option<Arc<Membership>>,
    ) -> Topic {
        Topic {
            sender: TopicSender {
                overlay: overlay.clone(),
                topic,
                _membership: membership.clone(),
            },
            events: EventStream::new(
                rx,
                overlay.shared.finished.clone(),
                Arc::clone(&overlay.shared.counters),
                membership,
            ),
        }
    }

    /// The topic's id.
    pub fn id(&self) -> TopicId {
        self.sender.topic
    }

    /// Leaves the topic now (when no other `Topic` of it, and no operator join, holds it);
    /// the same as dropping both halves.
    pub fn leave(self) {
        drop(self);
    }

    /// Broadcasts `payload` to the topic (see [`TopicSender::broadcast`]).
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
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
/// [`Overlay`] clone does, and the node in the topic.
#[derive(Clone)]
pub struct TopicSender {
    overlay: Overlay,
    topic: TopicId,
    _membership: Option<Arc<Membership>>,
}

impl fmt::Debug for TopicSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicSender").finish_non_exhaustive()
    }
}

impl TopicSender {
    /// Broadcasts `payload` to the topic; resolves with its id once it is queued for this
    /// node's peers. `Error::Overlay(OverlayError::TooLarge)` when it is over the node's `max_payload`.
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
        self.overlay.publish(self.topic, payload).await
    }

    /// The topic's id.
    pub fn id(&self) -> TopicId {
        self.topic
    }
}

type Boxed = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// The receiving half of a [`Topic`]: a [`Stream`] of [`Event`]s that ends when the node stops.
/// Bounded: a reader that falls behind gets one [`Event::Lagged`] for what it lost.
pub struct EventStream {
    inner: Boxed,
    _membership: Option<Arc<Membership>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

struct Source {
    rx: feed::Receiver<Event>,
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
                Err(feed::RecvError::Lagged(n)) => Some(lagged(&self.counters, n)),
                Err(feed::RecvError::Closed) => None,
            },
            _ = self.finished.wait_for(|done| *done) => {
                // Stopped: hand out what was already sent, then end.
                match self.rx.try_recv() {
                    Ok(event) => Some(event),
                    Err(feed::TryRecvError::Lagged(n)) => Some(lagged(&self.counters, n)),
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
    /// A stream over `rx` that does not hold its topic ([`Overlay::topic_events`]).
    pub(super) fn unheld(overlay: &Overlay, rx: feed::Receiver<Event>) -> EventStream {
        EventStream::new(
            rx,
            overlay.shared.finished.clone(),
            Arc::clone(&overlay.shared.counters),
            None,
        )
    }

    fn new(
        rx: feed::Receiver<Event>,
        finished: watch::Receiver<bool>,
        counters: Arc<DriverCounters>,
        membership: Option<Arc<Membership>>,
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
            _membership: membership,
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
