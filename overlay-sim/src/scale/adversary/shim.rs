//! The adversary shim: an honest core inside, the attack at its boundary.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use overlay_proto::frame::{self, Frame};
use overlay_proto::mesh::NodeShim;
use overlay_proto::wire::{self, Kind, PeerEntry};
use overlay_proto::{Action, Chunks, ConnId, Input, Instant, MessageId, PeerId};

use super::conn::{self, classify, put_frame, Amount, Conn, FrameClass};
use super::witness::FORGED_MAGIC;
use super::{AdversaryKind, AttackRates, Roster, SharedTally};
use crate::scale::run::SplitMix64;

/// Real ids an attacker remembers (for GRAFT spam and IHAVE floods).
const REMEMBERED_IDS: usize = 64;
/// Entries in a poisoned SHUFFLE.
const SHUFFLE_ENTRIES: usize = 16;
/// Payload bytes of a forged message.
const FORGED_PAYLOAD: usize = 64;
/// An attacker whose dropped frames leave a session quiet this long sends an empty CREDIT
/// (`0/0`, the core's own heartbeat frame), so that the peer's failure detector does not
/// take it for dead: the attack has to be caught for what it does, not for silence on the
/// wire. (Its core counts the dropped frames as sent and would not send a heartbeat itself.)
const KEEPALIVE: core::time::Duration = core::time::Duration::from_millis(400);

/// What the attacker does with one frame its core wrote.
enum Verdict {
    Keep,
    Drop,
    Replace(Bytes),
}

/// Overlay frame kinds, one counter each.
const KINDS: usize = Kind::ALL.len();

/// Counts kept locally and added to the shared tally once per step.
#[derive(Debug, Default)]
struct Counts {
    injected: [u64; KINDS],
    dropped: [u64; KINDS],
    rewritten: [u64; KINDS],
    blocked: u64,
    closed: BTreeMap<String, u64>,
    closed_among_attackers: BTreeMap<String, u64>,
    dirty: bool,
}

/// An attacker node: see the [module docs](super) for the kinds.
#[derive(Debug)]
pub struct Adversary {
    kind: AdversaryKind,
    me: PeerEntry,
    rates: AttackRates,
    roster: Arc<Roster>,
    tally: SharedTally,
    conns: BTreeMap<ConnId, Conn>,
    rng: SplitMix64,
    start: Instant,
    next_attack: Option<Instant>,
    next_forge: Instant,
    next_graft: Instant,
    next_ihave: Instant,
    next_shuffle: Instant,
    seen: VecDeque<(MessageId, u8)>,
    forged: u64,
    counts: Counts,
}

fn after_ms(t: Instant, ms: u64) -> Instant {
    t + core::time::Duration::from_millis(ms.max(1))
}

impl Adversary {
    /// The attacker wrapped around node `node` (identity `me`) of a mesh with `seed`.
    pub fn new(
        kind: AdversaryKind,
        node: usize,
        me: PeerId,
        seed: u64,
        rates: AttackRates,
        roster: Arc<Roster>,
        tally: SharedTally,
    ) -> Adversary {
        let mut rng = SplitMix64::new(seed ^ 0xad5e_0000 ^ ((node as u64) << 20));
        let start = after_ms(Instant::ZERO, rates.start_ms);
        // Spread the attackers' rounds so they do not all fire at the same instant.
        let jitter =
            |rng: &mut SplitMix64, ms: u64| after_ms(start, rng.below(ms.max(1) as usize) as u64);
        let next_forge = jitter(&mut rng, rates.forge_interval_ms);
        let next_graft = jitter(&mut rng, rates.graft_interval_ms);
        let next_ihave = jitter(&mut rng, rates.ihave_interval_ms);
        let next_shuffle = jitter(&mut rng, rates.shuffle_interval_ms);
        let mut a = Adversary {
            kind,
            me: PeerEntry {
                peer: me,
                addr: overlay_proto::mesh::node_addr(node),
            },
            rates,
            roster,
            tally,
            conns: BTreeMap::new(),
            rng,
            start,
            next_attack: None,
            next_forge,
            next_graft,
            next_ihave,
            next_shuffle,
            seen: VecDeque::with_capacity(REMEMBERED_IDS),
            forged: 0,
            counts: Counts::default(),
        };
        a.next_attack = a.next_round();
        a
    }

