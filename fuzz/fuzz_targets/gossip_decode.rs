//! Fuzzes every overlay message decoder with the same arbitrary bytes: the message-kind table,
//! GOSSIP (unsigned and Ed25519-signed), IHAVE, GRAFT, CREDIT, SHUFFLE / SHUFFLE_REPLY, the
//! HELLO JSON bodies and the HELLO reply frame.
//!
//! Checked on every input, besides "no panic":
//! - what decodes re-encodes to exactly the bytes it came from (GOSSIP header + payload,
//!   CREDIT, SHUFFLE), and IHAVE / GRAFT yield exactly one entry per fixed-size chunk;
//! - a decoder that refuses reports the kind it was decoding;
//! - a HELLO body that parses serializes to JSON that parses back to the same value;
//! - a signed GOSSIP whose key is not the origin's is refused as a forged origin, and a fresh
//!   signature always verifies.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use overlay_proto::frame::{decode, HelloReply};
use overlay_proto::origin::OriginAuthError;
use overlay_proto::wire::{
    parse_credit, parse_gossip, parse_graft, parse_ihave, parse_shuffle, put_credit,
    put_gossip_header_with, put_shuffle, HelloOverlay, HelloRequestBody, Kind,
    IHAVE_ENTRY_LEN as IHAVE_ENTRY,
};
use overlay_proto::{MessageId, OriginSigner, SigningSeed};

fn check_gossip(body: &Bytes) {
    match parse_gossip(body) {
        Ok(msg) => {
            let mut again = BytesMut::new();
            put_gossip_header_with(
                &mut again,
                &msg.id,
                &msg.origin,
                msg.nonce,
                msg.hops,
                msg.auth.as_ref(),
            );
            again.extend_from_slice(&msg.payload);
            assert_eq!(&again[..], &body[..], "GOSSIP re-encodes to its bytes");
            check_origin_signature(&msg.origin, &msg.id, msg.auth.as_ref());
        }
        Err(e) => assert_eq!(e.kind, Kind::Gossip),
    }
}

/// The signed format: an arbitrary signature never verifies for a key that is not the
/// origin's, verification never panics, and the same id re-signed by a key derived from the
/// input always verifies for that key's PeerId.
fn check_origin_signature(
    origin: &overlay_proto::PeerId,
    id: &MessageId,
    auth: Option<&overlay_proto::OriginSignature>,
) {
    if let Some(auth) = auth {
        let verdict = auth.verify(origin, id);
        if overlay_proto::PeerId::from_ed25519_public(&auth.key) != *origin {
            assert_eq!(verdict, Err(OriginAuthError::ForgedOrigin));
        }
    }
    let signer = OriginSigner::new(&SigningSeed(id.0));
    let signed = signer.sign(id);
    assert_eq!(signed.verify(&signer.peer_id(), id), Ok(()), "a fresh signature verifies");
}

fn check_ihave_graft(body: &[u8]) {
    match parse_ihave(body) {
        Ok(entries) => {
            let entries: Vec<_> = entries.collect();
            assert_eq!(entries.len() * IHAVE_ENTRY, body.len(), "one entry per chunk");
            for ((id, hops), chunk) in entries.iter().zip(body.chunks_exact(IHAVE_ENTRY)) {
                assert_eq!(&id.0[..], &chunk[..MessageId::LEN]);
                assert_eq!(*hops, chunk[MessageId::LEN]);
            }
        }
        Err(e) => assert_eq!(e.kind, Kind::IHave),
    }
    match parse_graft(body) {
        Ok(ids) => {
            let ids: Vec<_> = ids.collect();
            assert_eq!(ids.len() * MessageId::LEN, body.len(), "one id per chunk");
            for (id, chunk) in ids.iter().zip(body.chunks_exact(MessageId::LEN)) {
                assert_eq!(&id.0[..], chunk);
            }
        }
        Err(e) => assert_eq!(e.kind, Kind::Graft),
    }
}

fn check_credit(body: &[u8]) {
    match parse_credit(body) {
        Ok(grant) => {
            let mut again = BytesMut::new();
            put_credit(&mut again, grant);
            assert_eq!(&again[..], body, "CREDIT re-encodes to its bytes");
        }
        Err(e) => {
            assert_eq!(e.kind, Kind::Credit);
            assert_ne!(body.len(), 8, "every 8-byte CREDIT body decodes");
        }
    }
}

fn check_shuffle(body: &[u8]) {
    for kind in [Kind::Shuffle, Kind::ShuffleReply] {
        match parse_shuffle(kind, body) {
            Ok(entries) => {
                let mut again = BytesMut::new();
                put_shuffle(&mut again, &entries);
                assert_eq!(&again[..], body, "{kind:?} re-encodes to its bytes");
            }
            Err(e) => assert_eq!(e.kind, kind),
        }
    }
}

fn check_hello(body: &[u8]) {
    if let Ok(hello) = serde_json::from_slice::<HelloRequestBody>(body) {
        let json = serde_json::to_vec(&hello).expect("a parsed HELLO serializes");
        let back: HelloRequestBody = serde_json::from_slice(&json).expect("and parses back");
        assert_eq!(back, hello);
    }
    if let Ok(reply) = serde_json::from_slice::<HelloOverlay>(body) {
        let json = serde_json::to_vec(&reply).expect("a parsed HELLO reply serializes");
        let back: HelloOverlay = serde_json::from_slice(&json).expect("and parses back");
        assert_eq!(back, reply);
    }
}

/// The bytes as an OAP/1 frame carrying a HELLO reply: the reply decoder never panics.
fn check_hello_reply(data: &[u8]) {
    if let Ok(Some(frame)) = decode(&mut BytesMut::from(data)) {
        let _ = HelloReply::from_frame(&frame);
    }
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes as a message code: the kind table round-trips.
    if let [hi, lo, ..] = data {
        let code = u16::from_be_bytes([*hi, *lo]);
        if let Some(kind) = Kind::from_code(code) {
            assert_eq!(kind.code(), code);
            assert_eq!(Kind::ALL[kind.index()], kind);
        }
    }
    let body = Bytes::copy_from_slice(data);
    check_gossip(&body);
    check_ihave_graft(data);
    check_credit(data);
    check_shuffle(data);
    check_hello(data);
    check_hello_reply(data);
});
