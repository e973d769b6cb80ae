//! Content-checked ids and origin signatures on the GOSSIP receive path: a message that fails
//! is never stored, delivered or forwarded; the session is closed with 400 and the reject
//! counted (`bad_id`, `bad_signature`); other sessions are unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::frame::{self, flags};
use overlay_proto::mesh::{Mesh, MeshConfig};
use overlay_proto::wire::{self, Kind, GOSSIP_AUTH_ED25519};
use overlay_proto::{
    Action, CloseReason, ConnId, Direction, Input, Instant, MessageId, Node, NodeConfig,
    NodeIdentity, OriginAuth, OriginSigner, OverlayError, PeerId, RejectReason, SigningSeed,
};
use proptest::prelude::*;
use support::{event, peer_opening};

const NODE_SEED: SigningSeed = SigningSeed([0xC0; 32]);

fn signer(n: u8) -> OriginSigner {
    OriginSigner::new(&SigningSeed([n; 32]))
}

/// Fake peer `i`: an Ed25519 identity, so it can also originate signed messages.
fn peer(i: u8) -> OriginSigner {
    signer(i)
}

/// A node (origin_auth `mode`) with running sessions from fake peers 1..=3 on conns 1..=3,
/// all eager (α = 3).
struct Bed {
    node: Node,
    now: Instant,
}

impl Bed {
    fn new(mode: OriginAuth) -> Bed {
        let mut cfg = NodeConfig::default();
        cfg.auth.require_token = false;
        cfg.origin_auth = mode;
        cfg.alpha = 3;
        let identity = NodeIdentity::from_signing_seed(NODE_SEED, None);
        let mut bed = Bed {
            node: Node::new(cfg, identity, 7).unwrap(),
            now: Instant::ZERO,
        };
        for i in 1..=3 {
            bed.open(i);
        }
        assert_eq!(bed.node.stats().eager_peers, 3);
        bed
    }

    fn open(&mut self, i: u8) {
        let conn = ConnId(u64::from(i));
        let id = peer(i).peer_id();
        self.node.handle(
            self.now,
            Input::ConnectionUp {
                conn,
                peer: id,
                direction: Direction::Inbound,
                remote: SocketAddr::from(([10, 0, 0, i], 40_000)),
                dial: None,
                kx_group: None,
            },
        );
        self.input(Input::Received {
            conn,
            data: Bytes::from(peer_opening(&id)),
        });
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.now += Duration::from_millis(1);
        self.node.handle(self.now, input);
        let mut out = Vec::new();
        while let Some(a) = self.node.poll_action() {
            out.push(a);
        }
        out
    }

    /// Peer `i` sends one GOSSIP body; returns the actions.
    fn gossip_from(&mut self, i: u8, body: &[u8]) -> Vec<Action> {
        self.input(Input::Received {
            conn: ConnId(u64::from(i)),
            data: Bytes::from(event(Kind::Gossip, body)),
        })
    }

    fn rejected(&self, reason: RejectReason) -> u64 {
        self.node.stats().rejected.get(reason)
    }
}

/// Every frame transmitted on `conn` among `actions`.
fn frames_to(actions: &[Action], conn: u64) -> Vec<frame::Frame> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::Transmit { conn: c, data } = a {
            if c.0 == conn {
                let mut buf = BytesMut::from(&data.to_bytes()[..]);
                while let Ok(Some(f)) = frame::decode(&mut buf) {
                    out.push(f);
                }
            }
        }
    }
    out
}

fn gossip_frames_to(actions: &[Action], conn: u64) -> Vec<wire::GossipMsg> {
    frames_to(actions, conn)
        .into_iter()
        .filter(|f| f.header.code == Kind::Gossip.code() && f.header.flags & flags::EVENT != 0)
        .map(|f| wire::parse_gossip(&f.payload.unwrap_or_default()).unwrap())
        .collect()
}

fn delivered(actions: &[Action]) -> Vec<MessageId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver(d) => Some(d.id),
            _ => None,
        })
        .collect()
}

