//! START tokens: the reference verifier, then the overlay's session-use rules (scope
//! methods, `max_bytes` / `BytesLe`, `Rate`, `Exp` for the whole session, the
//! `overlay`/`peer` binding). Shared by peer sessions and client sessions.

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;

use super::Node;
use crate::capability::{self, Caveat, Decision, OverlayCaveats, RequestCtx, VerifierConfig};
use crate::error::OverlayError;
use crate::peer::PeerId;
use crate::stats::RejectReason;
use crate::time::Instant;
use crate::topic::TopicId;
use crate::wire::MAX_APP_PAYLOAD;

/// What a verified token allows, before it is mapped to peer or client operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenLimits {
    /// `scope.methods` (empty: every operation).
    pub(super) methods: Vec<String>,
    /// Largest message: the smallest of the configured limit, `scope.max_bytes` and every
    /// `BytesLe` caveat.
    pub(super) max_message_bytes: usize,
    /// The smallest `Rate` caveat (messages per second, burst), if any.
    pub(super) rate_cap: Option<(u32, u32)>,
    /// First instant the verifier refuses the token (`Exp` + skew), if it expires.
    pub(super) expires_at: Option<Instant>,
    /// The topics the token covers, ascending (`None`: every topic); see
    /// [`Node::topic_grant`].
    pub(super) topics: Option<Vec<TopicId>>,
}

/// The path prefix under which a `PathPrefix` caveat names topics.
const TOPICS_PATH: &str = "/topics/";

/// The session operations a token's `scope.methods` can name (peers: `gossip`, `direct`,
/// `membership`; clients: `publish`, `subscribe`, `direct`).
const SESSION_OPERATIONS: [&str; 5] = ["gossip", "direct", "membership", "publish", "subscribe"];

impl TokenLimits {
    /// Whether the token allows operation `op`: when `scope.methods` names any session
    /// operation, only the named ones (ASCII case-insensitive); otherwise — an empty list, or
    /// only other names such as `overlay`, which the reference `Method` caveat needs to let a
    /// session open at all — every operation.
    /// Whether the token covers `topic`.
    pub(super) fn covers(&self, topic: &TopicId) -> bool {
        self.topics
            .as_ref()
            .is_none_or(|t| t.binary_search(topic).is_ok())
    }

    pub(super) fn allows(&self, op: &str) -> bool {
        let names_operations = self
            .methods
            .iter()
            .any(|m| SESSION_OPERATIONS.iter().any(|o| m.eq_ignore_ascii_case(o)));
        !names_operations || self.methods.iter().any(|m| m.eq_ignore_ascii_case(op))
    }
}