    fn next_round(&self) -> Option<Instant> {
        match self.kind {
            AdversaryKind::Forger => Some(self.next_forge),
            AdversaryKind::GraftSpam => Some(self.next_graft),
            AdversaryKind::IhaveFlood => Some(self.next_ihave),
            AdversaryKind::Eclipse => Some(self.next_shuffle),
            AdversaryKind::Silent => None,
        }
    }

    fn attacking(&self, now: Instant) -> bool {
        now >= self.start
    }

    fn remember(&mut self, id: MessageId, hops: u8) {
        if self.seen.iter().any(|(s, _)| *s == id) {
            return;
        }
        if self.seen.len() == REMEMBERED_IDS {
            self.seen.pop_front();
        }
        self.seen.push_back((id, hops));
    }

    fn flush_counts(&mut self) {
        if !self.counts.dirty {
            return;
        }
        let c = std::mem::take(&mut self.counts);
        self.tally.with(|t| {
            for kind in Kind::ALL {
                let i = kind.index();
                for (src, dst) in [
                    (&c.injected, &mut t.injected),
                    (&c.dropped, &mut t.dropped),
                    (&c.rewritten, &mut t.rewritten),
                ] {
                    if let Some(&n) = src.get(i).filter(|n| **n > 0) {
                        *dst.entry(kind.label().to_string()).or_default() += n;
                    }
                }
            }
            t.blocked_by_credit += c.blocked;
            for (code, n) in c.closed {
                *t.closed_by_honest.entry(code).or_default() += n;
            }
            for (code, n) in c.closed_among_attackers {
                *t.closed_among_attackers.entry(code).or_default() += n;
            }
        });
    }

    fn bump(counter: &mut [u64; KINDS], kind: Kind) {
        if let Some(c) = counter.get_mut(kind.index()) {
            *c += 1;
        }
    }

