//! Control API access: loopback peers, or a capability token in `Authorization: Bearer`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use overlay_proto::capability::{verify_token, Decision, RequestCtx, VerifierConfig};
use overlay_proto::{AuthConfig, KeyRing};

use super::error::ApiError;

/// How control requests from non-loopback peers are authorised: the node's key ring and the
/// fixed parts of the capability request context.
#[derive(Debug, Clone)]
pub struct ControlAuth {
    /// Keys tokens are verified with.
    pub keys: KeyRing,
    /// `tenant` of the request context.
    pub tenant: String,
    /// `amnesia` of the request context.
    pub amnesia: bool,
    /// `policy_digest_hex` of the request context.
    pub policy_digest_hex: Option<String>,
    /// Verifier limits.
    pub verifier: VerifierConfig,
}

impl ControlAuth {
    /// The control-API authorisation matching a node's session authorisation settings.
    pub fn from_auth_config(auth: &AuthConfig) -> Self {
        ControlAuth {
            keys: auth.keys.clone(),
            tenant: auth.tenant.clone(),
            amnesia: auth.amnesia,
            policy_digest_hex: auth.policy_digest_hex.clone(),
            verifier: VerifierConfig::default(),
        }
    }

    /// Decides a control request: `Ok` when `peer` is a loopback address or `bearer` verifies
    /// and is allowed for `method` on `path`.
    pub fn check(
        &self,
        peer: Option<SocketAddr>,
        method: &str,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<(), ApiError> {
        let peer_ip = peer.map(|a| a.ip().to_canonical());
        if peer_ip.is_some_and(|ip: IpAddr| ip.is_loopback()) {
            return Ok(());
        }
        let Some(token) = bearer else {
            return Err(ApiError::forbidden(
                "the control API needs a loopback peer or a capability token",
            ));
        };
        let ctx = RequestCtx {
            now_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            method: method.to_string(),
            path: path.to_string(),
            peer_ip,
            object_addr: None,
            tenant: self.tenant.clone(),
            amnesia: self.amnesia,
            policy_digest_hex: self.policy_digest_hex.clone(),
            extras: None,
        };
        match verify_token(token.trim().as_bytes(), &ctx, &self.keys, &self.verifier) {
            Ok(Decision::Allow { .. }) => Ok(()),
            Ok(Decision::Deny { reasons }) => {
                let names: Vec<&str> = reasons.iter().map(|r| r.name()).collect();
                Err(ApiError::forbidden(format!(
                    "token denied: {}",
                    names.join(", ")
                )))
            }
            Err(e) => Err(ApiError::forbidden(format!("token rejected: {e}"))),
        }
    }
}

/// The `Bearer` credentials of an `Authorization` header value.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware guarding the control routes with [`ControlAuth::check`].
pub async fn require_control(
    State(auth): State<Arc<ControlAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match auth.check(
        peer,
        request.method().as_str(),
        request.uri().path(),
        bearer,
    ) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::debug!(peer = ?peer, detail = ?e.detail, "control request refused");
            metrics::counter!("http_control_refused_total").increment(1);
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
