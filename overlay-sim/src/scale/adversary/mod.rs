//! Adversary nodes for the large-scale mode.
//!
//! An adversary is an unchanged honest core wrapped in an [`Adversary`] shim
//! ([`overlay_proto::mesh::NodeShim`]): the core keeps its sessions (handshake, credits,
//! membership, keep-alive) and the shim drops, rewrites or injects frames at its boundary,
//! building them with the core's public codec (`overlay_proto::frame`, `overlay_proto::wire`).
//! No protocol decision is added to the simulator: what honest nodes do about the attack is
//! entirely their core's business. Honest nodes get an observing [`Witness`] shim that checks
//! every payload they deliver.
//!
//! Kinds (one kind per run; see [`AdversaryKind`]):
//!
//! | kind | what the attacker does |
//! |---|---|
//! | `forger` | relays every GOSSIP with its payload altered (the id no longer matches), and now and then originates a message in an honest node's name |
//! | `silent` | announces (IHAVE) what it receives but never sends a payload (GOSSIP pushes and GRAFT answers dropped) and never PRUNEs, so it stays an eager peer |
//! | `graft-spam` | never returns credit, and sends GRAFTs repeating held ids hundreds of times |
//! | `ihave-flood` | `silent`, plus IHAVE floods of ids that do not exist, real ids first |
//! | `eclipse` | `silent`, and every SHUFFLE it sends (its own and extra ones) lists only attackers |

pub mod conn;
pub mod shim;
pub mod witness;

use core::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use overlay_proto::mesh::{node_addr, node_peer_id, Mesh};
use overlay_proto::wire::PeerEntry;
use overlay_proto::PeerId;

pub use shim::Adversary;
pub use witness::{honest_payload, Witness, MIN_PAYLOAD};

/// What the attacker nodes of a run do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum AdversaryKind {
    /// Bad ids (altered relayed payloads) and forged origins.
    Forger,
    /// Announces, never delivers, never prunes.
    Silent,
    /// GRAFT floods repeating held ids, and no credit returned.
    GraftSpam,
    /// Silent, plus IHAVE floods of ids that do not exist.
    IhaveFlood,
    /// Silent, plus shuffle poisoning: advertises only attackers.
    Eclipse,
}

impl AdversaryKind {
    /// Every kind, in table order.
    pub const ALL: [AdversaryKind; 5] = [
        AdversaryKind::Forger,
        AdversaryKind::Silent,
        AdversaryKind::GraftSpam,
        AdversaryKind::IhaveFlood,
        AdversaryKind::Eclipse,
    ];

    /// The name used on the command line and in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            AdversaryKind::Forger => "forger",
            AdversaryKind::Silent => "silent",
            AdversaryKind::GraftSpam => "graft-spam",
            AdversaryKind::IhaveFlood => "ihave-flood",
            AdversaryKind::Eclipse => "eclipse",
        }
    }

    /// True when the attacker drops payloads it should deliver (and PRUNEs).
    pub fn withholds(self) -> bool {
        matches!(
            self,
            AdversaryKind::Silent | AdversaryKind::IhaveFlood | AdversaryKind::Eclipse
        )
    }
}

