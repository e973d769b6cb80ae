//! The overlay's own `Custom` caveats (namespace `overlay`).
//!
//! The reference verifier never evaluates `Custom` caveats (they always pass there); the
//! overlay gives two of them a meaning and enforces it itself:
//!
//! | name | CBOR value | meaning |
//! |---|---|---|
//! | `peer` | byte string of 32 bytes (a [`PeerId`]) | the token is valid only on a session whose TLS identity is that peer |
//! | `control` | `true` | the token is a control-plane credential (HTTP control API); tokens without it never are |
//!
//! Several `peer` caveats must all match (attenuation only narrows), so two different ones make
//! the token unusable. A `Custom` caveat in the `overlay` namespace with a known name but a value
//! of the wrong shape is [`OverlayCaveatError::Malformed`]: a token that tries to be bound but is
//! not well formed must not pass as unbound.

use super::{Capability, Caveat, CborValue};
use crate::peer::PeerId;

/// Namespace of the overlay's `Custom` caveats.
pub const OVERLAY_CAVEAT_NS: &str = "overlay";
/// Name of the caveat that binds a token to one peer identity.
pub const PEER_CAVEAT_NAME: &str = "peer";
/// Name of the caveat that marks a control-plane token.
pub const CONTROL_CAVEAT_NAME: &str = "control";

/// A malformed overlay caveat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayCaveatError {
    /// An `overlay`/`name` caveat whose value does not have the documented shape.
    #[error("malformed overlay caveat `{name}`: {why}")]
    Malformed {
        /// The caveat's name.
        name: String,
        /// What is wrong with its value.
        why: &'static str,
    },
}

/// What the overlay caveats of a token say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayCaveats {
    /// The peer the token is bound to, if any (`None`: usable by any identity).
    pub bound_peer: Option<PeerId>,
    /// Whether two `peer` caveats name different peers (the token then matches no one).
    pub conflicting_peers: bool,
    /// Whether the token carries the `control` marker.
    pub control: bool,
}

impl OverlayCaveats {
    /// Reads the overlay caveats of `cap`. Unknown names in the namespace are ignored (a later
    /// version may add some); known names with a bad value are an error.
    pub fn of(cap: &Capability) -> Result<Self, OverlayCaveatError> {
        let mut out = OverlayCaveats::default();
        for caveat in &cap.caveats {
            let Caveat::Custom { ns, name, cbor } = caveat else {
                continue;
            };
            if ns != OVERLAY_CAVEAT_NS {
                continue;
            }
            match name.as_str() {
                PEER_CAVEAT_NAME => {
                    let peer = peer_from_cbor(cbor)?;
                    match out.bound_peer {
                        Some(existing) if existing != peer => out.conflicting_peers = true,
                        _ => out.bound_peer = Some(peer),
                    }
                }
                CONTROL_CAVEAT_NAME => match cbor {
                    CborValue::Bool(true) => out.control = true,
                    _ => {
                        return Err(OverlayCaveatError::Malformed {
                            name: name.clone(),
                            why: "value must be `true`",
                        })
                    }
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether a session authenticated as `peer` (or a client without an identity: `None`)
    /// may use the token.
    pub fn permits_peer(&self, peer: Option<&PeerId>) -> bool {
        if self.conflicting_peers {
            return false;
        }
        match (&self.bound_peer, peer) {
            (None, _) => true,
            (Some(bound), Some(actual)) => bound == actual,
            (Some(_), None) => false,
        }
    }
}

fn peer_from_cbor(cbor: &CborValue) -> Result<PeerId, OverlayCaveatError> {
    let malformed = |why| OverlayCaveatError::Malformed {
        name: PEER_CAVEAT_NAME.to_string(),
        why,
    };
    let CborValue::Bytes(bytes) = cbor else {
        return Err(malformed("value must be a byte string"));
    };
    let id: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| malformed("value must be 32 bytes"))?;
    Ok(PeerId(id))
}

/// The caveat that binds a token to `peer`.
pub fn peer_caveat(peer: &PeerId) -> Caveat {
    Caveat::Custom {
        ns: OVERLAY_CAVEAT_NS.to_string(),
        name: PEER_CAVEAT_NAME.to_string(),
        cbor: CborValue::Bytes(peer.as_bytes().to_vec()),
    }
}

/// The caveat that marks a control-plane token.
pub fn control_caveat() -> Caveat {
    Caveat::Custom {
        ns: OVERLAY_CAVEAT_NS.to_string(),
        name: CONTROL_CAVEAT_NAME.to_string(),
        cbor: CborValue::Bool(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Scope;

    fn cap(caveats: Vec<Caveat>) -> Capability {
        Capability {
            tid: "t".into(),
            kid: "k".into(),
            scope: Scope::default(),
            caveats,
            mac: [0; 32],
        }
    }

    #[test]
    fn plain_token_is_unbound_and_not_control() {
        let c = OverlayCaveats::of(&cap(vec![Caveat::Exp(10)])).unwrap();
        assert_eq!(c, OverlayCaveats::default());
        assert!(c.permits_peer(None));
        assert!(c.permits_peer(Some(&PeerId([1; 32]))));
    }

    #[test]
    fn peer_caveat_binds_to_that_peer_only() {
        let c = OverlayCaveats::of(&cap(vec![peer_caveat(&PeerId([7; 32]))])).unwrap();
        assert_eq!(c.bound_peer, Some(PeerId([7; 32])));
        assert!(c.permits_peer(Some(&PeerId([7; 32]))));
        assert!(!c.permits_peer(Some(&PeerId([8; 32]))));
        assert!(!c.permits_peer(None));
    }

    #[test]
    fn two_different_peer_caveats_match_no_one() {
        let c = OverlayCaveats::of(&cap(vec![
            peer_caveat(&PeerId([7; 32])),
            peer_caveat(&PeerId([8; 32])),
        ]))
        .unwrap();
        assert!(c.conflicting_peers);
        assert!(!c.permits_peer(Some(&PeerId([7; 32]))));
        assert!(!c.permits_peer(Some(&PeerId([8; 32]))));
    }

    #[test]
    fn control_marker_is_read() {
        let c = OverlayCaveats::of(&cap(vec![control_caveat()])).unwrap();
        assert!(c.control);
    }

    #[test]
    fn malformed_values_are_errors_not_ignored() {
        let bad_peer = Caveat::Custom {
            ns: OVERLAY_CAVEAT_NS.into(),
            name: PEER_CAVEAT_NAME.into(),
            cbor: CborValue::Bytes(vec![1, 2, 3]),
        };
        assert!(OverlayCaveats::of(&cap(vec![bad_peer])).is_err());
        let bad_control = Caveat::Custom {
            ns: OVERLAY_CAVEAT_NS.into(),
            name: CONTROL_CAVEAT_NAME.into(),
            cbor: CborValue::Integer(1.into()),
        };
        assert!(OverlayCaveats::of(&cap(vec![bad_control])).is_err());
    }

    #[test]
    fn other_namespaces_and_names_are_ignored() {
        let other = Caveat::Custom {
            ns: "someone-else".into(),
            name: PEER_CAVEAT_NAME.into(),
            cbor: CborValue::Bool(false),
        };
        let future = Caveat::Custom {
            ns: OVERLAY_CAVEAT_NS.into(),
            name: "future".into(),
            cbor: CborValue::Null,
        };
        assert_eq!(
            OverlayCaveats::of(&cap(vec![other, future])).unwrap(),
            OverlayCaveats::default()
        );
    }
}
