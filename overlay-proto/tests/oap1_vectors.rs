//! Checks the OAP/1 codec against the reference vectors (the in-repo copy
//! `overlay-proto/tests/vectors/oap1_frames.json`, or the file named by `OAP1_VECTORS`).
//!
//! Every check fails loudly: a missing file, a missing section or an empty section is an error,
//! and each test prints how many vectors it checked (`cargo test -- --nocapture`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use bytes::BytesMut;
use overlay_proto::frame::{
    decode, encode, flags, hello_request, peek, Frame, FrameError, FrameParser, Header, HelloReply,
    HEADER_LEN,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn vectors_path() -> PathBuf {
    match std::env::var_os("OAP1_VECTORS") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/oap1_frames.json"
        )),
    }
}

fn load() -> Value {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read OAP/1 vectors at {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()))
}

/// The named top-level array; panics if it is missing or empty.
fn section<'a>(doc: &'a Value, name: &str) -> &'a [Value] {
    let items = doc[name]
        .as_array()
        .unwrap_or_else(|| panic!("vector file has no `{name}` array"));
    assert!(!items.is_empty(), "vector section `{name}` is empty");
    items
}

fn name(v: &Value) -> &str {
    v["name"].as_str().unwrap_or("<unnamed>")
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("expected a hex string, got {v}")),
    )
    .unwrap_or_else(|e| panic!("bad hex {v}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `byte[i] = i % 251`, the rule big vectors use for generated sections.
fn rule_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("missing integer `{key}` in {v}"))
}

fn u16_field(v: &Value, key: &str) -> u16 {
    u16::try_from(u64_field(v, key)).unwrap_or_else(|_| panic!("`{key}` is not a u16 in {v}"))
}

fn expected_header(v: &Value) -> Header {
    let h = &v["header"];
    let tenant = h["tenant_id"].as_str().expect("tenant_id string");
    assert_eq!(tenant.len(), 32, "tenant_id must be 32 hex digits");
    let corr_id = u64_field(h, "corr_id");
    if let Some(corr_hex) = v["corr_id_hex"].as_str() {
        assert_eq!(
            u64::from_str_radix(corr_hex, 16).expect("corr_id_hex"),
            corr_id,
            "{}: corr_id_hex disagrees with corr_id",
            name(v)
        );
    }
    Header {
        len: u32::try_from(u64_field(h, "len")).expect("len fits u32"),
        ver: u16_field(h, "ver"),
        flags: u16_field(h, "flags"),
        code: u16_field(h, "code"),
        app_proto_id: u16_field(h, "app_proto_id"),
        tenant_id: u128::from_str_radix(tenant, 16).expect("tenant_id hex"),
        cap_len: u16_field(h, "cap_len"),
        corr_id,
    }
}

/// What one decode call did: the class (`need_more`, `frame` or an error class), how many
/// bytes it removed, and the frame if any.
struct Outcome {
    class: &'static str,
    consumed: usize,
    frame: Option<Frame>,
    error: Option<FrameError>,
}

fn decode_once(buf: &mut BytesMut) -> Outcome {
    let before = buf.len();
    let result = decode(buf);
    let consumed = before - buf.len();
    match result {
        Ok(None) => Outcome {
            class: "need_more",
            consumed,
            frame: None,
            error: None,
        },
        Ok(Some(frame)) => Outcome {
            class: "frame",
            consumed,
            frame: Some(frame),
            error: None,
        },
        Err(e) => Outcome {
            class: e.class(),
            consumed,
            frame: None,
            error: Some(e),
        },
    }
}

fn decode_fresh(bytes: &[u8]) -> Outcome {
    decode_once(&mut BytesMut::from(bytes))
}

/// `peek` must agree with `decode` on a fresh buffer: same header error, `Ok(None)` when fewer
/// than 38 bytes, and a header exactly when decode did not fail on the header.
fn check_peek_agrees(label: &str, bytes: &[u8], outcome: &Outcome) {
    match peek(bytes) {
        Ok(None) => {
            assert!(
                bytes.len() < HEADER_LEN,
                "{label}: peek None on a full header"
            );
            assert_eq!(outcome.class, "need_more", "{label}");
        }
        Ok(Some(header)) => {
            assert_eq!(Header::read(bytes), Some(header), "{label}");
            if outcome.error.is_some() {
                assert_eq!(
                    outcome.consumed, header.len as usize,
                    "{label}: peek accepted the header, so only a body error may follow"
                );
            }
        }
        Err(e) => {
            assert_eq!(Some(&e), outcome.error.as_ref(), "{label}: peek vs decode");
            assert_eq!(
                outcome.consumed, 0,
                "{label}: header errors consume nothing"
            );
        }
    }
}

