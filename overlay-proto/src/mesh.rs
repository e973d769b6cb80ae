//! A deterministic in-memory network of [`Node`]s with virtual time: the test harness of the
//! core (like quinn's `Pair`, scaled to N nodes) and the network model of the simulator's
//! large-scale mode.
//!
//! Each connection gets a latency drawn uniformly from a range; bytes on a connection arrive
//! in order. Loss is modelled the way TCP experiences it: a lost segment is retransmitted
//! after an RTO, delaying it and everything behind it (with [`Mesh::set_loss_backoff`], the
//! retransmission can be lost again and the RTO doubles each time, as in TCP). A killed node
//! vanishes; its peers see their connections close one latency later, and dials to it fail.
//! A node killed silently ([`Mesh::kill_silently`]: power loss, a partition without RST, a
//! frozen process) vanishes without a trace: bytes sent to it are lost, its peers see nothing
//! close, and dials to it time out after the connect deadline. A stalled node stops reading
//! its sockets (a slow consumer): bytes for it are held, bounded only by what its peers'
//! credit windows allow.
//!
//! A node may be wrapped in a [`NodeShim`]: simulator-side behaviour (an adversary, an
//! observer) that sees the node's inputs before it and its actions before the network. The
//! node inside is the unchanged core.

use bytes::Bytes;
use core::net::{Ipv4Addr, SocketAddr};
use core::time::Duration;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use crate::action::{Action, CloseReason, SessionEvent};
use crate::config::NodeConfig;
use crate::error::OverlayError;
use crate::idhash::IdMap;
use crate::input::Input;
use crate::node::{Node, NodeIdentity};
use crate::origin::SigningSeed;
use crate::peer::{ConnId, DialId, Direction, MessageId, PeerId};
use crate::stats::NodeStats;
use crate::time::Instant;
use crate::trace::ActionDigest;

/// Parameters of a mesh.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Seed for identities, node RNGs, latencies, loss and bootstrap choices.
    pub seed: u64,
    /// Smallest one-way latency of a connection.
    pub latency_min: Duration,
    /// Largest one-way latency of a connection.
    pub latency_max: Duration,
    /// Probability that a transmission is lost once and retransmitted after `rto`.
    pub loss: f64,
    /// Retransmission delay for a lost transmission.
    pub rto: Duration,
    /// Configuration of every node.
    pub node_config: NodeConfig,
    /// How many random other nodes each node is told about at start.
    pub bootstrap_peers: usize,
    /// Keep per-message delivery records (needed for reliability and latency figures).
    pub track_deliveries: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        let mut node_config = NodeConfig::default();
        node_config.auth.require_token = false;
        MeshConfig {
            nodes: 10,
            seed: 1,
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
            rto: Duration::from_millis(200),
            node_config,
            bootstrap_peers: 5,
            track_deliveries: true,
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Input { node: usize, input: Input },
    Timer { node: usize, at: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Link {
    peer_node: usize,
    peer_conn: ConnId,
    latency: Duration,
    /// Latest scheduled arrival on this direction (keeps bytes in order).
    last_arrival: Instant,
}

/// Simulator-side behaviour wrapped around one node of a [`Mesh`]: an adversary that rewrites,
/// drops or injects frames, or an observer that checks what the node delivers. The node inside
/// is the unchanged core; the shim only sees and edits what crosses its boundary.
pub trait NodeShim: core::fmt::Debug + Send {
    /// `input` is about to reach the node at `now`. Push what the node gets instead onto
    /// `to_node`: `input` itself, a rewritten input, extra inputs, or nothing.
    fn on_input(&mut self, now: Instant, input: Input, to_node: &mut Vec<Input>);

    /// The node's actions of one step, before the mesh carries them out: drop, rewrite or add
    /// to `actions` (for example `Transmit`s on the node's own connections). Inputs pushed onto
    /// `to_node` are handed to the node at once and its new actions come back here (a few
    /// rounds at most per step).
    fn on_actions(&mut self, now: Instant, actions: &mut Vec<Action>, to_node: &mut Vec<Input>);

    /// When the shim wants an [`Input::Timeout`] of its own (it arrives through
    /// [`NodeShim::on_input`] like the node's timeouts). `None`: only the node's timer.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// Rounds of shim feedback (`to_node` inputs from `on_actions`) handled within one step.
const MAX_SHIM_ROUNDS: usize = 4;

#[derive(Debug)]
struct MeshNode {
    node: Option<Node>,
    shim: Option<Box<dyn NodeShim>>,
    identity: NodeIdentity,
    links: BTreeMap<ConnId, Link>,
    next_conn: u64,
    timer_at: Option<Instant>,
    stalled: bool,
    /// Killed without closing anything: dials to it time out instead of being refused.
    silent: bool,
    /// Frozen (a stopped process): inputs wait in `frozen_inputs`, timers do not fire.
    frozen: bool,
    frozen_inputs: Vec<Input>,
    held: Vec<(ConnId, Bytes)>,
    held_bytes: usize,
    max_held_bytes: usize,
}

/// Where and when one message was delivered.
#[derive(Debug, Clone, Default)]
pub struct MessageTrack {
    /// Node that broadcast it.
    pub origin: usize,
    /// Broadcast time.
    pub sent_at: Instant,
    /// `(node, time, hops)` per first delivery.
    pub delivered: Vec<(usize, Instant, u8)>,
    /// The peer each first delivery came from (`Delivery::from`), parallel to `delivered`.
    pub delivered_from: Vec<PeerId>,
}

/// A session that ended, as the node that ended it reported (`SessionEvent::Down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionDown {
    /// When.
    pub at: Instant,
    /// The node whose session ended.
    pub node: usize,
    /// The node at the other end, when the connection was still known.
    pub peer: Option<usize>,
    /// Why.
    pub reason: CloseReason,
}

/// The network.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    nodes: Vec<MeshNode>,
    by_addr: BTreeMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    now: Instant,
    rng: ChaCha8Rng,
    digest: ActionDigest,
    tracks: IdMap<MessageId, MessageTrack>,
    next_request: u64,
    last_broadcast: Option<Result<MessageId, OverlayError>>,
    processed: u64,
    loss_backoff: bool,
    jitter: Duration,
    downs: Option<Vec<SessionDown>>,
}

/// Address of node `i` in a mesh.
pub fn node_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from((
        Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8),
        9415,
    ))
}

