//! The Rust library API: an [`Overlay`] handle over a running node.
//!
//! ```no_run
//! # async fn demo() -> Result<(), svc_overlay::Error> {
//! use bytes::Bytes;
//! use svc_overlay::Overlay;
//!
//! // Dev identity and dev capability key, loopback only.
//! let a = Overlay::bind("127.0.0.1:0".parse().map_err(|_| svc_overlay::OverlayError::Malformed)?).await?;
//! let b = Overlay::bind("127.0.0.1:0".parse().map_err(|_| svc_overlay::OverlayError::Malformed)?).await?;
//! let mut sub = b.deliveries();
//! let session = a.dial(b.local_addr()).await?;       // resolves once the session runs
//! session.send(Bytes::from_static(b"direct")).await?;
//! let id = a.broadcast(Bytes::from_static(b"hi")).await?;
//! if let Some(msg) = sub.recv().await {
//!     assert_eq!(msg.id, id);
//!     assert_eq!(msg.origin, a.peer_id());
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Everything goes through the node task (the driver's `runtime` module): the handle only holds
//! channels, so it is cheap to clone and safe to use from any task. When the last [`Overlay`]
//! clone is dropped the node shuts down gracefully on its own.

mod builder;
mod delivery_log;
mod error;
mod topic;
mod validation;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use overlay_proto::{
    ConnId, Delivery, Direction, LiveSettings, MessageId, NodeStats, PeerId, SessionInfo, TopicId,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::feed::{self, RecvError, TryRecvError};

pub use builder::{install_dev_auth, OverlayBuilder};
pub use delivery_log::{Cursor, CursorError, DeliveryLog, Replay, ReplayBounds, Sequenced};
pub use error::Error;
/// The core's typed error, carried by [`Error::Overlay`].
pub use overlay_proto::OverlayError;
pub(crate) use topic::TopicBus;
pub use topic::{Event, EventStream, Topic, TopicSender};
pub use validation::{PendingValidation, Validator};

use crate::runtime::metrics::DriverCounters;
use crate::runtime::node_task::{Command, MAX_BROADCAST_BATCH, MAX_BROADCAST_BATCH_BYTES};
use crate::runtime::{DriverStats, TokioNet};

/// Something the node reports to its supervisor (the "kernel").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KernelEvent {
    /// Readiness or liveness changed (`ok == false` when saturated or stopped).
    Health {
        /// The service (`svc-overlay`).
        service: String,
        /// Healthy and ready.
        ok: bool,
    },
    /// A task crashed; it was restarted or its connection reported closed.
    ServiceCrashed {
        /// The service (`svc-overlay`).
        service: String,
        /// Which task and why.
        reason: String,
    },
    /// A session reached Running.
    SessionUp {
        /// The peer.
        peer: PeerId,
    },
    /// A running session ended.
    SessionDown {
        /// The peer.
        peer: PeerId,
        /// The close reason's label (`shutdown`, `peer_unresponsive`, `transport_closed`, ...).
        reason: String,
    },
    /// A client session (a connection without a certificate, issue #9) passed START.
    ClientUp {
        /// The session's handle (for [`Overlay::send_to_client`]).
        client: ConnId,
        /// The client's address.
        remote: SocketAddr,
    },
    /// A client session ended.
    ClientDown {
        /// The session's handle.
        client: ConnId,
        /// The close reason's label.
        reason: String,
    },
}

/// Readiness as published on [`Overlay::readiness`] (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Readiness {
    /// True when the node accepts work.
    pub ready: bool,
    /// What is saturated or missing when not ready (`sessions`, `send_queue`,
    /// `shutting_down`, ...).
    pub missing: Vec<String>,
}

/// A direct message from a connected peer or a client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    /// The sending peer. For a message from a client session (which has no identity) this is
    /// this node's own PeerId, and `client` says which session sent it.
    pub from: PeerId,
    /// The message.
    pub payload: Bytes,
    /// `Some(handle)` when a client session sent it: answer with
    /// [`Overlay::send_to_client`].
    pub client: Option<ConnId>,
}

/// Something to dial: a [`SocketAddr`], or `host:port` text — a literal address
/// (`"127.0.0.1:9416"`, `"[::1]:9416"`) or a name looked up once (`"seed.example:9415"`).
pub trait DialTarget {
    /// The addresses to try, in order.
    ///
    /// # Errors
    /// [`Error::Config`] for text that is not `host:port`, or a name that does not
    /// resolve (or resolves to no address).
    fn resolve(self) -> impl Future<Output = Result<Vec<SocketAddr>, Error>> + Send;
}

