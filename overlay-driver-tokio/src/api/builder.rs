//! [`OverlayBuilder`]: identity, TLS, core settings, peers, seed, trace, limits; then
//! [`OverlayBuilder::build`] binds the listener and starts the runtime.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use overlay_proto::capability::{self, Scope};
use overlay_proto::trace::TraceHeader;
use overlay_proto::{
    AuthConfig, Input, MacKey, Node, NodeConfig, NodeIdentity, OriginAuth, TopicId,
};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::{DeliveryLog, Error, Overlay, Readiness, ReplayBounds, Shared};
use crate::config::{DaemonConfig, DEV_KID};
use crate::feed;
use crate::runtime::accept::{self, AcceptCtx};
use crate::runtime::dial::DialCtx;
use crate::runtime::metrics::DriverCounters;
use crate::runtime::node_task::{NodeTask, NodeTaskParts, Outputs};
use crate::runtime::preauth::PreAuthGate;
use crate::runtime::seeds::{self, PeerTarget, SeedBook};
use crate::runtime::trace_out::TraceSink;
use crate::runtime::{Clock, HttpHandler, Net, Timeouts, TokioNet, SERVICE};
use crate::shared::StopSignal;
use crate::tls::{self, Identity, TlsOptions};

/// Capacity of the bus (socket-side tasks → node task).
const BUS_CAPACITY: usize = 1024;
/// Capacity of the command channel (API → node task).
const COMMAND_CAPACITY: usize = 256;
/// Deliveries buffered per subscriber before the oldest are lost (a [`crate::feed`] holds
/// only what its readers have yet to read, up to this). A subscriber that falls further
/// behind can resume from the replay ring (`Overlay::resume`, 1024 messages by default).
const DELIVERY_CAPACITY: usize = 1024;
/// Direct messages buffered per subscriber.
const DIRECT_CAPACITY: usize = 1024;
/// Kernel events buffered per subscriber.
const EVENT_CAPACITY: usize = 256;

/// Puts the development capability setup into `auth`: the well-known [`MacKey::DEV`] under
/// kid [`DEV_KID`] for `auth.tenant`, and a token minted with it (no caveats) as the node's own
/// token. **Insecure**: anyone can mint such tokens. For loopback dev mode and simulations.
pub fn install_dev_auth(auth: &mut AuthConfig) {
    auth.keys.insert(DEV_KID, auth.tenant.clone(), MacKey::DEV);
    auth.own_token = Some(
        capability::mint(
            &MacKey::DEV,
            &auth.tenant,
            DEV_KID,
            Scope {
                prefix: None,
                methods: Vec::new(),
                max_bytes: None,
            },
            Vec::new(),
        )
        .into(),
    );
}

/// Builds and starts an [`Overlay`].
///
/// ```no_run
/// # async fn demo() -> Result<(), svc_overlay::Error> {
/// use svc_overlay::{Overlay, Timeouts};
/// use overlay_proto::NodeConfig;
///
/// let ov = Overlay::builder()
///     .bind("127.0.0.1:0".parse().map_err(|_| svc_overlay::OverlayError::Malformed)?)
///     .node_config(NodeConfig { alpha: 4, ..NodeConfig::default() })
///     .peers(vec!["127.0.0.1:9415".parse().map_err(|_| svc_overlay::OverlayError::Malformed)?])
///     .seed(7)
///     .max_conns(256)
///     .timeouts(Timeouts::default())
///     .build()
///     .await?;
/// # ov.shutdown().await; Ok(()) }
/// ```
pub struct OverlayBuilder<N: Net = TokioNet> {
    net: N,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    identity: Option<Identity>,
    tls: TlsOptions,
    node_config: NodeConfig,
    peers: Vec<SocketAddr>,
    peer_names: Vec<String>,
    topics: Vec<TopicId>,
    seed: Option<u64>,
    unix_base_secs: Option<u64>,
    trace_out: Option<PathBuf>,
    max_conns: usize,
    timeouts: Timeouts,
    http: Option<HttpHandler<N::Stream>>,
    replay: ReplayBounds,
    event_buffer: usize,
}