fn section_bytes(v: &Value, sec: &str) -> Vec<u8> {
    match v[format!("{sec}_hex")].as_str() {
        Some(hex) => hex::decode(hex).expect("section hex"),
        None => {
            assert!(
                v[format!("{sec}_rule")].is_string() || v[format!("{sec}_len")] == 0,
                "{}: {sec} has neither hex nor rule",
                name(v)
            );
            rule_bytes(u64_field(v, &format!("{sec}_len")) as usize)
        }
    }
}

fn check_digest(v: &Value, key: &str, bytes: &[u8]) -> usize {
    match v[key].as_str() {
        Some(expected) => {
            assert_eq!(sha256_hex(bytes), expected, "{}: {key}", name(v));
            1
        }
        None => 0,
    }
}

/// The frame bytes of a `valid` entry, rebuilt from `header_hex` and the rules for big frames.
/// Returns the bytes and whether the frame is big (digests instead of hex).
fn valid_frame_bytes(v: &Value) -> (Vec<u8>, Vec<u8>, Vec<u8>, bool) {
    let cap = section_bytes(v, "cap");
    let payload = section_bytes(v, "payload");
    if let Some(hex) = v["hex"].as_str() {
        return (hex::decode(hex).expect("frame hex"), cap, payload, false);
    }
    let mut bytes = unhex(&v["header_hex"]);
    assert_eq!(bytes.len(), HEADER_LEN, "{}: header_hex length", name(v));
    bytes.extend_from_slice(&cap);
    bytes.extend_from_slice(&payload);
    assert_eq!(bytes.len() as u64, u64_field(v, "frame_len"), "{}", name(v));
    let mut digests = 0;
    digests += check_digest(v, "frame_sha256", &bytes);
    digests += check_digest(v, "frame_hex_sha256", hex::encode(&bytes).as_bytes());
    digests += check_digest(v, "cap_sha256", &cap);
    digests += check_digest(v, "cap_hex_sha256", hex::encode(&cap).as_bytes());
    digests += check_digest(v, "payload_sha256", &payload);
    digests += check_digest(v, "payload_hex_sha256", hex::encode(&payload).as_bytes());
    assert!(
        v["frame_sha256"].is_string(),
        "{}: big frame without frame_sha256",
        name(v)
    );
    assert!(digests >= 3, "{}: too few digests to check", name(v));
    (bytes, cap, payload, true)
}

const FLAG_NAMES: [(&str, u16); 8] = [
    ("REQ", flags::REQ),
    ("RESP", flags::RESP),
    ("EVENT", flags::EVENT),
    ("START", flags::START),
    ("END", flags::END),
    ("ACK_REQ", flags::ACK_REQ),
    ("COMP", flags::COMP),
    ("APP_E2E", flags::APP_E2E),
];

#[test]
fn valid_frames() {
    let doc = load();
    let (mut frames, mut prefixes, mut big) = (0, 0, 0);
    for v in section(&doc, "valid") {
        let label = name(v);
        let (bytes, cap, payload, is_big) = valid_frame_bytes(v);
        let header = expected_header(v);
        assert_eq!(Header::read(&bytes), Some(header), "{label}: header fields");
        assert_eq!(header.len as usize, bytes.len(), "{label}: len");
        assert_eq!(usize::from(header.cap_len), cap.len(), "{label}: cap_len");
        assert_eq!(header.payload_len(), payload.len(), "{label}: payload_len");

        if let Some(names) = v["flag_names"].as_array() {
            let mut expected: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            let mut actual: Vec<&str> = FLAG_NAMES
                .iter()
                .filter(|(_, bit)| header.flags & bit != 0)
                .map(|(n, _)| *n)
                .collect();
            expected.sort_unstable();
            actual.sort_unstable();
            assert_eq!(actual, expected, "{label}: flag_names");
        }

        // One decode call on exactly the frame.
        let mut buf = BytesMut::from(&bytes[..]);
        let outcome = decode_once(&mut buf);
        check_peek_agrees(label, &bytes, &outcome);
        assert_eq!(outcome.consumed, bytes.len(), "{label}: consumed");
        assert!(buf.is_empty(), "{label}: left bytes behind");
        let expected = v["upstream_decode"].as_str().expect("upstream_decode");
        assert_eq!(outcome.class, expected, "{label}: decode result");
        if let Some(frame) = outcome.frame {
            assert_eq!(frame.header, header, "{label}: decoded header");
            assert_eq!(frame.cap.is_none(), cap.is_empty(), "{label}: cap presence");
            assert_eq!(
                frame.payload.is_none(),
                payload.is_empty(),
                "{label}: payload presence"
            );
            let got_cap = frame.cap.as_deref().unwrap_or_default();
            let got_payload = frame.payload.as_deref().unwrap_or_default();
            if is_big {
                assert_eq!(sha256_hex(got_cap), v["cap_sha256"], "{label}: cap digest");
                assert_eq!(
                    sha256_hex(got_payload),
                    v["payload_sha256"],
                    "{label}: payload digest"
                );
            }
            assert!(got_cap == cap.as_slice(), "{label}: cap bytes");
            assert!(got_payload == payload.as_slice(), "{label}: payload bytes");
        }

        // Every strict prefix waits (all of them for small frames, samples for big ones).
        let cuts: Vec<usize> = if is_big {
            let len = bytes.len();
            let mut cuts = vec![0, 1, 37, 38, 39, len / 2, len - 1];
            cuts.retain(|&n| n < len);
            cuts
        } else {
            (0..bytes.len()).collect()
        };
        for cut in cuts {
            let prefix = &bytes[..cut];
            let outcome = decode_fresh(prefix);
            assert_eq!(outcome.class, "need_more", "{label}: prefix of {cut} bytes");
            assert_eq!(outcome.consumed, 0, "{label}: prefix of {cut} bytes");
            check_peek_agrees(label, prefix, &outcome);
            prefixes += 1;
        }

        // The reference encoder reproduces the bytes (len/cap_len recomputed from the sections).
        let template = Header {
            len: 0,
            cap_len: 0,
            ..header
        };
        let mut out = BytesMut::new();
        encode(&template, &cap, &payload, &mut out).expect("re-encode");
        assert!(out[..] == bytes[..], "{label}: re-encoding differs");

        frames += 1;
        big += usize::from(is_big);
    }
    assert!(frames > 0 && prefixes > 0);
    println!("valid: {frames} frames ({big} big), {prefixes} strict prefixes checked");
}

