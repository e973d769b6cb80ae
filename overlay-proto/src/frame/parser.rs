//! A buffering wrapper around [`decode`], like upstream's `ParserState` (spec §3).

use bytes::BytesMut;

use super::{decode, peek, Frame, FrameError, Header, DEFAULT_PARSER_SOFT_CAP};

/// Buffers received bytes and decodes frames from them one at a time.
///
/// It adds nothing to the decoder's rules: frames, errors and consumed bytes are exactly those
/// of [`decode`] on the concatenation of everything pushed. After an error that consumed nothing
/// (a bad header) every later call returns the same error; the connection should be closed.
#[derive(Debug, Clone)]
pub struct FrameParser {
    buf: BytesMut,
    soft_cap: usize,
}

impl Default for FrameParser {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameParser {
    /// A parser with the default soft cap, [`DEFAULT_PARSER_SOFT_CAP`] (4 MiB).
    pub fn new() -> Self {
        Self::with_soft_cap(DEFAULT_PARSER_SOFT_CAP)
    }

    /// A parser that reports [`FrameError::PayloadOutOfBounds`] once more than `soft_cap`
    /// bytes are buffered.
    pub fn with_soft_cap(soft_cap: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            soft_cap,
        }
    }

    /// Appends `bytes`. If the buffer then holds more than the soft cap, returns
    /// [`FrameError::PayloadOutOfBounds`]; the bytes stay appended either way.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.soft_cap {
            return Err(FrameError::PayloadOutOfBounds);
        }
        Ok(())
    }

    /// One [`decode`] call on the buffered bytes: `Ok(None)` means *need more*.
    pub fn try_next(&mut self) -> Result<Option<Frame>, FrameError> {
        decode(&mut self.buf)
    }

    /// Decodes until *need more* and returns the frames, like upstream's `drain()`.
    ///
    /// On an error the frames decoded earlier in the same call are dropped with it; use
    /// [`drain_into`](Self::drain_into) to keep them.
    pub fn drain(&mut self) -> Result<Vec<Frame>, FrameError> {
        let mut frames = Vec::new();
        self.drain_into(&mut frames)?;
        Ok(frames)
    }

    /// Decodes until *need more*, appending each frame to `frames`; on an error the frames
    /// decoded before it are already in `frames`.
    pub fn drain_into(&mut self, frames: &mut Vec<Frame>) -> Result<(), FrameError> {
        while let Some(frame) = self.try_next()? {
            frames.push(frame);
        }
        Ok(())
    }

    /// [`peek`] at the next frame's header without consuming anything, e.g. to refuse a large
    /// frame before its body arrives.
    pub fn peek_header(&self) -> Result<Option<Header>, FrameError> {
        peek(&self.buf)
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode, flags, HEADER_LEN};

    fn frame(payload: &[u8]) -> BytesMut {
        let header = Header {
            ver: 1,
            flags: flags::EVENT,
            ..Header::default()
        };
        let mut out = BytesMut::new();
        encode(&header, b"", payload, &mut out).unwrap();
        out
    }

    #[test]
    fn byte_by_byte() {
        let mut wire = frame(b"one");
        wire.extend_from_slice(&frame(b"two"));
        let mut parser = FrameParser::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            parser.push(&[*byte]).unwrap();
            frames.extend(parser.drain().unwrap());
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].payload.as_deref(), Some(&b"two"[..]));
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn soft_cap_keeps_bytes() {
        let mut parser = FrameParser::with_soft_cap(HEADER_LEN + 1);
        let wire = frame(b"xy");
        assert_eq!(parser.push(&wire), Err(FrameError::PayloadOutOfBounds));
        assert_eq!(parser.buffered(), wire.len());
        assert!(parser.peek_header().unwrap().is_some());
        assert_eq!(parser.drain().unwrap().len(), 1);
    }

    #[test]
    fn drain_into_keeps_frames_before_an_error() {
        let mut wire = frame(b"ok");
        let mut bad = frame(b"");
        bad[5] = 9;
        wire.extend_from_slice(&bad);
        let mut parser = FrameParser::new();
        parser.push(&wire).unwrap();
        let mut frames = Vec::new();
        assert_eq!(
            parser.drain_into(&mut frames),
            Err(FrameError::BadVersion { ver: 9 })
        );
        assert_eq!(frames.len(), 1);
        assert_eq!(parser.buffered(), HEADER_LEN);
    }
}
