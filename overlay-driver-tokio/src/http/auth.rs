//! Control API access.
//!
//! A control request passes when, in this order:
//! 1. it carries no `Origin` header (browsers send one; the control API has no CORS);
//! 2. with `Authorization: Bearer <token>`: the token carries the `overlay`/`control` caveat
//!    (a peer's session token never works here), verifies against the node's key ring with
//!    the request's method and path in the request context (so `Method` / `PathPrefix`
//!    caveats bind it per route), and its scope allows the request (`methods`, `prefix`,
//!    `max_bytes` against `Content-Length`). Over plain HTTP a token is accepted only from a
//!    loopback address, unless the listener allows plaintext tokens;
//! 3. without a token: the peer is a loopback address and loopback is trusted
//!    (`--control-trust-loopback`, default true), the `Host` header names the listener
//!    (its `IP:port` or `localhost:port`; DNS rebinding), and a `POST` has a content type a
//!    browser cannot send cross-origin without a preflight (not `text/plain`,
//!    `application/x-www-form-urlencoded`, `multipart/form-data`, nor none).
//!
//! Everything else is refused (403; 415 for the content type) and counted by reason.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use overlay_proto::capability::{
    decode_token, verify_token, Decision, OverlayCaveats, RequestCtx, Scope, VerifierConfig,
};
use overlay_proto::{AuthConfig, KeyRing};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::limits::{HttpCounters, HttpRefusal};
use super::serve::ConnMeta;

/// How control requests are authorised: the node's key ring, the fixed parts of the capability
/// request context, and the transport rules.
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
    /// Token-less requests from loopback addresses are allowed (`--control-trust-loopback`).
    pub trust_loopback: bool,
    /// Tokens are accepted over plain HTTP from non-loopback addresses
    /// (`control_plaintext_tokens`; for a TLS-terminating proxy in front of the node).
    pub plaintext_tokens: bool,
}

