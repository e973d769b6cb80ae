//! Two cores driven by hand, each writing a trace: a small, self-contained source of real
//! traces for replay tests and demonstrations (the mesh does not write traces).
//!
//! The loop is a miniature driver: node A is told about node B's address, dials it; the
//! "network" answers `Connect` with `ConnectionUp` on both sides, carries every `Transmit` to
//! the other node after a fixed latency, turns `Close` into `ConnectionClosed`, and wakes each
//! node at its `poll_timeout`. Every input a node handles is recorded with the actions it
//! produced, exactly as a driver with `--trace-out` does.

use core::net::{Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;

use overlay_proto::trace::{TraceHeader, TraceWriter};
use overlay_proto::Action;
use overlay_proto::{
    ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, SigningSeed,
};

use crate::SimError;

/// One-way latency between the two nodes.
pub const PAIR_LATENCY: Duration = Duration::from_millis(5);

/// What to do in a recorded pair run.
#[derive(Debug, Clone)]
pub struct PairScript {
    /// Seed of both nodes (node B gets `seed + 1`).
    pub seed: u64,
    /// Broadcasts: `(virtual time, node 0 or 1, payload)`.
    pub broadcasts: Vec<(Duration, usize, Bytes)>,
    /// Virtual time at which the run stops.
    pub duration: Duration,
}

impl PairScript {
    /// Three broadcasts from A and one from B after the session opens, 3 s in all.
    pub fn demo(seed: u64) -> PairScript {
        PairScript {
            seed,
            broadcasts: vec![
                (
                    Duration::from_millis(500),
                    0,
                    Bytes::from_static(b"pair demo: first from A"),
                ),
                (
                    Duration::from_millis(700),
                    1,
                    Bytes::from_static(b"pair demo: one from B"),
                ),
                (Duration::from_millis(900), 0, Bytes::from(vec![0x5a; 2048])),
                (
                    Duration::from_millis(1200),
                    0,
                    Bytes::from_static(b"pair demo: last from A"),
                ),
            ],
            duration: Duration::from_secs(3),
        }
    }
}

/// The two traces of a pair run and what was delivered.
#[derive(Debug, Clone)]
pub struct PairTraces {
    /// Node A's trace file bytes.
    pub a: Vec<u8>,
    /// Node B's trace file bytes.
    pub b: Vec<u8>,
    /// Payloads delivered, per node.
    pub delivered: [Vec<Bytes>; 2],
    /// Inputs recorded, per node.
    pub inputs: [u64; 2],
}

enum Event {
    Input(usize, Input),
    Timer(usize, Instant),
}

struct Pair {
    nodes: [Node; 2],
    writers: [TraceWriter<Vec<u8>>; 2],
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    timer_at: [Option<Instant>; 2],
    /// Per node: conn → (peer node, peer conn).
    links: [BTreeMap<ConnId, ConnId>; 2],
    last_arrival: [Instant; 2],
    next_conn: u64,
    delivered: [Vec<Bytes>; 2],
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, 10 + i as u8), 9415))
}

/// Node `i`'s Ed25519 identity (derived from the script's seed, so runs repeat); the pair
/// runs with the default `origin_auth = sign`, so its traces carry signed gossip.
fn identity(seed: u64, i: usize) -> NodeIdentity {
    let mut material = [0u8; 16];
    material[..8].copy_from_slice(&seed.to_be_bytes());
    material[8..].copy_from_slice(&(i as u64).to_be_bytes());
    let key = SigningSeed(blake3::derive_key(
        "svc-overlay pair node identity v1",
        &material,
    ));
    NodeIdentity::from_signing_seed(key, Some(addr(i)))
}

