//! Hostile hosts for chaos runs: not overlay nodes but hand-driven clients with a valid
//! identity and a valid (stolen) token that open sessions to honest nodes over the real TLS
//! stack and then misbehave, with frames built by the core's public codec:
//!
//! - a GOSSIP whose id is not the hash of its content (bad id),
//! - a GOSSIP in an honest node's name (forged origin, correct id, no valid signature),
//! - an IHAVE of ids that do not exist, and a GRAFT of ids nobody holds,
//!
//! every [`ROUND`], and never a CREDIT back (whatever the honest node sends it fills the
//! honest node's queue). When an honest node closes the session, the host records the status
//! code and moves on to the next target after [`BACKOFF`]. It never relays anything.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use overlay_proto::frame::{self, flags, Header, HEADER_LEN};
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind};
use overlay_proto::{MessageId, PeerId, OVERLAY_APP_PROTO_ID};
use svc_overlay::tls::{client_config, server_name, Identity, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::faults::PlanRng;

/// Time between two attack rounds of a session.
pub const ROUND: Duration = Duration::from_millis(100);
/// Pause before the next target after a session ends or fails.
pub const BACKOFF: Duration = Duration::from_millis(500);
/// Ids per IHAVE / GRAFT of the flood.
pub const FLOOD_IDS: usize = 256;
/// Longest wait for a handshake reply.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);
/// First bytes of every payload a hostile host sends.
pub const HOSTILE_MAGIC: &[u8; 8] = b"HOSTILE!";

/// What a hostile host needs.
#[derive(Debug, Clone)]
pub struct HostileSpec {
    /// Hostile host number (0-based).
    pub index: usize,
    /// Its TLS identity (a valid one: the attacker holds a key).
    pub identity: Identity,
    /// A valid capability token (stolen or leaked).
    pub token: String,
    /// The honest nodes it attacks, in turn.
    pub targets: Vec<SocketAddr>,
    /// Honest identities it impersonates.
    pub honest: Vec<PeerId>,
    /// TLS options (key exchange).
    pub tls: TlsOptions,
    /// The run's seed.
    pub seed: u64,
    /// When it starts (simulated, from the start of the run).
    pub start: Duration,
}

/// What the hostile hosts did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostileRecord {
    /// Sessions that got past START.
    pub sessions: u64,
    /// Handshakes refused or failed.
    pub refused: u64,
    /// Frames sent, by kind label.
    pub frames: BTreeMap<&'static str, u64>,
    /// Error frames (`RESP`, code ≥ 400) received: honest nodes closing the session.
    pub closed_by: BTreeMap<u16, u64>,
    /// Ids of every GOSSIP it sent (no honest application may see them).
    pub ids: BTreeSet<MessageId>,
}

/// The hostile hosts' records, shared with the orchestrator.
pub type SharedHostile = Rc<RefCell<Vec<HostileRecord>>>;