impl fmt::Display for AdversaryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How hard the attackers push (the rates are per attacker and per honest session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackRates {
    /// Virtual time at which attacks start (before: the attacker behaves honestly), ms.
    pub start_ms: u64,
    /// `forger`: an attacker originates one forged-origin message every this many ms.
    pub forge_interval_ms: u64,
    /// `graft-spam`: one GRAFT per honest session every this many ms.
    pub graft_interval_ms: u64,
    /// `graft-spam`: ids per GRAFT (held ids repeated).
    pub graft_ids: usize,
    /// `ihave-flood`: one IHAVE per honest session every this many ms.
    pub ihave_interval_ms: u64,
    /// `ihave-flood`: ids per IHAVE (real ids seen first, then made-up ones).
    pub ihave_ids: usize,
    /// `eclipse`: one extra SHUFFLE per honest session every this many ms.
    pub shuffle_interval_ms: u64,
}

impl Default for AttackRates {
    fn default() -> Self {
        AttackRates {
            start_ms: 0,
            forge_interval_ms: 60_000,
            graft_interval_ms: 1_000,
            graft_ids: 512,
            ihave_interval_ms: 500,
            ihave_ids: 256,
            shuffle_interval_ms: 1_000,
        }
    }
}

/// What the attackers did and what the honest nodes saw, summed over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttackTally {
    /// Frames the attackers injected, by kind label.
    pub injected: std::collections::BTreeMap<String, u64>,
    /// Frames of their own cores the attackers dropped, by kind label.
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Frames the attackers rewrote, by kind label.
    pub rewritten: std::collections::BTreeMap<String, u64>,
    /// Injections skipped because the honest peer's credit window was used up.
    pub blocked_by_credit: u64,
    /// Error frames (`RESP` code ≥ 400) attackers received from honest peers, by code and
    /// reason label (`"408 stalled"`): honest nodes closing attacker sessions.
    pub closed_by_honest: std::collections::BTreeMap<String, u64>,
    /// Error frames attackers received from fellow attackers (their unchanged cores closing
    /// each other's sessions), by code and reason label; not a defence, kept apart.
    pub closed_among_attackers: std::collections::BTreeMap<String, u64>,
    /// Deliveries at honest nodes whose payload was altered on the way.
    pub tampered_deliveries: u64,
    /// Deliveries at honest nodes of messages an attacker forged in an honest origin's name.
    pub forged_deliveries: u64,
    /// `(node, message)` of tampered deliveries (excluded from reliability).
    #[serde(skip)]
    pub tampered: std::collections::BTreeSet<(usize, overlay_proto::MessageId)>,
}

/// A tally shared by every shim of a run.
#[derive(Debug, Clone, Default)]
pub struct SharedTally(Arc<Mutex<AttackTally>>);

impl SharedTally {
    /// Runs `f` on the tally.
    pub fn with<R>(&self, f: impl FnOnce(&mut AttackTally) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// A copy of the tally.
    pub fn snapshot(&self) -> AttackTally {
        self.with(|t| t.clone())
    }
}

/// Which nodes of a mesh attack: `round(nodes × percent / 100)` of them, drawn by `pick`
/// (the scenario's seeded generator), sorted.
pub fn choose_attackers(
    nodes: usize,
    percent: u32,
    mut pick: impl FnMut(usize) -> usize,
) -> Vec<usize> {
    let count = (nodes * percent as usize + 50) / 100;
    let mut order: Vec<usize> = (0..nodes).collect();
    for i in 0..count.min(nodes) {
        let j = i + pick(nodes - i);
        order.swap(i, j);
    }
    let mut chosen: Vec<usize> = order.into_iter().take(count).collect();
    chosen.sort_unstable();
    chosen
}

/// What every attacker knows about the run: its fellow attackers and the honest identities.
#[derive(Debug)]
pub struct Roster {
    /// Attacker identities.
    pub attackers: std::collections::BTreeSet<PeerId>,
    /// Attacker shuffle entries (identity and listen address).
    pub attacker_entries: Vec<PeerEntry>,
    /// Honest identities (whom a forger impersonates).
    pub honest: Vec<PeerId>,
}

/// Wraps the chosen nodes of `mesh` in adversary shims of `kind` and every other node in a
/// [`Witness`]. Returns the shared tally.
pub fn install(
    mesh: &mut Mesh,
    seed: u64,
    kind: AdversaryKind,
    attackers: &[usize],
    rates: &AttackRates,
) -> SharedTally {
    let tally = SharedTally::default();
    let n = mesh.len();
    let is_attacker = |i: usize| attackers.binary_search(&i).is_ok();
    let roster = Arc::new(Roster {
        attackers: attackers.iter().map(|&i| node_peer_id(seed, i)).collect(),
        attacker_entries: attackers
            .iter()
            .map(|&i| PeerEntry {
                peer: node_peer_id(seed, i),
                addr: node_addr(i),
            })
            .collect(),
        honest: (0..n)
            .filter(|i| !is_attacker(*i))
            .map(|i| node_peer_id(seed, i))
            .collect(),
    });
    for i in 0..n {
        if is_attacker(i) {
            let shim = Adversary::new(
                kind,
                i,
                node_peer_id(seed, i),
                seed,
                rates.clone(),
                Arc::clone(&roster),
                tally.clone(),
            );
            mesh.set_shim(i, Box::new(shim));
        } else {
            mesh.set_shim(i, Box::new(Witness::new(i, tally.clone())));
        }
    }
    tally
}
