//! The driver-side content checks (`Prechecker`) change where GOSSIP frames are checked, never
//! what the node does: the same byte stream, cut into any chunks, gives the same actions and
//! statistics whether it arrives as `Input::Received` (checked inline) or as
//! `Input::ReceivedPrechecked` (verdicts computed per chunk, signatures in batches).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::wire::{self, Kind};
use overlay_proto::{
    Action, ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, NodeStats,
    OriginAuth, OriginSigner, Prechecker, SigningSeed,
};
use proptest::prelude::*;
use support::{event, peer_opening};

/// The opening of a session from `peer`: HELLO and START.
fn opening(peer: &OriginSigner) -> Vec<u8> {
    peer_opening(&peer.peer_id())
}

/// One frame a peer may send after the opening.
#[derive(Debug, Clone)]
enum Sent {
    /// A correct GOSSIP from origin `o`, signed or not.
    Good { o: u8, nonce: u64, signed: bool },
    /// A GOSSIP whose payload was altered after the id was computed.
    BadId { o: u8, nonce: u64 },
    /// A signed GOSSIP whose signature has one bit flipped.
    BadSig { o: u8, nonce: u64 },
    /// A signed GOSSIP claiming another origin than its key's.
    Forged { o: u8, nonce: u64 },
    /// A PING (not a GOSSIP: walked over by the checker).
    Ping,
}

fn sent() -> impl Strategy<Value = Sent> {
    let nonce = 0u64..6;
    let o = 10u8..13;
    prop_oneof![
        6 => (o.clone(), nonce.clone(), any::<bool>())
            .prop_map(|(o, nonce, signed)| Sent::Good { o, nonce, signed }),
        1 => (o.clone(), nonce.clone()).prop_map(|(o, nonce)| Sent::BadId { o, nonce }),
        1 => (o.clone(), nonce.clone()).prop_map(|(o, nonce)| Sent::BadSig { o, nonce }),
        1 => (o, nonce).prop_map(|(o, nonce)| Sent::Forged { o, nonce }),
        1 => Just(Sent::Ping),
    ]
}

fn encode(s: &Sent) -> Vec<u8> {
    let payload = |nonce: u64| format!("payload {nonce} ").repeat(40).into_bytes();
    match *s {
        Sent::Good { o, nonce, signed } => {
            let origin = OriginSigner::new(&SigningSeed([o; 32]));
            let signer = signed.then_some(&origin);
            let (_, body) = wire::gossip_body(&origin.peer_id(), nonce, 1, &payload(nonce), signer);
            event(Kind::Gossip, &body)
        }
        Sent::BadId { o, nonce } => {
            let origin = OriginSigner::new(&SigningSeed([o; 32]));
            let (_, mut body) =
                wire::gossip_body(&origin.peer_id(), nonce, 1, &payload(nonce), Some(&origin));
            if let Some(last) = body.last_mut() {
                *last ^= 1;
            }
            event(Kind::Gossip, &body)
        }
        Sent::BadSig { o, nonce } => {
            let origin = OriginSigner::new(&SigningSeed([o; 32]));
            let (_, mut body) = wire::gossip_body(
                &origin.peer_id(),
                nonce + 100,
                1,
                &payload(nonce),
                Some(&origin),
            );
            // The signature's first byte: after the 74-byte header and the 32-byte key.
            body[74 + 32] ^= 0x20;
            event(Kind::Gossip, &body)
        }
        Sent::Forged { o, nonce } => {
            let origin = OriginSigner::new(&SigningSeed([o; 32]));
            let claimed = OriginSigner::new(&SigningSeed([o + 50; 32])).peer_id();
            let id = overlay_proto::MessageId::compute(&claimed, nonce, &payload(nonce));
            let auth = origin.sign(&id);
            let mut body = Vec::new();
            wire::put_gossip_header_with(&mut body, &id, &claimed, nonce, 1, Some(&auth));
            body.extend_from_slice(&payload(nonce));
            event(Kind::Gossip, &body)
        }
        Sent::Ping => event(Kind::Ping, &[]),
    }
}

