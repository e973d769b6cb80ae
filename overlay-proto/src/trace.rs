//! Versioned trace format: everything needed to re-run a node's decisions.
//!
//! A trace file is the magic line [`TRACE_MAGIC`] followed by a sequence of CBOR items: one
//! [`TraceHeader`] (crate version, config, identity, seed), then one [`TraceRecord`] per input
//! (its `now`, the input, and the actions the node produced for it with their digest).
//! Replaying the inputs into a fresh [`Node`] built from the header must reproduce every
//! action; [`Replayer`] checks that record by record.
//!
//! A trace holds payloads, tokens, the capability keys of the config and the node's Ed25519
//! signing seed (replay must reproduce its signatures): treat it as a secret.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::config::NodeConfig;
use crate::input::Input;
use crate::node::{Node, NodeIdentity};
use crate::time::Instant;

/// First bytes of every trace file.
pub const TRACE_MAGIC: &[u8] = b"SVCOVERLAY-TRACE/1\n";
/// Version of the record layout. 2: the identity carries the Ed25519 signing seed, the config
/// `origin_auth`, and GOSSIP bodies the `auth` byte (origin signatures). 3: client sessions
/// (`Input::ClientConnectionUp` / `SendToClient`, `Action::Client` / `ClientMessage`, the
/// config's `clients` limits). 4: the caller's dial tag (`Input::Dial::request`,
/// `Action::DialAnswer::request`, `SessionEvent::Up::requests`, `Action::DialResult`), the
/// winner named in a duplicate's `Action::Close`, and `DialOutcome::Handshaking`. The new
/// fields are left out of a record when empty, so version 2 and 3 traces still replay (they
/// hold none of these; an operator dial to an address whose session was still handshaking
/// recorded `Connected` then and replays as `Handshaking`). 5: `Action::TopicNeighbor` (a
/// peer coming or going as a neighbour in a topic). 6: GRAFT_MISS (every HELLO carries the
/// `graft_miss` key, GRAFTs for dropped ids are answered, the store holds young messages).
/// A node of this build sends other bytes than the one that recorded a version 2 to 5 trace
/// from its first HELLO on, so those traces are refused with
/// [`TraceError::UnsupportedVersion`] instead of diverging at the first session.
pub const TRACE_FORMAT_VERSION: u32 = 6;
/// Oldest trace format version [`TraceReader`] accepts.
pub const TRACE_FORMAT_OLDEST: u32 = 6;

/// What a replay needs to rebuild the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    /// [`TRACE_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `overlay-proto` version of the writer.
    pub crate_version: String,
    /// The node's configuration.
    pub config: NodeConfig,
    /// The node's identity.
    pub identity: NodeIdentity,
    /// The node's RNG seed.
    pub seed: u64,
}

impl TraceHeader {
    /// A header for a node built with these arguments.
    pub fn new(config: NodeConfig, identity: NodeIdentity, seed: u64) -> Self {
        TraceHeader {
            format_version: TRACE_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            config,
            identity,
            seed,
        }
    }

    /// A fresh node from this header.
    pub fn build_node(&self) -> Result<Node, crate::config::ConfigError> {
        Node::new(self.config.clone(), self.identity.clone(), self.seed)
    }
}

/// One input and what the node did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Position in the trace, from 0.
    pub seq: u64,
    /// The input's time.
    pub now: Instant,
    /// The input.
    pub input: Input,
    /// The actions drained after the input, in order.
    pub actions: Vec<Action>,
    /// [`digest_actions`] of `actions`.
    pub digest: [u8; 32],
}

/// Errors reading or writing traces.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The underlying reader or writer failed.
    #[error("trace io: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with [`TRACE_MAGIC`].
    #[error("not an svc-overlay trace (bad magic)")]
    BadMagic,
    /// The header's format version is not supported.
    #[error("unsupported trace format version {0}")]
    UnsupportedVersion(u32),
    /// A CBOR item did not decode.
    #[error("corrupt trace record: {0}")]
    Corrupt(String),
    /// The header's config does not validate.
    #[error("trace config invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Folds actions into a BLAKE3 digest over their CBOR encoding.
#[derive(Debug, Clone, Default)]
pub struct ActionDigest {
    hasher: blake3::Hasher,
    count: u64,
    scratch: Vec<u8>,
}