/// Asserts the session on `conn` was closed with 400 and a typed reject for `reason`.
fn assert_closed_400(actions: &[Action], conn: u64, reason: RejectReason) {
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Rejected { conn: Some(c), reason: r, .. } if c.0 == conn && *r == reason
        )),
        "typed reject {reason:?} on conn {conn}: {actions:?}"
    );
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Close { conn: c, reason: CloseReason::Violation(OverlayError::Malformed), .. }
                if c.0 == conn
        )),
        "closed as malformed: {actions:?}"
    );
    let error_codes: Vec<u16> = frames_to(actions, conn)
        .iter()
        .filter(|f| f.header.flags & flags::RESP != 0)
        .map(|f| f.header.code)
        .collect();
    assert_eq!(error_codes, vec![400]);
}

/// Nothing was delivered or forwarded, and nothing stored: the same id sent honestly later is
/// still new.
fn assert_not_accepted(bed: &Bed, actions: &[Action]) {
    assert!(delivered(actions).is_empty(), "not delivered");
    for conn in 2..=3 {
        assert!(gossip_frames_to(actions, conn).is_empty(), "not forwarded");
    }
    assert_eq!(bed.node.stats().gossip_delivered, 0);
    assert_eq!(bed.node.stats().seen_len, 0, "not stored");
}

#[test]
fn a_wrong_id_is_rejected_with_400_in_both_modes() {
    for mode in [OriginAuth::Sign, OriginAuth::None] {
        let mut bed = Bed::new(mode);
        let origin = peer(1);
        let (id, mut body) =
            wire::gossip_body(&origin.peer_id(), 5, 0, b"tampered?", Some(&origin));
        // The payload changed after the id (and signature) were computed.
        let last = body.len() - 1;
        body[last] ^= 0x01;
        let actions = bed.gossip_from(1, &body);
        assert_closed_400(&actions, 1, RejectReason::BadId);
        assert_not_accepted(&bed, &actions);
        assert_eq!(bed.rejected(RejectReason::BadId), 1, "{mode:?}");
        assert_eq!(bed.rejected(RejectReason::BadSignature), 0);

        // An honest session is unaffected, and the real message with that id still arrives.
        let (_, honest) = wire::gossip_body(&origin.peer_id(), 5, 0, b"tampered?", Some(&origin));
        let actions = bed.gossip_from(2, &honest);
        assert_eq!(delivered(&actions), vec![id], "{mode:?}");
        assert_eq!(gossip_frames_to(&actions, 3).len(), 1);
    }
}

#[test]
fn a_forged_origin_is_a_bad_signature() {
    let mut bed = Bed::new(OriginAuth::Sign);
    let honest = peer(2).peer_id();
    let mallory = peer(1);
    // Mallory claims peer 2 as origin (the id is computed correctly for that claim) and signs
    // with its own key.
    let id = MessageId::compute(&honest, 1, b"I am peer 2");
    let auth = mallory.sign(&id);
    let mut body = Vec::new();
    wire::put_gossip_header_with(&mut body, &id, &honest, 1, 0, Some(&auth));
    body.extend_from_slice(b"I am peer 2");
    let actions = bed.gossip_from(1, &body);
    assert_closed_400(&actions, 1, RejectReason::BadSignature);
    assert_not_accepted(&bed, &actions);
    assert_eq!(bed.rejected(RejectReason::BadSignature), 1);
    assert_eq!(bed.rejected(RejectReason::BadId), 0);
}

#[test]
fn a_bad_signature_and_a_missing_one_are_rejected_in_sign_mode() {
    let origin = peer(9);
    let (_, good) = wire::gossip_body(&origin.peer_id(), 3, 1, b"payload", Some(&origin));

    let mut bed = Bed::new(OriginAuth::Sign);
    let mut flipped = good.clone();
    flipped[wire::GOSSIP_HEADER_LEN + 32 + 5] ^= 0x80; // a signature byte
    let actions = bed.gossip_from(1, &flipped);
    assert_closed_400(&actions, 1, RejectReason::BadSignature);
    assert_not_accepted(&bed, &actions);

    let (_, unsigned) = wire::gossip_body(&origin.peer_id(), 3, 1, b"payload", None);
    let actions = bed.gossip_from(2, &unsigned);
    assert_closed_400(&actions, 2, RejectReason::BadSignature);
    assert_not_accepted(&bed, &actions);
    assert_eq!(bed.rejected(RejectReason::BadSignature), 2);

    // The third session still delivers the valid message.
    let actions = bed.gossip_from(3, &good);
    assert_eq!(delivered(&actions).len(), 1);
}