    /// Handles the bytes a peer sent: learns, pays debt from credit, counts closes.
    fn inbound(&mut self, conn: ConnId, data: Bytes, to_node: &mut Vec<Input>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            to_node.push(Input::Received { conn, data });
            return;
        };
        let frames = c.parse_inbound(&data);
        if c.opaque {
            to_node.push(Input::Received { conn, data });
            return;
        }
        let mut out = BytesMut::with_capacity(data.len());
        let mut learned = Vec::new();
        let mut closed = None;
        for f in &frames {
            c.observe_inbound(f);
            match classify(f) {
                FrameClass::Overlay(Kind::Credit) => {
                    let grant = f.payload.as_deref().map(wire::parse_credit);
                    match grant {
                        Some(Ok(g)) => {
                            if let Some(pass) = c.on_peer_credit(g) {
                                out.put_slice(&conn::credit_frame(pass));
                            }
                        }
                        _ => put_frame(&mut out, f),
                    }
                }
                FrameClass::Overlay(Kind::Gossip) => {
                    if let Some(Ok(m)) = f.payload.as_ref().map(wire::parse_gossip) {
                        learned.push((m.id, m.hops.saturating_add(1)));
                    }
                    put_frame(&mut out, f);
                }
                FrameClass::Overlay(Kind::IHave) => {
                    if let Some(Ok(ids)) = f.payload.as_deref().map(wire::parse_ihave) {
                        learned.extend(ids.take(8));
                    }
                    put_frame(&mut out, f);
                }
                FrameClass::Control => {
                    let h = &f.header;
                    if h.flags & frame::flags::RESP != 0 && h.code >= 400 {
                        closed = Some(close_label(h.code, f.payload.as_deref()));
                    }
                    put_frame(&mut out, f);
                }
                FrameClass::Overlay(_) => put_frame(&mut out, f),
            }
        }
        c.release_held();
        if !out.is_empty() {
            to_node.push(Input::Received {
                conn,
                data: out.freeze(),
            });
        }
        if let Some(label) = closed {
            // A fellow attacker's core closing the session is not a defence of an honest node.
            let colluder = self.conns.get(&conn).is_some_and(|c| c.colluder);
            let tally = if colluder {
                &mut self.counts.closed_among_attackers
            } else {
                &mut self.counts.closed
            };
            *tally.entry(label).or_default() += 1;
            self.counts.dirty = true;
        }
        for (id, hops) in learned {
            self.remember(id, hops);
        }
    }

    /// The attack's answer to one frame the core wrote for `peer_is_colluder`.
    fn outbound_verdict(&mut self, now: Instant, frame: &Frame, colluder: bool) -> Verdict {
        if colluder || !self.attacking(now) {
            return Verdict::Keep;
        }
        let FrameClass::Overlay(kind) = classify(frame) else {
            return Verdict::Keep;
        };
        match (self.kind, kind) {
            (AdversaryKind::Forger, Kind::Gossip) => {
                let mut b = BytesMut::with_capacity(frame.header.len as usize);
                put_frame(&mut b, frame);
                if let Some(last) = b.last_mut() {
                    *last ^= 0x5a;
                }
                Verdict::Replace(b.freeze())
            }
            (k, Kind::Gossip | Kind::Prune) if k.withholds() => Verdict::Drop,
            // No credit back, but keep the heartbeat: an empty CREDIT grants nothing.
            (AdversaryKind::GraftSpam, Kind::Credit) => {
                Verdict::Replace(conn::credit_frame(Amount::default()))
            }
            (AdversaryKind::Eclipse, Kind::Shuffle | Kind::ShuffleReply) => {
                Verdict::Replace(self.poisoned_shuffle(kind))
            }
            // An answer to a RUNNING_PEERS request (a request has no entry) lists attackers.
            (AdversaryKind::Eclipse, Kind::RunningPeers)
                if frame.payload.as_ref().is_some_and(|p| p.len() > 1) =>
            {
                Verdict::Replace(self.poisoned_shuffle(kind))
            }
            _ => Verdict::Keep,
        }
    }

    /// Rewrites the core's `Transmit` on `conn` through the attack.
    fn outbound(&mut self, now: Instant, conn: ConnId, data: Chunks) -> Option<Chunks> {
        let Some(colluder) = self.conns.get(&conn).map(|c| c.colluder) else {
            return Some(data);
        };
        if self.conns.get(&conn).is_some_and(|c| c.opaque) {
            return Some(data);
        }
        let mut buf = BytesMut::from(&data.to_bytes()[..]);
        let mut frames = Vec::new();
        loop {
            match frame::decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.opaque = true;
                    }
                    return Some(data);
                }
            }
        }
        for f in frames {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.observe_start(&f.header);
            }
            let charged = conn::charged(&f);
            let cost = charged.then(|| Amount::frame(f.header.len as usize));
            let verdict = self.outbound_verdict(now, &f, colluder);
            let kind = match classify(&f) {
                FrameClass::Overlay(k) => Some(k),
                FrameClass::Control => None,
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                break;
            };
            match verdict {
                Verdict::Keep => {
                    let mut b = BytesMut::with_capacity(f.header.len as usize);
                    put_frame(&mut b, &f);
                    c.send_from_core(b.freeze(), charged, cost);
                }
                Verdict::Drop => {
                    if let Some(cost) = cost {
                        c.drop_from_core(cost);
                    }
                    if let Some(k) = kind {
                        Self::bump(&mut self.counts.dropped, k);
                        self.counts.dirty = true;
                    }
                }
                Verdict::Replace(bytes) => {
                    c.send_from_core(bytes, charged, cost);
                    if let Some(k) = kind {
                        Self::bump(&mut self.counts.rewritten, k);
                        self.counts.dirty = true;
                    }
                }
            }
        }
        let c = self.conns.get_mut(&conn)?;
        (!c.outbox.is_empty()).then(|| c.outbox.split().freeze().into())
    }

    fn poisoned_shuffle(&mut self, kind: Kind) -> Bytes {
        let mut entries = vec![self.me];
        let pool = &self.roster.attacker_entries;
        let want = SHUFFLE_ENTRIES.min(pool.len());
        let mut tries = 0;
        while entries.len() < want && tries < 4 * SHUFFLE_ENTRIES {
            tries += 1;
            if let Some(e) = pool.get(self.rng.below(pool.len())) {
                if !entries.iter().any(|x| x.peer == e.peer) {
                    entries.push(*e);
                }
            }
        }
        let mut body = BytesMut::new();
        wire::put_shuffle(&mut body, &entries);
        conn::overlay_frame(kind, &body)
    }

    fn forged_gossip(&mut self) -> Bytes {
        let origin = self
            .roster
            .honest
            .get(self.rng.below(self.roster.honest.len()))
            .copied()
            .unwrap_or(self.me.peer);
        let nonce = self.rng.next_u64();
        self.forged += 1;
        let mut payload = Vec::with_capacity(FORGED_PAYLOAD);
        payload.extend_from_slice(FORGED_MAGIC);
        payload.extend_from_slice(&self.forged.to_be_bytes());
        payload.extend_from_slice(&self.me.peer.0[..8]);
        payload.resize(FORGED_PAYLOAD, 0);
        let id = MessageId::compute(&origin, nonce, &payload);
        let mut body = BytesMut::with_capacity(wire::GOSSIP_HEADER_LEN + payload.len());
        wire::put_gossip_header(&mut body, &id, &origin, nonce, 0);
        body.put_slice(&payload);
        conn::overlay_frame(Kind::Gossip, &body)
    }

    fn graft_spam(&mut self) -> Option<Bytes> {
        if self.seen.is_empty() {
            return None;
        }
        let n = self.rates.graft_ids.clamp(1, wire::MAX_IHAVE_IDS);
        let mut body = BytesMut::with_capacity(n * MessageId::LEN);
        for k in 0..n {
            let (id, _) = self.seen[self.seen.len() - 1 - k % self.seen.len()];
            body.put_slice(&id.0);
        }
        Some(conn::overlay_frame(Kind::Graft, &body))
    }

    fn ihave_flood(&mut self) -> Bytes {
        let n = self.rates.ihave_ids.clamp(1, wire::MAX_IHAVE_IDS);
        let mut body = BytesMut::with_capacity(n * wire::IHAVE_ENTRY_LEN);
        let mut k = 0;
        for (id, hops) in self.seen.iter().rev().take(n) {
            body.put_slice(&id.0);
            body.put_u8(*hops);
            k += 1;
        }
        while k < n {
            let mut id = [0u8; 32];
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&self.rng.next_u64().to_be_bytes());
            }
            body.put_slice(&id);
            body.put_u8(1);
            k += 1;
        }
        conn::overlay_frame(Kind::IHave, &body)
    }

    /// Sends an empty CREDIT on every running session quiet for [`KEEPALIVE`].
    fn keep_alive(&mut self, now: Instant) {
        if !self.attacking(now) {
            return;
        }
        for c in self.conns.values_mut().filter(|c| c.running && !c.opaque) {
            let quiet = c.last_sent.is_none_or(|t| now >= t + KEEPALIVE);
            if quiet && c.outbox.is_empty() {
                c.outbox.put_slice(&conn::credit_frame(Amount::default()));
            }
        }
    }

    /// One round of injections, if one is due.
    fn attack_round(&mut self, now: Instant) {
        if !self.attacking(now) || self.next_attack.is_none_or(|at| at > now) {
            return;
        }
        let frame = match self.kind {
            AdversaryKind::Forger if now >= self.next_forge => {
                self.next_forge = after_ms(now, self.rates.forge_interval_ms);
                Some((Kind::Gossip, self.forged_gossip()))
            }
            AdversaryKind::GraftSpam if now >= self.next_graft => {
                self.next_graft = after_ms(now, self.rates.graft_interval_ms);
                self.graft_spam().map(|f| (Kind::Graft, f))
            }
            AdversaryKind::IhaveFlood if now >= self.next_ihave => {
                self.next_ihave = after_ms(now, self.rates.ihave_interval_ms);
                Some((Kind::IHave, self.ihave_flood()))
            }
            AdversaryKind::Eclipse if now >= self.next_shuffle => {
                self.next_shuffle = after_ms(now, self.rates.shuffle_interval_ms);
                Some((Kind::Shuffle, self.poisoned_shuffle(Kind::Shuffle)))
            }
            _ => None,
        };
        self.next_attack = self.next_round();
        let Some((kind, frame)) = frame else {
            return;
        };
        for c in self.conns.values_mut().filter(|c| !c.colluder && c.running) {
            if c.can_inject(frame.len()) {
                c.inject(frame.clone());
                Self::bump(&mut self.counts.injected, kind);
            } else {
                self.counts.blocked += 1;
            }
            self.counts.dirty = true;
        }
    }
}

