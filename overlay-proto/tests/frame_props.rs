//! Property tests of the OAP/1 codec: round trips, arbitrary input, chunked streams, `peek`
//! against `decode`, and `encode_strict` against the decoder.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use overlay_proto::frame::{
    decode, encode, encode_strict, flags, peek, Frame, FrameError, FrameParser, Header, HEADER_LEN,
};
use proptest::prelude::*;

/// Any header; `len` and `cap_len` are arbitrary since the encoder recomputes them.
fn any_header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u128>(),
        any::<u16>(),
        any::<u64>(),
    )
        .prop_map(
            |(len, ver, flags, code, app_proto_id, tenant_id, cap_len, corr_id)| Header {
                len,
                ver,
                flags,
                code,
                app_proto_id,
                tenant_id,
                cap_len,
                corr_id,
            },
        )
}

/// Header, cap and payload that `decode` returns as a frame: version 1, defined flags without
/// COMP, and a cap only under START.
fn valid_parts() -> impl Strategy<Value = (Header, Vec<u8>, Vec<u8>)> {
    (
        any_header(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..96),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(header, bits, cap, payload)| {
            let flags = u16::from(bits) & !flags::COMP;
            let cap = if flags & flags::START != 0 {
                cap
            } else {
                Vec::new()
            };
            (
                Header {
                    ver: 1,
                    flags,
                    ..header
                },
                cap,
                payload,
            )
        })
}

fn encoded((header, cap, payload): &(Header, Vec<u8>, Vec<u8>)) -> BytesMut {
    let mut out = BytesMut::new();
    encode(header, cap, payload, &mut out).expect("bounded sizes encode");
    out
}

/// Arbitrary bytes, and valid frames with a few bytes overwritten and cut or extended.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..160),
        (
            valid_parts(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 0..48),
        )
            .prop_map(|(parts, edits, cut, tail)| {
                let mut bytes = encoded(&parts).to_vec();
                for (at, byte) in edits {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                bytes.extend_from_slice(&tail);
                bytes
            }),
    ]
}

fn reencode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode(
        &frame.header,
        frame.cap.as_deref().unwrap_or_default(),
        frame.payload.as_deref().unwrap_or_default(),
        &mut out,
    )
    .expect("a decoded frame re-encodes");
    out
}