#[test]
fn a_valid_signed_message_is_delivered_and_relayed_with_its_signature() {
    let mut bed = Bed::new(OriginAuth::Sign);
    let origin = peer(8);
    let (id, body) = wire::gossip_body(&origin.peer_id(), 11, 4, b"hello", Some(&origin));
    let actions = bed.gossip_from(1, &body);
    assert_eq!(delivered(&actions), vec![id]);
    for conn in 2..=3 {
        let fwd = gossip_frames_to(&actions, conn);
        assert_eq!(fwd.len(), 1);
        assert_eq!(fwd[0].hops, 5, "hops + 1");
        assert_eq!(
            fwd[0].auth,
            Some(origin.sign(&id)),
            "signature relayed unchanged"
        );
        assert_eq!(fwd[0].auth.unwrap().verify(&origin.peer_id(), &id), Ok(()));
    }
    // A GRAFT answer carries it too.
    let actions = bed.input(Input::Received {
        conn: ConnId(2),
        data: Bytes::from(event(Kind::Graft, &id.0)),
    });
    let answer = gossip_frames_to(&actions, 2);
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].auth, Some(origin.sign(&id)));
    assert_eq!(&answer[0].payload[..], b"hello");
}

#[test]
fn broadcasts_are_signed_in_sign_mode_only() {
    for (mode, signed) in [(OriginAuth::Sign, true), (OriginAuth::None, false)] {
        let mut bed = Bed::new(mode);
        let actions = bed.input(Input::Broadcast {
            request: 1,
            payload: Bytes::from_static(b"mine"),
        });
        let id = actions
            .iter()
            .find_map(|a| match a {
                Action::BroadcastResult { result, .. } => result.ok(),
                _ => None,
            })
            .unwrap();
        let me = NODE_SEED.peer_id();
        assert_eq!(bed.node.identity().peer_id, me);
        for conn in 1..=3 {
            let out = gossip_frames_to(&actions, conn);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].id, MessageId::compute(&me, out[0].nonce, b"mine"));
            assert_eq!(out[0].id, id);
            assert_eq!(out[0].auth.is_some(), signed, "{mode:?}");
            if let Some(auth) = out[0].auth {
                assert_eq!(auth.verify(&me, &id), Ok(()));
            }
        }
    }
}

#[test]
fn none_mode_accepts_unsigned_and_relays_signed_frames_unchanged() {
    let mut bed = Bed::new(OriginAuth::None);
    // Unsigned, any origin: accepted (only the id is checked).
    let (id, unsigned) = wire::gossip_body(&PeerId([0x77; 32]), 1, 0, b"plain", None);
    let actions = bed.gossip_from(1, &unsigned);
    assert_eq!(delivered(&actions), vec![id]);
    assert_eq!(gossip_frames_to(&actions, 2)[0].auth, None);
    // Signed: accepted without verification and relayed with the signature, so sign-mode
    // nodes behind this one can still check it.
    let origin = peer(5);
    let (id, signed) = wire::gossip_body(&origin.peer_id(), 2, 0, b"signed", Some(&origin));
    let actions = bed.gossip_from(1, &signed);
    assert_eq!(delivered(&actions), vec![id]);
    let fwd = gossip_frames_to(&actions, 3);
    assert_eq!(fwd[0].auth, Some(origin.sign(&id)));
    assert_eq!(
        bed.node.stats().rejected.total(),
        0,
        "nothing rejected in none mode"
    );
}

#[test]
fn a_duplicate_id_is_not_checked_again_nor_stored() {
    // The id is already held: the frame is a duplicate whatever its content, and nothing
    // about the stored message changes.
    let mut bed = Bed::new(OriginAuth::Sign);
    let origin = peer(4);
    let (id, body) = wire::gossip_body(&origin.peer_id(), 1, 0, b"first", Some(&origin));
    assert_eq!(delivered(&bed.gossip_from(1, &body)), vec![id]);
    let mut garbage = body.clone();
    let last = garbage.len() - 1;
    garbage[last] ^= 0xFF;
    let actions = bed.gossip_from(2, &garbage);
    assert!(delivered(&actions).is_empty());
    assert_eq!(bed.node.stats().gossip_duplicates, 1);
    // A GRAFT for the id is answered with the original payload.
    let actions = bed.input(Input::Received {
        conn: ConnId(3),
        data: Bytes::from(event(Kind::Graft, &id.0)),
    });
    assert_eq!(&gossip_frames_to(&actions, 3)[0].payload[..], b"first");
}

