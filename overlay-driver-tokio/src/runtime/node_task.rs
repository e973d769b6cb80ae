//! The node task: the only owner of the [`Node`]. It turns bus messages, application commands
//! and the core's deadlines into inputs, applies each with `Node::handle` (one mutation, then
//! drain `poll_action`), and carries the actions out.

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use overlay_proto::{
    Action, Chunks, CloseReason, ConnId, DialId, DialOutcome, Direction, Input, LiveSettings,
    MessageId, NeighborChange, Node, NodeStats, OverlayError as CoreError, PeerId,
    ReconfigureError, SessionEvent, SessionInfo, SessionState, TopicId,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, Id as TaskId, JoinError, JoinHandle, JoinSet};
use tokio::time::{sleep_until, Instant as TokioInstant};
use tracing::Instrument as _;

use super::clock::Clock;
use super::conn::{self, ReaderCtx, Side, WriterBatch, WriterCtx, WriterMsg};
use super::dial::{self, DialCtx, DialReport};
use super::metrics::{self as rt_metrics, DriverCounters};
use super::net::Net;
use super::trace_out::TraceSink;
use super::{BusMsg, Established, Timeouts, SERVICE};
use crate::api::{
    DirectMessage, Error, Event as TopicEvent, KernelEvent, Readiness, SessionHandle,
};
use crate::shared::{ReadyFlag, ReadyState, StopSignal, WriteCredit};

/// Writer messages queued per connection writer (each holds the transmits of one node-task
/// wake-up for that connection).
pub(crate) const WRITER_QUEUE: usize = 1024;
/// Bytes queued per connection writer (the [`WriteCredit`] capacity); one frame larger than
/// this still passes when the queue is empty.
pub(crate) const WRITER_QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Already-queued bus messages (and, separately, application commands) handled after one
/// wake-up before waiting again. The transmits of one wake-up go to each writer together.
const BATCH: usize = 64;
/// Received bytes handled after one wake-up before the node task lets other tasks run (what
/// they carry is delivered in the same wake-up: a subscriber's bounded feed must not overflow
/// while its reader waits for this task to yield).
const BATCH_BYTES: usize = 64 * 1024;
/// Outbox bytes at which a connection's transmits go to its writer without waiting for the
/// end of the wake-up (one TLS record holds up to 16 KiB).
const FLUSH_BYTES: usize = 16 * 1024;
/// Period of the stats → metrics mirror.
const MIRROR_EVERY: Duration = Duration::from_millis(500);