impl Node {
    /// Verifies a START token exactly like the reference verifier, then derives the limits
    /// the overlay enforces itself. `peer` is the TLS identity (`None` for a client session:
    /// a token bound to a peer by the `overlay`/`peer` caveat is refused with 403).
    pub(super) fn verify_start_token(
        &self,
        cap: Option<&Bytes>,
        remote: SocketAddr,
        peer: Option<&PeerId>,
    ) -> Result<Option<TokenLimits>, (OverlayError, RejectReason)> {
        let unauth = (OverlayError::Unauthorized, RejectReason::Unauth);
        let token = match cap {
            Some(t) if !t.is_empty() => t,
            _ if !self.config.auth.require_token => return Ok(None),
            _ => return Err(unauth),
        };
        let cfg = VerifierConfig::default();
        let base = self.config.unix_base_secs;
        let ctx = RequestCtx {
            now_unix_s: base.saturating_add(self.now.since_epoch().as_secs()),
            method: "overlay".to_string(),
            path: self.config.auth.path.clone(),
            peer_ip: Some(remote.ip()),
            object_addr: None,
            tenant: self.config.auth.tenant.clone(),
            amnesia: self.config.auth.amnesia,
            policy_digest_hex: self.config.auth.policy_digest_hex.clone(),
            extras: None,
        };
        let decoded = capability::decode_token(token, &cfg).map_err(|_| unauth)?;
        let (scope, topics) =
            match capability::verify_token(token, &ctx, &self.config.auth.keys, &cfg) {
                Ok(Decision::Allow { scope }) => (scope, None),
                Ok(Decision::Deny { .. }) => match self.topic_grant(token, &decoded, ctx, &cfg) {
                    Some(granted) => granted,
                    None => return Err((OverlayError::Forbidden, RejectReason::Forbidden)),
                },
                Err(_) => return Err(unauth),
            };
        // A malformed overlay caveat makes the token malformed (401); a well-formed binding
        // to another identity (or to any identity, on a client session) is a valid token that
        // does not allow this session (403).
        let overlay = OverlayCaveats::of(&decoded).map_err(|_| unauth)?;
        if !overlay.permits_peer(peer) {
            return Err((OverlayError::Forbidden, RejectReason::WrongPeer));
        }
        let mut max_bytes = self.config.max_message_bytes as u64;
        if let Some(m) = scope.max_bytes {
            max_bytes = max_bytes.min(m);
        }
        let mut rate_cap: Option<(u32, u32)> = None;
        let mut exp: Option<u64> = None;
        for caveat in &decoded.caveats {
            match caveat {
                Caveat::BytesLe(m) => max_bytes = max_bytes.min(*m),
                Caveat::Rate { per_s, burst: b } => {
                    let (r, bu) = rate_cap.unwrap_or((u32::MAX, u32::MAX));
                    rate_cap = Some((r.min((*per_s).max(1)), bu.min((*b).max(1))));
                }
                Caveat::Exp(t) => exp = Some(exp.map_or(*t, |e| e.min(*t))),
                _ => {}
            }
        }
        // The verifier refuses once `now_unix_s > exp + skew` (whole seconds): the first
        // instant of that is `exp + skew + 1` seconds after the Unix epoch.
        let expires_at = exp.map(|e| {
            let last_ok = e.saturating_add(cfg.clock_skew_secs).saturating_add(1);
            Instant::ZERO + Duration::from_secs(last_ok.saturating_sub(base))
        });
        Ok(Some(TokenLimits {
            methods: scope.methods.clone(),
            max_message_bytes: max_bytes.min(MAX_APP_PAYLOAD as u64) as usize,
            rate_cap,
            expires_at,
            topics,
        }))
    }

    /// A token the reference verifier refuses for the session path may still grant topics:
    /// when its `PathPrefix` caveats name topics (values under `/topics/`), it is verified
    /// again, exactly like the reference verifier, for the longest of them as the request
    /// path (every `PathPrefix` caveat must be a prefix of the path, so a path can only pass
    /// if it starts with the longest one). Allowed there, the session opens restricted to
    /// what that path names: `/topics/` alone every topic, `/topics/<name>` the one topic
    /// `BLAKE3(name)` (peers exchange topic ids, not names, so a partial name cannot be
    /// matched as a prefix; it covers the topic of exactly that name). `None`: refused.
    fn topic_grant(
        &self,
        token: &Bytes,
        decoded: &capability::Capability,
        mut ctx: RequestCtx,
        cfg: &VerifierConfig,
    ) -> Option<(capability::Scope, Option<Vec<TopicId>>)> {
        let path = decoded
            .caveats
            .iter()
            .filter_map(|c| match c {
                Caveat::PathPrefix(p) if p.starts_with(TOPICS_PATH) => Some(p.as_str()),
                _ => None,
            })
            .max_by_key(|p| p.len())?
            .to_string();
        let topics = match path.strip_prefix(TOPICS_PATH) {
            Some("") => None,
            Some(name) if crate::topic::validate_topic_name(name).is_ok() => {
                Some(vec![TopicId::from_name(name)])
            }
            _ => return None,
        };
        ctx.path = path;
        match capability::verify_token(token, &ctx, &self.config.auth.keys, cfg) {
            Ok(Decision::Allow { scope }) => Some((scope, topics)),
            _ => None,
        }
    }
}
