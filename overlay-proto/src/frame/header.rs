//! The fixed 38-byte header: big-endian load/store and the header checks (spec steps 1–6).

use bytes::BufMut;

use super::{flags, FrameError, HEADER_LEN, MAX_FRAME_BYTES};

/// The fixed OAP/1 header, field for field as on the wire (all big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Total frame length: header + cap + payload.
    pub len: u32,
    /// Protocol version; must be 1.
    pub ver: u16,
    /// Flag bits, see [`flags`](super::flags).
    pub flags: u16,
    /// Status or application code (never validated).
    pub code: u16,
    /// Application protocol id; 0 is control/HELLO.
    pub app_proto_id: u16,
    /// Tenant id.
    pub tenant_id: u128,
    /// Length of the cap section.
    pub cap_len: u16,
    /// Correlation id.
    pub corr_id: u64,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `buf` without validating anything.
    ///
    /// Returns `None` when `buf` is shorter than the header.
    pub fn read(buf: &[u8]) -> Option<Header> {
        let (len, rest) = buf.split_first_chunk::<4>()?;
        let (ver, rest) = rest.split_first_chunk::<2>()?;
        let (flags, rest) = rest.split_first_chunk::<2>()?;
        let (code, rest) = rest.split_first_chunk::<2>()?;
        let (app_proto_id, rest) = rest.split_first_chunk::<2>()?;
        let (tenant_id, rest) = rest.split_first_chunk::<16>()?;
        let (cap_len, rest) = rest.split_first_chunk::<2>()?;
        let (corr_id, _) = rest.split_first_chunk::<8>()?;
        Some(Header {
            len: u32::from_be_bytes(*len),
            ver: u16::from_be_bytes(*ver),
            flags: u16::from_be_bytes(*flags),
            code: u16::from_be_bytes(*code),
            app_proto_id: u16::from_be_bytes(*app_proto_id),
            tenant_id: u128::from_be_bytes(*tenant_id),
            cap_len: u16::from_be_bytes(*cap_len),
            corr_id: u64::from_be_bytes(*corr_id),
        })
    }

    /// The 38 header bytes exactly as given (nothing is recomputed or checked).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_be_bytes());
        b[4..6].copy_from_slice(&self.ver.to_be_bytes());
        b[6..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..10].copy_from_slice(&self.code.to_be_bytes());
        b[10..12].copy_from_slice(&self.app_proto_id.to_be_bytes());
        b[12..28].copy_from_slice(&self.tenant_id.to_be_bytes());
        b[28..30].copy_from_slice(&self.cap_len.to_be_bytes());
        b[30..38].copy_from_slice(&self.corr_id.to_be_bytes());
        b
    }

    /// Writes the 38 header bytes exactly as given (nothing is recomputed or checked), with
    /// one bounds check instead of eight.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_slice(&self.to_bytes());
    }

    /// The header checks of spec steps 3–6, in that order: reserved flag bits, version,
    /// `len` (0 or over 1 MiB), then a cap without START.
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.flags & flags::RESERVED != 0 {
            return Err(FrameError::BadFlags { flags: self.flags });
        }
        if self.ver != 1 {
            return Err(FrameError::BadVersion { ver: self.ver });
        }
        if self.len == 0 || self.len as usize > MAX_FRAME_BYTES {
            return Err(FrameError::FrameTooLarge {
                len: u64::from(self.len),
                max: MAX_FRAME_BYTES as u64,
            });
        }
        if self.cap_len > 0 && self.flags & flags::START == 0 {
            return Err(FrameError::CapOnNonStart);
        }
        Ok(())
    }

    /// Payload length implied by the header: `len - 38 - cap_len`, saturating at 0.
    pub fn payload_len(&self) -> usize {
        (self.len as usize)
            .saturating_sub(HEADER_LEN)
            .saturating_sub(usize::from(self.cap_len))
    }
}

/// Spec steps 1–6 without consuming anything.
///
/// `Ok(None)` while fewer than 38 bytes are buffered; `Ok(Some(header))` once a valid header is
/// there, even if the body is not yet buffered; the header error otherwise. A caller can use it
/// to refuse or apply backpressure to a frame before buffering its body. Errors found only once
/// the whole frame is buffered (steps 9–12) are left to [`decode`](super::decode).
pub fn peek(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    match Header::read(buf) {
        None => Ok(None),
        Some(header) => header.validate().map(|()| Some(header)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            len: 0x0102_0304,
            ver: 0x0506,
            flags: 0x0708,
            code: 0x090a,
            app_proto_id: 0x0b0c,
            tenant_id: 0x0d0e_0f10_1112_1314_1516_1718_191a_1b1c,
            cap_len: 0x1d1e,
            corr_id: 0x1f20_2122_2324_2526,
        }
    }

    #[test]
    fn write_is_big_endian_field_order() {
        let mut out = Vec::new();
        sample().write(&mut out);
        let expected: Vec<u8> = (1..=0x26).collect();
        assert_eq!(out, expected);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(Header::read(&out), Some(sample()));
    }

    #[test]
    fn read_needs_38_bytes() {
        let bytes = [0u8; HEADER_LEN];
        assert!(Header::read(&bytes[..HEADER_LEN - 1]).is_none());
        assert!(Header::read(&bytes).is_some());
        assert_eq!(peek(&bytes[..HEADER_LEN - 1]), Ok(None));
    }

    #[test]
    fn validate_order_and_limits() {
        let ok = Header {
            len: 38,
            ver: 1,
            ..Header::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let max = Header {
            len: MAX_FRAME_BYTES as u32,
            ..ok
        };
        assert_eq!(max.validate(), Ok(()));
        let over = Header {
            len: MAX_FRAME_BYTES as u32 + 1,
            cap_len: 1,
            ..ok
        };
        assert!(matches!(
            over.validate(),
            Err(FrameError::FrameTooLarge { len: 1_048_577, .. })
        ));
        let all_bad = Header {
            len: 0,
            ver: 9,
            flags: 0x0100,
            cap_len: 3,
            ..ok
        };
        assert_eq!(
            all_bad.validate(),
            Err(FrameError::BadFlags { flags: 0x0100 })
        );
        assert_eq!(
            Header {
                flags: 0,
                ..all_bad
            }
            .validate(),
            Err(FrameError::BadVersion { ver: 9 })
        );
        let cap = Header {
            cap_len: 1,
            len: 40,
            ..ok
        };
        assert_eq!(cap.validate(), Err(FrameError::CapOnNonStart));
        assert_eq!(
            Header {
                flags: flags::START,
                ..cap
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn payload_len_saturates() {
        let h = Header {
            len: 40,
            cap_len: 5,
            ..Header::default()
        };
        assert_eq!(h.payload_len(), 0);
        let h = Header {
            len: 50,
            cap_len: 5,
            ..Header::default()
        };
        assert_eq!(h.payload_len(), 7);
    }
}