/// Decodes `bytes` as one buffer until need more or a header error (which would repeat);
/// returns the frames and errors in order.
fn decode_all(bytes: &[u8]) -> Vec<Result<Frame, FrameError>> {
    let mut buf = BytesMut::from(bytes);
    let mut events = Vec::new();
    loop {
        let before = buf.len();
        match decode(&mut buf) {
            Ok(None) => return events,
            Ok(Some(frame)) => events.push(Ok(frame)),
            Err(e) => {
                events.push(Err(e));
                if buf.len() == before {
                    return events;
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trip(parts in valid_parts(), trailing in prop::collection::vec(any::<u8>(), 0..8)) {
        let (header, cap, payload) = &parts;
        let mut buf = encoded(&parts);
        let len = buf.len();
        prop_assert_eq!(len, HEADER_LEN + cap.len() + payload.len());
        buf.extend_from_slice(&trailing);
        let frame = decode(&mut buf).unwrap().expect("a whole frame");
        prop_assert_eq!(&buf[..], &trailing[..]);
        let expected = Header { len: len as u32, cap_len: cap.len() as u16, ..*header };
        prop_assert_eq!(frame.header, expected);
        prop_assert_eq!(frame.cap.as_deref().unwrap_or_default(), &cap[..]);
        prop_assert_eq!(frame.payload.as_deref().unwrap_or_default(), &payload[..]);
        prop_assert_eq!(frame.cap.is_none(), cap.is_empty());
        prop_assert_eq!(frame.payload.is_none(), payload.is_empty());
    }

    #[test]
    fn decode_arbitrary_bytes(bytes in wire_bytes()) {
        let mut buf = BytesMut::from(&bytes[..]);
        let result = decode(&mut buf);
        let consumed = bytes.len() - buf.len();
        prop_assert_eq!(&buf[..], &bytes[consumed..]);
        match result {
            Ok(None) => prop_assert_eq!(consumed, 0),
            Ok(Some(frame)) => {
                prop_assert_eq!(consumed, frame.header.len as usize);
                prop_assert_eq!(&reencode(&frame)[..], &bytes[..consumed]);
            }
            Err(e) => {
                let header = Header::read(&bytes).expect("errors need a header");
                prop_assert!(consumed == 0 || consumed == header.len as usize, "{e:?} consumed {consumed}");
                prop_assert_ne!(e, FrameError::PayloadOutOfBounds);
            }
        }
    }

    #[test]
    fn peek_agrees_with_decode(bytes in wire_bytes()) {
        let mut buf = BytesMut::from(&bytes[..]);
        let decoded = decode(&mut buf);
        let consumed = bytes.len() - buf.len();
        match peek(&bytes) {
            Ok(None) => {
                prop_assert!(bytes.len() < HEADER_LEN);
                prop_assert_eq!(decoded, Ok(None));
            }
            Ok(Some(header)) => {
                prop_assert_eq!(header.validate(), Ok(()));
                match decoded {
                    Ok(None) => prop_assert!(bytes.len() < header.len as usize),
                    Ok(Some(frame)) => prop_assert_eq!(frame.header, header),
                    Err(_) => prop_assert_eq!(consumed, header.len as usize),
                }
            }
            Err(e) => {
                prop_assert_eq!(e.class(), decoded.expect_err("peek failed").class());
                prop_assert_eq!(consumed, 0);
            }
        }
    }

    #[test]
    fn chunked_parser_matches_whole_buffer(
        frames in prop::collection::vec(wire_bytes(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream = frames.concat();
        let expected = decode_all(&stream);

        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut parser = FrameParser::new();
        let mut events = Vec::new();
        let mut start = 0;
        'feed: for cut in cuts {
            parser.push(&stream[start..cut]).expect("under the soft cap");
            start = cut;
            loop {
                let before = parser.buffered();
                match parser.try_next() {
                    Ok(None) => break,
                    Ok(Some(frame)) => events.push(Ok(frame)),
                    Err(e) => {
                        events.push(Err(e));
                        if parser.buffered() == before {
                            break 'feed;
                        }
                    }
                }
            }
        }
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn valid_frames_survive_any_split(
        parts in prop::collection::vec(valid_parts(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = parts.iter().flat_map(|p| encoded(p).to_vec()).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut parser = FrameParser::new();
        let mut frames = Vec::new();
        let mut start = 0;
        for cut in cuts {
            parser.push(&stream[start..cut]).unwrap();
            start = cut;
            frames.extend(parser.drain().unwrap());
        }
        prop_assert_eq!(parser.buffered(), 0);
        prop_assert_eq!(frames.len(), parts.len());
        for (frame, (_, cap, payload)) in frames.iter().zip(&parts) {
            prop_assert_eq!(frame.cap.as_deref().unwrap_or_default(), &cap[..]);
            prop_assert_eq!(frame.payload.as_deref().unwrap_or_default(), &payload[..]);
        }
    }

    #[test]
    fn encode_strict_output_always_decodes(
        header in any_header(),
        small_bits in any::<bool>(),
        cap in prop::collection::vec(any::<u8>(), 0..40),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        // Bias towards plausible headers so both outcomes are well covered.
        let header = if small_bits {
            Header { ver: 1 + header.ver % 2, flags: header.flags & 0x01FF, ..header }
        } else {
            header
        };
        let mut out = BytesMut::from(&b"xy"[..]);
        match encode_strict(&header, &cap, &payload, &mut out) {
            Ok(()) => {
                let _ = out.split_to(2);
                let frame = decode(&mut out).unwrap().expect("strict output is a frame");
                prop_assert!(out.is_empty());
                prop_assert_eq!(frame.cap.as_deref().unwrap_or_default(), &cap[..]);
                prop_assert_eq!(frame.payload.as_deref().unwrap_or_default(), &payload[..]);
            }
            Err(e) => {
                prop_assert_eq!(&out[..], b"xy");
                // The decoder refuses the reference encoder's output for the same reason.
                let mut plain = BytesMut::new();
                encode(&header, &cap, &payload, &mut plain).unwrap();
                prop_assert_eq!(decode(&mut plain), Err(e));
            }
        }
    }
}
