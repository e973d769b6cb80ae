//! Helpers shared by overlay-proto's integration tests: raw OAP/1 frames, capability tokens,
//! nodes with fake identities and [`Bed`], one node driven by hand by raw peers. A test file takes it with `mod support;` and uses what it needs;
//! each test binary compiles its own copy, so the helpers one file leaves unused are dead code
//! there (hence the allow).

#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::capability::{mint, Caveat, Scope};
use overlay_proto::frame::{self, flags, Header};
use overlay_proto::score::Penalty;
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{
    Action, CloseReason, ConnId, Direction, Input, Instant, MacKey, MessageId, Node, NodeConfig,
    NodeIdentity, OriginAuth, OverlayError, PeerId, SessionEvent,
};

/// The wall-clock second the tests' nodes start at (`NodeConfig::unix_base_secs`).
pub const NOW_UNIX: u64 = 1_700_000_000;

/// The capability key `k1` of tenant `overlay` that tests mint and nodes verify with.
pub const KEY: MacKey = MacKey([7; 32]);

/// A header with `flags`, `code`, `app` and `corr`, tenant 0, no capability and `len` 0 (the
/// encoder fills it in).
pub fn header(flags: u16, code: u16, app: u16, corr: u64) -> Header {
    Header {
        len: 0,
        ver: 1,
        flags,
        code,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: corr,
    }
}

/// One frame with the header written as given (correlation id 0), without the encoder's
/// checks, so also frames a correct peer would never send.
pub fn raw_frame(flags: u16, code: u16, app: u16, cap: &[u8], body: &[u8]) -> Vec<u8> {
    let h = Header {
        len: (frame::HEADER_LEN + cap.len() + body.len()) as u32,
        cap_len: cap.len() as u16,
        ..header(flags, code, app, 0)
    };
    let mut out = BytesMut::new();
    h.write(&mut out);
    out.extend_from_slice(cap);
    out.extend_from_slice(body);
    out.to_vec()
}

/// An overlay EVENT frame of `kind` (GOSSIP, IHAVE, …).
pub fn event(kind: Kind, body: &[u8]) -> Vec<u8> {
    raw_frame(
        flags::EVENT,
        kind.code(),
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        body,
    )
}

/// One frame through the encoder (`frame::encode`), which must accept it.
pub fn encode(flags: u16, code: u16, app: u16, corr: u64, cap: &[u8], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    frame::encode(&header(flags, code, app, corr), cap, payload, &mut out).unwrap();
    out.freeze()
}

/// A token of tenant `overlay` under key `k1` ([`KEY`]) with `caveats`, for `methods` (all when
/// empty), at most `max_bytes` per message.
pub fn token(caveats: Vec<Caveat>, methods: &[&str], max_bytes: Option<u64>) -> String {
    token_with_key(&KEY, caveats, methods, max_bytes)
}

/// As [`token`], but MACed with `key` under the name `k1` (a wrong key when it is not [`KEY`]).
pub fn token_with_key(
    key: &MacKey,
    caveats: Vec<Caveat>,
    methods: &[&str],
    max_bytes: Option<u64>,
) -> String {
    let scope = Scope {
        prefix: None,
        methods: methods.iter().map(|m| m.to_string()).collect(),
        max_bytes,
    };
    mint(key, "overlay", "k1", scope, caveats)
}

/// Node `id`: PeerId `[id; 32]`, listening at `127.0.0.id:9415`, RNG seed `id`.
pub fn node(id: u8, cfg: NodeConfig) -> Node {
    let identity = NodeIdentity::new(
        PeerId([id; 32]),
        Some(SocketAddr::from(([127, 0, 0, id], 9415))),
    );
    Node::new(cfg, identity, u64::from(id)).unwrap()
}

/// The opening a peer with `peer_id` sends on an inbound session: HELLO (overlay 1, no listen
/// address, credit 1024 frames / 64 MiB) and START, without tokens.
pub fn peer_opening(peer_id: &PeerId) -> Vec<u8> {
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: peer_id.to_string(),
            listen: None,
            credit_frames: 1024,
            credit_bytes: 64 << 20,
            graft_miss: false,
            running_peers: false,
        },
    };
    let mut bytes = raw_frame(flags::REQ, 0, 0, &[], &serde_json::to_vec(&hello).unwrap());
    bytes.extend(raw_frame(
        flags::START | flags::REQ,
        0,
        overlay_proto::OVERLAY_APP_PROTO_ID,
        &[],
        &[],
    ));
    bytes
}