impl DialTarget for SocketAddr {
    fn resolve(self) -> impl Future<Output = Result<Vec<SocketAddr>, Error>> + Send {
        std::future::ready(Ok(vec![self]))
    }
}

impl DialTarget for &str {
    fn resolve(self) -> impl Future<Output = Result<Vec<SocketAddr>, Error>> + Send {
        resolve_host_port(self.trim().to_string())
    }
}

impl DialTarget for String {
    fn resolve(self) -> impl Future<Output = Result<Vec<SocketAddr>, Error>> + Send {
        resolve_host_port(self.trim().to_string())
    }
}

impl DialTarget for &String {
    fn resolve(self) -> impl Future<Output = Result<Vec<SocketAddr>, Error>> + Send {
        resolve_host_port(self.trim().to_string())
    }
}

/// `host:port` to addresses: a literal socket address as is, else one name lookup.
async fn resolve_host_port(text: String) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| Error::Config(format!("not host:port: `{text}`")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(Error::Config(format!("not host:port: `{text}`")));
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host(text.as_str())
        .await
        .map_err(|e| Error::Config(format!("cannot resolve `{text}`: {e}")))?
        .collect();
    if found.is_empty() {
        return Err(Error::Config(format!("`{text}` resolves to no address")));
    }
    Ok(found)
}

/// What every [`Overlay`] clone shares.
struct Shared {
    cmd: mpsc::Sender<Command>,
    deliveries: Arc<DeliveryLog>,
    directs: crate::feed::Sender<DirectMessage>,
    events: crate::feed::Sender<KernelEvent>,
    topics: Arc<TopicBus>,
    /// Taken by the first [`Overlay::validator`] call.
    validator: std::sync::Mutex<Option<Validator>>,
    readiness: watch::Receiver<Readiness>,
    finished: watch::Receiver<bool>,
    local_addr: SocketAddr,
    peer_id: PeerId,
    counters: Arc<DriverCounters>,
    dial_timeout: Duration,
}

/// A running overlay node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct Overlay {
    shared: Arc<Shared>,
}

impl fmt::Debug for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overlay")
            .field("peer_id", &self.shared.peer_id)
            .field("local_addr", &self.shared.local_addr)
            .finish()
    }
}

impl Overlay {
    /// Starts a node on `addr` with a generated dev identity and the dev capability key
    /// (insecure, so `addr` must be a loopback address) and default settings.
    pub async fn bind(addr: SocketAddr) -> Result<Overlay, Error> {
        Overlay::builder().bind(addr).build().await
    }

