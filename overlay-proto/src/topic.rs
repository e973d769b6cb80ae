//! Topics: separate broadcast domains over the shared peer sessions.
//!
//! A [`TopicId`] is 32 bytes; a topic named by a string has the id `BLAKE3(name)`
//! ([`TopicId::from_name`]). Every node is always in the [default topic](TopicId::DEFAULT)
//! (the name `"default"`), which carries `/v1/broadcast`, `/v1/gossip`, the library's
//! `Overlay::topic()` and client-session PUBLISH / SUBSCRIBE. Other topics are joined and left
//! with `Input::Join` / `Input::Leave`; a node tells its peers which topics it is in (the
//! TOPICS message), and a topic's payloads only travel between members.

use core::fmt;
use serde::{Deserialize, Serialize};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_NAME_LEN: usize = 64;

/// The name of the default topic.
pub const DEFAULT_TOPIC_NAME: &str = "default";

/// A topic: 32 bytes, `BLAKE3(name)` for a named topic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 32]);

impl TopicId {
    /// Bytes of a topic id on the wire.
    pub const LEN: usize = 32;

    /// The default topic, `BLAKE3("default")`: every node is in it and cannot leave it.
    pub const DEFAULT: TopicId = TopicId([
        0xf7, 0x87, 0x61, 0xcf, 0x8c, 0x36, 0x21, 0xe8, 0x51, 0x09, 0x7d, 0xff, 0x9a, 0x4b, 0x04,
        0x63, 0x36, 0x26, 0xe6, 0x2e, 0x1f, 0x41, 0x94, 0x44, 0x89, 0x8f, 0xae, 0x02, 0x96, 0x0d,
        0x89, 0xef,
    ]);

    /// The topic named `name`: `BLAKE3(name)` (the UTF-8 bytes, no terminator). Any string
    /// maps to an id; [`validate_topic_name`] is the rule the HTTP API and the configuration
    /// apply to names they accept.
    pub fn from_name(name: &str) -> TopicId {
        TopicId(*blake3::hash(name.as_bytes()).as_bytes())
    }

    /// True for [`TopicId::DEFAULT`].
    pub fn is_default(&self) -> bool {
        *self == TopicId::DEFAULT
    }

    /// Lowercase hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Default for TopicId {
    fn default() -> Self {
        TopicId::DEFAULT
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "TopicId({})", hex.get(..16).unwrap_or(&hex))
    }
}

/// Why a topic name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_NAME_LEN`] bytes.
    #[error("topic name is longer than {MAX_TOPIC_NAME_LEN} bytes")]
    TooLong,
    /// The name has a byte outside `A-Z a-z 0-9 . _ - ~`.
    #[error("topic name may only contain A-Z a-z 0-9 . _ - ~")]
    BadCharacter,
}

/// Checks a topic name: 1 to [`MAX_TOPIC_NAME_LEN`] bytes of `A-Z a-z 0-9 . _ - ~` (the
/// characters a URL path segment carries unescaped, so a name is its own path).
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'))
    {
        return Err(TopicNameError::BadCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topic_is_the_hash_of_its_name() {
        assert_eq!(TopicId::from_name(DEFAULT_TOPIC_NAME), TopicId::DEFAULT);
        assert!(TopicId::DEFAULT.is_default());
        assert!(!TopicId::from_name("chat").is_default());
        assert_eq!(TopicId::default(), TopicId::DEFAULT);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_topic_name("chat.v1_a-b~c"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(
            validate_topic_name(&"a".repeat(MAX_TOPIC_NAME_LEN + 1)),
            Err(TopicNameError::TooLong)
        );
        assert_eq!(validate_topic_name(&"a".repeat(MAX_TOPIC_NAME_LEN)), Ok(()));
        for bad in ["a/b", "a b", "é", "a%2f", "a?b"] {
            assert_eq!(
                validate_topic_name(bad),
                Err(TopicNameError::BadCharacter),
                "{bad}"
            );
        }
    }
}
