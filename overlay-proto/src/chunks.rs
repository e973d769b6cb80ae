//! Outgoing bytes as a list of shared pieces: what an `Action::Transmit` carries.
//!
//! The core encodes frame headers and control frames into a session's buffer, but a gossip
//! payload it forwards to several peers is not copied into each of their buffers: every
//! session's buffer holds a reference to the same payload (the GRAFT store's exact-size copy),
//! and the driver writes the pieces with one vectored write. [`Chunks`] is that list, in
//! order; [`ChunkBuf`] builds it.
//!
//! On the wire, in equality and in the trace format the pieces do not matter: two `Chunks`
//! are equal when their bytes are, and a `Chunks` serializes as one byte string (so traces
//! recorded before the pieces existed replay unchanged, and vice versa).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::VecDeque;

/// Bytes the tail is allocated in at least: frame headers are encoded into one block and
/// split off it as pieces (a reference count each), instead of one tiny allocation per header.
const TAIL_BLOCK: usize = 2048;

/// Payloads at least this long are shared by reference; shorter ones are copied (a copy of a
/// few hundred bytes costs less than a reference count and one more piece to write).
pub(crate) const SHARE_MIN: usize = 256;

/// Bytes to write, in order, as one or more shared pieces (see the module docs).
#[derive(Clone, Default)]
pub struct Chunks {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Chunks {
    /// No bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order (none is empty).
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// Gives up the pieces, in order (none is empty), without copying their bytes.
    pub fn into_pieces(self) -> Vec<Bytes> {
        self.pieces
    }

    /// All bytes in one buffer: the piece itself when there is one, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut all = BytesMut::with_capacity(self.len);
                for piece in many {
                    all.extend_from_slice(piece);
                }
                all.freeze()
            }
        }
    }

    /// Appends a piece (an empty one is skipped).
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    /// True when the bytes equal `other`.
    fn eq_slice(&self, mut other: &[u8]) -> bool {
        if other.len() != self.len {
            return false;
        }
        for piece in &self.pieces {
            let (head, rest) = other.split_at(piece.len());
            if head != piece.as_ref() {
                return false;
            }
            other = rest;
        }
        true
    }
}

impl From<Bytes> for Chunks {
    fn from(bytes: Bytes) -> Self {
        let mut chunks = Chunks::new();
        chunks.push(bytes);
        chunks
    }
}

impl From<Vec<u8>> for Chunks {
    fn from(bytes: Vec<u8>) -> Self {
        Chunks::from(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Chunks {
    fn from(bytes: &'static [u8]) -> Self {
        Chunks::from(Bytes::from_static(bytes))
    }
}

impl PartialEq for Chunks {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.eq_slice(&other.to_bytes())
    }
}

impl Eq for Chunks {}

impl PartialEq<[u8]> for Chunks {
    fn eq(&self, other: &[u8]) -> bool {
        self.eq_slice(other)
    }
}

impl PartialEq<Bytes> for Chunks {
    fn eq(&self, other: &Bytes) -> bool {
        self.eq_slice(other)
    }
}

impl core::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // As the bytes would print: pieces are an implementation detail.
        core::fmt::Debug::fmt(&self.to_bytes(), f)
    }
}

impl Serialize for Chunks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Chunks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Bytes::deserialize(deserializer).map(Chunks::from)
    }
}

/// A growing [`Chunks`]: shared pieces, then a tail that small writes are encoded into.
#[derive(Debug, Default)]
pub struct ChunkBuf {
    /// Sealed pieces, in order, before `tail`.
    pieces: VecDeque<Bytes>,
    /// Bytes in `pieces`.
    sealed: usize,
    /// The newest bytes, still being written.
    tail: BytesMut,
}

impl ChunkBuf {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.sealed + self.tail.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated for the tail (not counting shared pieces).
    pub fn capacity(&self) -> usize {
        self.tail.capacity()
    }

    /// The end to encode small writes into (after every piece).
    pub fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// The tail, with room for `additional` more bytes (a new block of at least
    /// [`TAIL_BLOCK`] bytes when the current one is full).
    pub fn tail_with_room(&mut self, additional: usize) -> &mut BytesMut {
        if self.tail.capacity() - self.tail.len() < additional {
            if self.tail.is_empty() {
                self.tail = BytesMut::with_capacity(additional.max(TAIL_BLOCK));
            } else {
                self.tail.reserve(additional.max(TAIL_BLOCK));
            }
        }
        &mut self.tail
    }