#[test]
fn hello_frames() {
    let doc = load();
    let (mut requests, mut replies) = (0, 0);
    for v in section(&doc, "valid") {
        let header = expected_header(v);
        if header.app_proto_id != 0 || v["upstream_decode"] != "frame" {
            continue;
        }
        let label = name(v);
        let Some(hex) = v["hex"].as_str() else {
            continue;
        };
        let bytes = hex::decode(hex).expect("hex");
        let frame = decode(&mut BytesMut::from(&bytes[..]))
            .expect("decode")
            .expect("frame");
        let mut out = BytesMut::new();
        if header.flags == flags::REQ {
            let body: Value = serde_json::from_slice(frame.payload.as_deref().unwrap_or_default())
                .expect("HELLO request JSON");
            let ua = body["ua"].as_str();
            hello_request(ua, header.tenant_id, header.corr_id, &mut out);
            assert!(out[..] == bytes[..], "{label}: hello_request bytes");
            requests += 1;
        } else if header.flags == flags::RESP {
            let reply = HelloReply::from_frame(&frame).expect("HELLO reply");
            reply.to_frame(header.tenant_id, header.corr_id, &mut out);
            assert!(out[..] == bytes[..], "{label}: HelloReply::to_frame bytes");
            if label == "hello_reply_default" {
                assert_eq!(reply, HelloReply::default_for_server(), "{label}");
                let mut fresh = BytesMut::new();
                HelloReply::default_for_server().to_frame(
                    0x0123_4567_89ab_cdef_0011_2233_4455_6677,
                    1,
                    &mut fresh,
                );
                assert!(fresh[..] == bytes[..], "{label}: default_for_server bytes");
            }
            replies += 1;
        }
    }
    assert!(requests > 0, "no HELLO request vector");
    assert!(replies > 0, "no HELLO reply vector");
    println!("hello: {requests} requests, {replies} replies reproduced");
}

#[test]
fn invalid_inputs() {
    let doc = load();
    let mut checked = 0;
    for v in section(&doc, "invalid") {
        let label = name(v);
        let bytes = unhex(&v["hex"]);
        let outcome = decode_fresh(&bytes);
        let expected = v["expected"].as_str().expect("expected");
        assert_eq!(outcome.class, expected, "{label}: class");
        assert_eq!(
            outcome.consumed as u64,
            u64_field(v, "consumed_bytes"),
            "{label}: consumed_bytes"
        );
        if let (Some(text), Some(err)) = (v["upstream_error"].as_str(), &outcome.error) {
            assert_eq!(err.to_string(), text, "{label}: error text");
        }
        check_peek_agrees(label, &bytes, &outcome);

        // The parser reports the same thing and keeps what decode keeps.
        let mut parser = FrameParser::new();
        parser.push(&bytes).expect("push");
        let class = match parser.try_next() {
            Ok(None) => "need_more",
            Ok(Some(_)) => "frame",
            Err(e) => e.class(),
        };
        assert_eq!(class, expected, "{label}: FrameParser");
        assert_eq!(parser.buffered(), bytes.len() - outcome.consumed, "{label}");
        checked += 1;
    }
    assert!(checked > 0);
    println!("invalid: {checked} inputs checked");
}

