//! Encoders: the reference encoder (spec §4), a strict variant and a header-only helper.

use bytes::{BufMut, BytesMut};

use super::{flags, FrameError, Header, HEADER_LEN, MAX_FRAME_BYTES};

/// The reference encoder: appends one frame (header, `cap`, `payload`) to `out`.
///
/// `len` and `cap_len` are recomputed from `cap` and `payload`; every other header field is
/// written as given, unchecked, so this can emit frames that [`decode`](super::decode) rejects
/// (wrong version, reserved flags, a cap without START, COMP). Use [`encode_strict`] to rule that
/// out.
///
/// Errors: a cap over 65535 bytes gives [`FrameError::CapOutOfBounds`]; a frame over
/// [`MAX_FRAME_BYTES`] gives [`FrameError::FrameTooLarge`]. On error `out` is unchanged. On
/// success `out` grows by exactly `len` bytes, with at most one reservation.
pub fn encode(
    header: &Header,
    cap: &[u8],
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let header = sized(header, cap.len(), payload.len())?;
    write_frame(&header, cap, payload, out);
    Ok(())
}

/// Like [`encode`], but only emits frames that [`decode`](super::decode) returns as a frame.
///
/// Checks, in the decoder's order: reserved flag bits ([`FrameError::BadFlags`]), `ver != 1`
/// ([`FrameError::BadVersion`]), the sizes checked by [`encode`], a non-empty cap without START
/// ([`FrameError::CapOnNonStart`]) and COMP ([`FrameError::ZstdFeatureNotEnabled`], since this
/// build cannot compress). On error `out` is unchanged.
pub fn encode_strict(
    header: &Header,
    cap: &[u8],
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    if header.flags & flags::RESERVED != 0 {
        return Err(FrameError::BadFlags {
            flags: header.flags,
        });
    }
    if header.ver != 1 {
        return Err(FrameError::BadVersion { ver: header.ver });
    }
    let header = sized(header, cap.len(), payload.len())?;
    if header.cap_len > 0 && header.flags & flags::START == 0 {
        return Err(FrameError::CapOnNonStart);
    }
    if header.flags & flags::COMP != 0 {
        return Err(FrameError::ZstdFeatureNotEnabled);
    }
    write_frame(&header, cap, payload, out);
    Ok(())
}

/// Hot-path helper: writes only the 38-byte header of a frame whose cap and payload the caller
/// appends next, without an intermediate buffer.
///
/// `len` and `cap_len` are computed from `cap_len` and `payload_len` as [`encode`] would, with
/// the same size check ([`FrameError::FrameTooLarge`]); the other fields come from
/// `header_template` unchecked. Room for the whole frame is reserved in `out`, so appending
/// exactly `cap_len + payload_len` bytes afterwards does not reallocate. On error `out` is
/// unchanged.
pub fn encode_header_into(
    header_template: &Header,
    cap_len: u16,
    payload_len: usize,
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let header = sized(header_template, usize::from(cap_len), payload_len)?;
    out.reserve(header.len as usize);
    header.write(out);
    Ok(())
}

/// `template` with `len` and `cap_len` computed from the section sizes, or the size error.
fn sized(template: &Header, cap_len: usize, payload_len: usize) -> Result<Header, FrameError> {
    let cap_len = u16::try_from(cap_len).map_err(|_| FrameError::CapOutOfBounds)?;
    let total = HEADER_LEN
        .saturating_add(usize::from(cap_len))
        .saturating_add(payload_len);
    let len = u32::try_from(total)
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME_BYTES)
        .ok_or(FrameError::FrameTooLarge {
            len: u64::try_from(total).unwrap_or(u64::MAX),
            max: MAX_FRAME_BYTES as u64,
        })?;
    Ok(Header {
        len,
        cap_len,
        ..*template
    })
}

/// Appends a frame whose header already carries the right `len` and `cap_len`.
fn write_frame(header: &Header, cap: &[u8], payload: &[u8], out: &mut BytesMut) {
    out.reserve(header.len as usize);
    header.write(out);
    out.put_slice(cap);
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;

    fn req() -> Header {
        Header {
            ver: 1,
            flags: flags::REQ,
            len: 999,
            cap_len: 7,
            ..Header::default()
        }
    }

    #[test]
    fn recomputes_len_and_cap_len() {
        let mut out = BytesMut::new();
        encode(&req(), b"", b"abc", &mut out).unwrap();
        let header = Header::read(&out).unwrap();
        assert_eq!(header.len, 41);
        assert_eq!(header.cap_len, 0);
        assert_eq!(&out[HEADER_LEN..], b"abc");
    }

    #[test]
    fn size_limits_leave_out_unchanged() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let max_payload = vec![0u8; MAX_FRAME_BYTES - HEADER_LEN];
        assert_eq!(
            encode(
                &req(),
                b"",
                &[0u8; MAX_FRAME_BYTES - HEADER_LEN + 1],
                &mut out
            ),
            Err(FrameError::FrameTooLarge {
                len: MAX_FRAME_BYTES as u64 + 1,
                max: MAX_FRAME_BYTES as u64
            })
        );
        assert_eq!(
            encode(&req(), &[0u8; 65_536], b"", &mut out),
            Err(FrameError::CapOutOfBounds)
        );
        assert_eq!(&out[..], b"keep");
        encode(&req(), b"", &max_payload, &mut out).unwrap();
        assert_eq!(out.len(), 4 + MAX_FRAME_BYTES);
    }

    #[test]
    fn strict_refuses_what_decode_refuses() {
        let mut out = BytesMut::new();
        let start = Header {
            flags: flags::START,
            ..req()
        };
        let cases = [
            (
                Header {
                    flags: 0x0100,
                    ..req()
                },
                FrameError::BadFlags { flags: 0x0100 },
            ),
            (
                Header { ver: 2, ..req() },
                FrameError::BadVersion { ver: 2 },
            ),
            (req(), FrameError::CapOnNonStart),
            (
                Header {
                    flags: flags::START | flags::COMP,
                    ..req()
                },
                FrameError::ZstdFeatureNotEnabled,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(encode_strict(&header, b"c", b"", &mut out), Err(expected));
            assert!(out.is_empty());
        }
        encode_strict(&start, b"c", b"p", &mut out).unwrap();
        let frame = decode(&mut out).unwrap().unwrap();
        assert_eq!(frame.cap.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn header_into_matches_encode() {
        let mut whole = BytesMut::new();
        let start = Header {
            flags: flags::START,
            ..req()
        };
        encode(&start, b"cap", b"payload", &mut whole).unwrap();
        let mut parts = BytesMut::new();
        encode_header_into(&start, 3, 7, &mut parts).unwrap();
        assert!(parts.capacity() >= whole.len());
        parts.put_slice(b"cap");
        parts.put_slice(b"payload");
        assert_eq!(parts, whole);
        assert!(matches!(
            encode_header_into(&start, 0, usize::MAX, &mut parts),
            Err(FrameError::FrameTooLarge { .. })
        ));
        assert_eq!(parts, whole);
    }
}