/// Ed25519 signing seed of node `i` of a mesh with this seed (derived, so runs repeat).
pub fn node_signing_seed(seed: u64, i: usize) -> SigningSeed {
    let mut material = [0u8; 16];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..].copy_from_slice(&(i as u64).to_be_bytes());
    SigningSeed(blake3::derive_key(
        "svc-overlay mesh node identity v2",
        &material,
    ))
}

/// Identity of node `i` of a mesh with this seed: the PeerId of its Ed25519 key, so the
/// mesh runs in both `origin_auth` modes.
pub fn node_peer_id(seed: u64, i: usize) -> PeerId {
    node_signing_seed(seed, i).peer_id()
}

impl Mesh {
    /// Builds the mesh and tells every node about `bootstrap_peers` random others.
    pub fn new(config: MeshConfig) -> Result<Mesh, crate::config::ConfigError> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut nodes = Vec::with_capacity(config.nodes);
        let mut by_addr = BTreeMap::new();
        for i in 0..config.nodes {
            let identity = NodeIdentity::from_signing_seed(
                node_signing_seed(config.seed, i),
                Some(node_addr(i)),
            );
            let node = Node::new(config.node_config.clone(), identity.clone(), rng.next_u64())?;
            by_addr.insert(node_addr(i), i);
            nodes.push(MeshNode {
                node: Some(node),
                shim: None,
                identity,
                links: BTreeMap::new(),
                next_conn: 1,
                timer_at: None,
                stalled: false,
                silent: false,
                frozen: false,
                frozen_inputs: Vec::new(),
                held: Vec::new(),
                held_bytes: 0,
                max_held_bytes: 0,
            });
        }
        let mut mesh = Mesh {
            nodes,
            by_addr,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            now: Instant::ZERO,
            rng,
            digest: ActionDigest::new(),
            tracks: IdMap::default(),
            next_request: 1,
            last_broadcast: None,
            processed: 0,
            loss_backoff: false,
            jitter: Duration::ZERO,
            downs: None,
            config,
        };
        let n = mesh.config.nodes;
        for i in 0..n {
            let mut addrs = Vec::new();
            let want = mesh.config.bootstrap_peers.min(n.saturating_sub(1));
            while addrs.len() < want {
                let j = (mesh.rng.next_u64() % n as u64) as usize;
                if j != i && !addrs.contains(&node_addr(j)) {
                    addrs.push(node_addr(j));
                }
            }
            mesh.schedule(
                Instant::ZERO,
                Event::Input {
                    node: i,
                    input: Input::PeersDiscovered { addrs },
                },
            );
        }
        Ok(mesh)
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Number of nodes (alive or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the mesh has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True when node `i` is alive.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.node.is_some())
    }

    /// The node, when alive.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(|n| n.node.as_ref())
    }

    /// The eager links of every live node in its default topic, as directed (node, peer node)
    /// pairs: node `i` pushes to the peer eagerly.
    pub fn eager_links(&self) -> BTreeSet<(usize, usize)> {
        let index: BTreeMap<PeerId, usize> = (0..self.len())
            .map(|i| (node_peer_id(self.config.seed, i), i))
            .collect();
        let mut links = BTreeSet::new();
        for (i, node) in (0..self.len()).filter_map(|i| self.node(i).map(|n| (i, n))) {
            for s in node.sessions() {
                if let (true, Some(&j)) = (s.eager, index.get(&s.peer)) {
                    links.insert((i, j));
                }
            }
        }
        links
    }

    /// Stats of node `i`, when alive.
    pub fn stats(&self, i: usize) -> Option<NodeStats> {
        self.node(i).map(Node::stats)
    }

    /// Inputs processed so far (all nodes).
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Fingerprint of every action of every node so far.
    pub fn digest(&self) -> [u8; 32] {
        self.digest.finish()
    }

    /// Delivery records by message.
    pub fn track(&self, id: &MessageId) -> Option<&MessageTrack> {
        self.tracks.get(id)
    }

    /// Wraps node `i` in `shim` (replacing any earlier one). The shim takes effect from the
    /// node's next input.
    pub fn set_shim(&mut self, i: usize, shim: Box<dyn NodeShim>) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.shim = Some(shim);
        }
    }

    /// The one-way latencies of node `i`'s connections (any state), in connection order.
    pub fn link_latencies(&self, i: usize) -> Vec<Duration> {
        self.nodes
            .get(i)
            .map(|n| n.links.values().map(|l| l.latency).collect())
            .unwrap_or_default()
    }

    /// Most bytes ever held for a stalled node.
    pub fn max_held_bytes(&self, i: usize) -> usize {
        self.nodes.get(i).map_or(0, |n| n.max_held_bytes)
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((at, id)));
    }

    fn latency(&mut self) -> Duration {
        let min = self.config.latency_min.as_nanos() as u64;
        let max = self.config.latency_max.as_nanos() as u64;
        let span = max.saturating_sub(min);
        let extra = if span == 0 {
            0
        } else {
            self.rng.next_u64() % (span + 1)
        };
        Duration::from_nanos(min + extra)
    }

    /// Applies an input to node `i` now and processes its actions.
    pub fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        self.apply(i, now, input);
    }

    /// Broadcasts from node `i` now (default topic). Returns the message id when accepted.
    pub fn broadcast(&mut self, i: usize, payload: Bytes) -> Result<MessageId, OverlayError> {
        let request = self.next_request;
        self.next_request += 1;
        self.originate(i, Input::Broadcast { request, payload })
    }

    /// Broadcasts from node `i` now to `topic`. Returns the message id when accepted.
    pub fn publish(
        &mut self,
        i: usize,
        topic: crate::topic::TopicId,
        payload: Bytes,
    ) -> Result<MessageId, OverlayError> {
        let request = self.next_request;
        self.next_request += 1;
        self.originate(
            i,
            Input::Publish {
                request,
                topic,
                payload,
            },
        )
    }

    fn originate(&mut self, i: usize, input: Input) -> Result<MessageId, OverlayError> {
        self.last_broadcast = None;
        self.input(i, input);
        let result = self
            .last_broadcast
            .take()
            .unwrap_or(Err(OverlayError::ShuttingDown));
        if let Ok(id) = result {
            if self.config.track_deliveries {
                self.tracks.insert(
                    id,
                    MessageTrack {
                        origin: i,
                        sent_at: self.now,
                        delivered: Vec::new(),
                        delivered_from: Vec::new(),
                    },
                );
            }
        }
        result
    }

    /// Kills node `i`: it vanishes, its peers see their connections close.
    pub fn kill(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.node = None;
        n.timer_at = None;
        n.held.clear();
        let links: Vec<Link> = std::mem::take(&mut n.links).into_values().collect();
        let now = self.now;
        for link in links {
            self.schedule(
                now + link.latency,
                Event::Input {
                    node: link.peer_node,
                    input: Input::ConnectionClosed {
                        conn: link.peer_conn,
                        error: Some(OverlayError::Refused),
                    },
                },
            );
        }
    }

    /// Kills node `i` silently: it stops answering, and nothing tells its peers (no FIN, no
    /// RST). Bytes sent to it vanish; dials to it fail with `Timeout` after the connect
    /// deadline (`NodeConfig::connect_timeout`), as a TCP connect to a dead host does. Only
    /// its peers' failure detectors can notice.
    pub fn kill_silently(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.node = None;
        n.silent = true;
        n.timer_at = None;
        n.held.clear();
        n.links.clear();
    }

    /// When on, a retransmission can be lost again (with the same probability), and each
    /// further loss doubles the RTO: a transmission lost `k` times in a row arrives
    /// `rto · (2^k − 1)` late. Off (the default), a loss costs exactly one RTO.
    pub fn set_loss_backoff(&mut self, on: bool) {
        self.loss_backoff = on;
    }

    /// Adds a delay drawn uniformly from `[0, jitter]` to every transmission (bytes on a
    /// connection still arrive in order, so a late one holds back those behind it).
    pub fn set_jitter(&mut self, jitter: Duration) {
        self.jitter = jitter;
    }

    /// Freezes node `i` like a stopped process (SIGSTOP): it neither reads, nor runs its
    /// timers, nor sends; its connections stay open and its peers see only silence. Inputs
    /// from the network wait, in order, until [`Mesh::thaw`] (inputs given directly with
    /// [`Mesh::input`] or [`Mesh::broadcast`] are still applied at once).
    pub fn freeze(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.frozen = n.node.is_some();
        }
    }

    /// Resumes a frozen node: its overdue timer runs first (as a driver's loop would), then
    /// everything that arrived meanwhile, in order.
    pub fn thaw(&mut self, i: usize) {
        let waiting = match self.nodes.get_mut(i) {
            Some(n) if n.frozen => {
                n.frozen = false;
                n.timer_at = None;
                std::mem::take(&mut n.frozen_inputs)
            }
            _ => return,
        };
        let now = self.now;
        self.apply(i, now, Input::Timeout);
        for input in waiting {
            self.deliver_input(i, input);
        }
    }

    /// Starts (or stops) recording every `SessionEvent::Down` of every node.
    pub fn record_session_downs(&mut self, on: bool) {
        self.downs = on.then(Vec::new);
    }

    /// Sessions that ended since recording started, in the order they ended.
    pub fn session_downs(&self) -> &[SessionDown] {
        self.downs.as_deref().unwrap_or(&[])
    }

    /// Stalls (or resumes) node `i`'s reading. Resuming delivers everything held.
    pub fn set_stalled(&mut self, i: usize, stalled: bool) {
        let held = match self.nodes.get_mut(i) {
            Some(n) => {
                n.stalled = stalled;
                if stalled {
                    return;
                }
                n.held_bytes = 0;
                std::mem::take(&mut n.held)
            }
            None => return,
        };
        for (conn, data) in held {
            self.input(i, Input::Received { conn, data });
        }
    }

    /// Runs events until virtual time `until` (inclusive).
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(event) = self.events.remove(&id) else {
                continue;
            };
            self.now = self.now.max(at);
            match event {
                Event::Input { node, input } => self.deliver_input(node, input),
                Event::Timer { node, at } => {
                    let due = self
                        .nodes
                        .get(node)
                        .is_some_and(|n| n.timer_at == Some(at) && !n.frozen);
                    if due {
                        if let Some(n) = self.nodes.get_mut(node) {
                            n.timer_at = None;
                        }
                        self.apply(node, at, Input::Timeout);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs events for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn deliver_input(&mut self, i: usize, input: Input) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.node.is_none() {
            return;
        }
        if n.frozen {
            n.frozen_inputs.push(input);
            return;
        }
        if let Input::Received { conn, data } = input {
            if n.stalled {
                n.held_bytes += data.len();
                n.max_held_bytes = n.max_held_bytes.max(n.held_bytes);
                n.held.push((conn, data));
                return;
            }
            let now = self.now;
            self.apply(i, now, Input::Received { conn, data });
            return;
        }
        let now = self.now;
        self.apply(i, now, input);
    }

    fn apply(&mut self, i: usize, now: Instant, input: Input) {
        if self.nodes.get(i).is_some_and(|n| n.shim.is_some()) {
            self.apply_shimmed(i, now, input);
            return;
        }
        let Some(node) = self.nodes.get_mut(i).and_then(|n| n.node.as_mut()) else {
            return;
        };
        self.processed += 1;
        node.handle(now, input);
        let mut actions = Vec::new();
        while let Some(a) = node.poll_action() {
            actions.push(a);
        }
        let timeout = node.poll_timeout();
        self.digest.update_raw(&(i as u64).to_be_bytes());
        for a in &actions {
            self.digest.update(a);
        }
        for a in actions {
            self.carry_out(i, a);
        }
        if let Some(at) = timeout {
            let at = at.max(now);
            let n = &mut self.nodes[i];
            if n.timer_at != Some(at) {
                n.timer_at = Some(at);
                self.schedule(at, Event::Timer { node: i, at });
            }
        }
    }

    /// [`Mesh::apply`] for a node wrapped in a [`NodeShim`].
    fn apply_shimmed(&mut self, i: usize, now: Instant, input: Input) {
        let mut pending = Vec::new();
        let mut actions = Vec::new();
        match self.nodes.get_mut(i) {
            Some(MeshNode {
                node: Some(_),
                shim: Some(shim),
                ..
            }) => shim.on_input(now, input, &mut pending),
            _ => return,
        }
        for _ in 0..MAX_SHIM_ROUNDS {
            let Some(MeshNode {
                node: Some(node),
                shim: Some(shim),
                ..
            }) = self.nodes.get_mut(i)
            else {
                return;
            };
            for input in pending.drain(..) {
                self.processed += 1;
                node.handle(now, input);
            }
            while let Some(a) = node.poll_action() {
                actions.push(a);
            }
            shim.on_actions(now, &mut actions, &mut pending);
            self.digest.update_raw(&(i as u64).to_be_bytes());
            for a in &actions {
                self.digest.update(a);
            }
            for a in actions.drain(..) {
                self.carry_out(i, a);
            }
            if pending.is_empty() {
                break;
            }
        }
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        let node_at = n.node.as_ref().and_then(Node::poll_timeout);
        let shim_at = n.shim.as_ref().and_then(|s| s.poll_timeout());
        let timeout = match (node_at, shim_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = timeout {
            let at = at.max(now);
            if n.timer_at != Some(at) {
                n.timer_at = Some(at);
                self.schedule(at, Event::Timer { node: i, at });
            }
        }
    }

    fn carry_out(&mut self, i: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Transmit { conn, data } => {
                let delay = self.loss_delay();
                let Some(link) = self.nodes.get_mut(i).and_then(|n| n.links.get_mut(&conn)) else {
                    return;
                };
                let mut at = now + link.latency + delay;
                at = at.max(link.last_arrival);
                link.last_arrival = at;
                let (peer_node, peer_conn) = (link.peer_node, link.peer_conn);
                self.schedule(
                    at,
                    Event::Input {
                        node: peer_node,
                        input: Input::Received {
                            conn: peer_conn,
                            data: data.to_bytes(),
                        },
                    },
                );
            }
            Action::Connect { dial, addr, .. } => self.connect(i, dial, addr),
            Action::Close { conn, .. } => {
                if let Some(link) = self.nodes.get_mut(i).and_then(|n| n.links.remove(&conn)) {
                    let at = (now + link.latency).max(link.last_arrival);
                    if let Some(peer) = self.nodes.get_mut(link.peer_node) {
                        peer.links.remove(&link.peer_conn);
                    }
                    self.schedule(
                        at,
                        Event::Input {
                            node: link.peer_node,
                            input: Input::ConnectionClosed {
                                conn: link.peer_conn,
                                error: None,
                            },
                        },
                    );
                }
            }
            Action::Session(SessionEvent::Down { conn, reason, .. }) => {
                let peer = self
                    .nodes
                    .get(i)
                    .and_then(|n| n.links.get(&conn))
                    .map(|l| l.peer_node);
                if let Some(downs) = self.downs.as_mut() {
                    downs.push(SessionDown {
                        at: now,
                        node: i,
                        peer,
                        reason,
                    });
                }
            }
            Action::Deliver(d) => {
                if let Some(track) = self.tracks.get_mut(&d.id) {
                    track.delivered.push((i, now, d.hops));
                    track.delivered_from.push(d.from);
                }
            }
            Action::BroadcastResult { result, .. } => self.last_broadcast = Some(result),
            _ => {}
        }
    }

    /// True with the configured loss probability.
    fn draw_loss(&mut self) -> bool {
        self.config.loss > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.config.loss
    }

    /// Extra delay of one transmission: jitter, then loss and retransmission.
    fn loss_delay(&mut self) -> Duration {
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            let span = self.jitter.as_nanos() as u64;
            Duration::from_nanos(self.rng.next_u64() % (span + 1))
        };
        if !self.draw_loss() {
            return jitter;
        }
        let mut rto = self.config.rto;
        let mut delay = rto;
        if self.loss_backoff {
            // TCP gives up long before 2^16 RTOs; the cap only bounds the loop.
            for _ in 0..16 {
                if !self.draw_loss() {
                    break;
                }
                rto *= 2;
                delay += rto;
            }
        }
        jitter + delay
    }

    fn connect(&mut self, i: usize, dial: DialId, addr: SocketAddr) {
        let now = self.now;
        let latency = self.latency();
        let target = self.by_addr.get(&addr).copied();
        let silent_target = target.is_some_and(|t| self.nodes.get(t).is_some_and(|n| n.silent));
        let target = target.filter(|t| self.is_alive(*t));
        if target.is_none() && silent_target {
            // Nothing answers: the dial runs into the connect deadline.
            let deadline = self.config.node_config.dial_connect_timeout();
            self.schedule(
                now + deadline,
                Event::Input {
                    node: i,
                    input: Input::DialFailed {
                        dial,
                        error: OverlayError::Timeout,
                    },
                },
            );
            return;
        }
        let Some(t) = target else {
            self.schedule(
                now + latency * 2,
                Event::Input {
                    node: i,
                    input: Input::DialFailed {
                        dial,
                        error: OverlayError::Refused,
                    },
                },
            );
            return;
        };
        let (Some(a), Some(b)) = (self.nodes.get(i), self.nodes.get(t)) else {
            return;
        };
        let (a_id, b_id) = (a.identity.peer_id, b.identity.peer_id);
        let a_conn = ConnId(self.nodes[i].next_conn);
        self.nodes[i].next_conn += 1;
        let b_conn = ConnId(self.nodes[t].next_conn);
        self.nodes[t].next_conn += 1;
        // TCP + TLS 1.3: the server sees the connection after 1.5 RTT, the client after 2.
        let server_up = now + latency * 3;
        let client_up = now + latency * 4;
        self.nodes[i].links.insert(
            a_conn,
            Link {
                peer_node: t,
                peer_conn: b_conn,
                latency,
                last_arrival: client_up,
            },
        );
        self.nodes[t].links.insert(
            b_conn,
            Link {
                peer_node: i,
                peer_conn: a_conn,
                latency,
                last_arrival: server_up,
            },
        );
        let a_addr = SocketAddr::from((Ipv4Addr::new(10, 255, (i >> 8) as u8, i as u8), 40_000));
        self.schedule(
            server_up,
            Event::Input {
                node: t,
                input: Input::ConnectionUp {
                    conn: b_conn,
                    peer: a_id,
                    direction: Direction::Inbound,
                    remote: a_addr,
                    dial: None,
                    kx_group: Some("X25519MLKEM768".into()),
                },
            },
        );
        self.schedule(
            client_up,
            Event::Input {
                node: i,
                input: Input::ConnectionUp {
                    conn: a_conn,
                    peer: b_id,
                    direction: Direction::Outbound,
                    remote: addr,
                    dial: Some(dial),
                    kx_group: Some("X25519MLKEM768".into()),
                },
            },
        );
    }
}