    /// Appends `bytes` by reference when at least [`SHARE_MIN`] long, else by copy.
    pub fn put_shared(&mut self, bytes: &Bytes) {
        if bytes.len() < SHARE_MIN {
            self.tail.extend_from_slice(bytes);
        } else {
            self.seal();
            self.sealed += bytes.len();
            self.pieces.push_back(bytes.clone());
        }
    }

    /// Ends the tail as a piece (the next write starts a new one).
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let piece = self.tail.split().freeze();
            self.sealed += piece.len();
            self.pieces.push_back(piece);
        }
    }

    /// Takes everything written so far.
    pub fn take(&mut self) -> Chunks {
        self.seal();
        let len = std::mem::take(&mut self.sealed);
        Chunks {
            pieces: self.pieces.drain(..).collect(),
            len,
        }
    }

    /// Moves the first `n` bytes (at most all of them) to the end of `out`, sharing them.
    pub fn move_front(&mut self, n: usize, out: &mut ChunkBuf) {
        if n > self.sealed {
            self.seal();
        }
        let mut left = n.min(self.sealed);
        while left > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let piece = if front.len() <= left {
                match self.pieces.pop_front() {
                    Some(piece) => piece,
                    None => break,
                }
            } else {
                front.split_to(left)
            };
            left -= piece.len();
            self.sealed -= piece.len();
            out.put_shared(&piece);
        }
    }

    /// Drops everything and releases the tail's memory.
    pub fn clear(&mut self) {
        *self = ChunkBuf::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design
mod tests {
    use super::*;

    fn payload(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn large_payloads_are_shared_small_ones_copied() {
        let shared = payload(1024, 7);
        let mut buf = ChunkBuf::default();
        buf.tail_mut().extend_from_slice(b"head");
        buf.put_shared(&shared);
        buf.put_shared(&payload(10, 1));
        buf.tail_mut().extend_from_slice(b"end");
        assert_eq!(buf.len(), 4 + 1024 + 10 + 3);
        let chunks = buf.take();
        assert!(buf.is_empty());
        assert_eq!(chunks.pieces().len(), 3);
        // The payload piece is the caller's allocation, not a copy.
        assert_eq!(chunks.pieces()[1].as_ptr(), shared.as_ptr());
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&shared);
        expected.extend_from_slice(&[1; 10]);
        expected.extend_from_slice(b"end");
        assert_eq!(chunks.to_bytes(), Bytes::from(expected.clone()));
        assert_eq!(chunks, Chunks::from(expected));
    }

    #[test]
    fn moving_the_front_keeps_order_and_boundaries() {
        let shared = payload(300, 9);
        let mut queue = ChunkBuf::default();
        queue.tail_mut().extend_from_slice(b"abc");
        queue.put_shared(&shared);
        queue.tail_mut().extend_from_slice(b"xyz");
        let mut out = ChunkBuf::default();
        // Part of the first piece, then the rest and the shared payload, then the tail.
        queue.move_front(2, &mut out);
        assert_eq!(queue.len(), 1 + 300 + 3);
        queue.move_front(1 + 300, &mut out);
        assert_eq!(queue.len(), 3);
        queue.move_front(3, &mut out);
        assert!(queue.is_empty());
        let all = out.take();
        let mut expected = b"abc".to_vec();
        expected.extend_from_slice(&shared);
        expected.extend_from_slice(b"xyz");
        assert_eq!(all, Chunks::from(expected));
        assert!(all.pieces().iter().any(|p| p.as_ptr() == shared.as_ptr()));
    }

    #[test]
    fn serializes_as_one_byte_string_whatever_the_pieces() {
        let mut chunks = Chunks::from(Bytes::from_static(b"one "));
        chunks.push(payload(300, 2));
        let whole = chunks.to_bytes();
        let mut a = Vec::new();
        ciborium::into_writer(&chunks, &mut a).unwrap();
        let mut b = Vec::new();
        ciborium::into_writer(&whole, &mut b).unwrap();
        assert_eq!(a, b);
        let back: Chunks = ciborium::from_reader(a.as_slice()).unwrap();
        assert_eq!(back, chunks);
        assert_eq!(back.pieces().len(), 1);
        assert_ne!(chunks, Chunks::from(Bytes::from_static(b"one ")));
    }
}