impl<N: Net> fmt::Debug for OverlayBuilder<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayBuilder")
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("identity", &self.identity)
            .field("tls", &self.tls)
            .field("peers", &self.peers)
            .field("peer_names", &self.peer_names)
            .field("topics", &self.topics)
            .field("seed", &self.seed)
            .field("trace_out", &self.trace_out)
            .field("max_conns", &self.max_conns)
            .field("timeouts", &self.timeouts)
            .field("http", &self.http.is_some())
            .field("replay", &self.replay)
            .field("event_buffer", &self.event_buffer)
            .finish_non_exhaustive()
    }
}

impl Default for OverlayBuilder<TokioNet> {
    fn default() -> Self {
        OverlayBuilder::with_net(TokioNet)
    }
}

impl OverlayBuilder<TokioNet> {
    /// Defaults over tokio sockets: bind `127.0.0.1:9415`, dev identity and dev key, core
    /// defaults, `max_conns` 1024, OS-random seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for the daemon's resolved configuration: bind address, `max_conns`, peers
    /// (resolved at build), TLS key-exchange mode and CA, identity files (or a dev identity),
    /// core settings, timeouts and trace file.
    pub fn from_daemon_config(cfg: &DaemonConfig) -> Result<Self, Error> {
        let identity = match &cfg.cert_key {
            Some((cert, key)) => Identity::from_pem_files(cert, key)?,
            None => Identity::generate_dev()?,
        };
        let mut tls_opts = TlsOptions {
            pq: cfg.pq,
            ca_roots: None,
        };
        if let Some(ca) = &cfg.ca {
            tls_opts = tls_opts.with_ca_file(ca)?;
        }
        let mut builder = OverlayBuilder::new()
            .bind(cfg.bind)
            .identity(identity)
            .tls(tls_opts)
            .node_config(cfg.node.clone())
            .peer_names(cfg.peers.clone())
            .topics(cfg.topics.iter().map(|n| TopicId::from_name(n)).collect())
            .max_conns(cfg.max_conns)
            .timeouts(Timeouts {
                read: cfg.read,
                write: cfg.write,
                drain: cfg.drain,
            })
            .replay(cfg.http.replay_bounds());
        if let Some(path) = &cfg.trace_out {
            builder = builder.trace_out(path.clone());
        }
        if let Some(addr) = cfg.advertise {
            builder = builder.advertise(addr);
        }
        Ok(builder)
    }
}

impl<N: Net> OverlayBuilder<N> {
    /// Defaults (see [`OverlayBuilder::new`]) over another network, e.g. a simulator's.
    pub fn with_net(net: N) -> Self {
        OverlayBuilder {
            net,
            bind: crate::config::defaults::BIND,
            advertise: None,
            identity: None,
            tls: TlsOptions::default(),
            node_config: NodeConfig::default(),
            peers: Vec::new(),
            peer_names: Vec::new(),
            topics: Vec::new(),
            seed: None,
            unix_base_secs: None,
            trace_out: None,
            max_conns: crate::config::defaults::MAX_CONNS,
            timeouts: Timeouts::default(),
            http: None,
            replay: ReplayBounds::NONE,
            event_buffer: DELIVERY_CAPACITY,
        }
    }

    /// The listen address (port 0 picks a free port; see [`Overlay::local_addr`]).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address advertised to peers (HELLO `listen`, shuffles). Default: the bound address,
    /// except that an unspecified one (`0.0.0.0`, `::`) is never advertised: without this
    /// setting such a node advertises nothing, and peers reach it only through the sessions it
    /// opens itself.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// The TLS identity; default: a generated in-memory dev identity.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Key-exchange policy and CA mode.
    pub fn tls(mut self, opts: TlsOptions) -> Self {
        self.tls = opts;
        self
    }

