//! What the driver learns from an established session: the peer's PeerId, the negotiated
//! key-exchange group, whether ALPN was `ron/oap1`.

use overlay_proto::PeerId;
use rustls::CommonState;

use super::cert::peer_id_from_cert;
use super::config::kx_groups;
use super::error::TlsError;
use super::ALPN;
use crate::pq::PqMode;

/// Facts about an established TLS session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSessionInfo {
    /// The remote peer's identity, derived from its end-entity certificate's public key.
    pub peer_id: PeerId,
    /// The negotiated key-exchange group (`"X25519MLKEM768"`, `"X25519"`, `"secp256r1"`, ...).
    pub kx_group: Option<&'static str>,
    /// Whether the negotiated ALPN protocol is exactly `ron/oap1`.
    pub alpn_ok: bool,
}

/// Inspects an established session (a `rustls::ServerConnection` or `ClientConnection`
/// dereferences to [`CommonState`]; with tokio-rustls use `stream.get_ref().1`).
///
/// Errors if the handshake is not complete, the peer presented no (parsable) certificate, or the
/// negotiated ALPN is not `ron/oap1` — rustls lets a client that offers no ALPN at all through,
/// so the driver must call this (or [`check_alpn`]) after every handshake.
pub fn session_info(conn: &CommonState) -> Result<TlsSessionInfo, TlsError> {
    let info = inspect_session(conn)?;
    if !info.alpn_ok {
        return Err(alpn_error(conn));
    }
    Ok(info)
}

/// Like [`session_info`] but reports a wrong or missing ALPN in `alpn_ok` instead of failing.
pub fn inspect_session(conn: &CommonState) -> Result<TlsSessionInfo, TlsError> {
    if conn.is_handshaking() {
        return Err(TlsError::HandshakeIncomplete);
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(TlsError::NoPeerCertificate)?;
    let peer_id = peer_id_from_cert(leaf)
        .map_err(|e| TlsError::BadCertificate(format!("peer certificate: {e}")))?;
    Ok(TlsSessionInfo {
        peer_id,
        kx_group: negotiated_kx_group(conn),
        alpn_ok: conn.alpn_protocol() == Some(ALPN),
    })
}

/// Errors unless the negotiated ALPN protocol is exactly `ron/oap1`.
pub fn check_alpn(conn: &CommonState) -> Result<(), TlsError> {
    if conn.alpn_protocol() == Some(ALPN) {
        Ok(())
    } else {
        Err(alpn_error(conn))
    }
}

fn alpn_error(conn: &CommonState) -> TlsError {
    TlsError::Alpn {
        negotiated: conn.alpn_protocol().map(<[u8]>::to_vec),
    }
}

/// The negotiated key-exchange group's IANA name, if the handshake got that far.
pub fn negotiated_kx_group(conn: &CommonState) -> Option<&'static str> {
    conn.negotiated_key_exchange_group()
        .and_then(|group| group.name().as_str())
}

/// Defence in depth: errors unless the negotiated group is one the mode allows (rustls already
/// enforces this through the provider's group list).
pub fn check_kx_policy(conn: &CommonState, pq: PqMode) -> Result<(), TlsError> {
    let negotiated = conn.negotiated_key_exchange_group().map(|g| g.name());
    let allowed = negotiated.is_some_and(|name| kx_groups(pq).iter().any(|g| g.name() == name));
    if allowed {
        Ok(())
    } else {
        Err(TlsError::KxPolicy {
            mode: pq,
            group: negotiated.and_then(|n| n.as_str()),
        })
    }
}