#[test]
fn chunked_inputs() {
    let doc = load();
    let (mut cases, mut chunks_seen) = (0, 0);
    for v in section(&doc, "invalid") {
        let Some(chunks) = v["chunks_hex"].as_array() else {
            continue;
        };
        let label = name(v);
        let expected = v["expected_after_each_chunk"]
            .as_array()
            .expect("expected_after_each_chunk");
        assert_eq!(chunks.len(), expected.len(), "{label}");
        let chunks: Vec<Vec<u8>> = chunks.iter().map(unhex).collect();
        assert_eq!(
            chunks.concat(),
            unhex(&v["full_hex"]),
            "{label}: chunks vs full_hex"
        );

        let mut buf = BytesMut::new();
        let mut parser = FrameParser::new();
        for (i, (chunk, want)) in chunks.iter().zip(expected).enumerate() {
            let want = want.as_str().expect("class");
            buf.extend_from_slice(chunk);
            assert_eq!(decode_once(&mut buf).class, want, "{label}: chunk {i}");
            parser.push(chunk).expect("push");
            let class = match parser.try_next() {
                Ok(None) => "need_more",
                Ok(Some(_)) => "frame",
                Err(e) => e.class(),
            };
            assert_eq!(class, want, "{label}: parser after chunk {i}");
            chunks_seen += 1;
        }
        cases += 1;
    }
    assert!(cases > 0, "no chunked (split_frame) vector");
    println!("chunked: {cases} cases, {chunks_seen} chunks checked");
}

#[test]
fn streams() {
    let doc = load();
    let (mut streams, mut steps) = (0, 0);
    for v in section(&doc, "streams") {
        let label = name(v);
        let mut buf = BytesMut::from(&unhex(&v["hex"])[..]);
        let sequence = v["decode_sequence"].as_array().expect("decode_sequence");
        assert!(!sequence.is_empty(), "{label}: empty decode_sequence");
        for (i, step) in sequence.iter().enumerate() {
            let outcome = decode_once(&mut buf);
            let want = step["result"].as_str().expect("result");
            assert_eq!(outcome.class, want, "{label}: step {i}");
            if let Some(len) = step["len"].as_u64() {
                assert_eq!(outcome.consumed as u64, len, "{label}: step {i} len");
                if let Some(frame) = &outcome.frame {
                    assert_eq!(u64::from(frame.header.len), len, "{label}: step {i}");
                }
            }
            if let Some(remaining) = step["remaining_bytes"].as_u64() {
                assert_eq!(buf.len() as u64, remaining, "{label}: step {i} remaining");
            }
            steps += 1;
        }
        streams += 1;
    }
    assert!(streams > 0 && steps > 0);
    println!("streams: {streams} streams, {steps} decode steps checked");
}

/// The first number after `marker` in `text` (e.g. `"payload 1048539 bytes"`).
fn number_after(text: &str, marker: &str) -> Option<usize> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn encoder_cases() {
    let doc = load();
    let mut checked = 0;
    for v in section(&doc, "encoder_cases") {
        let label = name(v);
        let result = v["result"].as_str().expect("result");
        let mut out = BytesMut::from(&b"prefix"[..]);
        if let Some(hex) = v["hex"].as_str() {
            // The vector's output: rebuild the inputs from it, with a stale `len`/`cap_len`.
            let bytes = hex::decode(hex).expect("hex");
            let header = Header::read(&bytes).expect("header");
            let body = &bytes[HEADER_LEN..];
            let (cap, payload) = body.split_at(usize::from(header.cap_len));
            let stale = Header {
                len: 999,
                cap_len: 0,
                ..header
            };
            assert_eq!(result, "ok", "{label}");
            encode(&stale, cap, payload, &mut out).expect("encode");
            assert!(out[6..] == bytes[..], "{label}: encoder output");
            if let Some(want) = v["decoder_on_output"].as_str() {
                assert_eq!(
                    decode_fresh(&bytes).class,
                    want,
                    "{label}: decoder on output"
                );
            }
        } else {
            let desc = v["description"].as_str().expect("description");
            let payload = vec![0u8; number_after(desc, "payload").unwrap_or(0)];
            let cap = vec![0u8; number_after(desc, "cap of").unwrap_or(0)];
            assert!(
                !payload.is_empty() || !cap.is_empty(),
                "{label}: cannot tell the encoder inputs from {desc:?}"
            );
            let header = Header {
                ver: 1,
                flags: flags::START | flags::REQ,
                ..Header::default()
            };
            let got = match encode(&header, &cap, &payload, &mut out) {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            assert_eq!(got, result, "{label}");
            if result != "ok" {
                assert!(out[..] == b"prefix"[..], "{label}: output touched on error");
            }
        }
        checked += 1;
    }
    assert!(checked > 0);
    println!("encoder_cases: {checked} cases checked");
}