/// What the control check looks at in a request.
#[derive(Debug, Clone, Default)]
pub struct ControlRequest<'a> {
    /// The peer's address (`None`: unknown, treated as remote).
    pub peer: Option<SocketAddr>,
    /// The listener the request came on (`None`: unknown; no `Host` matches).
    pub listener: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The `Bearer` credentials, if any.
    pub bearer: Option<&'a str>,
    /// Whether an `Origin` header is present.
    pub has_origin: bool,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Content-Length` header.
    pub content_length: Option<u64>,
}

/// A refused control request: the reason it is counted under, and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRefusal {
    /// The `rejected_total` reason.
    pub reason: HttpRefusal,
    /// The response.
    pub error: ApiError,
}

fn refuse(reason: HttpRefusal, error: ApiError) -> ControlRefusal {
    ControlRefusal { reason, error }
}

impl ControlAuth {
    /// The control-API authorisation matching a node's session authorisation settings
    /// (loopback trusted, no plaintext tokens from remote addresses).
    pub fn from_auth_config(auth: &AuthConfig) -> Self {
        ControlAuth {
            keys: auth.keys.clone(),
            tenant: auth.tenant.clone(),
            amnesia: auth.amnesia,
            policy_digest_hex: auth.policy_digest_hex.clone(),
            verifier: VerifierConfig::default(),
            trust_loopback: true,
            plaintext_tokens: false,
        }
    }

    /// Decides a control request (see the module documentation for the rules).
    pub fn check(&self, req: &ControlRequest<'_>) -> Result<(), ControlRefusal> {
        if req.has_origin {
            return Err(refuse(
                HttpRefusal::Origin,
                ApiError::forbidden("requests with an Origin header (browsers) are refused"),
            ));
        }
        let peer_ip = req.peer.map(|a| a.ip().to_canonical());
        let loopback = peer_ip.is_some_and(|ip: IpAddr| ip.is_loopback());
        if let Some(token) = req.bearer {
            if !req.tls && !loopback && !self.plaintext_tokens {
                return Err(refuse(
                    HttpRefusal::PlaintextToken,
                    ApiError::forbidden(
                        "control tokens over plain HTTP are accepted from loopback only",
                    ),
                ));
            }
            return self.check_token(token, peer_ip, req);
        }
        if !(loopback && self.trust_loopback) {
            return Err(refuse(
                HttpRefusal::ControlAuth,
                ApiError::forbidden(if loopback {
                    "the control API needs a control token (loopback is not trusted)"
                } else {
                    "the control API needs a loopback peer or a control token"
                }),
            ));
        }
        if !host_names_listener(req.host, req.listener) {
            return Err(refuse(
                HttpRefusal::Host,
                ApiError::forbidden(
                    "the Host header must name the listener (IP:port or localhost:port)",
                ),
            ));
        }
        if req.method.eq_ignore_ascii_case("POST") && is_simple_content_type(req.content_type) {
            return Err(refuse(
                HttpRefusal::ContentType,
                ApiError::unsupported_media_type("a POST without a token needs a content type such as application/octet-stream or application/json"),
            ));
        }
        Ok(())
    }

    fn check_token(
        &self,
        token: &str,
        peer_ip: Option<IpAddr>,
        req: &ControlRequest<'_>,
    ) -> Result<(), ControlRefusal> {
        let denied = |detail: String| refuse(HttpRefusal::ControlAuth, ApiError::forbidden(detail));
        let token = token.trim().as_bytes();
        // Cheap checks first: a token that is not a control token is refused unverified.
        let cap = decode_token(token, &self.verifier)
            .map_err(|e| denied(format!("token rejected: {e}")))?;
        let caveats =
            OverlayCaveats::of(&cap).map_err(|e| denied(format!("token rejected: {e}")))?;
        if !caveats.control {
            return Err(denied(
                "not a control token (it lacks the overlay/control caveat)".to_string(),
            ));
        }
        let ctx = RequestCtx {
            now_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            method: req.method.to_string(),
            path: req.path.to_string(),
            peer_ip,
            object_addr: None,
            tenant: self.tenant.clone(),
            amnesia: self.amnesia,
            policy_digest_hex: self.policy_digest_hex.clone(),
            extras: None,
        };
        match verify_token(token, &ctx, &self.keys, &self.verifier) {
            Ok(Decision::Allow { scope }) => scope_allows(&scope, req).map_err(denied),
            Ok(Decision::Deny { reasons }) => {
                let names: Vec<&str> = reasons.iter().map(|r| r.name()).collect();
                Err(denied(format!("token denied: {}", names.join(", "))))
            }
            Err(e) => Err(denied(format!("token rejected: {e}"))),
        }
    }
}

/// The token's scope, enforced by the host: allowed methods, path prefix, body size.
fn scope_allows(scope: &Scope, req: &ControlRequest<'_>) -> Result<(), String> {
    if !scope.methods.is_empty()
        && !scope
            .methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(req.method))
    {
        return Err(format!("token scope does not allow {}", req.method));
    }
    if let Some(prefix) = &scope.prefix {
        if !req.path.starts_with(prefix.as_str()) {
            return Err(format!("token scope does not cover {}", req.path));
        }
    }
    if let (Some(max), Some(len)) = (scope.max_bytes, req.content_length) {
        if len > max {
            return Err(format!("token scope allows bodies up to {max} bytes"));
        }
    }
    Ok(())
}

/// Whether `host` (a `Host` header) names `listener`: `localhost:PORT`, or `IP:PORT` with
/// the listener's IP (any IP literal when the listener is bound to an unspecified address).
pub fn host_names_listener(host: Option<&str>, listener: Option<SocketAddr>) -> bool {
    let (Some(host), Some(listener)) = (host, listener) else {
        return false;
    };
    let host = host.trim();
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(listener.port()) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    match name.parse::<IpAddr>() {
        Ok(ip) => {
            let bound = listener.ip().to_canonical();
            ip.to_canonical() == bound || bound.is_unspecified()
        }
        Err(_) => false,
    }
}

/// Whether a `Content-Type` is one a browser may send cross-origin without a preflight
/// (or is missing).
pub fn is_simple_content_type(value: Option<&str>) -> bool {
    let Some(value) = value else {
        return true;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.is_empty()
        || [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ]
        .iter()
        .any(|s| essence.eq_ignore_ascii_case(s))
}

/// The `Bearer` credentials of an `Authorization` header value.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The state of the control middleware.
#[derive(Clone)]
pub(crate) struct ControlGate {
    pub(crate) auth: Arc<ControlAuth>,
    /// Free control-request slots.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) counters: HttpCounters,
    /// The listener address assumed when a request carries no [`ConnMeta`].
    pub(crate) default_listener: SocketAddr,
}

/// Middleware guarding the control routes with [`ControlAuth::check`] and the control
/// concurrency budget.
pub(crate) async fn require_control(
    State(gate): State<ControlGate>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let meta = request.extensions().get::<ConnMeta>().copied();
    let headers = request.headers();
    let check = ControlRequest {
        peer,
        listener: Some(meta.map_or(gate.default_listener, |m| m.local)),
        tls: meta.is_some_and(|m| m.tls),
        method: request.method().as_str(),
        path: request.uri().path(),
        bearer: header_str(headers, header::AUTHORIZATION).and_then(bearer_token),
        has_origin: headers.contains_key(header::ORIGIN),
        host: header_str(headers, header::HOST),
        content_type: header_str(headers, header::CONTENT_TYPE),
        content_length: header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
    };
    if let Err(refusal) = gate.auth.check(&check) {
        tracing::debug!(peer = ?peer, reason = refusal.reason.label(), detail = ?refusal.error.detail, "control request refused");
        gate.counters.refused(refusal.reason);
        return refusal.error.into_response();
    }
    // Streams hold their own slots; their setup is cheap and they do not count here.
    let gossip = super::Endpoint::Gossip;
    let streaming = request.method() == gossip.method() && request.uri().path() == gossip.path();
    let _permit = if streaming {
        None
    } else {
        match Arc::clone(&gate.slots).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                gate.counters.refused(HttpRefusal::ControlBusy);
                return ApiError::busy("too many control requests at once").into_response();
            }
        }
    };
    next.run(request).await
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

    #[test]
    fn hosts_naming_the_listener() {
        let lo: SocketAddr = "127.0.0.1:9415".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9415".parse().unwrap();
        let v6: SocketAddr = "[::1]:9415".parse().unwrap();
        for ok in ["127.0.0.1:9415", "localhost:9415", "LOCALHOST:9415"] {
            assert!(host_names_listener(Some(ok), Some(lo)), "{ok}");
        }
        for bad in [
            "127.0.0.2:9415",
            "127.0.0.1:80",
            "127.0.0.1",
            "evil.example:9415",
            "localhost",
            "",
        ] {
            assert!(!host_names_listener(Some(bad), Some(lo)), "{bad}");
        }
        assert!(!host_names_listener(None, Some(lo)));
        assert!(!host_names_listener(Some("127.0.0.1:9415"), None));
        assert!(host_names_listener(Some("10.1.2.3:9415"), Some(any)));
        assert!(!host_names_listener(Some("evil.example:9415"), Some(any)));
        assert!(host_names_listener(Some("[::1]:9415"), Some(v6)));
        assert!(!host_names_listener(Some("[::2]:9415"), Some(v6)));
    }

    #[test]
    fn simple_content_types() {
        for simple in [
            None,
            Some(""),
            Some("text/plain"),
            Some("Text/Plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert!(is_simple_content_type(simple), "{simple:?}");
        }
        for other in ["application/json", "application/octet-stream", "text/csv"] {
            assert!(!is_simple_content_type(Some(other)), "{other}");
        }
    }
}
