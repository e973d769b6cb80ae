//! Fuzzes the OAP/1 decoder: arbitrary bytes fed to a `FrameParser` in arbitrary chunk sizes.
//!
//! Input layout: the first byte picks how many chunk sizes follow (1–8), those bytes give the
//! sizes (1–256, used in turn), and the rest is the byte stream.
//!
//! Checked on every input, besides "no panic":
//! - one `decode` call either needs more (removing nothing), returns a frame (removing exactly
//!   `len` bytes, which the reference encoder reproduces from the frame), or fails (removing
//!   nothing for a header error, exactly `len` bytes otherwise);
//! - `peek` agrees with `decode` on the same buffer;
//! - feeding the stream to a `FrameParser` chunk by chunk yields the same frames and errors, in
//!   the same order, as decoding it from one buffer.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use overlay_proto::frame::{
    decode, encode, peek, Frame, FrameError, FrameParser, Header, HEADER_LEN,
};

type Event = Result<Frame, FrameError>;

/// Decodes the whole stream from one buffer, checking the per-call invariants, until it needs
/// more or hits a header error (which would repeat forever).
fn decode_whole(stream: &[u8]) -> Vec<Event> {
    let mut buf = BytesMut::from(stream);
    let mut events = Vec::new();
    loop {
        let before = buf.clone();
        let peeked = peek(&before);
        let result = decode(&mut buf);
        let consumed = before.len() - buf.len();
        assert_eq!(&buf[..], &before[consumed..], "decode removed a non-prefix");
        match (&peeked, &result) {
            (Ok(None), Ok(None)) => assert!(before.len() < HEADER_LEN),
            (Ok(None), _) => panic!("peek needs more but decode did not: {result:?}"),
            (Ok(Some(h)), _) => assert_eq!(Some(*h), Header::read(&before)),
            (Err(p), Err(d)) => assert_eq!(p, d, "peek and decode disagree"),
            (Err(p), Ok(_)) => panic!("peek failed with {p:?} but decode did not"),
        }
        match result {
            Ok(None) => {
                assert_eq!(consumed, 0);
                return events;
            }
            Ok(Some(frame)) => {
                assert_eq!(consumed, frame.header.len as usize);
                let mut again = BytesMut::new();
                encode(
                    &frame.header,
                    frame.cap.as_deref().unwrap_or_default(),
                    frame.payload.as_deref().unwrap_or_default(),
                    &mut again,
                )
                .expect("a decoded frame re-encodes");
                assert_eq!(&again[..], &before[..consumed], "re-encoding differs");
                events.push(Ok(frame));
            }
            Err(e) => {
                assert_ne!(
                    e,
                    FrameError::PayloadOutOfBounds,
                    "decoder never reports it"
                );
                let header = Header::read(&before).expect("an error needs a full header");
                events.push(Err(e));
                if consumed == 0 {
                    assert!(peeked.is_err(), "only header errors consume nothing");
                    return events;
                }
                assert!(peeked.is_ok(), "header errors consume nothing");
                assert_eq!(consumed, header.len as usize);
            }
        }
    }
}

/// Feeds the stream to a `FrameParser` in the given chunk sizes (cycled).
fn decode_chunked(stream: &[u8], sizes: &[usize]) -> Vec<Event> {
    let mut parser = FrameParser::new();
    let mut events = Vec::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        parser
            .push(chunk)
            .expect("fuzz inputs stay under the soft cap");
        loop {
            let before = parser.buffered();
            match parser.try_next() {
                Ok(None) => break,
                Ok(Some(frame)) => events.push(Ok(frame)),
                Err(e) => {
                    events.push(Err(e));
                    if parser.buffered() == before {
                        return events;
                    }
                }
            }
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8) + 1;
    let (sizes, stream) = rest.split_at(count.min(rest.len()));
    let mut sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();
    if sizes.is_empty() {
        sizes.push(1);
    }
    let whole = decode_whole(stream);
    let chunked = decode_chunked(stream, &sizes);
    assert_eq!(whole, chunked, "chunked parsing differs from one buffer");
});