#[test]
fn sign_mode_needs_a_matching_ed25519_key() {
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    assert_eq!(cfg.origin_auth, OriginAuth::Sign, "sign is the default");
    let keyless = NodeIdentity::new(PeerId([1; 32]), None);
    let err = Node::new(cfg.clone(), keyless.clone(), 1).unwrap_err();
    assert_eq!(err.setting, "origin_auth");
    let mut mismatched = NodeIdentity::from_signing_seed(SigningSeed([1; 32]), None);
    mismatched.peer_id = PeerId([1; 32]);
    assert_eq!(
        Node::new(cfg.clone(), mismatched, 1).unwrap_err().setting,
        "signing_key"
    );
    cfg.origin_auth = OriginAuth::None;
    assert!(Node::new(cfg, keyless, 1).is_ok());
}

#[test]
fn the_mesh_delivers_everywhere_in_both_modes() {
    for mode in [OriginAuth::Sign, OriginAuth::None] {
        let mut config = MeshConfig {
            nodes: 24,
            seed: 5,
            ..MeshConfig::default()
        };
        config.node_config.origin_auth = mode;
        let mut mesh = Mesh::new(config).unwrap();
        mesh.run_for(Duration::from_secs(3));
        let mut ids = Vec::new();
        for k in 0..5 {
            ids.push(
                mesh.broadcast(k * 4, Bytes::from(vec![k as u8; 100]))
                    .unwrap(),
            );
            mesh.run_for(Duration::from_millis(300));
        }
        mesh.run_for(Duration::from_secs(2));
        for id in ids {
            let track = mesh.track(&id).unwrap();
            assert_eq!(track.delivered.len(), 23, "{mode:?}: every other node");
        }
        for i in 0..24 {
            let s = mesh.stats(i).unwrap();
            assert_eq!(s.rejected.get(RejectReason::BadId), 0);
            assert_eq!(s.rejected.get(RejectReason::BadSignature), 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Honest signed messages, from any key, with any nonce, hops and payload, always verify:
    /// on the wire and at a sign-mode node, which delivers them byte for byte.
    #[test]
    fn honest_signed_messages_always_verify(
        key in any::<[u8; 32]>(),
        nonce in any::<u64>(),
        hops in 0u8..=254,
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let origin = OriginSigner::new(&SigningSeed(key));
        let (id, body) = wire::gossip_body(&origin.peer_id(), nonce, hops, &payload, Some(&origin));
        prop_assert_eq!(body[73], GOSSIP_AUTH_ED25519);
        let msg = wire::parse_gossip(&Bytes::from(body.clone())).unwrap();
        prop_assert_eq!(msg.auth.unwrap().verify(&origin.peer_id(), &id), Ok(()));

        let mut bed = Bed::new(OriginAuth::Sign);
        let actions = bed.gossip_from(1, &body);
        let got: Vec<&Bytes> = actions.iter().filter_map(|a| match a {
            Action::Deliver(d) => Some(&d.payload),
            _ => None,
        }).collect();
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(&got[0][..], &payload[..]);
        prop_assert_eq!(bed.node.stats().rejected.total(), 0);
    }
}

#[test]
fn an_unsigned_payload_over_the_limit_is_413_once_parsed() {
    // The header check allows for the signed header; the parsed payload must fit exactly.
    let mut cfg = NodeConfig::default();
    cfg.auth.require_token = false;
    cfg.origin_auth = OriginAuth::None;
    cfg.max_message_bytes = 100;
    let mut bed = Bed {
        node: Node::new(cfg, NodeIdentity::new(PeerId([0xC0; 32]), None), 1).unwrap(),
        now: Instant::ZERO,
    };
    bed.open(1);
    bed.open(2);
    let (_, ok) = wire::gossip_body(&PeerId([1; 32]), 1, 0, &[7; 100], None);
    assert_eq!(delivered(&bed.gossip_from(1, &ok)).len(), 1);
    let (_, big) = wire::gossip_body(&PeerId([1; 32]), 2, 0, &[7; 101], None);
    let actions = bed.gossip_from(2, &big);
    assert!(delivered(&actions).is_empty());
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Close {
            reason: CloseReason::Violation(OverlayError::TooLarge),
            ..
        }
    )));
    assert_eq!(bed.rejected(RejectReason::Oversize), 1);
}
