//! The [`Node`]: the overlay state machine. One input in, then drain actions.
//!
//! The data path reads top-down: bytes ([`recv`]) → frame → session ([`handshake`]) →
//! gossip ([`gossip`]) → actions ([`send`]). Membership ([`membership`]) and timers
//! ([`maintenance`]) run on the maintenance tick.
//!
//! `Node` routes; the state lives in machines that are tested alone: each topic's
//! [`Plumtree`](crate::plumtree::Plumtree) (links and roles), the node's
//! [`MissingIds`](crate::plumtree::MissingIds) (GRAFT timers),
//! [`Membership`](crate::membership::Membership) (passive list, dials, shuffles) and each
//! connection's [`Session`] (credit, send queue, liveness). The modules here hand each input
//! to the machine that owns the state and turn its answers into frames and actions.

mod claims;
mod client;
mod defense;
mod gossip;
mod handshake;
mod maintenance;
mod membership;
mod optimize;
mod reconfigure;
mod recv;
mod send;
mod token;
mod topics;
mod tree;
mod types;
mod validation;

pub use validation::{ValidationMode, ValidationStats, Verdict};

pub use types::{NodeIdentity, SessionInfo, SessionState};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::mem;

use crate::action::{Action, CloseReason};
use crate::cache::{CacheLimits, MessageCache};
use crate::config::{ConfigError, NodeConfig};
use crate::input::Input;
use crate::peer::{ConnId, PeerId};
use crate::preauth::PreAuthBudget;
use crate::score::ScoreBook;
use crate::session::{Phase, Session};
use crate::sessions::{Sessions, SessionsOutput};
use crate::stats::NodeStats;
use crate::time::Instant;
use crate::topic::TopicId;

use crate::sessions::SessionKey;

/// The overlay state machine. See the crate docs for the driving loop.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    identity: NodeIdentity,
    rng: ChaCha8Rng,
    /// Time of the input being handled (monotonic: never moves backwards).
    now: Instant,
    /// True once the node handled its first input (its start: the link optimizer's burst
    /// is counted from there, not from the clock's epoch).
    started: bool,
    /// The sessions machine: every peer session, its indexes and the handshake rules.
    sessions: Sessions,
    /// The broadcast tree of every topic this node is in (the default topic always).
    trees: BTreeMap<TopicId, crate::plumtree::Plumtree>,
    /// Sessions with bytes in `out` to flush at the end of this input.
    dirty: Vec<SessionKey>,
    cache: MessageCache,
    /// Ids announced and not received yet, their GRAFT timers (every topic).
    missing: crate::plumtree::MissingIds,
    /// The passive list, dials in flight and the shuffle timer.
    membership: crate::membership::Membership,
    next_tick: Instant,
    lazy_flush_at: Option<Instant>,
    actions: VecDeque<Action>,
    stats: NodeStats,
    ready: bool,
    readiness_dirty: bool,
    shutting_down: bool,
    own_token: Option<crate::keys::SecretToken>,
    /// Signs this node's broadcasts (`origin_auth = Sign`).
    signer: Option<crate::origin::OriginSigner>,
    /// When a running session last ended (not as a duplicate or at shutdown): until
    /// `tree_settle` later, no GRAFT is put off.
    session_lost_at: Option<Instant>,
    /// When to rebuild the trees after a failure nearby (transport losses).
    rebuild: crate::rebuild::TreeRebuild,
    /// Content-check verdicts that came with the bytes being handled (empty otherwise).
    prechecked: crate::precheck::Prechecked,
    /// Peer scores and bans (memory only).
    scores: ScoreBook,
    /// Inbound sessions still in HELLO/START.
    preauth: PreAuthBudget,
    /// Tree-optimisation swaps waiting for the announcer to prove its hop claim.
    swap_claims: crate::plumtree::SwapClaims,
    /// Client sessions (connections without a certificate), by connection.
    clients: BTreeMap<ConnId, client::ClientSession>,
    /// Running clients subscribed to deliveries.
    subscribers: client::Subscribers,
    /// Clients with bytes in `out` to flush at the end of this input.
    client_dirty: Vec<ConnId>,
    /// Messages waiting for the application's verdict (`validation = App`).
    validation: validation::PendingValidations,
    /// Bytes of partial frames buffered for all clients together.
    client_buffered: usize,
}