    /// The core's settings. When `auth.own_token` is `None` the node runs in **dev mode**:
    /// the dev key is added and a dev token minted ([`install_dev_auth`]), and only loopback
    /// bind addresses are accepted. `unix_base_secs` is set at start (see
    /// [`OverlayBuilder::unix_base_secs`]).
    pub fn node_config(mut self, cfg: NodeConfig) -> Self {
        self.node_config = cfg;
        self
    }

    /// Peer addresses offered to membership at start (`Input::PeersDiscovered`).
    pub fn peers(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.peers = addrs;
        self
    }

    /// Topics joined at start and held for the operator (as [`Overlay::join`](super::Overlay::join):
    /// left only by [`Overlay::leave`](super::Overlay::leave)).
    pub fn topics(mut self, topics: Vec<TopicId>) -> Self {
        self.topics = topics;
        self
    }

    /// Configured peers, `host:port` or `peer:<64 hex>@host:port` (only that identity is
    /// accepted from the name's addresses). Names are resolved through [`Net::resolve`] at
    /// start, retried with the membership backoff while they do not resolve, re-resolved every
    /// `backoff_max` after that and before every dial of one of their addresses; new
    /// addresses are offered to membership.
    pub fn peer_names(mut self, names: Vec<String>) -> Self {
        self.peer_names = names;
        self
    }

    /// The core's RNG seed; default: from the OS.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Unix time (seconds) of the core's epoch; default: the system clock at start.
    pub fn unix_base_secs(mut self, secs: u64) -> Self {
        self.unix_base_secs = Some(secs);
        self
    }

    /// Records every input and action to this file (replayable with
    /// `overlay_proto::trace::Replayer`). The file holds keys and payloads: it is created
    /// with mode 0600.
    pub fn trace_out(mut self, path: impl Into<PathBuf>) -> Self {
        self.trace_out = Some(path.into());
        self
    }

    /// Most TCP connections open at once; inbound connections past it are closed at accept.
    pub fn max_conns(mut self, n: usize) -> Self {
        self.max_conns = n;
        self
    }

    /// Socket read/write deadlines and the drain deadline.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How many delivered messages (and payload bytes) are kept for subscribers that resume
    /// ([`Overlay::resume`], the SSE stream's `Last-Event-ID`). Default: none
    /// ([`ReplayBounds::NONE`]); the daemon sets `[http] sse_replay_events` /
    /// `sse_replay_bytes`.
    pub fn replay(mut self, bounds: ReplayBounds) -> Self {
        self.replay = bounds;
        self
    }