/// A request from the library API.
pub(crate) enum Command {
    /// `Input::Broadcast`.
    Broadcast {
        payload: Bytes,
        reply: oneshot::Sender<Result<MessageId, CoreError>>,
    },
    /// `Input::Broadcast` for each payload, in order, with one answer for all of them
    /// ([`crate::api::Overlay::broadcast_batch`]; at most [`MAX_BROADCAST_BATCH`]).
    BroadcastBatch {
        payloads: Vec<Bytes>,
        reply: oneshot::Sender<BatchAnswer>,
    },
    /// `Input::Publish`.
    Publish {
        topic: TopicId,
        payload: Bytes,
        reply: oneshot::Sender<Result<MessageId, CoreError>>,
    },
    /// `Input::Join`; answered with the core's `Action::Joined`.
    Join {
        topic: TopicId,
        reply: oneshot::Sender<Result<bool, CoreError>>,
    },
    /// `Input::Leave` when nobody holds the topic any more ([`crate::api::TopicBus`]);
    /// answered (if asked) with the core's `Action::Left`, or `Ok(true)` while still held.
    Leave {
        topic: TopicId,
        reply: Option<oneshot::Sender<Result<bool, CoreError>>>,
    },
    /// `Node::topics`.
    Topics {
        reply: oneshot::Sender<Vec<TopicId>>,
    },
    /// `Input::SendDirect`.
    SendDirect {
        peer: PeerId,
        payload: Bytes,
        reply: oneshot::Sender<Result<(), CoreError>>,
    },
    /// `Input::SendToClient`.
    SendToClient {
        client: ConnId,
        payload: Bytes,
        reply: oneshot::Sender<Result<(), CoreError>>,
    },
    /// `Node::clients`.
    Clients {
        reply: oneshot::Sender<Vec<overlay_proto::ClientInfo>>,
    },
    /// `Input::Dial`; answered when the session runs or fails.
    Dial { addr: SocketAddr, reply: DialWaiter },
    /// `Input::PeersDiscovered`.
    AddPeers { addrs: Vec<SocketAddr> },
    /// `Node::sessions`.
    Peers {
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
    /// `Node::stats`.
    Stats { reply: oneshot::Sender<NodeStats> },
    /// `Node::validation_stats`.
    ValidationStats {
        reply: oneshot::Sender<overlay_proto::ValidationStats>,
    },
    /// `Input::Reconfigure`; answered with the core's `Action::Reconfigured`. Boxed: the
    /// settings table would make every command slot of the channel as large as itself.
    Reconfigure {
        live: Box<LiveSettings>,
        reply: oneshot::Sender<Result<LiveSettings, ReconfigureError>>,
    },
    /// `Input::Shutdown`, then drain.
    Shutdown,
    /// `Input::Verdict`.
    Verdict {
        id: u64,
        verdict: overlay_proto::Verdict,
    },
}

/// Payloads one [`Command::BroadcastBatch`] carries at most (the API splits larger batches):
/// a batch is handled in one go, so this bounds how long it holds the node task.
pub(crate) const MAX_BROADCAST_BATCH: usize = 64;
/// Payload bytes in one broadcast batch at most (hashing and signing a batch runs on the node
/// task without a break: large messages go a few at a time).
pub(crate) const MAX_BROADCAST_BATCH_BYTES: usize = 1024 * 1024;

/// The answer to a [`Command::BroadcastBatch`]: one result per payload, in order. A result
/// the core did not give while the batch was applied (none does today) is `None` here and
/// arrives on its receiver in `later`.
#[derive(Debug, Default)]
pub(crate) struct BatchAnswer {
    pub(crate) results: Vec<Option<Result<MessageId, CoreError>>>,
    pub(crate) later: Vec<(usize, oneshot::Receiver<Result<MessageId, CoreError>>)>,
}

/// Answers an API dial.
pub(crate) type DialWaiter = oneshot::Sender<Result<SessionHandle, Error>>;

/// Where the node task publishes what the application sees.
pub(crate) struct Outputs {
    pub(crate) deliveries: Arc<crate::api::DeliveryLog>,
    pub(crate) directs: crate::feed::Sender<DirectMessage>,
    pub(crate) events: crate::feed::Sender<KernelEvent>,
    /// Messages waiting for the application's verdict ([`crate::api::Validator`]); when it is
    /// full or nobody listens the core's deadline settles them.
    pub(crate) validations: mpsc::Sender<Box<crate::api::PendingValidation>>,
    /// The topics' event streams ([`crate::api::Topic`]).
    pub(crate) topics: Arc<crate::api::TopicBus>,
    pub(crate) readiness: Arc<watch::Sender<Readiness>>,
}

/// A live connection, as the node task knows it.
struct ConnEntry {
    writer: mpsc::Sender<WriterMsg>,
    /// Bytes queued in `writer`, given back by the writer task once written.
    credit: Arc<WriteCredit>,
    reader_task: AbortHandle,
    writer_task: AbortHandle,
    /// `None` for a client session.
    peer: Option<PeerId>,
    remote: SocketAddr,
    direction: Direction,
    kx_group: Option<String>,
    running: bool,
    /// The accept path's pre-auth slot, given back when the session finishes START.
    preauth: Option<super::preauth::PreAuthSlot>,
    /// Transmits carried out in this wake-up, not yet handed to the writer (their credit is
    /// taken): sent as one writer message when the node task next waits, or before a close.
    outbox: Outbox,
}

/// The transmits of one wake-up for one connection, in order.
#[derive(Default)]
struct Outbox {
    frames: Vec<Bytes>,
    bytes: usize,
    since: Option<TokioInstant>,
}

impl Outbox {
    /// Appends one transmit (its pieces: payloads shared with other connections stay
    /// shared); true when the outbox was empty (the connection needs a flush).
    fn push(&mut self, data: Chunks) -> bool {
        let first = self.frames.is_empty();
        if first {
            self.since = Some(TokioInstant::now());
        }
        self.bytes += data.len();
        self.frames.extend(data.into_pieces());
        first
    }