    /// A builder with default settings over tokio sockets.
    pub fn builder() -> OverlayBuilder<TokioNet> {
        OverlayBuilder::new()
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .cmd
            .send(make(tx))
            .await
            .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))?;
        rx.await
            .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))
    }

    /// Dials `addr` and resolves once the overlay session is Running (TLS, HELLO and the
    /// capability exchange done), or fails with the reason (`Timeout`, `Refused`, `Crypto`,
    /// `Unauthorized`, `Forbidden`, ...). Dialing an address with a session or a dial already
    /// in progress joins it.
    ///
    /// `addr` may be a name (`"seed.example:9415"`): it is looked up once and its addresses
    /// are dialed in order until one session runs (the last failure is returned).
    pub async fn dial(&self, addr: impl DialTarget) -> Result<SessionHandle, Error> {
        let limit = self.shared.dial_timeout;
        let addrs = match tokio::time::timeout(limit, addr.resolve()).await {
            Err(_) => return Err(Error::Overlay(OverlayError::Timeout)),
            Ok(found) => found?,
        };
        let mut last = Error::Overlay(OverlayError::Refused);
        for addr in addrs {
            let dialed =
                tokio::time::timeout(limit, self.command(|reply| Command::Dial { addr, reply }))
                    .await;
            match dialed {
                Err(_) => last = Error::Overlay(OverlayError::Timeout),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Ok(session))) => return Ok(session),
                Ok(Ok(Err(e))) => last = e,
            }
        }
        Err(last)
    }

    /// Broadcasts a message to the default topic; resolves with its id once it is queued for
    /// this node's peers.
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
        let payload = payload.into();
        self.command(|reply| Command::Broadcast { payload, reply })
            .await?
            .map_err(Error::from)
    }

    /// Broadcasts several messages to the default topic, in order, with one round trip to
    /// the node per 64 messages (or 1 MiB of payload) instead of one per message (for
    /// publishers with many messages at hand). Each message gets its own result, as if
    /// [`Overlay::broadcast`] had been called for each in turn: a message refused for
    /// backpressure ([`OverlayError::Busy`]) is not sent, and the ones after it are tried
    /// all the same. `Err` only when the node has stopped.
    pub async fn broadcast_batch(
        &self,
        payloads: impl IntoIterator<Item = Bytes>,
    ) -> Result<Vec<Result<MessageId, Error>>, Error> {
        let mut payloads = payloads.into_iter().peekable();
        let mut results = Vec::new();
        while payloads.peek().is_some() {
            // Up to 64 messages and 1 MiB of payload per batch (always at least one message).
            let mut batch: Vec<Bytes> = Vec::new();
            let mut bytes = 0usize;
            while batch.len() < MAX_BROADCAST_BATCH {
                let Some(next) = payloads.next_if(|p| {
                    batch.is_empty() || bytes.saturating_add(p.len()) <= MAX_BROADCAST_BATCH_BYTES
                }) else {
                    break;
                };
                bytes = bytes.saturating_add(next.len());
                batch.push(next);
            }
            let answer = self
                .command(|reply| Command::BroadcastBatch {
                    payloads: batch,
                    reply,
                })
                .await?;
            let first = results.len();
            results.extend(
                answer
                    .results
                    .into_iter()
                    .map(|r| r.map(|r| r.map_err(Error::from))),
            );
            for (index, later) in answer.later {
                let result = later
                    .await
                    .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))?;
                if let Some(slot) = results.get_mut(first + index) {
                    *slot = Some(result.map_err(Error::from));
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Overlay(OverlayError::ShuttingDown))))
            .collect())
    }

    /// Broadcasts a message to `topic`; [`OverlayError::NotJoined`] when the node is not in
    /// it.
    pub async fn publish(
        &self,
        topic: TopicId,
        payload: impl Into<Bytes>,
    ) -> Result<MessageId, Error> {
        if topic.is_default() {
            return self.broadcast(payload).await;
        }
        let payload = payload.into();
        self.command(|reply| Command::Publish {
            topic,
            payload,
            reply,
        })
        .await?
        .map_err(Error::from)
    }

    /// Joins `topic` and returns its handle: the topic's [`Event`]s from now on and a sender.
    /// The node stays in the topic until every half of every `Topic` of it is dropped (or
    /// [`Topic::leave`]), unless [`Overlay::join`] holds it too. The default topic is
    /// [`Overlay::topic`]. Fails with [`OverlayError::TooManyTopics`] past the node's
    /// `max_topics`.
    pub async fn subscribe(&self, topic: TopicId) -> Result<Topic, Error> {
        if topic.is_default() {
            return Ok(self.topic());
        }
        let rx = self.shared.topics.hold(topic);
        // From here on the handle's drop releases the hold (and leaves if it was the last).
        let handle = Topic::held(self, topic, rx);
        self.command(|reply| Command::Join { topic, reply })
            .await?
            .map_err(Error::from)?;
        Ok(handle)
    }

    /// Joins `topic` for the operator (the HTTP API, `--topic`): the node stays in it until
    /// [`Overlay::leave`], whatever subscriptions come and go. `Ok(true)` when the node was
    /// not in the topic before, `Ok(false)` when it was (the default topic always is).
    pub async fn join(&self, topic: TopicId) -> Result<bool, Error> {
        if topic.is_default() {
            return Ok(false);
        }
        self.shared.topics.set_operator(topic, true);
        let joined = self
            .command(|reply| Command::Join { topic, reply })
            .await?
            .map_err(Error::from);
        if joined.is_err() {
            self.shared.topics.set_operator(topic, false);
            self.shared.topics.forget_if_unheld(topic);
        }
        joined
    }

    /// Ends the operator's hold on `topic` ([`Overlay::join`]); the node leaves it unless a
    /// subscription still holds it. `Ok(true)` when the node was in the topic, `Ok(false)`
    /// when not; [`OverlayError::NotJoined`] for the default topic, which cannot be left.
    pub async fn leave(&self, topic: TopicId) -> Result<bool, Error> {
        if topic.is_default() {
            return Err(Error::Overlay(OverlayError::NotJoined));
        }
        self.shared.topics.set_operator(topic, false);
        self.command(|reply| Command::Leave {
            topic,
            reply: Some(reply),
        })
        .await?
        .map_err(Error::from)
    }

    /// The topics the node is in, in byte order (the default topic included).
    pub async fn topics(&self) -> Vec<TopicId> {
        self.command(|reply| Command::Topics { reply })
            .await
            .unwrap_or_default()
    }

    /// `topic`'s events from now on without holding the topic (to watch a topic the operator
    /// or another subscription keeps the node in; the stream ends when the node leaves it),
    /// or `None` when the node is not in it.
    pub fn topic_events(&self, topic: TopicId) -> Option<EventStream> {
        self.shared
            .topics
            .events(topic)
            .map(|rx| EventStream::unheld(self, rx))
    }

    /// Sends a direct message to a connected peer.
    pub async fn send_to(&self, peer: PeerId, payload: impl Into<Bytes>) -> Result<(), Error> {
        send_direct(&self.shared.cmd, peer, payload.into()).await
    }

    /// Sends a DIRECT message to a client session (its handle comes from
    /// [`DirectMessage::client`] or [`KernelEvent::ClientUp`]). Fails with `NotConnected` when
    /// the session is gone, `Busy` when its queue is full.
    pub async fn send_to_client(
        &self,
        client: ConnId,
        payload: impl Into<Bytes>,
    ) -> Result<(), Error> {
        let payload = payload.into();
        self.command(|reply| Command::SendToClient {
            client,
            payload,
            reply,
        })
        .await?
        .map_err(Error::from)
    }

    /// The client sessions (connections without a certificate), in connection order.
    pub async fn clients(&self) -> Vec<overlay_proto::ClientInfo> {
        self.command(|reply| Command::Clients { reply })
            .await
            .unwrap_or_default()
    }

    /// Offers addresses that may run overlay peers; the node dials them as membership needs.
    pub async fn add_peers(&self, addrs: Vec<SocketAddr>) -> Result<(), Error> {
        self.shared
            .cmd
            .send(Command::AddPeers { addrs })
            .await
            .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))
    }

    /// Changes the live settings (α, β, per-peer quota) of the running node. Resolves with the
    /// settings in force, or `Config` naming the setting the core refused (nothing changed).
    pub async fn reconfigure(&self, live: LiveSettings) -> Result<LiveSettings, Error> {
        self.command(|reply| Command::Reconfigure {
            live: Box::new(live),
            reply,
        })
        .await?
        .map_err(|e| Error::Config(e.to_string()))
    }

    /// The default topic as a [`Topic`]: its [`Event`]s from now on (deliveries,
    /// neighbours up and down, and [`Event::Lagged`] when the reader falls behind) and a
    /// sender. Other topics: [`Overlay::subscribe`].
    pub fn topic(&self) -> Topic {
        Topic::default_topic(self)
    }

    /// The messages waiting for this application's verdict, when the node was built with
    /// `NodeConfig::validation = ValidationMode::App`: each new message is forwarded and
    /// delivered only once accepted; a rejection penalizes the neighbour that sent it; a
    /// message left unanswered is ignored at `validation_timeout`. `None` after the first
    /// call (there is one validator per node).
    pub fn validator(&self) -> Option<Validator> {
        self.shared
            .validator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Gossip messages of the default topic delivered to this node from now on (bounded: a
    /// subscriber that falls behind loses the oldest messages; that is counted, and
    /// [`Subscription::lost`] says how many — [`Overlay::topic`] reports it in the stream as
    /// [`Event::Lagged`]).
    pub fn deliveries(&self) -> Subscription {
        self.subscription(self.shared.deliveries.subscribe())
    }

    /// Like [`Overlay::deliveries`], for a subscriber that may later [`Overlay::resume`] from
    /// one of its cursors ([`Subscription::recv_sequenced`]; the HTTP `GET /v1/gossip`
    /// stream): from the first such call on, the node keeps its newest deliveries (the
    /// builder's [`ReplayBounds`]) for resuming. Until then it keeps none, so a node that
    /// never serves resumable subscribers holds no copies.
    pub fn resumable_deliveries(&self) -> Subscription {
        self.subscription(self.shared.deliveries.subscribe_resumable())
    }

    /// Resumes a subscription after `after` (the [`Cursor`] of the last message received;
    /// `None`: from the start of this run): what was delivered since and is still kept (at
    /// most the builder's [`ReplayBounds`], and only what was delivered after the first
    /// [`Overlay::resumable_deliveries`] or `resume` call), how many messages since are not
    /// kept, and the live subscription from there on, with no message in both and none lost
    /// in between.
    ///
    /// # Errors
    /// [`CursorError::Ahead`] for a cursor of this run that was never issued.
    pub fn resume(&self, after: Option<Cursor>) -> Result<(Subscription, Replay), CursorError> {
        let (rx, replay) = self.shared.deliveries.resume(after)?;
        Ok((self.subscription(rx), replay))
    }

    /// Like [`Overlay::resume`] (or [`Overlay::resumable_deliveries`] with no cursor) for
    /// `topic`'s deliveries: its own numbering, live feed and replay ring (the same bounds,
    /// kept from the first such call until the node leaves the topic). `None` when the node is
    /// not in the topic; the subscription ends when the node leaves it. The HTTP stream
    /// `GET /v1/topics/{name}/gossip`.
    pub(crate) fn resume_topic(
        &self,
        topic: TopicId,
        after: Option<Cursor>,
    ) -> Option<Result<(Subscription, Replay), CursorError>> {
        if topic.is_default() {
            return Some(match after {
                None => Ok((self.resumable_deliveries(), Replay::default())),
                Some(after) => self.resume(Some(after)),
            });
        }
        let log = self.shared.topics.log(topic)?;
        Some(match after {
            None => Ok((
                self.subscription(log.subscribe_resumable()),
                Replay::default(),
            )),
            Some(after) => log
                .resume(Some(after))
                .map(|(rx, replay)| (self.subscription(rx), replay)),
        })
    }

    fn subscription(&self, rx: feed::Receiver<Arc<Sequenced>>) -> Subscription {
        Subscription {
            feed: Feed {
                rx,
                finished: self.shared.finished.clone(),
                counters: Arc::clone(&self.shared.counters),
                lost: 0,
            },
        }
    }

    /// Direct messages received from now on (bounded like [`Overlay::deliveries`]).
    pub fn direct_messages(&self) -> DirectSubscription {
        DirectSubscription {
            feed: Feed {
                rx: self.shared.directs.subscribe(),
                finished: self.shared.finished.clone(),
                counters: Arc::clone(&self.shared.counters),
                lost: 0,
            },
        }
    }

    /// Kernel events from now on.
    pub fn events(&self) -> feed::Receiver<KernelEvent> {
        self.shared.events.subscribe()
    }

    /// Every session (handshaking, running, closing). Empty once stopped.
    pub async fn peers(&self) -> Vec<SessionInfo> {
        self.command(|reply| Command::Peers { reply })
            .await
            .unwrap_or_default()
    }

    /// The core's counters and gauges. Default (zero) once stopped.
    pub async fn stats(&self) -> NodeStats {
        self.command(|reply| Command::Stats { reply })
            .await
            .unwrap_or_default()
    }

    /// What became of the messages held for the application's verdict (requested, accepted,
    /// rejected, ignored, timed out, dropped on a full table; [`Overlay::validator`]). Default
    /// (zero) once stopped.
    pub async fn validation_stats(&self) -> overlay_proto::ValidationStats {
        self.command(|reply| Command::ValidationStats { reply })
            .await
            .unwrap_or_default()
    }

    /// What the driver itself counted (TLS failures, `max_conns` refusals, crashes, ...).
    pub fn driver_stats(&self) -> DriverStats {
        self.shared.counters.snapshot()
    }

    /// Readiness, updated when it changes.
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.shared.readiness.clone()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's identity.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// True until the node has stopped.
    pub fn is_running(&self) -> bool {
        !*self.shared.finished.borrow()
    }

    /// Graceful shutdown: every session is closed with 503, writers flush (up to the drain
    /// deadline), remaining tasks are aborted, the trace is flushed. Resolves when done;
    /// calling it again (or from a clone) just waits.
    pub async fn shutdown(&self) {
        let _ = self.shared.cmd.send(Command::Shutdown).await;
        self.closed().await;
    }

    /// Resolves when the node has stopped (after [`Overlay::shutdown`] or a crash).
    pub async fn closed(&self) {
        let mut finished = self.shared.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }
}

async fn send_direct(
    cmd: &mpsc::Sender<Command>,
    peer: PeerId,
    payload: Bytes,
) -> Result<(), Error> {
    let (reply, rx) = oneshot::channel();
    cmd.send(Command::SendDirect {
        peer,
        payload,
        reply,
    })
    .await
    .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))?;
    rx.await
        .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))?
        .map_err(Error::from)
}

