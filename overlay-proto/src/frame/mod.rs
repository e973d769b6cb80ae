//! OAP/1 framing (see `../shared/spec/OAP1.md`).

/// Size of the fixed OAP/1 header.
pub const HEADER_LEN: usize = 38;
/// Largest frame, header included.
pub const MAX_FRAME_BYTES: usize = 1_048_576;