fn event(kind: Kind, body: &[u8]) -> Vec<u8> {
    let header = Header {
        len: (HEADER_LEN + body.len()) as u32,
        ver: 1,
        flags: flags::EVENT,
        code: kind.code(),
        app_proto_id: OVERLAY_APP_PROTO_ID,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = BytesMut::with_capacity(header.len as usize);
    header.write(&mut out);
    out.put_slice(body);
    out.to_vec()
}

fn handshake_frame(fl: u16, app: u16, corr: u64, cap: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let header = Header {
        len: 0,
        ver: 1,
        flags: fl,
        code: 0,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: corr,
    };
    let mut out = BytesMut::new();
    frame::encode(&header, cap, body, &mut out).ok()?;
    Some(out.to_vec())
}

/// One round of hostile frames; records the GOSSIP ids.
fn round_frames(
    rng: &mut PlanRng,
    me: &PeerId,
    honest: &[PeerId],
    ids: &mut Vec<MessageId>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let random_id = |rng: &mut PlanRng| {
        let mut id = [0u8; 32];
        for chunk in id.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        MessageId(id)
    };
    let mut payload = HOSTILE_MAGIC.to_vec();
    payload.extend_from_slice(&rng.next_u64().to_be_bytes());
    // Bad id: not BLAKE3(origin ‖ nonce ‖ payload).
    let bad = random_id(rng);
    let mut body = BytesMut::new();
    wire::put_gossip_header(&mut body, &bad, me, rng.next_u64(), 0);
    body.put_slice(&payload);
    out.extend(event(Kind::Gossip, &body));
    ids.push(bad);
    // Forged origin: a correct id in an honest node's name, without its signature.
    let origin = honest.get(rng.below(honest.len())).copied().unwrap_or(*me);
    let nonce = rng.next_u64();
    let id = MessageId::compute(&origin, nonce, &payload);
    let mut body = BytesMut::new();
    wire::put_gossip_header(&mut body, &id, &origin, nonce, 0);
    body.put_slice(&payload);
    out.extend(event(Kind::Gossip, &body));
    ids.push(id);
    // IHAVE of ids that do not exist, GRAFT of ids nobody holds.
    let mut ihave = BytesMut::new();
    let mut graft = BytesMut::new();
    for _ in 0..FLOOD_IDS {
        ihave.put_slice(&random_id(rng).0);
        ihave.put_u8(1);
        graft.put_slice(&random_id(rng).0);
    }
    out.extend(event(Kind::IHave, &ihave));
    out.extend(event(Kind::Graft, &graft));
    out
}

fn note(journal: &SharedHostile, index: usize, f: impl FnOnce(&mut HostileRecord)) {
    if let Some(rec) = journal.borrow_mut().get_mut(index) {
        f(rec);
    }
}

/// The hostile host's software.
pub async fn run_hostile(spec: Rc<HostileSpec>, journal: SharedHostile) -> turmoil::Result {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    tokio::time::sleep(spec.start.saturating_sub(elapsed)).await;
    let mut rng = PlanRng::new(spec.seed ^ (spec.index as u64), "hostile");
    let Ok(config) = client_config(&spec.identity, &spec.tls, None) else {
        return Ok(());
    };
    let connector = TlsConnector::from(config);
    let me = spec.identity.peer_id();
    let mut k = 0usize;
    loop {
        let Some(&target) = spec.targets.get(k % spec.targets.len().max(1)) else {
            return Ok(());
        };
        k += 1;
        attack_one(&spec, &journal, &connector, &me, target, &mut rng).await;
        tokio::time::sleep(BACKOFF).await;
    }
}

/// One session with `target`: handshake, then rounds until the target closes it.
async fn attack_one(
    spec: &HostileSpec,
    journal: &SharedHostile,
    connector: &TlsConnector,
    me: &PeerId,
    target: SocketAddr,
    rng: &mut PlanRng,
) {
    let refused = |j: &SharedHostile| note(j, spec.index, |r| r.refused += 1);
    let Ok(tcp) = turmoil::net::TcpStream::connect(target).await else {
        refused(journal);
        return;
    };
    let Ok(mut tls) = connector.connect(server_name(), tcp).await else {
        refused(journal);
        return;
    };
    let hello = HelloRequestBody {
        ua: Some("overlay-sim hostile".into()),
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: me.to_string(),
            listen: None,
            credit_frames: 512,
            credit_bytes: 8 << 20,
            graft_miss: false,
            running_peers: false,
        },
    };
    let Ok(json) = serde_json::to_vec(&hello) else {
        return;
    };
    let mut buf = BytesMut::new();
    let steps = [
        handshake_frame(flags::REQ, 0, 1, &[], &json),
        handshake_frame(
            flags::START | flags::REQ,
            OVERLAY_APP_PROTO_ID,
            2,
            spec.token.as_bytes(),
            &[],
        ),
    ];
    for step in steps {
        let Some(bytes) = step else {
            return;
        };
        if tls.write_all(&bytes).await.is_err() {
            refused(journal);
            return;
        }
        let reply = tokio::time::timeout(HANDSHAKE_WAIT, next_frame(&mut tls, &mut buf)).await;
        match reply {
            Ok(Some(h)) if h.code == 200 => {}
            Ok(Some(h)) => {
                note(journal, spec.index, |r| {
                    r.refused += 1;
                    *r.closed_by.entry(h.code).or_default() += 1;
                });
                return;
            }
            _ => {
                refused(journal);
                return;
            }
        }
    }
    note(journal, spec.index, |r| r.sessions += 1);
    let (mut rd, mut wr) = tokio::io::split(tls);
    let closed: Rc<RefCell<Option<u16>>> = Rc::new(RefCell::new(None));
    let reader = {
        let closed = Rc::clone(&closed);
        tokio::task::spawn_local(async move {
            loop {
                match next_frame(&mut rd, &mut buf).await {
                    Some(h) if h.flags & flags::RESP != 0 && h.code >= 400 => {
                        *closed.borrow_mut() = Some(h.code);
                    }
                    Some(_) => {}
                    None => {
                        let mut c = closed.borrow_mut();
                        if c.is_none() {
                            *c = Some(0);
                        }
                        return;
                    }
                }
            }
        })
    };
    loop {
        if closed.borrow().is_some() {
            break;
        }
        let mut ids = Vec::new();
        let frames = round_frames(rng, me, &spec.honest, &mut ids);
        if wr.write_all(&frames).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        note(journal, spec.index, |r| {
            for kind in [Kind::Gossip, Kind::Gossip, Kind::IHave, Kind::Graft] {
                *r.frames.entry(kind.label()).or_default() += 1;
            }
            r.ids.extend(ids);
        });
        tokio::time::sleep(ROUND).await;
    }
    // Give the reader a moment to see the error frame, then drop the session.
    tokio::time::sleep(Duration::from_millis(50)).await;
    reader.abort();
    let code = *closed.borrow();
    if let Some(code) = code.filter(|c| *c >= 400) {
        note(journal, spec.index, |r| {
            *r.closed_by.entry(code).or_default() += 1;
        });
    }
}

/// Reads the next frame's header (the body is consumed and discarded); `None` at EOF, on an
/// error or an undecodable stream.
async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Option<Header> {
    loop {
        match frame::decode(buf) {
            Ok(Some(f)) => return Some(f.header),
            Ok(None) => {}
            Err(_) => return None,
        }
        buf.reserve(16 * 1024);
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