    /// Everything queued, as one writer message (`None` when empty).
    fn take(&mut self) -> Option<WriterMsg> {
        if self.frames.is_empty() {
            return None;
        }
        let bytes = mem::take(&mut self.bytes);
        let queued_at = self.since.take().unwrap_or_else(TokioInstant::now);
        Some(WriterMsg::Data(Box::new(WriterBatch {
            frames: mem::take(&mut self.frames),
            bytes,
            queued_at,
        })))
    }
}

impl ConnEntry {
    fn abort(&self) {
        self.reader_task.abort();
        self.writer_task.abort();
    }
}

/// Everything [`NodeTask::new`] needs.
pub(crate) struct NodeTaskParts<N: Net> {
    pub(crate) node: Node,
    pub(crate) clock: Clock,
    pub(crate) bus_rx: mpsc::Receiver<BusMsg<N::Stream>>,
    pub(crate) bus_tx: mpsc::Sender<BusMsg<N::Stream>>,
    pub(crate) cmd_rx: mpsc::Receiver<Command>,
    pub(crate) cmd_weak: mpsc::WeakSender<Command>,
    pub(crate) dial_ctx: Arc<DialCtx<N>>,
    pub(crate) out: Outputs,
    pub(crate) counters: Arc<DriverCounters>,
    pub(crate) trace: Option<TraceSink>,
    pub(crate) timeouts: Timeouts,
    pub(crate) accept_stop: Arc<StopSignal>,
    pub(crate) accept_task: JoinHandle<()>,
}

/// The node task's state.
pub(crate) struct NodeTask<N: Net> {
    /// Boxed: the task's future holds this state more than once (its unstarted and running
    /// states), and the core is ≈ 4.7 KB of it.
    node: Box<Node>,
    clock: Clock,
    bus_rx: mpsc::Receiver<BusMsg<N::Stream>>,
    bus_tx: mpsc::Sender<BusMsg<N::Stream>>,
    cmd_rx: mpsc::Receiver<Command>,
    cmd_weak: mpsc::WeakSender<Command>,
    cmd_open: bool,
    dial_ctx: Arc<DialCtx<N>>,
    conns: HashMap<ConnId, ConnEntry>,
    tasks: JoinSet<()>,
    task_ids: HashMap<TaskId, (ConnId, Side)>,
    dials: JoinSet<DialReport<N::Stream>>,
    dial_tasks: HashMap<TaskId, DialId>,
    pending: VecDeque<Input>,
    next_request: u64,
    broadcasts: HashMap<u64, oneshot::Sender<Result<MessageId, CoreError>>>,
    /// The caller of the broadcast being applied (answered without a trip through the map).
    answering: Option<(u64, oneshot::Sender<Result<MessageId, CoreError>>)>,
    /// The request of a batch's broadcast being applied and, once the core gave it, its
    /// result.
    collecting: Option<(u64, Option<Result<MessageId, CoreError>>)>,
    sends: HashMap<u64, oneshot::Sender<Result<(), CoreError>>>,
    /// Callers of `Input::Dial`, by request tag, until the core's final answer
    /// (`DialAnswer`, `SessionEvent::Up` or `DialResult`).
    dials_waiting: HashMap<u64, DialWaiter>,
    /// The caller of the `Input::Reconfigure` being handled (answered while draining).
    pending_reconfigure: Option<oneshot::Sender<Result<LiveSettings, ReconfigureError>>>,
    /// The caller of the `Input::Join` / `Input::Leave` being handled.
    pending_topic: Option<oneshot::Sender<Result<bool, CoreError>>>,
    out: Outputs,
    counters: Arc<DriverCounters>,
    trace: Option<TraceSink>,
    timeouts: Timeouts,
    accept_stop: Arc<StopSignal>,
    accept_task: Option<JoinHandle<()>>,
    /// Ready / not ready / shutting down (terminal).
    ready: ReadyFlag,
    drain_until: Option<TokioInstant>,
    scratch: Vec<Action>,
    last_mirror: TokioInstant,
    /// Bytes read and not yet handled, for every connection (see
    /// [`super::conn::READ_BUDGET_BYTES`]).
    read_budget: Arc<tokio::sync::Semaphore>,
    /// Connections whose outbox holds transmits of this wake-up.
    unflushed: Vec<ConnId>,
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_opt(at: Option<TokioInstant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<N: Net> NodeTask<N> {
    pub(crate) fn new(parts: NodeTaskParts<N>) -> Self {
        NodeTask {
            node: Box::new(parts.node),
            clock: parts.clock,
            bus_rx: parts.bus_rx,
            bus_tx: parts.bus_tx,
            cmd_rx: parts.cmd_rx,
            cmd_weak: parts.cmd_weak,
            cmd_open: true,
            dial_ctx: parts.dial_ctx,
            conns: HashMap::new(),
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            dials: JoinSet::new(),
            dial_tasks: HashMap::new(),
            pending: VecDeque::new(),
            next_request: 1,
            broadcasts: HashMap::new(),
            answering: None,
            collecting: None,
            sends: HashMap::new(),
            dials_waiting: HashMap::new(),
            pending_reconfigure: None,
            pending_topic: None,
            out: parts.out,
            counters: parts.counters,
            trace: parts.trace,
            timeouts: parts.timeouts,
            accept_stop: parts.accept_stop,
            accept_task: Some(parts.accept_task),
            ready: ReadyFlag::new(true),
            drain_until: None,
            scratch: Vec::new(),
            last_mirror: TokioInstant::now(),
            read_budget: Arc::new(tokio::sync::Semaphore::new(super::conn::READ_BUDGET_BYTES)),
            unflushed: Vec::new(),
        }
    }

    /// Runs until shutdown has drained. `initial` inputs are applied first.
    pub(crate) async fn run(mut self, initial: Vec<Input>) {
        for input in initial {
            self.input(input, None);
        }
        loop {
            // About to wait (or to check the deadline): hand this wake-up's transmits over.
            self.flush_outboxes();
            if self.drained() {
                break;
            }
            let deadline = self.node.poll_timeout().map(|t| self.clock.deadline(t));
            if deadline.is_some_and(|d| d <= TokioInstant::now()) {
                self.input(Input::Timeout, None);
                self.maybe_mirror();
                continue;
            }
            let drain_until = self.drain_until;
            // Biased (no random branch choice, so runs under a simulated network repeat
            // exactly): the low-volume sources first, then the bus. Each branch also takes a
            // bounded share of the other high-volume source, so neither can starve the other.
            // Set when a batch hit its bound (more is probably queued).
            let mut full = false;
            tokio::select! {
                biased;
                cmd = self.cmd_rx.recv(), if self.cmd_open => {
                    self.on_command_or_closed(cmd);
                    full = self.drain_commands(BATCH - 1);
                    full |= self.drain_bus(BATCH);
                }
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.on_task_done(done);
                }
                Some(done) = self.dials.join_next_with_id(), if !self.dials.is_empty() => {
                    self.on_dial_done(done);
                }
                msg = self.bus_rx.recv() => {
                    if let Some(msg) = msg {
                        self.on_bus(msg);
                        full = self.drain_bus(BATCH - 1);
                        full |= self.drain_commands(BATCH);
                    }
                }
                () = sleep_until_opt(deadline) => self.input(Input::Timeout, None),
                () = sleep_until_opt(drain_until) => {}
            }
            self.maybe_mirror();
            if full {
                // Let the tasks this batch fed (writers, subscribers: bounded feeds that lose
                // the oldest when their reader falls behind) run before taking more.
                self.flush_outboxes();
                tokio::task::yield_now().await;
            }
        }
        self.finish().await;
    }

    /// Handles up to `max` bus messages that are already queued, and at most about
    /// [`BATCH_BYTES`] received bytes; true when it stopped at a bound.
    fn drain_bus(&mut self, max: usize) -> bool {
        let mut bytes = 0;
        for _ in 0..max {
            if bytes >= BATCH_BYTES {
                return true;
            }
            match self.bus_rx.try_recv() {
                Ok(msg) => {
                    if let BusMsg::Received(read) = &msg {
                        bytes += read.data.len();
                    }
                    self.on_bus(msg);
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Handles up to `max` application commands that are already queued; true when it
    /// stopped at the bound.
    fn drain_commands(&mut self, max: usize) -> bool {
        for _ in 0..max {
            if !self.cmd_open {
                return false;
            }
            match self.cmd_rx.try_recv() {
                Ok(cmd) => self.on_command(cmd),
                Err(_) => return false,
            }
        }
        true
    }

    /// Hands every connection's outbox to its writer (one message per connection).
    fn flush_outboxes(&mut self) {
        while !self.unflushed.is_empty() {
            let mut unflushed = mem::take(&mut self.unflushed);
            for conn in unflushed.drain(..) {
                self.flush_conn(conn);
            }
            if self.unflushed.is_empty() {
                self.unflushed = unflushed;
            }
            // A connection closed for a full queue is reported to the core now (no input
            // runs); what that makes the core send is flushed by the next round.
            while let Some(next) = self.pending.pop_front() {
                self.handle(next, None);
            }
        }
    }

    /// Hands one connection's outbox to its writer; a full queue closes the connection.
    fn flush_conn(&mut self, conn: ConnId) {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(msg) = entry.outbox.take() else {
            return;
        };
        let len = match &msg {
            WriterMsg::Data(data) => data.bytes,
            WriterMsg::Close => 0,
        };
        match entry.writer.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                entry.credit.give_back(len);
                self.writer_full(conn);
            }
            // The writer already ended; its end report is on the way.
            Err(mpsc::error::TrySendError::Closed(_)) => entry.credit.give_back(len),
        }
    }

    /// A writer queue refused more: the peer does not read fast enough; close the connection
    /// (reported to the core after the current input, or by the flush).
    fn writer_full(&mut self, conn: ConnId) {
        self.counters.reject("writer_full");
        tracing::warn!(%conn, "writer queue full; closing the connection");
        self.kill_conn(conn, Some(CoreError::Busy));
    }

    fn on_command_or_closed(&mut self, cmd: Option<Command>) {
        match cmd {
            Some(cmd) => self.on_command(cmd),
            None => {
                // Every handle is gone: nobody can use the overlay any more.
                self.cmd_open = false;
                self.begin_shutdown();
            }
        }
    }

    fn drained(&self) -> bool {
        match self.drain_until {
            None => false,
            Some(until) => self.tasks.is_empty() || TokioInstant::now() >= until,
        }
    }

    fn maybe_mirror(&mut self) {
        let now = TokioInstant::now();
        if now.saturating_duration_since(self.last_mirror) >= MIRROR_EVERY {
            self.last_mirror = now;
            self.mirror();
        }
    }

    fn mirror(&self) {
        let depth = self.bus_tx.max_capacity() - self.bus_tx.capacity();
        rt_metrics::mirror_core(&self.node.stats(), depth);
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Applies one input, then every input its actions queued locally.
    fn input(&mut self, input: Input, read_at: Option<TokioInstant>) {
        self.handle(input, read_at);
        while let Some(next) = self.pending.pop_front() {
            self.handle(next, None);
        }
    }

    /// One mutation of the core, then drain and carry out its actions.
    fn handle(&mut self, input: Input, read_at: Option<TokioInstant>) {
        let started = TokioInstant::now();
        let now = self.clock.at(started);
        let traced = self.trace.is_some().then(|| input.clone());
        self.node.handle(now, input);
        rt_metrics::latency("core", started.elapsed());
        let Some(input) = traced else {
            // Carried out as they are pulled: the core's queue already holds all of them, in
            // order, so nothing is gathered in between.
            while let Some(action) = self.node.poll_action() {
                self.carry_out(action, read_at);
            }
            return;
        };
        // Traced: the record holds the input's actions before they are carried out.
        let mut actions = mem::take(&mut self.scratch);
        while let Some(action) = self.node.poll_action() {
            actions.push(action);
        }
        if let Some(trace) = self.trace.as_mut() {
            trace.record(now, input, &actions);
        }
        for action in actions.drain(..) {
            self.carry_out(action, read_at);
        }
        self.scratch = actions;
    }

    fn on_bus(&mut self, msg: BusMsg<N::Stream>) {
        match msg {
            BusMsg::Up(established) => self.on_up(*established),
            BusMsg::Received(read) => {
                let super::Received {
                    conn,
                    data,
                    checks,
                    at,
                    budget,
                } = *read;
                if self.conns.contains_key(&conn) {
                    self.input(Input::ReceivedPrechecked { conn, data, checks }, Some(at));
                    // What a read makes the node forward leaves at once (one read is already
                    // many frames): relays do not wait for the rest of the batch.
                    self.flush_outboxes();
                }
                // Handled: the budget goes back to the readers.
                drop(budget);
            }
            BusMsg::Ended { conn, side, error } => self.on_ended(conn, side, error),
        }
    }

    /// A TLS session is established: start its tasks, then tell the core.
    fn on_up(&mut self, established: Established<N::Stream>) {
        let Established {
            conn,
            stream,
            peer,
            remote,
            direction,
            dial,
            kx_group,
            slot,
            preauth,
        } = established;
        let slot = Arc::new(slot);
        let (rd, wr) = tokio::io::split(stream);
        let (writer, writer_rx) = mpsc::channel(WRITER_QUEUE);
        let credit = Arc::new(WriteCredit::new(WRITER_QUEUE_BYTES));
        // Log lines of the connection's tasks carry who it is (JSON logs: `span` fields).
        let who = peer.map_or_else(|| "client".to_string(), |p| p.to_string());
        let span = tracing::info_span!("conn", conn = %conn, peer_id = %who, remote = %remote);
        let reader_task = self.tasks.spawn(
            conn::reader(
                ReaderCtx {
                    conn,
                    bus: self.bus_tx.clone(),
                    read_timeout: self.timeouts.read,
                    outbound: direction == Direction::Outbound,
                    origin_auth: self.node.config().origin_auth,
                    counters: Arc::clone(&self.counters),
                    slot: Arc::clone(&slot),
                    budget: Arc::clone(&self.read_budget),
                },
                rd,
            )
            .instrument(span.clone()),
        );
        let writer_task = self.tasks.spawn(
            conn::writer(
                WriterCtx {
                    conn,
                    bus: self.bus_tx.clone(),
                    write_timeout: self.timeouts.write,
                    counters: Arc::clone(&self.counters),
                    slot,
                    credit: Arc::clone(&credit),
                },
                wr,
                writer_rx,
            )
            .instrument(span),
        );
        self.task_ids.insert(reader_task.id(), (conn, Side::Reader));
        self.task_ids.insert(writer_task.id(), (conn, Side::Writer));
        self.conns.insert(
            conn,
            ConnEntry {
                writer,
                credit,
                reader_task,
                writer_task,
                peer,
                remote,
                direction,
                kx_group: kx_group.clone(),
                running: false,
                preauth,
                outbox: Outbox::default(),
            },
        );
        let input = match peer {
            Some(peer) => Input::ConnectionUp {
                conn,
                peer,
                direction,
                remote,
                dial,
                kx_group,
            },
            None => Input::ClientConnectionUp {
                conn,
                remote,
                kx_group,
            },
        };
        self.input(input, None);
    }

    /// The first end reported for a connection closes it; later ones are ignored.
    fn on_ended(&mut self, conn: ConnId, side: Side, error: Option<CoreError>) {
        if side == Side::Reader {
            // The writer still flushes what was sent before the reader ended.
            self.flush_conn(conn);
        }
        let Some(entry) = self.conns.remove(&conn) else {
            return;
        };
        match side {
            // The writer closed the stream: the reader has nothing left to do.
            Side::Writer => entry.reader_task.abort(),
            // Dropping the entry drops the writer's queue: it flushes and closes.
            Side::Reader => {}
        }
        drop(entry);
        self.input(Input::ConnectionClosed { conn, error }, None);
    }

    /// Closes a connection from here (queue full, crashed task): abort its tasks and report it
    /// closed to the core after the current input.
    fn kill_conn(&mut self, conn: ConnId, error: Option<CoreError>) {
        let Some(entry) = self.conns.remove(&conn) else {
            return;
        };
        entry.abort();
        self.pending
            .push_back(Input::ConnectionClosed { conn, error });
    }

    fn on_dial_done(&mut self, done: Result<(TaskId, DialReport<N::Stream>), JoinError>) {
        match done {
            Ok((id, outcome)) => {
                self.dial_tasks.remove(&id);
                match outcome.result {
                    Ok(established) => self.on_up(*established),
                    Err(error) => self.dial_failed(outcome.dial, error),
                }
            }
            Err(e) => {
                let Some(dial) = self.dial_tasks.remove(&e.id()) else {
                    return;
                };
                if e.is_panic() {
                    self.crashed("dial", "dial task panicked");
                    self.dial_failed(dial, CoreError::Refused);
                }
            }
        }
    }

    fn dial_failed(&mut self, dial: DialId, error: CoreError) {
        self.input(Input::DialFailed { dial, error }, None);
    }

    fn on_task_done(&mut self, done: Result<(TaskId, ()), JoinError>) {
        match done {
            Ok((id, ())) => {
                self.task_ids.remove(&id);
            }
            Err(e) => {
                let Some((conn, side)) = self.task_ids.remove(&e.id()) else {
                    return;
                };
                if e.is_panic() {
                    self.crashed(side.task_label(), "connection task panicked");
                    self.kill_conn(conn, None);
                    while let Some(next) = self.pending.pop_front() {
                        self.handle(next, None);
                    }
                }
            }
        }
    }

    fn crashed(&self, task: &'static str, reason: &str) {
        self.counters.restart(task);
        tracing::error!(task, "{reason}");
        self.out.events.send(KernelEvent::ServiceCrashed {
            service: SERVICE.to_string(),
            reason: format!("{task}: {reason}"),
        });
    }

    // ---- commands -----------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Broadcast { payload, reply } => {
                let request = self.next_request();
                self.answer_soon(request, reply, Input::Broadcast { request, payload });
            }
            Command::BroadcastBatch { payloads, reply } => self.broadcast_batch(payloads, reply),
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                let request = self.next_request();
                self.answer_soon(
                    request,
                    reply,
                    Input::Publish {
                        request,
                        topic,
                        payload,
                    },
                );
            }
            Command::Join { topic, reply } => {
                self.pending_topic = Some(reply);
                self.input(Input::Join(topic), None);
                // The core answers every `Input::Join` while the input is drained.
                self.pending_topic = None;
            }
            Command::Leave { topic, reply } => {
                if self.out.topics.forget_if_unheld(topic) {
                    self.pending_topic = reply;
                    self.input(Input::Leave(topic), None);
                    self.pending_topic = None;
                } else if let Some(reply) = reply {
                    let _ = reply.send(Ok(true));
                }
            }
            Command::Topics { reply } => {
                let _ = reply.send(self.node.topics());
            }
            Command::SendDirect {
                peer,
                payload,
                reply,
            } => {
                let request = self.next_request();
                self.sends.insert(request, reply);
                self.input(
                    Input::SendDirect {
                        request,
                        peer,
                        payload,
                    },
                    None,
                );
            }
            Command::SendToClient {
                client,
                payload,
                reply,
            } => {
                let request = self.next_request();
                self.sends.insert(request, reply);
                self.input(
                    Input::SendToClient {
                        request,
                        client,
                        payload,
                    },
                    None,
                );
            }
            Command::Clients { reply } => {
                let _ = reply.send(self.node.clients());
            }
            Command::Dial { addr, reply } => self.on_dial_command(addr, reply),
            Command::AddPeers { addrs } => self.input(Input::PeersDiscovered { addrs }, None),
            Command::Peers { reply } => {
                let _ = reply.send(self.node.sessions());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.node.stats());
            }
            Command::ValidationStats { reply } => {
                let _ = reply.send(self.node.validation_stats());
            }
            Command::Reconfigure { live, reply } => {
                self.pending_reconfigure = Some(reply);
                self.input(Input::Reconfigure(live), None);
                // The core answers every `Input::Reconfigure`; the caller sees a closed channel
                // only if it did not.
                self.pending_reconfigure = None;
            }
            Command::Shutdown => self.begin_shutdown(),
            Command::Verdict { id, verdict } => self.input(Input::Verdict { id, verdict }, None),
        }
    }