    /// How many [`Event`](crate::Event)s each [`Topic`](crate::Topic) stream may fall behind
    /// before it loses the oldest (and reads one [`Event::Lagged`](crate::Event::Lagged)
    /// instead). Default 4096; at least 1.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.max(1);
        self
    }

    /// Where plain-HTTP connections go (first byte an ASCII letter). Without a handler they
    /// are closed.
    pub fn http_handler(mut self, handler: HttpHandler<N::Stream>) -> Self {
        self.http = Some(handler);
        self
    }

    /// Binds the listener and starts the node.
    ///
    /// # Errors
    /// `Config` for invalid settings (or dev mode on a non-loopback address), `Tls` for an
    /// unusable identity or CA, `Io` when the address cannot be bound or the trace file
    /// cannot be created.
    pub async fn build(self) -> Result<Overlay, Error> {
        let OverlayBuilder {
            net,
            bind,
            advertise,
            identity,
            tls: tls_opts,
            node_config: mut cfg,
            mut peers,
            peer_names,
            topics: start_topics,
            seed,
            unix_base_secs,
            trace_out,
            max_conns,
            timeouts,
            http,
            replay,
            event_buffer,
        } = self;

        let identity = match identity {
            Some(identity) => identity,
            None => Identity::generate_dev()?,
        };
        if cfg.origin_auth == OriginAuth::Sign && identity.ed25519_seed().is_none() {
            return Err(Error::Config(format!(
                "origin_auth = \"sign\" needs an Ed25519 identity, but the TLS key is {}: use \
                 an Ed25519 certificate and key (e.g. `openssl genpkey -algorithm ed25519`) or \
                 set [gossip] origin_auth = \"none\" (--origin-auth none)",
                identity.key_algorithm()
            )));
        }
        if cfg.auth.own_token.is_none() {
            if !bind.ip().is_loopback() {
                return Err(Error::Config(format!(
                    "dev mode (no capability token configured) refuses to bind the non-loopback \
                     address {bind}: configure capability keys and a token"
                )));
            }
            tracing::warn!(
                "DEV MODE: using the well-known dev capability key; anyone can mint tokens \
                 for this node. Loopback only; never use in production."
            );
            install_dev_auth(&mut cfg.auth);
        }
        if max_conns == 0 {
            return Err(Error::Config("max_conns must be at least 1".to_string()));
        }
        for (name, d) in [
            ("read", timeouts.read),
            ("write", timeouts.write),
            ("drain", timeouts.drain),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("timeout `{name}` must be > 0")));
            }
        }
        cfg.validate()?;
        if timeouts.read <= cfg.idle_timeout + cfg.tick_interval {
            tracing::warn!(
                read = ?timeouts.read,
                idle = ?cfg.idle_timeout,
                "the read timeout is not above idle_ms: the socket deadline, not the core's \
                 failure detector, may decide that a slow peer is dead"
            );
        }

        let acceptor = TlsAcceptor::from(tls::server_config(&identity, &tls_opts)?);
        let unpinned = tls::client_config(&identity, &tls_opts, None)?;
        let mut targets = Vec::with_capacity(peer_names.len());
        for name in &peer_names {
            targets.push(PeerTarget::parse(name).ok_or_else(|| {
                Error::Config(format!(
                    "peer `{name}`: expected host:port or peer:<64 hex>@host:port"
                ))
            })?);
        }
        if let Some(addr) = advertise {
            if addr.ip().is_unspecified() || addr.port() == 0 {
                return Err(Error::Config(format!(
                    "cannot advertise {addr}: peers cannot dial an unspecified address or port 0"
                )));
            }
        }
        let seed_book = Arc::new(SeedBook::default());
        let (literal, names) = seeds::split_literal(&targets, &seed_book);
        peers.extend(literal);
        let listener = net.bind(bind).await?;
        let local_addr = net.local_addr(&listener)?;
        let seed = match seed {
            Some(seed) => seed,
            None => getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?,
        };
        let node_identity = NodeIdentity {
            peer_id: identity.peer_id(),
            // Never advertise an unspecified address: peers could not dial it.
            listen_addr: advertise.or((!local_addr.ip().is_unspecified()).then_some(local_addr)),
            signing_key: identity.ed25519_seed().cloned(),
        };

        let clock = Clock::start();
        cfg.unix_base_secs = unix_base_secs.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        let node = Node::new(cfg.clone(), node_identity.clone(), seed)?;
        let counters = Arc::new(DriverCounters::default());
        let trace = match &trace_out {
            Some(path) => Some(TraceSink::create(
                path,
                &TraceHeader::new(cfg.clone(), node_identity.clone(), seed),
                Arc::clone(&counters),
            )?),
            None => None,
        };

        let (bus_tx, bus_rx) = mpsc::channel(BUS_CAPACITY);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let deliveries = Arc::new(DeliveryLog::keeping_on_demand(
            DeliveryLog::random_epoch(),
            replay,
            DELIVERY_CAPACITY,
        ));
        let directs = feed::channel(DIRECT_CAPACITY);
        let events = feed::channel(EVENT_CAPACITY);
        let topics = Arc::new(crate::api::TopicBus::new(
            event_buffer,
            replay,
            DELIVERY_CAPACITY,
        ));
        let (validations, validations_rx) =
            tokio::sync::mpsc::channel(cfg.validation_pending_max.max(1));
        let readiness = Arc::new(watch::Sender::new(Readiness {
            ready: true,
            missing: Vec::new(),
        }));
        let (finished_tx, finished_rx) = watch::channel(false);
        let accept_stop = Arc::new(StopSignal::new());
        let next_conn = Arc::new(AtomicU64::new(1));

        let accept_task = tokio::spawn(accept::supervise(AcceptCtx {
            net: net.clone(),
            listener: Arc::new(listener),
            acceptor,
            bus: bus_tx.clone(),
            counters: Arc::clone(&counters),
            max_conns,
            handshake: cfg.handshake_timeout,
            http,
            next_conn: Arc::clone(&next_conn),
            stop: Arc::clone(&accept_stop),
            events: events.clone(),
            seed,
            preauth: PreAuthGate::new(cfg.max_preauth, cfg.max_preauth_per_ip),
        }));
        let resolver = (!names.is_empty()).then(|| {
            seeds::resolve_names(
                net.clone(),
                names,
                Arc::clone(&seed_book),
                cmd_tx.downgrade(),
                seeds::Backoff {
                    base: cfg.backoff_base,
                    max: cfg.backoff_max,
                },
                seed,
            )
        });
        let dial_ctx = Arc::new(DialCtx {
            seeds: seed_book,
            cmd: cmd_tx.downgrade(),
            net,
            identity,
            tls: tls_opts,
            unpinned,
            deadline: cfg.handshake_timeout,
            connect_deadline: cfg.dial_connect_timeout(),
            counters: Arc::clone(&counters),
            next_conn,
        });
        let task = NodeTask::new(NodeTaskParts {
            node,
            clock,
            bus_rx,
            bus_tx,
            cmd_rx,
            cmd_weak: cmd_tx.downgrade(),
            dial_ctx,
            out: Outputs {
                deliveries: Arc::clone(&deliveries),
                directs: directs.clone(),
                events: events.clone(),
                topics: Arc::clone(&topics),
                validations,
                readiness: Arc::clone(&readiness),
            },
            counters: Arc::clone(&counters),
            trace,
            timeouts,
            accept_stop,
            accept_task,
        });
        let mut initial = if peers.is_empty() {
            Vec::new()
        } else {
            vec![Input::PeersDiscovered { addrs: peers }]
        };
        for topic in start_topics {
            if !topic.is_default() {
                topics.set_operator(topic, true);
                initial.push(Input::Join(topic));
            }
        }
        let node_task = tokio::spawn(task.run(initial));
        if let Some(resolver) = resolver {
            tokio::spawn(resolver);
        }
        {
            let events = events.clone();
            let counters = Arc::clone(&counters);
            let readiness = Arc::clone(&readiness);
            tokio::spawn(async move {
                if let Err(e) = node_task.await {
                    if e.is_panic() {
                        counters.restart("node");
                        tracing::error!("the node task crashed; the overlay has stopped");
                        events.send(super::KernelEvent::ServiceCrashed {
                            service: SERVICE.to_string(),
                            reason: "node task panicked".to_string(),
                        });
                    }
                }
                readiness.send_replace(Readiness {
                    ready: false,
                    missing: vec!["stopped".to_string()],
                });
                finished_tx.send_replace(true);
            });
        }
        tracing::info!(
            peer_id = %node_identity.peer_id,
            %local_addr,
            seed,
            "overlay started"
        );
        let handshake = cfg.handshake_timeout;
        Ok(Overlay {
            shared: Arc::new(Shared {
                cmd: cmd_tx,
                deliveries,
                directs,
                events,
                topics,
                validator: std::sync::Mutex::new(Some(super::Validator { rx: validations_rx })),
                readiness: readiness.subscribe(),
                finished: finished_rx,
                local_addr,
                peer_id: node_identity.peer_id,
                counters,
                dial_timeout: handshake * 2 + Duration::from_secs(2),
            }),
        })
    }
}