impl Node {
    /// Creates a node. `seed` drives every random choice (peer sampling, jitter, nonces).
    pub fn new(config: NodeConfig, identity: NodeIdentity, seed: u64) -> Result<Node, ConfigError> {
        config.validate()?;
        let signer = identity
            .signing_key
            .as_ref()
            .map(crate::origin::OriginSigner::new);
        if let Some(signer) = &signer {
            if signer.peer_id() != identity.peer_id {
                return Err(ConfigError {
                    setting: "signing_key",
                    accepted:
                        "the Ed25519 key of the identity (its public key must hash to peer_id)",
                });
            }
        }
        if config.origin_auth == crate::origin::OriginAuth::Sign && signer.is_none() {
            return Err(ConfigError {
                setting: "origin_auth",
                accepted:
                    "\"none\", unless the identity has an Ed25519 signing key (\"sign\" needs one)",
            });
        }
        let signer = match config.origin_auth {
            crate::origin::OriginAuth::Sign => signer,
            crate::origin::OriginAuth::None => None,
        };
        let own_token = config.auth.own_token.clone();
        // The hash key comes from a separate stream of the seed: the main RNG's sequence (and so
        // every other random choice) is unchanged by it.
        let mut key_rng = ChaCha8Rng::seed_from_u64(seed);
        key_rng.set_stream(0x1D_4A54);
        let hash_key = [key_rng.next_u64(), key_rng.next_u64()];
        let mention_key = [key_rng.next_u64(), key_rng.next_u64()];
        Ok(Node {
            cache: MessageCache::keyed(
                CacheLimits {
                    seen_capacity: config.seen_capacity,
                    seen_ttl: config.seen_ttl,
                    store_capacity: config.store_capacity,
                    store_bytes: config.store_bytes,
                    store_ttl: config.store_ttl,
                    store_hold: config.graft_miss_grace.saturating_mul(2),
                    store_bytes_held: config.store_bytes_ceiling(),
                },
                hash_key,
            ),
            missing: crate::plumtree::MissingIds::new(hash_key),
            membership: crate::membership::Membership::new(
                crate::membership::Params::of(&config),
                crate::optimizer::Params::of(&config),
                config.passive_capacity,
                Instant::ZERO,
                mention_key,
            ),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            started: false,
            sessions: Sessions::new(),
            trees: BTreeMap::from([(
                TopicId::DEFAULT,
                crate::plumtree::Plumtree::new(crate::plumtree::Params::of(&config)),
            )]),
            dirty: Vec::new(),
            next_tick: Instant::ZERO,

            lazy_flush_at: None,
            actions: VecDeque::new(),
            stats: NodeStats {
                ready: true,
                ..NodeStats::default()
            },
            ready: true,
            readiness_dirty: false,
            shutting_down: false,
            own_token,
            signer,
            session_lost_at: None,
            rebuild: crate::rebuild::TreeRebuild::new(crate::rebuild::Params::of(&config)),
            prechecked: crate::precheck::Prechecked::default(),
            scores: ScoreBook::new(config.scoring.clone(), Instant::ZERO),
            preauth: PreAuthBudget::new(config.max_preauth, config.max_preauth_per_ip),
            swap_claims: crate::plumtree::SwapClaims::new(
                Instant::ZERO,
                config.optimization_swaps_per_s,
            ),
            clients: BTreeMap::new(),
            subscribers: client::Subscribers::new(),
            client_dirty: Vec::new(),
            validation: validation::PendingValidations::default(),
            client_buffered: 0,
            config,
            identity,
        })
    }

    /// Applies one input at time `now`. Drain [`Node::poll_action`] afterwards.
    ///
    /// `now` earlier than a previous input's is treated as the previous time.
    pub fn handle(&mut self, now: Instant, input: Input) {
        if now > self.now {
            self.now = now;
        }
        if !self.started {
            self.started = true;
            self.membership.optimizer_mut().anchor(self.now);
        }
        match input {
            Input::ConnectionUp {
                conn,
                peer,
                direction,
                remote,
                dial,
                kx_group,
            } => self.on_connection_up(conn, peer, direction, remote, dial, kx_group),
            Input::DialFailed { dial, error } => self.on_dial_failed(dial, error),
            Input::Received { conn, data } => {
                self.on_received(conn, data, crate::precheck::Prechecked::default())
            }
            Input::ReceivedPrechecked { conn, data, checks } => {
                self.on_received(conn, data, checks)
            }
            Input::ConnectionClosed { conn, error } => self.on_connection_closed(conn, error),
            Input::Timeout => self.on_timeout(),
            Input::Broadcast { request, payload } => {
                self.on_broadcast(request, TopicId::DEFAULT, payload)
            }
            Input::Publish {
                request,
                topic,
                payload,
            } => self.on_broadcast(request, topic, payload),
            Input::Join(topic) => self.on_join(topic),
            Input::Leave(topic) => self.on_leave(topic),
            Input::SendDirect {
                request,
                peer,
                payload,
            } => self.on_send_direct(request, peer, payload),
            Input::Dial { request, addr } => self.on_operator_dial(request, addr),
            Input::PeersDiscovered { addrs } => self.on_peers_discovered(addrs),
            Input::Reconfigure(live) => self.on_reconfigure(*live),
            Input::Shutdown => self.on_shutdown(),
            Input::Verdict { id, verdict } => self.on_verdict(id, verdict),
            Input::ClientConnectionUp {
                conn,
                remote,
                kx_group,
            } => self.on_client_connection_up(conn, remote, kx_group),
            Input::SendToClient {
                request,
                client,
                payload,
            } => self.on_send_to_client(request, client, payload),
        }
        self.finish_input();
    }

