//! The overlay's own messages, carried in the payload of OAP/1 frames (see docs/PROTOCOL.md).

/// Largest application payload an overlay message can carry in one frame.
pub const MAX_APP_PAYLOAD: usize = 1_048_400;
/// Most message ids in one IHAVE or GRAFT.
pub const MAX_IHAVE_IDS: usize = 8192;
