//! The listener: accept, enforce `max_conns`, demultiplex on the first byte (TLS `0x16` for
//! overlay sessions, an ASCII letter for plain HTTP), run the TLS handshake under the handshake
//! deadline, and hand established sessions to the node task.
//!
//! The loop runs under a supervisor that restarts it with jittered backoff if it panics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::{ConnId, Direction};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout_at, Instant as TokioInstant};
use tokio_rustls::TlsAcceptor;

use super::conn::io_kind;
use super::metrics::{ConnSlot, DriverCounters};
use super::net::{Net, TLS_HANDSHAKE_BYTE};
use super::preauth::PreAuthGate;
use super::read_ahead::ReadAhead;
use super::{BusMsg, Established, HttpHandler, SplitMix};
use crate::api::KernelEvent;
use crate::shared::StopSignal;
use crate::tls::{check_alpn, classify_handshake_error, session_info, TlsError};

/// Everything the accept loop needs; cloned into each restart.
pub(crate) struct AcceptCtx<N: Net> {
    pub(crate) net: N,
    pub(crate) listener: Arc<N::Listener>,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) bus: mpsc::Sender<BusMsg<N::Stream>>,
    pub(crate) counters: Arc<DriverCounters>,
    pub(crate) max_conns: usize,
    pub(crate) handshake: Duration,
    pub(crate) http: Option<HttpHandler<N::Stream>>,
    pub(crate) next_conn: Arc<AtomicU64>,
    pub(crate) stop: Arc<StopSignal>,
    pub(crate) events: crate::feed::Sender<KernelEvent>,
    pub(crate) seed: u64,
    /// Connections before START, in total and per IP (`max_preauth`, `max_preauth_per_ip`).
    pub(crate) preauth: PreAuthGate,
}

impl<N: Net> Clone for AcceptCtx<N> {
    fn clone(&self) -> Self {
        AcceptCtx {
            net: self.net.clone(),
            listener: Arc::clone(&self.listener),
            acceptor: self.acceptor.clone(),
            bus: self.bus.clone(),
            counters: Arc::clone(&self.counters),
            max_conns: self.max_conns,
            handshake: self.handshake,
            http: self.http.clone(),
            next_conn: Arc::clone(&self.next_conn),
            stop: Arc::clone(&self.stop),
            events: self.events.clone(),
            seed: self.seed,
            preauth: self.preauth.clone(),
        }
    }
}

/// First restart delay of a crashed accept loop; doubles up to [`RESTART_MAX`].
const RESTART_BASE: Duration = Duration::from_millis(50);
const RESTART_MAX: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Runs the accept loop until `stop`, restarting it (jittered exponential backoff) when it
/// crashes.
pub(crate) async fn supervise<N: Net>(ctx: AcceptCtx<N>) {
    let mut rng = SplitMix(ctx.seed ^ 0xACCE_7ACC_E7AC_CE70);
    let mut delay = RESTART_BASE;
    loop {
        let run = tokio::spawn(accept_loop(ctx.clone()));
        match run.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                ctx.counters.restart("accept");
                tracing::error!("accept loop crashed; restarting in about {delay:?}");
                ctx.events.send(KernelEvent::ServiceCrashed {
                    service: super::SERVICE.to_string(),
                    reason: "accept loop panicked (restarted)".to_string(),
                });
            }
            Err(_) => return,
        }
        if ctx.stop.is_stopped() {
            return;
        }
        sleep(rng.jitter(delay)).await;
        delay = (delay * 2).min(RESTART_MAX);
    }
}