/// A running session with one peer, as returned by [`Overlay::dial`].
///
/// It does not keep the overlay alive: once every [`Overlay`] clone is dropped, sends fail with
/// [`OverlayError::ShuttingDown`].
#[derive(Clone)]
pub struct SessionHandle {
    peer: PeerId,
    conn: ConnId,
    remote: SocketAddr,
    direction: Direction,
    kx_group: Option<String>,
    cmd: mpsc::WeakSender<Command>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("peer", &self.peer)
            .field("conn", &self.conn)
            .field("remote", &self.remote)
            .field("direction", &self.direction)
            .field("kx_group", &self.kx_group)
            .finish()
    }
}

impl SessionHandle {
    pub(crate) fn new(
        peer: PeerId,
        conn: ConnId,
        remote: SocketAddr,
        direction: Direction,
        kx_group: Option<String>,
        cmd: mpsc::Sender<Command>,
    ) -> Self {
        SessionHandle {
            peer,
            conn,
            remote,
            direction,
            kx_group,
            cmd: cmd.downgrade(),
        }
    }

    /// The peer's identity (proven by its certificate).
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The connection carrying the session.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }

    /// The peer's socket address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Who dialed.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The negotiated TLS key-exchange group (e.g. `X25519MLKEM768`).
    pub fn kx_group(&self) -> Option<&str> {
        self.kx_group.as_deref()
    }

    /// Sends a direct message to this peer (`NotConnected` once the session is gone).
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let cmd = self
            .cmd
            .upgrade()
            .ok_or(Error::Overlay(OverlayError::ShuttingDown))?;
        send_direct(&cmd, self.peer, payload.into()).await
    }
}