/// Runs one node over the streams of peers 1..=2 (cut at `cuts`), prechecked or not.
fn run(
    mode: OriginAuth,
    streams: &[Vec<u8>],
    cuts: &[Vec<usize>],
    prechecked: bool,
) -> (Vec<Action>, NodeStats, usize) {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.origin_auth = mode;
    let identity = NodeIdentity::from_signing_seed(SigningSeed([0xC0; 32]), None);
    let mut node = Node::new(cfg, identity, 7).unwrap();
    let mut now = Instant::ZERO;
    let mut actions = Vec::new();
    let mut used = 0;
    let mut checkers: Vec<Prechecker> = streams.iter().map(|_| Prechecker::new(mode)).collect();
    for (i, _) in streams.iter().enumerate() {
        let peer = OriginSigner::new(&SigningSeed([i as u8 + 1; 32]));
        node.handle(
            now,
            Input::ConnectionUp {
                conn: ConnId(i as u64 + 1),
                peer: peer.peer_id(),
                direction: Direction::Inbound,
                remote: SocketAddr::from(([10, 0, 0, i as u8 + 1], 40_000)),
                dial: None,
                kx_group: None,
            },
        );
    }
    // Interleave the peers' chunks: chunk k of every stream, then k + 1.
    let chunked: Vec<Vec<&[u8]>> = streams
        .iter()
        .zip(cuts)
        .map(|(s, c)| {
            let mut points: Vec<usize> = c.iter().map(|p| p % (s.len() + 1)).collect();
            points.push(0);
            points.push(s.len());
            points.sort_unstable();
            points.dedup();
            points.windows(2).map(|w| &s[w[0]..w[1]]).collect()
        })
        .collect();
    let rounds = chunked.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..rounds {
        for (i, chunks) in chunked.iter().enumerate() {
            let Some(chunk) = chunks.get(k) else { continue };
            let conn = ConnId(i as u64 + 1);
            let data = Bytes::copy_from_slice(chunk);
            let input = if prechecked {
                let checks = checkers[i].scan(&data);
                used += checks.len();
                Input::ReceivedPrechecked { conn, data, checks }
            } else {
                Input::Received { conn, data }
            };
            now += Duration::from_millis(1);
            node.handle(now, input);
            while let Some(a) = node.poll_action() {
                actions.push(a);
            }
        }
    }
    (actions, node.stats(), used)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prechecked_input_gives_the_same_outputs(
        sign in any::<bool>(),
        a in proptest::collection::vec(sent(), 1..24),
        b in proptest::collection::vec(sent(), 1..24),
        cuts_a in proptest::collection::vec(0usize..100_000, 0..12),
        cuts_b in proptest::collection::vec(0usize..100_000, 0..12),
    ) {
        let mode = if sign { OriginAuth::Sign } else { OriginAuth::None };
        let streams: Vec<Vec<u8>> = [(1u8, &a), (2u8, &b)]
            .iter()
            .map(|(p, frames)| {
                let mut s = opening(&OriginSigner::new(&SigningSeed([*p; 32])));
                for f in frames.iter() {
                    s.extend(encode(f));
                }
                s
            })
            .collect();
        let cuts = vec![cuts_a, cuts_b];
        let (inline, inline_stats, _) = run(mode, &streams, &cuts, false);
        let (checked, checked_stats, used) = run(mode, &streams, &cuts, true);
        prop_assert_eq!(inline, checked);
        prop_assert_eq!(inline_stats, checked_stats);
        // Whole streams in one chunk: every GOSSIP frame gets a verdict.
        let gossips = a.iter().chain(b.iter()).filter(|s| !matches!(s, Sent::Ping)).count();
        let (_, _, used_whole) = run(mode, &streams, &[vec![], vec![]], true);
        prop_assert_eq!(used_whole, gossips);
        prop_assert!(used <= gossips);
    }
}