impl Pair {
    fn schedule(&mut self, at: Instant, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((at, id)));
    }

    fn apply(&mut self, i: usize, now: Instant, input: Input) -> Result<(), SimError> {
        let Some(node) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        node.handle(now, input.clone());
        let mut actions = Vec::new();
        while let Some(a) = node.poll_action() {
            actions.push(a);
        }
        let timeout = node.poll_timeout();
        if let Some(w) = self.writers.get_mut(i) {
            w.record(now, &input, &actions)?;
        }
        for a in actions {
            self.carry_out(i, now, a);
        }
        if let Some(at) = timeout {
            let at = at.max(now);
            if self.timer_at[i] != Some(at) {
                self.timer_at[i] = Some(at);
                self.schedule(at, Event::Timer(i, at));
            }
        }
        Ok(())
    }

    fn carry_out(&mut self, i: usize, now: Instant, action: Action) {
        let other = 1 - i;
        match action {
            Action::Transmit { conn, data } => {
                if let Some(peer_conn) = self.links[i].get(&conn).copied() {
                    let at = (now + PAIR_LATENCY).max(self.last_arrival[i]);
                    self.last_arrival[i] = at;
                    self.schedule(
                        at,
                        Event::Input(
                            other,
                            Input::Received {
                                conn: peer_conn,
                                data: data.to_bytes(),
                            },
                        ),
                    );
                }
            }
            Action::Connect {
                dial, addr: target, ..
            } => {
                if target != addr(other) {
                    let input = Input::DialFailed {
                        dial,
                        error: overlay_proto::OverlayError::Refused,
                    };
                    self.schedule(now + PAIR_LATENCY * 2, Event::Input(i, input));
                    return;
                }
                let (a_conn, b_conn) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
                self.next_conn += 2;
                self.links[i].insert(a_conn, b_conn);
                self.links[other].insert(b_conn, a_conn);
                let server_up = now + PAIR_LATENCY * 3;
                let client_up = now + PAIR_LATENCY * 4;
                self.last_arrival[i] = self.last_arrival[i].max(client_up);
                self.last_arrival[other] = self.last_arrival[other].max(server_up);
                let client_id = self.nodes[i].identity().peer_id;
                let server_id = self.nodes[other].identity().peer_id;
                self.schedule(
                    server_up,
                    Event::Input(
                        other,
                        Input::ConnectionUp {
                            conn: b_conn,
                            peer: client_id,
                            direction: Direction::Inbound,
                            remote: SocketAddr::from((
                                Ipv4Addr::new(127, 0, 0, 10 + i as u8),
                                40_000,
                            )),
                            dial: None,
                            kx_group: Some("X25519MLKEM768".into()),
                        },
                    ),
                );
                self.schedule(
                    client_up,
                    Event::Input(
                        i,
                        Input::ConnectionUp {
                            conn: a_conn,
                            peer: server_id,
                            direction: Direction::Outbound,
                            remote: target,
                            dial: Some(dial),
                            kx_group: Some("X25519MLKEM768".into()),
                        },
                    ),
                );
            }
            Action::Close { conn, .. } => {
                if let Some(peer_conn) = self.links[i].remove(&conn) {
                    self.links[other].remove(&peer_conn);
                    let at = (now + PAIR_LATENCY).max(self.last_arrival[i]);
                    let input = Input::ConnectionClosed {
                        conn: peer_conn,
                        error: None,
                    };
                    self.schedule(at, Event::Input(other, input));
                }
            }
            Action::Deliver(d) => self.delivered[i].push(d.payload),
            _ => {}
        }
    }
}

/// Runs the script and returns both traces.
pub fn record_pair(script: &PairScript) -> Result<PairTraces, SimError> {
    let mut config = NodeConfig::default();
    config.auth.require_token = false;
    let mut nodes = Vec::with_capacity(2);
    let mut writers = Vec::with_capacity(2);
    for i in 0..2 {
        let identity = identity(script.seed, i);
        let seed = script.seed.wrapping_add(i as u64);
        let header = TraceHeader::new(config.clone(), identity.clone(), seed);
        nodes.push(Node::new(config.clone(), identity, seed)?);
        writers.push(TraceWriter::new(Vec::new(), &header)?);
    }
    let (Ok(nodes), Ok(writers)) = (
        <[Node; 2]>::try_from(nodes),
        <[TraceWriter<Vec<u8>>; 2]>::try_from(writers),
    ) else {
        return Err(SimError::Scenario("pair construction".into()));
    };
    let mut pair = Pair {
        nodes,
        writers,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        next_event: 0,
        timer_at: [None; 2],
        links: [BTreeMap::new(), BTreeMap::new()],
        last_arrival: [Instant::ZERO; 2],
        next_conn: 1,
        delivered: [Vec::new(), Vec::new()],
    };
    pair.schedule(
        Instant::ZERO,
        Event::Input(
            0,
            Input::PeersDiscovered {
                addrs: vec![addr(1)],
            },
        ),
    );
    pair.schedule(Instant::ZERO, Event::Timer(1, Instant::ZERO));
    pair.timer_at[1] = Some(Instant::ZERO);
    for (k, (at, node, payload)) in script.broadcasts.iter().enumerate() {
        let input = Input::Broadcast {
            request: k as u64 + 1,
            payload: payload.clone(),
        };
        pair.schedule(Instant::from_duration(*at), Event::Input(node % 2, input));
    }
    let end = Instant::from_duration(script.duration);
    while let Some(Reverse((at, id))) = pair.queue.pop() {
        if at > end {
            break;
        }
        let Some(event) = pair.events.remove(&id) else {
            continue;
        };
        match event {
            Event::Input(i, input) => pair.apply(i, at, input)?,
            Event::Timer(i, due) => {
                if pair.timer_at[i] == Some(due) {
                    pair.timer_at[i] = None;
                    pair.apply(i, at, Input::Timeout)?;
                }
            }
        }
    }
    let inputs = [pair.writers[0].records(), pair.writers[1].records()];
    let [a, b] = pair.writers;
    Ok(PairTraces {
        a: a.into_inner(),
        b: b.into_inner(),
        delivered: pair.delivered,
        inputs,
    })
}