    /// Applies a broadcast or publish input; its caller is answered while the input's
    /// actions are carried out (the core answers at once), or later from the map if not.
    fn answer_soon(
        &mut self,
        request: u64,
        reply: oneshot::Sender<Result<MessageId, CoreError>>,
        input: Input,
    ) {
        self.answering = Some((request, reply));
        self.input(input, None);
        if let Some((request, reply)) = self.answering.take() {
            self.broadcasts.insert(request, reply);
        }
    }

    /// Applies one `Input::Broadcast` per payload, in order, collecting the core's answers
    /// as they are given; one reply for the whole batch.
    fn broadcast_batch(&mut self, payloads: Vec<Bytes>, reply: oneshot::Sender<BatchAnswer>) {
        let mut answer = BatchAnswer {
            results: Vec::with_capacity(payloads.len()),
            later: Vec::new(),
        };
        for payload in payloads {
            let request = self.next_request();
            self.collecting = Some((request, None));
            self.input(Input::Broadcast { request, payload }, None);
            match self.collecting.take() {
                Some((_, Some(result))) => answer.results.push(Some(result)),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    self.broadcasts.insert(request, tx);
                    answer.later.push((answer.results.len(), rx));
                    answer.results.push(None);
                }
            }
        }
        let _ = reply.send(answer);
    }

    fn next_request(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// `Input::Dial` tagged with a request; the core answers that tag (`DialAnswer`, then
    /// `SessionEvent::Up` or `DialResult` when the first answer is not final).
    fn on_dial_command(&mut self, addr: SocketAddr, reply: DialWaiter) {
        if self.ready.state() == ReadyState::ShuttingDown {
            let _ = reply.send(Err(Error::Overlay(CoreError::ShuttingDown)));
            return;
        }
        let request = self.next_request();
        self.dials_waiting.insert(request, reply);
        self.input(
            Input::Dial {
                request: Some(request),
                addr,
            },
            None,
        );
    }

    fn on_dial_answer(&mut self, request: Option<u64>, outcome: DialOutcome) {
        let answer = match outcome {
            DialOutcome::Dialing(_) | DialOutcome::Handshaking(_) => return,
            DialOutcome::Connected(conn) => Ok(conn),
            DialOutcome::Refused(e) => Err(e),
        };
        self.answer_dials(request, answer);
    }

    /// Forwards the core's final answer to the callers of these dial tags.
    fn answer_dials(
        &mut self,
        requests: impl IntoIterator<Item = u64>,
        answer: Result<ConnId, CoreError>,
    ) {
        for request in requests {
            if let Some(reply) = self.dials_waiting.remove(&request) {
                let _ = reply.send(
                    answer
                        .map_err(Error::from)
                        .and_then(|conn| self.session_handle(conn)),
                );
            }
        }
    }

    fn session_handle(&self, conn: ConnId) -> Result<SessionHandle, Error> {
        let entry = self
            .conns
            .get(&conn)
            .ok_or(Error::Overlay(CoreError::NotConnected))?;
        let peer = entry.peer.ok_or(Error::Overlay(CoreError::NotConnected))?;
        let cmd = self
            .cmd_weak
            .upgrade()
            .ok_or(Error::Overlay(CoreError::ShuttingDown))?;
        Ok(SessionHandle::new(
            peer,
            conn,
            entry.remote,
            entry.direction,
            entry.kx_group.clone(),
            cmd,
        ))
    }

    fn begin_shutdown(&mut self) {
        if !self.ready.shut_down() {
            return;
        }
        self.out.readiness.send_replace(Readiness {
            ready: false,
            missing: vec!["shutting_down".to_string()],
        });
        self.accept_stop.stop();
        self.input(Input::Shutdown, None);
    }

    // ---- actions ------------------------------------------------------------------------

    fn carry_out(&mut self, action: Action, read_at: Option<TokioInstant>) {
        match action {
            Action::Transmit { conn, data } => self.transmit(conn, data),
            Action::Connect { dial, addr, peer } => {
                let task =
                    self.dials
                        .spawn(dial::dial(Arc::clone(&self.dial_ctx), dial, addr, peer));
                self.dial_tasks.insert(task.id(), dial);
            }
            Action::Close {
                conn,
                reason,
                winner,
            } => self.close(conn, reason, winner),
            Action::DialAnswer {
                request, outcome, ..
            } => self.on_dial_answer(request, outcome),
            Action::DialResult { requests, result } => self.answer_dials(requests, result),
            Action::Deliver(delivery) => {
                let delivery = *delivery;
                if let Some(at) = read_at {
                    rt_metrics::latency("deliver", at.elapsed());
                }
                // Numbered, kept for resuming subscribers, sent to the live ones (none is
                // fine: the message was still delivered to this node).
                if !delivery.topic.is_default() {
                    self.out.topics.deliver(delivery.topic, delivery);
                    return;
                }
                // Kept first, then announced: a reader that has seen it can resume past it.
                self.out.deliveries.publish(delivery.clone());
                self.out
                    .topics
                    .send(delivery.topic, TopicEvent::Received(delivery));
            }
            Action::Validate { id, delivery } => {
                let pending = Box::new(crate::api::PendingValidation {
                    id,
                    delivery: *delivery,
                    cmd: self.cmd_weak.clone(),
                });
                if self.out.validations.try_send(pending).is_err() {
                    tracing::debug!(
                        id,
                        "no room for a pending validation; the core's deadline settles it"
                    );
                }
            }
            Action::DirectMessage { from, payload } => {
                self.out.directs.send(DirectMessage {
                    from,
                    payload,
                    client: None,
                });
            }
            Action::ClientMessage { client, payload } => {
                let from = self.node.identity().peer_id;
                self.out.directs.send(DirectMessage {
                    from,
                    payload,
                    client: Some(client),
                });
            }
            Action::Client(event) => self.on_client_event(event),
            Action::BroadcastResult { request, result } => {
                if let Some((asked, slot)) = self.collecting.as_mut() {
                    if *asked == request {
                        *slot = Some(result);
                        return;
                    }
                }
                let reply = match self.answering.take() {
                    Some((asked, reply)) if asked == request => Some(reply),
                    other => {
                        self.answering = other;
                        self.broadcasts.remove(&request)
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Action::Joined { topic, result } => {
                if result.is_ok() {
                    self.out.topics.set_joined(topic);
                }
                tracing::info!(%topic, ?result, "join");
                if let Some(reply) = self.pending_topic.take() {
                    let _ = reply.send(result);
                }
            }
            Action::Left { topic, result } => {
                tracing::info!(%topic, ?result, "leave");
                if let Some(reply) = self.pending_topic.take() {
                    let _ = reply.send(result);
                }
            }
            Action::SendResult { request, result } => {
                if let Some(reply) = self.sends.remove(&request) {
                    let _ = reply.send(result);
                }
            }
            Action::Session(event) => self.on_session_event(event),
            Action::TopicNeighbor {
                topic,
                peer,
                change,
            } => {
                let event = match change {
                    NeighborChange::Up => TopicEvent::NeighborUp(peer),
                    NeighborChange::Down(reason) => TopicEvent::NeighborDown { peer, reason },
                };
                self.out.topics.send(topic, event);
            }
            Action::Rejected { conn, peer, reason } => {
                // `rejected_total{reason}` mirrors the core's counters; this one says where.
                self.counters.error("core", reason.label());
                tracing::debug!(?conn, ?peer, reason = reason.label(), "rejected");
            }
            Action::Readiness { ready, saturated } => {
                // Shutting down is final: a late "ready" from the core changes nothing.
                if !self.ready.set(ready) {
                    return;
                }
                tracing::info!(ready, ?saturated, "readiness changed");
                self.out.readiness.send_replace(Readiness {
                    ready,
                    missing: saturated,
                });
                self.out.events.send(KernelEvent::Health {
                    service: SERVICE.to_string(),
                    ok: ready,
                });
            }
            Action::Reconfigured(result) => {
                if let Some(reply) = self.pending_reconfigure.take() {
                    let _ = reply.send(*result);
                }
            }
            Action::ShutdownComplete => {
                self.drain_until = Some(TokioInstant::now() + self.timeouts.drain);
                self.dials.abort_all();
            }
        }
    }

    /// Queues the bytes in the connection's outbox (sent to the writer when the node task
    /// next waits), taking their credit now: a writer that cannot keep up is found here, at
    /// the transmit that overflows it.
    fn transmit(&mut self, conn: ConnId, data: Chunks) {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        if !entry.credit.try_take(data.len()) {
            self.writer_full(conn);
            return;
        }
        if entry.outbox.push(data) {
            self.unflushed.push(conn);
        }
        if entry.outbox.bytes >= FLUSH_BYTES {
            // A full TLS record's worth: let the writer start on it while this batch goes on.
            self.flush_conn(conn);
        }
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, winner: Option<ConnId>) {
        if let Some(winner) = winner {
            tracing::debug!(%conn, %winner, reason = reason.label(), "closing the duplicate");
        }
        // What the core sent before closing goes out first.
        self.flush_conn(conn);
        let Some(entry) = self.conns.get(&conn) else {
            return;
        };
        if entry.writer.try_send(WriterMsg::Close).is_err() {
            self.kill_conn(conn, None);
        }
    }

    fn on_client_event(&mut self, event: overlay_proto::ClientEvent) {
        match event {
            overlay_proto::ClientEvent::Up { conn, remote } => {
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.running = true;
                    entry.preauth = None;
                    rt_metrics::kx_group(entry.kx_group.as_deref());
                }
                tracing::info!(%conn, %remote, "client session up");
                self.out.events.send(KernelEvent::ClientUp {
                    client: conn,
                    remote,
                });
            }
            overlay_proto::ClientEvent::Down { conn, reason } => {
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.running = false;
                }
                tracing::info!(%conn, reason = reason.label(), "client session down");
                self.out.events.send(KernelEvent::ClientDown {
                    client: conn,
                    reason: reason.label().to_string(),
                });
            }
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Up {
                conn,
                peer,
                requests,
                ..
            } => {
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.running = true;
                    entry.preauth = None;
                    rt_metrics::kx_group(entry.kx_group.as_deref());
                }
                tracing::info!(%conn, %peer, "session up");
                self.out.events.send(KernelEvent::SessionUp { peer });
                self.answer_dials(requests, Ok(conn));
            }
            SessionEvent::Down { conn, peer, reason } => {
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.running = false;
                }
                tracing::info!(%conn, %peer, reason = reason.label(), "session down");
                self.out.events.send(KernelEvent::SessionDown {
                    peer,
                    reason: reason.label().to_string(),
                });
            }
        }
    }

    // ---- end ----------------------------------------------------------------------------

    async fn finish(mut self) {
        self.flush_outboxes();
        // Whatever did not flush within the drain deadline is cut.
        self.tasks.shutdown().await;
        self.dials.shutdown().await;
        self.accept_stop.stop();
        if let Some(accept) = self.accept_task.take() {
            accept.abort();
        }
        for (_, entry) in self.conns.drain() {
            entry.abort();
        }
        self.dials_waiting.clear();
        self.mirror();
        if let Some(trace) = self.trace.take() {
            trace.finish().await;
        }
        let sessions_open = self
            .node
            .sessions()
            .iter()
            .filter(|s| s.state != SessionState::Closing)
            .count();
        tracing::info!(sessions_open, "overlay stopped");
        self.out.events.send(KernelEvent::Health {
            service: SERVICE.to_string(),
            ok: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_hands_over_its_transmits_in_order_with_their_total_once() {
        let mut outbox = Outbox::default();
        assert!(outbox.take().is_none(), "nothing to send");
        assert!(
            outbox.push(Bytes::from_static(b"first").into()),
            "the first needs a flush"
        );
        // A transmit of two pieces: a header and a payload shared with other connections.
        let payload = Bytes::from(vec![7u8; 300]);
        let mut second = Chunks::from(Bytes::from_static(b"second"));
        second.push(payload.clone());
        assert!(!outbox.push(second));
        assert!(!outbox.push(Bytes::from_static(b"3").into()));
        match outbox.take() {
            Some(WriterMsg::Data(data)) => {
                let WriterBatch { frames, bytes, .. } = *data;
                assert_eq!(
                    frames,
                    vec![&b"first"[..], &b"second"[..], &payload[..], &b"3"[..]]
                );
                assert_eq!(frames[2].as_ptr(), payload.as_ptr(), "shared, not copied");
                assert_eq!(bytes, 12 + 300);
            }
            other => panic!("expected data, got {other:?}"),
        }
        assert!(outbox.take().is_none(), "handed over once");
        assert!(
            outbox.push(Bytes::from_static(b"again").into()),
            "empty again: flush again"
        );
    }
}