async fn accept_loop<N: Net>(ctx: AcceptCtx<N>) {
    // Handshakes in progress; dropped (aborted) with the loop.
    let mut handshakes: JoinSet<()> = JoinSet::new();
    let mut rng = SplitMix(ctx.seed ^ 0x5EED_ACCE);
    loop {
        if ctx.stop.is_stopped() {
            return;
        }
        tokio::select! {
            biased;
            () = ctx.stop.stopped() => return,
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        ctx.counters.restart("handshake");
                    }
                }
            }
            accepted = ctx.net.accept(&ctx.listener) => match accepted {
                Ok((stream, remote)) => {
                    let Some(slot) = ctx.counters.conns.try_acquire(ctx.max_conns) else {
                        // Refused before any TLS work: closing is the fastest answer.
                        drop(stream);
                        ctx.counters.reject("max_conns");
                        tracing::debug!(%remote, "refused: max_conns reached");
                        continue;
                    };
                    handshakes.spawn(handshake_inbound(ctx.clone(), stream, remote, slot));
                }
                Err(e) => {
                    ctx.counters.error("accept", io_kind(&e));
                    tracing::warn!(error = %e, "accept failed");
                    sleep(rng.jitter(ACCEPT_ERROR_PAUSE)).await;
                }
            },
        }
    }
}

/// First byte, then TLS, all under the handshake deadline.
async fn handshake_inbound<N: Net>(
    ctx: AcceptCtx<N>,
    mut stream: N::Stream,
    remote: SocketAddr,
    slot: ConnSlot,
) {
    let deadline = TokioInstant::now() + ctx.handshake;
    let first = match timeout_at(deadline, ctx.net.peek_first_byte(&mut stream)).await {
        Err(_) => {
            ctx.counters.handshake_failure("timeout");
            return;
        }
        Ok(Err(e)) => {
            ctx.counters.error("accept", io_kind(&e));
            return;
        }
        // Closed before sending anything.
        Ok(Ok(None)) => return,
        Ok(Ok(Some(byte))) => byte,
    };
    if first != TLS_HANDSHAKE_BYTE {
        if first.is_ascii_alphabetic() {
            match &ctx.http {
                Some(handler) => {
                    // HTTP connections are the HTTP server's business from here on.
                    drop(slot);
                    handler(stream, remote);
                }
                None => ctx.counters.error("accept", "http_disabled"),
            }
        } else {
            ctx.counters.error("accept", "unknown_protocol");
        }
        return;
    }
    // An overlay connection: the pre-auth budget (total and per IP), before any TLS work. A
    // flood exhausts only this budget; plain HTTP has its own limits.
    let preauth = match ctx.preauth.admit(remote.ip()) {
        Ok(preauth) => preauth,
        Err(reason) => {
            ctx.counters.reject(reason.label());
            tracing::debug!(%remote, reason = reason.label(), "refused: pre-auth budget");
            return;
        }
    };
    let tls = match timeout_at(deadline, ctx.acceptor.accept(ReadAhead::new(stream))).await {
        Err(_) => {
            ctx.counters.handshake_failure("timeout");
            return;
        }
        Ok(Err(e)) => {
            let reason = classify_handshake_error(&e);
            ctx.counters.handshake_failure(reason);
            tracing::debug!(%remote, reason, error = %e, "inbound TLS handshake failed");
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let info = match session_info(tls.get_ref().1) {
        Ok(info) => Some(info),
        // No certificate: a client session (token only), if the ALPN is right.
        Err(TlsError::NoPeerCertificate) => match check_alpn(tls.get_ref().1) {
            Ok(()) => None,
            Err(e) => {
                ctx.counters.handshake_failure(e.reason());
                tracing::debug!(%remote, error = %e, "inbound TLS session refused");
                return;
            }
        },
        Err(e) => {
            ctx.counters.handshake_failure(e.reason());
            tracing::debug!(%remote, error = %e, "inbound TLS session refused");
            return;
        }
    };
    let kx_group = info
        .and_then(|i| i.kx_group)
        .or_else(|| crate::tls::negotiated_kx_group(tls.get_ref().1))
        .map(str::to_string);
    let conn = ConnId(ctx.next_conn.fetch_add(1, Ordering::Relaxed));
    let up = BusMsg::Up(Box::new(Established {
        conn,
        stream: tls.into(),
        peer: info.map(|i| i.peer_id),
        remote,
        direction: Direction::Inbound,
        dial: None,
        kx_group,
        slot,
        preauth: Some(preauth),
    }));
    // Waits while the node task is busy (backpressure); fails only when it is gone.
    let _ = ctx.bus.send(up).await;
}