/// A bounded feed receiver that counts what it loses and ends when the node stops.
struct Feed<T> {
    rx: feed::Receiver<T>,
    finished: watch::Receiver<bool>,
    counters: Arc<DriverCounters>,
    /// Items this receiver lost by falling behind.
    lost: u64,
}

impl<T: Clone> Feed<T> {
    async fn recv(&mut self) -> Option<T> {
        loop {
            tokio::select! {
                biased;
                got = self.rx.recv() => match got {
                    Ok(item) => return Some(item),
                    Err(RecvError::Lagged(n)) => {
                        self.lost = self.lost.saturating_add(n);
                        self.counters.lagged(n);
                        tracing::warn!(lost = n, "subscriber lagging; messages lost");
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.finished.wait_for(|done| *done) => {
                    // Stopped: hand out what was already delivered, then end.
                    return loop {
                        match self.rx.try_recv() {
                            Ok(item) => break Some(item),
                            Err(TryRecvError::Lagged(n)) => {
                                self.lost = self.lost.saturating_add(n);
                                self.counters.lagged(n);
                            }
                            Err(_) => break None,
                        }
                    };
                }
            }
        }
    }
}

/// Gossip messages of the default topic delivered to this node ([`Overlay::deliveries`]).
pub struct Subscription {
    feed: Feed<Arc<Sequenced>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next delivery, or `None` once the node has stopped and everything delivered before
    /// was received.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.feed
            .recv()
            .await
            .map(|m| Arc::unwrap_or_clone(m).delivery)
    }

    /// The next delivery with its [`Cursor`] (a jump in the sequence numbers means this
    /// subscriber fell behind and lost the messages in between).
    pub async fn recv_sequenced(&mut self) -> Option<Sequenced> {
        self.feed.recv().await.map(Arc::unwrap_or_clone)
    }

    /// Messages this subscription lost so far by falling behind (the oldest are dropped when
    /// its buffer is full). [`Overlay::topic`]'s stream reports each loss as an item instead.
    pub fn lost(&self) -> u64 {
        self.feed.lost
    }

    /// This subscription as a [`Stream`].
    pub fn into_stream(self) -> Pin<Box<dyn Stream<Item = Delivery> + Send>> {
        Box::pin(futures_util::stream::unfold(self, |mut sub| async move {
            sub.recv().await.map(|item| (item, sub))
        }))
    }
}

/// Direct messages received by this node ([`Overlay::direct_messages`]).
pub struct DirectSubscription {
    feed: Feed<DirectMessage>,
}

impl fmt::Debug for DirectSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectSubscription").finish_non_exhaustive()
    }
}

impl DirectSubscription {
    /// The next direct message, or `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<DirectMessage> {
        self.feed.recv().await
    }
}
