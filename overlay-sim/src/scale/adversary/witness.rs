//! The observer wrapped around every honest node of an adversary run: it checks each payload
//! the node delivers and counts the altered and the forged ones. It changes nothing.
//!
//! Honest broadcasts of an adversary run carry a self-check: the last 32 bytes are the BLAKE3
//! hash of the rest ([`honest_payload`]). Messages a forger originates start with
//! [`FORGED_MAGIC`]. (A cleverer forger could recompute the check; this one alters relayed
//! bytes blindly, which is what the core's id check has to catch.)

use bytes::Bytes;
use overlay_proto::mesh::NodeShim;
use overlay_proto::{Action, Input, Instant};

use super::SharedTally;

/// First bytes of every message a forger originates.
pub const FORGED_MAGIC: &[u8; 8] = b"FORGED!\0";

/// Smallest payload an adversary run can use (room for the 32-byte self-check).
pub const MIN_PAYLOAD: usize = 40;

/// The payload of honest broadcast number `k`: `len` bytes (at least [`MIN_PAYLOAD`]) whose
/// last 32 are the BLAKE3 hash of the others.
pub fn honest_payload(k: u64, len: usize) -> Bytes {
    let len = len.max(MIN_PAYLOAD);
    let body = len - 32;
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&k.to_be_bytes());
    for (i, b) in v.iter_mut().enumerate().take(body).skip(8) {
        *b = (k as usize).wrapping_add(i) as u8;
    }
    let hash = blake3::hash(&v[..body]);
    v[body..].copy_from_slice(hash.as_bytes());
    Bytes::from(v)
}

/// What a delivered payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadCheck {
    /// An honest broadcast, intact.
    Intact,
    /// An honest broadcast altered on the way.
    Tampered,
    /// A message an attacker originated in someone else's name.
    Forged,
}

/// Classifies a delivered payload.
pub fn check_payload(payload: &[u8]) -> PayloadCheck {
    if payload.starts_with(FORGED_MAGIC) {
        return PayloadCheck::Forged;
    }
    let Some(body) = payload.len().checked_sub(32) else {
        return PayloadCheck::Tampered;
    };
    match payload.split_at_checked(body) {
        Some((data, hash)) if blake3::hash(data).as_bytes()[..] == *hash => PayloadCheck::Intact,
        _ => PayloadCheck::Tampered,
    }
}

/// The honest node's observer.
#[derive(Debug)]
pub struct Witness {
    node: usize,
    tally: SharedTally,
}

impl Witness {
    /// The observer of node `node`.
    pub fn new(node: usize, tally: SharedTally) -> Witness {
        Witness { node, tally }
    }
}

impl NodeShim for Witness {
    fn on_input(&mut self, _now: Instant, input: Input, to_node: &mut Vec<Input>) {
        to_node.push(input);
    }

    fn on_actions(&mut self, _now: Instant, actions: &mut Vec<Action>, _to_node: &mut Vec<Input>) {
        for a in actions.iter() {
            if let Action::Deliver(d) = a {
                match check_payload(&d.payload) {
                    PayloadCheck::Intact => {}
                    PayloadCheck::Tampered => self.tally.with(|t| {
                        t.tampered_deliveries += 1;
                        t.tampered.insert((self.node, d.id));
                    }),
                    PayloadCheck::Forged => self.tally.with(|t| t.forged_deliveries += 1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_payloads_check_and_any_flip_is_caught() {
        for len in [0, 40, 1024] {
            let p = honest_payload(7, len);
            assert_eq!(p.len(), len.max(MIN_PAYLOAD));
            assert_eq!(check_payload(&p), PayloadCheck::Intact);
            for i in [0, p.len() / 2, p.len() - 1] {
                let mut q = p.to_vec();
                q[i] ^= 1;
                assert_eq!(check_payload(&q), PayloadCheck::Tampered, "flip at {i}");
            }
        }
        assert_ne!(honest_payload(1, 64), honest_payload(2, 64));
        let mut forged = FORGED_MAGIC.to_vec();
        forged.extend_from_slice(&[0; 8]);
        assert_eq!(check_payload(&forged), PayloadCheck::Forged);
        assert_eq!(check_payload(b"short"), PayloadCheck::Tampered);
    }
}