    /// The next action for the driver, or `None` when drained.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the node next needs `Input::Timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.shutting_down && self.sessions.is_empty() {
            return None;
        }
        let mut at = self.next_tick;
        if let Some(flush) = self.lazy_flush_at {
            at = at.min(flush);
        }
        if let Some(deadline) = self.missing_due_at() {
            at = at.min(deadline);
        }
        if let Some(deadline) = self.validation.next_deadline() {
            at = at.min(deadline);
        }
        if let Some(deadline) = self.swap_claims.next_deadline() {
            at = at.min(deadline);
        }
        Some(at)
    }

    /// A snapshot of counters and gauges.
    pub fn stats(&self) -> NodeStats {
        let mut s = self.stats.clone();
        s.sessions_running = self.running_count();
        s.sessions_handshaking = self
            .live_sessions()
            .filter(|(_, sess)| sess.phase.is_handshaking())
            .count();
        let default_tree = self.tree(&TopicId::DEFAULT);
        s.eager_peers = default_tree.map_or(0, |t| t.eager().len());
        s.lazy_peers = default_tree.map_or(0, |t| t.lazy().len());
        s.topics_joined = self.trees.len();
        s.passive_peers = self.membership.passive().len();
        s.dials_in_flight = self.membership.dials_in_flight();
        s.queued_frames = self
            .live_sessions()
            .map(|(_, sess)| sess.queue.frames())
            .sum();
        s.queued_bytes = self
            .live_sessions()
            .map(|(_, sess)| sess.queue.bytes())
            .sum();
        s.seen_len = self.cache.seen_len();
        s.store_len = self.cache.stored_len();
        s.store_bytes = self.cache.stored_bytes();
        s.store_evictions = self.cache.evictions();
        s.ready = self.ready;
        s.preauth_sessions = self.preauth.in_use();
        s.bans_active = self.scores.bans_active(self.now);
        self.client_gauges(&mut s.clients);
        s.lowest_score = self
            .live_sessions()
            .filter(|(_, sess)| sess.is_running())
            .map(|(_, sess)| self.scores.score(&sess.peer))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
            .unwrap_or(0.0);
        s
    }

    /// The score of `peer` with its components (zero for a peer never seen).
    pub fn peer_score(&self, peer: &PeerId) -> crate::score::PeerScore {
        self.scores.view(peer)
    }

    /// False while saturated (drives `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The configuration in force.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Every session, in slab order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.live_sessions()
            .map(|(s_key, s)| SessionInfo {
                conn: s.conn,
                peer: s.peer,
                remote: s.remote,
                listen: s.listen,
                direction: s.direction,
                state: match s.phase {
                    Phase::Running => SessionState::Running,
                    Phase::Closing => SessionState::Closing,
                    _ => SessionState::Handshaking,
                },
                kx_group: s.kx_group.clone(),
                send_credit_frames: s.send_window.frames,
                queued_frames: s.queue.frames(),
                inflight_frames: s.inflight_frames,
                eager: self
                    .tree(&TopicId::DEFAULT)
                    .is_some_and(|t| t.is_eager(s_key)),
                score: self.scores.view(&s.peer),
            })
            .collect()
    }

    /// The peer ids of running sessions, in slab order.
    pub fn running_peers(&self) -> Vec<PeerId> {
        self.live_sessions()
            .filter(|(_, s)| s.is_running())
            .map(|(_, s)| s.peer)
            .collect()
    }

    fn live_sessions(&self) -> impl Iterator<Item = (SessionKey, &Session)> {
        self.sessions.iter()
    }

    fn session(&self, key: SessionKey) -> Option<&Session> {
        self.sessions.get(key)
    }

    fn session_mut(&mut self, key: SessionKey) -> Option<&mut Session> {
        self.sessions.get_mut(key)
    }

    /// Sessions through START (they count toward `max_sessions` and readiness).
    fn running_count(&self) -> usize {
        self.sessions.running_count()
    }

    /// Sessions that fill the active view: running ones and our own dials still handshaking
    /// (inbound connections before START live on the pre-auth budget and do not count).
    fn membership_count(&self) -> usize {
        self.sessions.membership_count()
    }

    /// Carries out the sessions machine's decisions, in the order it made them: closes
    /// (a connection to ourselves first makes membership forget its address; a handshake
    /// timeout and an unresponsive peer are counted) and sessions up.
    fn drain_sessions(&mut self) {
        while let Some(output) = self.sessions.poll_output() {
            match output {
                SessionsOutput::Close {
                    key,
                    reason,
                    winner,
                } => {
                    match reason {
                        CloseReason::SelfConnection => {
                            if let Some(remote) = self.session(key).map(|s| s.remote) {
                                self.membership.forget(&remote);
                            }
                        }
                        CloseReason::HandshakeTimeout => {
                            self.count_reject(key, crate::stats::RejectReason::HandshakeTimeout);
                        }
                        CloseReason::PeerUnresponsive => self.stats.peers_unresponsive += 1,
                        _ => {}
                    }
                    self.close_session_for(key, reason, winner);
                }
                SessionsOutput::Up { key, started } => self.on_session_up(key, started),
            }
        }
    }

    fn random_below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        (self.rng.next_u64() % n as u64) as usize
    }

    /// End-of-input work: flush session buffers into `Transmit` actions, re-evaluate readiness.
    fn finish_input(&mut self) {
        if self.readiness_dirty {
            self.readiness_dirty = false;
            self.evaluate_readiness();
        }
        self.flush_dirty();
        self.flush_clients();
    }

    /// Removes a session: emits its last bytes, `Session::Down` (if it was running) and
    /// `Close`. Gossip roles pass to other sessions.
    fn close_session(&mut self, key: SessionKey, reason: CloseReason) {
        self.close_session_for(key, reason, None);
    }

    /// [`Node::close_session`], naming the session that won a duplicate tie-break in `Close`.
    fn close_session_for(&mut self, key: SessionKey, reason: CloseReason, winner: Option<ConnId>) {
        let Some(mut session) = self.sessions.remove(key) else {
            return;
        };
        let was_running = session.is_running();
        self.on_session_leaving(&session, reason);
        // A banned peer that never gave this node a first copy fed no part of its tree: its
        // loss leaves the tree as it was (no lazy link promoted in its place, unless no
        // eager link is left, and the tree stays settled).
        let idle_ban = self.config.idle_ban_keeps_tree
            && self.scores.is_peer_banned(&session.peer, self.now)
            && !self.fed_any_tree(key);
        let mut eager_in = self.remove_from_trees(key, session.peer, reason);
        if idle_ban {
            let trees = &self.trees;
            eager_in.retain(|topic| trees.get(topic).is_some_and(|t| t.eager().is_empty()));
        }
        self.dirty.retain(|k| *k != key);
        if let Some(code) = reason.wire_code() {
            if reason != CloseReason::TransportClosed {
                send::write_error_frame(&self.config, session.out.tail_mut(), code, reason.label());
            }
        }
        let dropped = session.queue.clear();
        if dropped > 0 {
            for _ in 0..dropped {
                self.stats
                    .rejected
                    .bump(crate::stats::RejectReason::QueueFull);
            }
        }
        if !session.out.is_empty() && reason != CloseReason::TransportClosed {
            self.stats.bytes_out += session.out.len() as u64;
            self.actions.push_back(Action::Transmit {
                conn: session.conn,
                data: session.out.take(),
            });
        }
        self.stats.sessions_closed += 1;
        // A link closed for a faster one was lazy everywhere: no subtree of ours needs repair.
        if was_running
            && !idle_ban
            && !matches!(
                reason,
                CloseReason::Duplicate | CloseReason::Shutdown | CloseReason::Optimized
            )
        {
            self.session_lost_at = Some(self.now);
            if reason == CloseReason::TransportClosed {
                self.rebuild.on_transport_loss(self.now);
            }
        }
        if was_running {
            self.actions
                .push_back(Action::Session(crate::action::SessionEvent::Down {
                    conn: session.conn,
                    peer: session.peer,
                    reason,
                }));
        } else if !matches!(
            reason,
            CloseReason::Duplicate
                | CloseReason::SelfConnection
                | CloseReason::Shutdown
                | CloseReason::Optimized
        ) {
            self.stats.handshake_failures += 1;
        }
        let waiting = mem::take(&mut session.dial_requests);
        self.settle_dial_requests(waiting, Err(reason.caller_error()));
        if reason != CloseReason::TransportClosed {
            self.actions.push_back(Action::Close {
                conn: session.conn,
                reason,
                winner,
            });
        }
        self.after_session_removed(&session, &eager_in, reason);
    }
}
