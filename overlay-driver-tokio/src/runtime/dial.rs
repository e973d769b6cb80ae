//! Outbound connections for `Action::Connect`: TCP connect (within the core's connect deadline)
//! and the TLS client handshake (within its handshake deadline, counted from the start),
//! pinning the expected PeerId when the core knows it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::{ConnId, DialId, Direction, OverlayError as CoreError, PeerId};
use rustls::ClientConfig;
use tokio::time::{timeout_at, Instant as TokioInstant};
use tokio_rustls::TlsConnector;

use super::conn::io_kind;
use super::metrics::DriverCounters;
use super::net::Net;
use super::node_task::Command;
use super::read_ahead::ReadAhead;
use super::seeds::{self, SeedBook};
use super::Established;
use crate::tls::{classify_handshake_error, client_config, server_name, session_info};
use crate::tls::{Identity, TlsOptions};

/// What a dial task needs; shared by all dials.
pub(crate) struct DialCtx<N: Net> {
    /// Configured peers per address: the name to re-resolve before a dial, the pinned
    /// identity (`--peer peer:<id>@host:port`).
    pub(crate) seeds: Arc<SeedBook>,
    /// Where re-resolved addresses are offered (`Input::PeersDiscovered`).
    pub(crate) cmd: tokio::sync::mpsc::WeakSender<Command>,
    pub(crate) net: N,
    pub(crate) identity: Identity,
    pub(crate) tls: TlsOptions,
    /// The client configuration without a pinned peer (built once).
    pub(crate) unpinned: Arc<ClientConfig>,
    pub(crate) deadline: Duration,
    /// The TCP connect phase alone (a host that does not answer costs no more).
    pub(crate) connect_deadline: Duration,
    pub(crate) counters: Arc<DriverCounters>,
    pub(crate) next_conn: Arc<AtomicU64>,
}

/// The end of one dial.
pub(crate) struct DialReport<S> {
    /// The core's dial id.
    pub(crate) dial: DialId,
    /// The session, or why not.
    pub(crate) result: Result<Box<Established<S>>, CoreError>,
}

/// Connects to `addr` (TCP + TLS) and reports the outcome. An identity the operator pinned
/// for `addr` wins over the one the core expects.
pub(crate) async fn dial<N: Net>(
    ctx: Arc<DialCtx<N>>,
    dial: DialId,
    addr: SocketAddr,
    expected: Option<PeerId>,
) -> DialReport<N::Stream> {
    let result = connect(&ctx, dial, addr, expected).await;
    DialReport { dial, result }
}

async fn connect<N: Net>(
    ctx: &DialCtx<N>,
    dial: DialId,
    addr: SocketAddr,
    expected: Option<PeerId>,
) -> Result<Box<Established<N::Stream>>, CoreError> {
    let deadline = TokioInstant::now() + ctx.deadline;
    if let Some(target) = ctx.seeds.name_of(addr) {
        // Re-resolve the name this address came from: do not dial an address it has left.
        match timeout_at(deadline, ctx.net.resolve(&target.host_port)).await {
            Ok(Ok(addrs)) if !addrs.is_empty() && !addrs.contains(&addr) => {
                ctx.counters.error("dial", "stale_name");
                tracing::info!(%addr, name = %target.host_port, now = ?addrs, "peer name moved; not dialing its old address");
                seeds::offer(&ctx.cmd, ctx.seeds.learn(&target, &addrs));
                return Err(CoreError::Refused);
            }
            Ok(Ok(addrs)) => seeds::offer(&ctx.cmd, ctx.seeds.learn(&target, &addrs)),
            // Name service trouble does not stop reconnects to the last known address.
            Ok(Err(e)) => {
                tracing::debug!(%addr, name = %target.host_port, error = %e, "cannot re-resolve; dialing the last address")
            }
            Err(_) => {
                ctx.counters.error("dial", "timeout");
                return Err(CoreError::Timeout);
            }
        }
    }
    let expected = match (ctx.seeds.expected(addr), expected) {
        (Some(pinned), Some(learned)) if pinned != learned => {
            tracing::warn!(%addr, %pinned, %learned, "membership expects another identity at a pinned address; requiring the pinned one");
            Some(pinned)
        }
        (pinned, learned) => pinned.or(learned),
    };
    // The TCP connect alone gets the connect deadline (a host that does not answer costs no
    // more), within the overall handshake deadline.
    let connect_deadline = deadline.min(TokioInstant::now() + ctx.connect_deadline);
    let slot = ctx.counters.conns.acquire();
    let tcp = match timeout_at(connect_deadline, ctx.net.connect(addr)).await {
        Err(_) => {
            ctx.counters.error("dial", "timeout");
            return Err(CoreError::Timeout);
        }
        Ok(Err(e)) => {
            ctx.counters.error("dial", io_kind(&e));
            tracing::debug!(%dial, %addr, error = %e, "dial failed");
            return Err(match e.kind() {
                std::io::ErrorKind::TimedOut => CoreError::Timeout,
                _ => CoreError::Refused,
            });
        }
        Ok(Ok(tcp)) => tcp,
    };
    let config = match expected {
        None => Arc::clone(&ctx.unpinned),
        Some(peer) => match client_config(&ctx.identity, &ctx.tls, Some(peer)) {
            Ok(config) => config,
            Err(e) => {
                ctx.counters.error("dial", "tls_config");
                tracing::error!(error = %e, "cannot build a pinned TLS client configuration");
                return Err(CoreError::Crypto);
            }
        },
    };
    let tls = match timeout_at(
        deadline,
        TlsConnector::from(config).connect(server_name(), ReadAhead::new(tcp)),
    )
    .await
    {
        Err(_) => {
            ctx.counters.handshake_failure("timeout");
            return Err(CoreError::Timeout);
        }
        Ok(Err(e)) => {
            let reason = classify_handshake_error(&e);
            ctx.counters.handshake_failure(reason);
            tracing::debug!(%dial, %addr, reason, error = %e, "outbound TLS handshake failed");
            return Err(CoreError::Crypto);
        }
        Ok(Ok(tls)) => tls,
    };
    let info = match session_info(tls.get_ref().1) {
        Ok(info) => info,
        Err(e) => {
            ctx.counters.handshake_failure(e.reason());
            return Err(CoreError::Crypto);
        }
    };
    Ok(Box::new(Established {
        conn: ConnId(ctx.next_conn.fetch_add(1, Ordering::Relaxed)),
        stream: tls.into(),
        peer: Some(info.peer_id),
        remote: addr,
        direction: Direction::Outbound,
        dial: Some(dial),
        kx_group: info.kx_group.map(str::to_string),
        slot,
        preauth: None,
    }))
}
