//! The sessions machine: every peer session of the node, its indexes and the handshake rules.
//!
//! [`Sessions`] owns the slab of [`Session`]s (a key stays valid until the session is removed
//! and is then reused), the index by connection and the index by peer (the one session that
//! holds the peer's slot; a duplicate lives beside it until the tie-break closes one). The
//! handshake rules ([`handshake`]) decide, from a session and what arrived, what happens next:
//! which frame the phase expects, whether a HELLO is acceptable, which of two sessions with one
//! peer survives, when a session that did not finish its handshake or stopped answering
//! closes. [`Sessions`] carries those decisions out on its own state and queues what the node
//! must do about them ([`SessionsOutput`]: close a session, a session is up); the node drains
//! the queue and routes each output to gossip, membership and the driver, in the order the data
//! path reads. The machine knows nothing of gossip, membership or tokens: it is tested alone.

pub(crate) mod handshake;

use std::collections::{BTreeMap, VecDeque};

use crate::action::CloseReason;
use crate::idhash::{id_map_with_capacity, IdMap};
use crate::peer::{ConnId, Direction, PeerId};
use crate::session::Session;

/// Index of a session in the slab.
pub(crate) type SessionKey = usize;

/// What the sessions machine asks the node to carry out, in the order it decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionsOutput {
    /// Close session `key` for `reason` (naming the session that won a duplicate tie-break).
    Close {
        /// The session to close.
        key: SessionKey,
        /// Why.
        reason: CloseReason,
        /// The surviving session's connection, for a duplicate.
        winner: Option<ConnId>,
    },
    /// Session `key` finished its handshake and runs.
    Up {
        /// The session.
        key: SessionKey,
        /// The event for the driver and the pre-auth slot to give back.
        started: handshake::Started,
    },
}

/// Every session of the node with its indexes, and the queue of decisions for the node.
#[derive(Debug)]
pub(crate) struct Sessions {
    slab: Vec<Option<Session>>,
    free: Vec<SessionKey>,
    by_conn: IdMap<ConnId, SessionKey>,
    by_peer: BTreeMap<PeerId, SessionKey>,
    outputs: VecDeque<SessionsOutput>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}

impl Sessions {
    /// No session yet.
    pub(crate) fn new() -> Self {
        Sessions {
            slab: Vec::new(),
            free: Vec::new(),
            by_conn: id_map_with_capacity(64),
            by_peer: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// The session at `key`.
    pub(crate) fn get(&self, key: SessionKey) -> Option<&Session> {
        self.slab.get(key).and_then(Option::as_ref)
    }

    /// The session at `key`, to change it.
    pub(crate) fn get_mut(&mut self, key: SessionKey) -> Option<&mut Session> {
        self.slab.get_mut(key).and_then(Option::as_mut)
    }

    /// The session on connection `conn`.
    pub(crate) fn key_of(&self, conn: &ConnId) -> Option<SessionKey> {
        self.by_conn.get(conn).copied()
    }

    /// True when a session uses connection `conn`.
    pub(crate) fn has_conn(&self, conn: &ConnId) -> bool {
        self.by_conn.contains_key(conn)
    }

    /// The session that holds `peer`'s slot (one per peer; see [`Sessions::claim_peer`]).
    pub(crate) fn key_of_peer(&self, peer: &PeerId) -> Option<SessionKey> {
        self.by_peer.get(peer).copied()
    }

    /// True when a session holds `peer`'s slot.
    pub(crate) fn has_peer(&self, peer: &PeerId) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// Session `key` now holds its peer's slot (after the duplicate rule let it stay).
    pub(crate) fn claim_peer(&mut self, key: SessionKey) {
        if let Some(peer) = self.get(key).map(|s| s.peer) {
            self.by_peer.insert(peer, key);
        }
    }

    /// Adds a session (indexed by its connection; its peer's slot is taken by
    /// [`Sessions::claim_peer`]) and returns its key: the last freed key, or a new one.
    pub(crate) fn insert(&mut self, session: Session) -> SessionKey {
        let conn = session.conn;
        let key = match self.free.pop() {
            Some(key) => {
                if let Some(slot) = self.slab.get_mut(key) {
                    *slot = Some(session);
                }
                key
            }
            None => {
                self.slab.push(Some(session));
                self.slab.len() - 1
            }
        };
        self.by_conn.insert(conn, key);
        key
    }

    /// Takes session `key` out of the slab and its indexes; its key is free again.
    pub(crate) fn remove(&mut self, key: SessionKey) -> Option<Session> {
        let session = self.slab.get_mut(key).and_then(Option::take)?;
        self.free.push(key);
        self.by_conn.remove(&session.conn);
        if self.by_peer.get(&session.peer) == Some(&key) {
            self.by_peer.remove(&session.peer);
        }
        Some(session)
    }

    /// Every session with its key, in slab order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SessionKey, &Session)> {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.as_ref().map(|s| (k, s)))
    }

    /// Every session with its key, in slab order, to change them.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (SessionKey, &mut Session)> {
        self.slab
            .iter_mut()
            .enumerate()
            .filter_map(|(k, s)| s.as_mut().map(|s| (k, s)))
    }

    /// The keys of every session, in slab order (a snapshot: safe to close them one by one).
    pub(crate) fn keys(&self) -> Vec<SessionKey> {
        self.iter().map(|(k, _)| k).collect()
    }

    /// True when no session is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.slab.iter().all(Option::is_none)
    }

    /// Sessions through START (they count toward `max_sessions` and readiness).
    pub(crate) fn running_count(&self) -> usize {
        self.iter().filter(|(_, s)| s.is_running()).count()
    }

    /// Sessions that fill the active view: running ones and our own dials still handshaking
    /// (inbound connections before START live on the pre-auth budget and do not count).
    pub(crate) fn membership_count(&self) -> usize {
        self.iter()
            .filter(|(_, s)| {
                s.is_running() || (s.direction == Direction::Outbound && s.phase.is_handshaking())
            })
            .count()
    }

    /// Queues a decision for the node.
    pub(crate) fn push_output(&mut self, output: SessionsOutput) {
        self.outputs.push_back(output);
    }

    /// The next decision for the node to carry out, oldest first.
    pub(crate) fn poll_output(&mut self) -> Option<SessionsOutput> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests;