impl NodeShim for Adversary {
    fn on_input(&mut self, now: Instant, input: Input, to_node: &mut Vec<Input>) {
        match input {
            Input::ConnectionUp { conn, peer, .. } => {
                let colluder = self.roster.attackers.contains(&peer);
                self.conns.insert(conn, Conn::new(peer, colluder));
                to_node.push(input);
            }
            Input::ConnectionClosed { conn, .. } => {
                self.conns.remove(&conn);
                to_node.push(input);
            }
            Input::Received { conn, data } => self.inbound(conn, data, to_node),
            Input::Timeout => {
                self.attack_round(now);
                self.keep_alive(now);
                to_node.push(Input::Timeout);
            }
            other => to_node.push(other),
        }
    }

    fn on_actions(&mut self, now: Instant, actions: &mut Vec<Action>, to_node: &mut Vec<Input>) {
        let mut out = Vec::with_capacity(actions.len());
        for a in actions.drain(..) {
            match a {
                Action::Transmit { conn, data } => {
                    if let Some(data) = self.outbound(now, conn, data) {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.last_sent = Some(now);
                        }
                        out.push(Action::Transmit { conn, data });
                    }
                }
                Action::Close {
                    conn,
                    reason,
                    winner,
                } => {
                    self.conns.remove(&conn);
                    out.push(Action::Close {
                        conn,
                        reason,
                        winner,
                    });
                }
                other => out.push(other),
            }
        }
        // Injected and released frames for connections the core wrote nothing to.
        for (conn, c) in self.conns.iter_mut() {
            if !c.outbox.is_empty() {
                c.last_sent = Some(now);
                out.push(Action::Transmit {
                    conn: *conn,
                    data: c.outbox.split().freeze().into(),
                });
            }
            if let Some(credit) = c.take_refund() {
                to_node.push(Input::Received {
                    conn: *conn,
                    data: credit,
                });
            }
        }
        *actions = out;
        self.flush_counts();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_attack.map(|at| at.max(self.start))
    }
}

/// `"<code> <reason>"` of an error frame: the code and the reason label of the core's error body
/// (`{"error":"<label>"}`), or the code alone.
fn close_label(code: u16, body: Option<&[u8]>) -> String {
    let reason = body
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    match reason {
        Some(r) => format!("{code} {r}"),
        None => code.to_string(),
    }
}