/// Bodies of the EVENT frames of `kind` in the `Transmit` actions on connection `conn`, in order.
pub fn event_bodies<'a>(
    actions: impl IntoIterator<Item = &'a Action>,
    conn: u64,
    kind: Kind,
) -> Vec<Vec<u8>> {
    frames(actions, conn)
        .into_iter()
        .filter(|f| f.header.flags & flags::EVENT != 0 && f.header.code == kind.code())
        .map(|f| f.payload.map(|p| p.to_vec()).unwrap_or_default())
        .collect()
}

/// Peer `[n; 32]`.
pub fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// A message id that is a hash of `n` (no message behind it).
pub fn random_id(n: u32) -> MessageId {
    MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

/// A config for a node that requires and presents tokens (key `k1`, audience `overlay`, a
/// token of its own), unsigned gossip, clock at [`NOW_UNIX`].
pub fn token_config() -> NodeConfig {
    let mut c = NodeConfig {
        unix_base_secs: NOW_UNIX,
        origin_auth: OriginAuth::None,
        ..NodeConfig::default()
    };
    c.auth.keys.insert("k1", "overlay", KEY);
    c.auth.own_token = Some(token(vec![], &[], None).into());
    c
}

/// A config for one node driven by raw peers: no tokens, unsigned gossip, clock at
/// [`NOW_UNIX`], and idle and liveness timers far away (raw peers never send heartbeats, so the
/// failure detector stays out of the way; tests advance time).
pub fn raw_peer_config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = OriginAuth::None;
    c.unix_base_secs = NOW_UNIX;
    c.idle_timeout = Duration::from_secs(10_000);
    c.liveness_timeout = Duration::from_secs(9_000);
    c.keepalive_interval = Duration::from_secs(5_000);
    c
}

/// A GOSSIP frame from `origin` with `nonce` and `payload`, as relayed with `hops`, and its id.
pub fn gossip(origin: PeerId, nonce: u64, payload: &[u8], hops: u8) -> (MessageId, Vec<u8>) {
    let id = MessageId::compute(&origin, nonce, payload);
    let mut body = Vec::new();
    wire::put_gossip_header(&mut body, &id, &origin, nonce, hops);
    body.extend_from_slice(payload);
    (id, event(Kind::Gossip, &body))
}

/// An IHAVE frame announcing `ids`, each with its hop count.
pub fn ihave(ids: &[(MessageId, u8)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, hops) in ids {
        body.extend_from_slice(&id.0);
        body.push(*hops);
    }
    event(Kind::IHave, &body)
}

/// The body of a GRAFT or GRAFT_MISS: the ids one after the other.
pub fn ids_body(ids: &[MessageId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

/// A GRAFT frame asking for `ids`.
pub fn graft(ids: &[MessageId]) -> Vec<u8> {
    event(Kind::Graft, &ids_body(ids))
}

/// A HELLO request frame from `who` granting `frames`/`bytes` of credit, with an optional
/// listen address, saying `graft_miss` or not (and never `running_peers`).
pub fn hello(
    who: &PeerId,
    frames: u32,
    bytes: u32,
    listen: Option<&str>,
    graft_miss: bool,
) -> Vec<u8> {
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: who.to_string(),
            listen: listen.map(String::from),
            credit_frames: frames,
            credit_bytes: bytes,
            graft_miss,
            running_peers: false,
        },
    };
    raw_frame(flags::REQ, 0, 0, &[], &serde_json::to_vec(&hello).unwrap())
}

/// A START request frame carrying `token` as its capability.
pub fn start(token: &str) -> Vec<u8> {
    raw_frame(
        flags::START | flags::REQ,
        0,
        overlay_proto::OVERLAY_APP_PROTO_ID,
        token.as_bytes(),
        &[],
    )
}

/// The ids in GRAFT or GRAFT_MISS bodies, in order.
pub fn ids_in(bodies: &[Vec<u8>]) -> Vec<MessageId> {
    bodies
        .iter()
        .flat_map(|b| b.chunks_exact(32).map(|c| MessageId(c.try_into().unwrap())))
        .collect()
}