impl ActionDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one action.
    pub fn update(&mut self, action: &Action) {
        self.scratch.clear();
        // Serialising plain data into a Vec cannot fail; an error would only drop the action
        // from the digest, never panic.
        if ciborium::into_writer(action, &mut self.scratch).is_ok() {
            self.hasher
                .update(&(self.scratch.len() as u64).to_be_bytes());
            self.hasher.update(&self.scratch);
        }
        self.count += 1;
    }

    /// Adds raw bytes (e.g. a node index in a multi-node run).
    pub fn update_raw(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// Actions added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest so far.
    pub fn finish(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }
}

/// Digest of a list of actions.
pub fn digest_actions(actions: &[Action]) -> [u8; 32] {
    let mut d = ActionDigest::new();
    for a in actions {
        d.update(a);
    }
    d.finish()
}

/// Writes a trace.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    seq: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the magic line and the header.
    pub fn new(mut out: W, header: &TraceHeader) -> Result<Self, TraceError> {
        out.write_all(TRACE_MAGIC)?;
        ciborium::into_writer(header, &mut out).map_err(|e| TraceError::Corrupt(e.to_string()))?;
        Ok(TraceWriter { out, seq: 0 })
    }

    /// Appends one record.
    pub fn record(
        &mut self,
        now: Instant,
        input: &Input,
        actions: &[Action],
    ) -> Result<(), TraceError> {
        let record = TraceRecord {
            seq: self.seq,
            now,
            input: input.clone(),
            actions: actions.to_vec(),
            digest: digest_actions(actions),
        };
        ciborium::into_writer(&record, &mut self.out)
            .map_err(|e| TraceError::Corrupt(e.to_string()))?;
        self.seq += 1;
        Ok(())
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.out.flush()?;
        Ok(())
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads a trace.
#[derive(Debug)]
pub struct TraceReader<R: Read> {
    input: R,
}

impl<R: Read> TraceReader<R> {
    /// Checks the magic line and reads the header.
    pub fn open(mut input: R) -> Result<(Self, TraceHeader), TraceError> {
        let mut magic = [0u8; TRACE_MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|_| TraceError::BadMagic)?;
        if magic != TRACE_MAGIC {
            return Err(TraceError::BadMagic);
        }
        let header: TraceHeader =
            ciborium::from_reader(&mut input).map_err(|e| TraceError::Corrupt(e.to_string()))?;
        if !(TRACE_FORMAT_OLDEST..=TRACE_FORMAT_VERSION).contains(&header.format_version) {
            return Err(TraceError::UnsupportedVersion(header.format_version));
        }
        Ok((TraceReader { input }, header))
    }

    /// The next record, or `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<TraceRecord>, TraceError> {
        let mut first = [0u8; 1];
        if self.input.read(&mut first)? == 0 {
            return Ok(None);
        }
        let mut chained = (&first[..]).chain(&mut self.input);
        let record: TraceRecord =
            ciborium::from_reader(&mut chained).map_err(|e| TraceError::Corrupt(e.to_string()))?;
        Ok(Some(record))
    }
}

/// The first place where a replay differs from the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's time.
    pub now: Instant,
    /// The input that produced different actions.
    pub input: Input,
    /// What the recording says.
    pub expected: Vec<Action>,
    /// What the fresh node did.
    pub actual: Vec<Action>,
}

/// Feeds recorded inputs to a fresh node and compares actions.
#[derive(Debug)]
pub struct Replayer {
    node: Node,
    inputs: u64,
    actions: u64,
}

impl Replayer {
    /// A replayer with a node built from the header.
    pub fn new(header: &TraceHeader) -> Result<Self, TraceError> {
        Ok(Replayer {
            node: header.build_node()?,
            inputs: 0,
            actions: 0,
        })
    }

    /// Replays one record; returns the divergence if the actions differ.
    pub fn step(&mut self, record: &TraceRecord) -> Result<Vec<Action>, Box<Divergence>> {
        self.node.handle(record.now, record.input.clone());
        let mut actual = Vec::new();
        while let Some(a) = self.node.poll_action() {
            actual.push(a);
        }
        self.inputs += 1;
        self.actions += actual.len() as u64;
        if digest_actions(&actual) != record.digest || actual != record.actions {
            return Err(Box::new(Divergence {
                seq: record.seq,
                now: record.now,
                input: record.input.clone(),
                expected: record.actions.clone(),
                actual,
            }));
        }
        Ok(actual)
    }

    /// Inputs replayed so far.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// Actions produced so far.
    pub fn actions(&self) -> u64 {
        self.actions
    }

    /// The node being replayed.
    pub fn node(&self) -> &Node {
        &self.node
    }
}
