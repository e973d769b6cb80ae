//! The stateless reference decoder (spec §3, steps 1–13).

use bytes::{Buf, Bytes, BytesMut};

use super::{flags, peek, FrameError, Header, HEADER_LEN};

/// One decoded frame. `cap` and `payload` are zero-copy slices of the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header as received (`len` is the wire length).
    pub header: Header,
    /// The cap section; `None` when `cap_len` is 0.
    pub cap: Option<Bytes>,
    /// The payload; `None` when empty.
    pub payload: Option<Bytes>,
}

/// One call of the reference decoder on the bytes buffered so far.
///
/// - `Ok(None)`: *need more*. Nothing was removed from `buf`.
/// - `Ok(Some(frame))`: exactly `frame.header.len` bytes were removed from `buf`.
/// - `Err(e)` from the header checks (bad flags, bad version, `len` 0 or over 1 MiB, a cap
///   without START): nothing was removed; these fail as soon as 38 bytes are buffered.
/// - `Err(e)` found once the whole frame is buffered (`len < 38`, `cap_len` past the frame,
///   COMP set): the frame's `len` bytes *were* removed, as in the reference.
///
/// A header error is sticky: calling again on the same buffer returns it again, so the caller
/// should drop the connection. The returned frame shares one allocation with `buf`'s bytes
/// (`split_to` + `freeze`); nothing is copied.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    let Some((header, len)) = whole_frame(buf)? else {
        return Ok(None);
    };
    if let Err(e) = body_checks(&header, len) {
        buf.advance(len);
        return Err(e);
    }
    // Zero-copy: one reference to the shared buffer for the payload, one more for a cap.
    Ok(Some(split_frame(header, buf.split_to(len).freeze())))
}

/// [`decode`] on bytes the caller already holds as [`Bytes`] (e.g. one read handed over by a
/// driver): same results and the same bytes consumed, and the frame is a slice of `buf`'s
/// allocation, so nothing is copied even when that allocation is shared.
pub fn decode_bytes(buf: &mut Bytes) -> Result<Option<Frame>, FrameError> {
    let Some((header, len)) = whole_frame(buf)? else {
        return Ok(None);
    };
    if let Err(e) = body_checks(&header, len) {
        buf.advance(len);
        return Err(e);
    }
    Ok(Some(split_frame(header, buf.split_to(len))))
}

/// The header (checked) and its `len` once the whole declared frame is buffered.
fn whole_frame(buf: &[u8]) -> Result<Option<(Header, usize)>, FrameError> {
    let Some(header) = peek(buf)? else {
        return Ok(None);
    };
    let len = header.len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some((header, len)))
}

/// The checks of a whole frame (spec steps 9–12); on failure the frame counts as consumed.
fn body_checks(header: &Header, len: usize) -> Result<(), FrameError> {
    let Some(body_len) = len.checked_sub(HEADER_LEN) else {
        return Err(FrameError::TruncatedHeader);
    };
    if usize::from(header.cap_len) > body_len {
        return Err(FrameError::CapOutOfBounds);
    }
    if header.flags & flags::COMP != 0 {
        return Err(FrameError::ZstdFeatureNotEnabled);
    }
    Ok(())
}

/// Splits a whole, checked frame into its cap and payload slices.
fn split_frame(header: Header, mut body: Bytes) -> Frame {
    body.advance(HEADER_LEN);
    let cap_len = usize::from(header.cap_len);
    let cap = (cap_len > 0).then(|| body.split_to(cap_len));
    let payload = (!body.is_empty()).then_some(body);
    Frame {
        header,
        cap,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode;

    fn frame_bytes(flags: u16, cap: &[u8], payload: &[u8]) -> BytesMut {
        let header = Header {
            ver: 1,
            flags,
            ..Header::default()
        };
        let mut out = BytesMut::new();
        encode(&header, cap, payload, &mut out).unwrap();
        out
    }

    #[test]
    fn empty_cap_and_payload_are_absent() {
        let mut buf = frame_bytes(flags::EVENT, b"", b"");
        let frame = decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.cap, None);
        assert_eq!(frame.payload, None);
        assert!(buf.is_empty());
    }

    #[test]
    fn cap_and_payload_are_split() {
        let mut buf = frame_bytes(flags::START | flags::REQ, b"cap", b"body");
        buf.extend_from_slice(b"next");
        let frame = decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.cap.as_deref(), Some(&b"cap"[..]));
        assert_eq!(frame.payload.as_deref(), Some(&b"body"[..]));
        assert_eq!(frame.header.len, 45);
        assert_eq!(&buf[..], b"next");
        assert_eq!(decode(&mut buf), Ok(None));
    }

    #[test]
    fn comp_is_consumed_and_refused() {
        let mut buf = frame_bytes(flags::COMP, b"", b"");
        buf.extend_from_slice(b"rest");
        assert_eq!(decode(&mut buf), Err(FrameError::ZstdFeatureNotEnabled));
        assert_eq!(&buf[..], b"rest");
    }

    #[test]
    fn header_errors_consume_nothing() {
        let mut buf = frame_bytes(flags::REQ, b"", b"x");
        buf[5] = 2;
        let before = buf.clone();
        assert_eq!(decode(&mut buf), Err(FrameError::BadVersion { ver: 2 }));
        assert_eq!(buf, before);
    }

    #[test]
    fn decode_bytes_matches_decode_without_copying() {
        let mut wire = frame_bytes(flags::START | flags::REQ, b"cap", b"body");
        wire.extend_from_slice(&frame_bytes(flags::COMP, b"", b""));
        wire.extend_from_slice(&frame_bytes(flags::EVENT, b"", b"second"));
        wire.extend_from_slice(&frame_bytes(flags::EVENT, b"", b"partial")[..20]);
        let mut reference = wire.clone();
        let mut held = wire.freeze();
        let block = held.clone(); // the driver keeps its block: the allocation is shared
        loop {
            let expected = decode(&mut reference);
            let got = decode_bytes(&mut held);
            assert_eq!(got, expected);
            assert_eq!(&held[..], &reference[..]);
            if let Ok(Some(frame)) = &got {
                if let Some(payload) = &frame.payload {
                    let inside = block.as_ptr_range();
                    assert!(inside.contains(&payload.as_ptr()), "payload was copied");
                }
            }
            if matches!(got, Ok(None)) {
                break;
            }
        }
        assert_eq!(held.len(), 20);
    }
}