/// One node (peer 1) and raw peers, each on its own connection, driven by hand: every action
/// the node emits is logged with the time it was emitted at.
pub struct Bed {
    /// The node under test.
    pub node: Node,
    /// The bed's clock.
    pub now: Instant,
    /// Every action so far (or since [`Bed::clear`]), with the time it was emitted.
    pub log: Vec<(Instant, Action)>,
}

impl Bed {
    /// Peer 1 listening at `10.0.0.1:9415`, RNG seed 42, with `cfg`.
    pub fn new(cfg: NodeConfig) -> Bed {
        let identity = NodeIdentity::new(peer(1), Some(SocketAddr::from(([10, 0, 0, 1], 9415))));
        Bed::with_node(Node::new(cfg, identity, 42).unwrap())
    }

    /// A bed around `node` at time zero.
    pub fn with_node(node: Node) -> Bed {
        Bed {
            node,
            now: Instant::ZERO,
            log: Vec::new(),
        }
    }

    /// The actions so far, without their times.
    pub fn actions(&self) -> impl DoubleEndedIterator<Item = &Action> {
        self.log.iter().map(|(_, a)| a)
    }

    /// Forgets the actions so far.
    pub fn clear(&mut self) {
        self.log.clear();
    }

    /// Hands `input` to the node and logs the actions it drains.
    pub fn input(&mut self, input: Input) {
        self.node.handle(self.now, input);
        while let Some(a) = self.node.poll_action() {
            self.log.push((self.now, a));
        }
    }

    /// Asks the node to dial `addr` (no one waits for the session) and returns the dial its
    /// `Action::Connect` names.
    pub fn dial(&mut self, addr: SocketAddr) -> overlay_proto::DialId {
        self.input(Input::Dial {
            request: None,
            addr,
        });
        self.actions()
            .rev()
            .find_map(|a| match a {
                Action::Connect { dial, addr: to, .. } if *to == addr => Some(*dial),
                _ => None,
            })
            .unwrap()
    }

    /// `bytes` arrive on `conn`.
    pub fn send(&mut self, conn: u64, bytes: Vec<u8>) {
        self.input(Input::Received {
            conn: ConnId(conn),
            data: Bytes::from(bytes),
        });
    }

    /// An inbound TLS connection from `who` at `ip`.
    pub fn up(&mut self, conn: u64, who: PeerId, ip: [u8; 4]) {
        self.input(Input::ConnectionUp {
            conn: ConnId(conn),
            peer: who,
            direction: Direction::Inbound,
            remote: SocketAddr::from((ip, 40_000 + conn as u16)),
            dial: None,
            kx_group: None,
        });
    }

    /// Connects `who` from `ip`, says HELLO with a generous window and START with `token`.
    pub fn open_with(&mut self, conn: u64, who: PeerId, ip: [u8; 4], token: &str) {
        self.up(conn, who, ip);
        self.send(conn, hello(&who, 1 << 20, 1 << 30, None, false));
        self.send(conn, start(token));
    }

    /// Opens a session with `who` on `conn` from `10.0.0.(100 + conn)`, without a token, and
    /// checks it is up.
    pub fn open(&mut self, conn: u64, who: PeerId) {
        self.open_with(conn, who, [10, 0, 0, 100 + conn as u8], "");
        assert!(self.is_up(conn), "session {conn} should open");
    }

