//! OAP/1 framing, exactly as the reference codec behaves (see `../shared/spec/OAP1.md`).
//!
//! A frame is a fixed 38-byte big-endian [`Header`], an optional capability section (`cap`,
//! allowed only with [`flags::START`]) and an optional payload. The payload length is never sent:
//! it is `len - 38 - cap_len`.
//!
//! - [`decode`] is the stateless reference decoder: one call on a buffer returns *need more*
//!   (`Ok(None)`), one [`Frame`] (removing exactly `len` bytes) or a [`FrameError`]. Steps 3–6 of
//!   the spec reject a bad header as soon as 38 bytes are buffered; steps 9–12 fail only once the
//!   whole declared frame is buffered, and then the frame's bytes have already been removed.
//!   Frames are zero-copy: `cap` and `payload` are slices of one [`bytes::Bytes`].
//!   [`decode_bytes`] does the same on bytes already held as [`bytes::Bytes`] (a driver's read).
//! - [`peek`] runs the header checks without consuming anything, so a caller can refuse (or
//!   apply backpressure to) a frame before buffering its body.
//! - [`FrameParser`] wraps the decoder with a buffer and a soft cap, like upstream's
//!   `ParserState`.
//! - [`encode`] is the reference encoder (recomputes `len` and `cap_len`, checks sizes only);
//!   [`encode_strict`] additionally refuses anything its own decoder would reject;
//!   [`encode_header_into`] writes just the header for callers that append the body themselves.
//! - [`hello_request`] and [`HelloReply`] build and parse the HELLO exchange (§5);
//!   [`StatusCode`] and [`classify`] name the status codes (§6).
//!
//! **Compression is not supported.** This crate is built like the reference codec's default
//! build, without zstd: [`decode`] returns [`FrameError::ZstdFeatureNotEnabled`] for every frame
//! with [`flags::COMP`] set (whatever its payload, even an empty one), after removing the frame's
//! bytes from the buffer, exactly as the reference does. [`MAX_DECOMPRESSED_BYTES`] and
//! [`FrameError::DecompressBoundExceeded`] exist for parity with the reference API only.

mod decode;
mod encode;
mod error;
mod header;
mod hello;
mod parser;
mod status;

pub use decode::{decode, decode_bytes, Frame};
pub use encode::{encode, encode_header_into, encode_strict};
pub use error::FrameError;
pub use header::{peek, Header};
pub use hello::{hello_request, try_hello_request, HelloReply};
pub use parser::FrameParser;
pub use status::{classify, StatusCode};

/// Size of the fixed OAP/1 header.
pub const HEADER_LEN: usize = 38;
/// Largest frame, header included. A frame of exactly this length is valid.
pub const MAX_FRAME_BYTES: usize = 1_048_576;
/// Default soft cap on the bytes a [`FrameParser`] buffers (4 MiB, as upstream's `ParserState`).
pub const DEFAULT_PARSER_SOFT_CAP: usize = 4 * 1024 * 1024;
/// Upper bound on a decompressed payload in the reference codec's zstd build (8 MiB).
///
/// Kept for parity: this crate does not inflate COMP payloads (see the module docs).
pub const MAX_DECOMPRESSED_BYTES: usize = 8 * MAX_FRAME_BYTES;

/// The `flags` bits of the header (spec §2). Bits 8–15 are reserved and must be zero.
pub mod flags {
    /// Request.
    pub const REQ: u16 = 0x0001;
    /// Response.
    pub const RESP: u16 = 0x0002;
    /// Event (fire-and-forget unless [`ACK_REQ`] is also set).
    pub const EVENT: u16 = 0x0004;
    /// Stream or request start; the only flag under which a cap may be sent.
    pub const START: u16 = 0x0008;
    /// End of request or stream.
    pub const END: u16 = 0x0010;
    /// The sender asks for an acknowledgement.
    pub const ACK_REQ: u16 = 0x0020;
    /// The payload is zstd-compressed (not supported by this build: see the module docs).
    pub const COMP: u16 = 0x0040;
    /// The payload is end-to-end encrypted by the application (opaque to the platform).
    pub const APP_E2E: u16 = 0x0080;
    /// All eight defined bits.
    pub const DEFINED: u16 = 0x00FF;
    /// The reserved bits; a frame with any of them set is rejected.
    pub const RESERVED: u16 = !DEFINED;
}