    /// Runs the node's timers up to `d` from now, each at its own time.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.node.poll_timeout() {
            if t > until {
                break;
            }
            self.now = t.max(self.now);
            self.input(Input::Timeout);
        }
        self.now = until;
        self.input(Input::Timeout);
    }

    /// Session `conn`'s peer shows it is alive: a heartbeat (an empty CREDIT).
    pub fn heartbeat(&mut self, conn: u64) {
        self.send(conn, event(Kind::Credit, &[0u8; 8]));
    }

    /// Whether session `conn` came up.
    pub fn is_up(&self, conn: u64) -> bool {
        self.actions().any(|a| {
            matches!(a, Action::Session(SessionEvent::Up { conn: c, .. }) if *c == ConnId(conn))
        })
    }

    /// Why `conn` was closed, if it was.
    pub fn closed(&self, conn: u64) -> Option<CloseReason> {
        self.actions().find_map(|a| match a {
            Action::Close {
                conn: c, reason, ..
            } if *c == ConnId(conn) => Some(*reason),
            _ => None,
        })
    }

    /// When `conn` was closed, if it was.
    pub fn closed_at(&self, conn: u64) -> Option<Instant> {
        self.log.iter().find_map(|(t, a)| match a {
            Action::Close { conn: c, .. } if *c == ConnId(conn) => Some(*t),
            _ => None,
        })
    }

    /// The status code of the last error frame sent on `conn`.
    pub fn error_code(&self, conn: u64) -> Option<u16> {
        let mut last = None;
        for f in frames(self.actions(), conn) {
            if f.header.flags & flags::RESP != 0 && f.header.code >= 400 {
                last = Some(f.header.code);
            }
        }
        last
    }

    /// Bodies of the EVENT frames of `kind` sent on `conn` (an empty body for a frame without
    /// payload).
    pub fn sent(&self, conn: u64, kind: Kind) -> Vec<Vec<u8>> {
        event_bodies(self.actions(), conn, kind)
    }

    /// The ids asked for by the GRAFT frames sent on `conn` (empty GRAFTs, role only, skipped).
    pub fn grafted(&self, conn: u64) -> Vec<MessageId> {
        ids_in(&self.sent(conn, Kind::Graft))
    }

    /// Broadcasts `payload` and returns the result the node answered with.
    pub fn broadcast(&mut self, payload: &[u8]) -> Result<MessageId, OverlayError> {
        self.input(Input::Broadcast {
            request: 1,
            payload: Bytes::copy_from_slice(payload),
        });
        self.actions()
            .rev()
            .find_map(|a| match a {
                Action::BroadcastResult { result, .. } => Some(*result),
                _ => None,
            })
            .unwrap()
    }

    /// Whether the node's session with `who` is an eager link.
    pub fn is_eager(&self, who: PeerId) -> bool {
        self.node
            .sessions()
            .iter()
            .find(|s| s.peer == who)
            .is_some_and(|s| s.eager)
    }

    /// `who`'s score penalty of `kind` so far.
    pub fn penalty(&self, who: PeerId, kind: Penalty) -> f64 {
        self.node.peer_score(&who).components.penalty(kind)
    }
}

/// The frames in the `Transmit` actions on connection `conn`, in order.
pub fn frames<'a>(actions: impl IntoIterator<Item = &'a Action>, conn: u64) -> Vec<frame::Frame> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::Transmit { conn: c, data } = a {
            if *c != ConnId(conn) {
                continue;
            }
            let mut buf = BytesMut::from(&data.to_bytes()[..]);
            while let Ok(Some(f)) = frame::decode(&mut buf) {
                out.push(f);
            }
        }
    }
    out
}

/// Checks that the eager links are symmetric, connect every live node, and have at most
/// `extra` more edges than a spanning tree (cycles closed by a GRAFT of the last broadcast,
/// which its next duplicate prunes).
pub fn assert_symmetric_near_tree(m: &overlay_proto::mesh::Mesh, extra: usize) {
    let links = m.eager_links();
    let one_sided: Vec<_> = links
        .iter()
        .filter(|(a, b)| !links.contains(&(*b, *a)))
        .collect();
    assert!(one_sided.is_empty(), "one-sided eager links: {one_sided:?}");
    let alive: Vec<usize> = (0..m.len()).filter(|i| m.is_alive(*i)).collect();
    let edges = links.len() / 2;
    assert!(
        (alive.len() - 1..=alive.len() - 1 + extra).contains(&edges),
        "a spanning tree has n − 1 edges: {edges} for {} nodes (up to {extra} more allowed)",
        alive.len()
    );
    let mut seen = std::collections::BTreeSet::from([alive[0]]);
    let mut stack = vec![alive[0]];
    while let Some(a) = stack.pop() {
        for (_, b) in links.range((a, 0)..(a + 1, 0)) {
            if seen.insert(*b) {
                stack.push(*b);
            }
        }
    }
    assert_eq!(seen.len(), alive.len(), "the eager graph is connected");
}

/// A node (`cfg`) with `peers` sessions on connections 1..=peers; connection 1 is its only
/// eager peer: every session starts eager, and the peers on connections 2.. prune us.
pub fn one_parent_bed_with(cfg: NodeConfig, peers: u64) -> Bed {
    let mut bed = Bed::new(cfg);
    for conn in 1..=peers {
        bed.open(conn, peer(conn as u8 + 1));
    }
    for conn in 2..=peers {
        bed.send(conn, event(Kind::Prune, &[]));
    }
    bed
}
