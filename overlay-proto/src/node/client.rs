//! Client sessions on the node side: a connection without a certificate runs the reference
//! HELLO, START with a token, then PUBLISH / SUBSCRIBE / UNSUBSCRIBE requests, DIRECT, PING
//! and CREDIT from the client, and DELIVER / LAGGED / DIRECT / answers from the node.
//!
//! Client sessions live in their own table: they never enter the gossip roles (eager/lazy),
//! the membership views, SHUFFLE, scoring or readiness. Every ceiling is checked from the
//! 38-byte header before the body is buffered; an oversized PUBLISH is skipped (its bytes are
//! dropped as they arrive) and answered 413 while the session stays open.

use bytes::{Buf, Bytes, BytesMut};
use core::net::SocketAddr;
use std::collections::BTreeSet;

use super::handshake::MAX_HANDSHAKE_FRAME;
use super::token::TokenLimits;
use super::Node;
use crate::action::{Action, CloseReason};
use crate::chunks::ChunkBuf;
use crate::client::{
    ClientEvent, ClientInfo, ClientRejectReason as Why, CODE_DELIVER, CODE_LAGGED, CODE_PUBLISH,
    CODE_SUBSCRIBE, CODE_UNSUBSCRIBE, DELIVER_HEADER_LEN, MAX_CONTROL_REQUEST_BODY, METHOD_DIRECT,
    METHOD_PUBLISH, METHOD_SUBSCRIBE,
};
use crate::error::OverlayError;
use crate::frame::{self, flags, Frame, Header, HelloReply, HEADER_LEN, MAX_FRAME_BYTES};
use crate::peer::{ConnId, MessageId, PeerId};
use crate::ratelimit::TokenBucket;
use crate::session::{write_frame, Body, OutQueue, Window};
use crate::time::Instant;
use crate::wire::{self, CreditGrant, Kind};

/// Operation bits of a client token.
const OP_PUBLISH: u8 = 1;
const OP_SUBSCRIBE: u8 = 2;
const OP_DIRECT: u8 = 4;
const OP_ALL: u8 = OP_PUBLISH | OP_SUBSCRIBE | OP_DIRECT;

/// Where a client session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientPhase {
    AwaitHello,
    AwaitStart,
    Running,
}

/// The kinds of frame a running client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientFrame {
    Publish,
    Subscribe,
    Unsubscribe,
    Credit,
    Direct,
    Ping,
    Pong,
}

impl ClientFrame {
    fn of(h: &Header, app: u16) -> Option<ClientFrame> {
        if h.app_proto_id != app || h.cap_len != 0 {
            return None;
        }
        let req = h.flags & (flags::REQ | flags::RESP | flags::EVENT | flags::START) == flags::REQ;
        let event =
            h.flags & (flags::REQ | flags::RESP | flags::EVENT | flags::START) == flags::EVENT;
        match h.code {
            CODE_PUBLISH if req => Some(ClientFrame::Publish),
            CODE_SUBSCRIBE if req => Some(ClientFrame::Subscribe),
            CODE_UNSUBSCRIBE if req => Some(ClientFrame::Unsubscribe),
            c if event && c == Kind::Credit.code() => Some(ClientFrame::Credit),
            c if event && c == Kind::Direct.code() => Some(ClientFrame::Direct),
            c if event && c == Kind::Ping.code() => Some(ClientFrame::Ping),
            c if event && c == Kind::Pong.code() => Some(ClientFrame::Pong),
            _ => None,
        }
    }
}

/// One client connection.
#[derive(Debug)]
pub(super) struct ClientSession {
    remote: SocketAddr,
    kx_group: Option<String>,
    phase: ClientPhase,
    opened_at: Instant,
    last_heard: Instant,
    recv_buf: BytesMut,
    /// This client's share of the node's `client_buffered` total.
    counted: usize,
    /// Bytes of an oversized PUBLISH still to drop as they arrive.
    skip: usize,
    out: ChunkBuf,
    queue: OutQueue,
    send_window: Window,
    recv_allowance: Window,
    recv_since_grant: Window,
    ops: u8,
    max_message_bytes: usize,
    rate: TokenBucket,
    expires_at: Option<Instant>,
    subscribed: bool,
    /// Deliveries dropped since the last LAGGED.
    lagged: u64,
    dirty: bool,
    holds_preauth: bool,
}

impl ClientSession {
    fn queue_has_room(&self, len: usize, frames: usize, bytes: usize) -> bool {
        self.queue.frames() < frames && self.queue.bytes() + len <= bytes
    }
}

/// A frame to send to a client.
struct Out<'a> {
    flags: u16,
    code: u16,
    corr: u64,
    parts: &'a [&'a [u8]],
    /// Appended after `parts` by reference (a delivery's payload, shared by every subscriber).
    shared: Option<&'a Bytes>,
    /// A delivery: dropped (and counted for LAGGED) when the client's queue is full.
    droppable: bool,
}

impl Node {
    // ---- connection ---------------------------------------------------------------------

    /// A TLS connection without a client certificate: a client session in HELLO.
    pub(super) fn on_client_connection_up(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        kx_group: Option<String>,
    ) {
        let now = self.now;
        if self.sessions.has_conn(&conn) || self.clients.contains_key(&conn) {
            self.actions.push_back(Action::Close {
                conn,
                reason: CloseReason::Duplicate,
                winner: None,
            });
            return;
        }
        let limits = &self.config.clients;
        let session = ClientSession {
            remote,
            kx_group,
            phase: ClientPhase::AwaitHello,
            opened_at: now,
            last_heard: now,
            recv_buf: BytesMut::new(),
            counted: 0,
            skip: 0,
            out: ChunkBuf::default(),
            queue: OutQueue::default(),
            send_window: Window::default(),
            recv_allowance: Window::default(),
            recv_since_grant: Window::default(),
            ops: OP_ALL,
            max_message_bytes: self.config.max_message_bytes,
            rate: TokenBucket::new(now, limits.rate_per_s, limits.rate_burst),
            expires_at: None,
            subscribed: false,
            lagged: 0,
            dirty: false,
            holds_preauth: false,
        };
        self.clients.insert(conn, session);
        if self.shutting_down {
            self.close_client(conn, Some(Why::Busy), CloseReason::Shutdown);
            return;
        }
        if self.preauth.try_admit(remote.ip()).is_err() {
            self.close_client(
                conn,
                Some(Why::Preauth),
                CloseReason::Violation(OverlayError::Busy),
            );
            return;
        }
        if let Some(c) = self.clients.get_mut(&conn) {
            c.holds_preauth = true;
        }
    }

    /// Inbound bytes before the first HELLO was handled, on a connection with a certificate:
    /// a complete first frame that is the reference HELLO (a JSON object without `peer_id`)
    /// turns the connection into a client session, which takes every byte so far (`None`).
    /// Otherwise the bytes are given back for the peer path (`Some`), with anything buffered
    /// before them.
    pub(super) fn route_first_hello(
        &mut self,
        key: super::SessionKey,
        conn: ConnId,
        data: Bytes,
    ) -> Option<Bytes> {
        let s = self.session_mut(key)?;
        if s.direction != crate::peer::Direction::Inbound {
            return Some(data);
        }
        s.recv_buf.extend_from_slice(&data);
        let reference = match frame::peek(&s.recv_buf) {
            Ok(Some(h))
                if (h.len as usize) <= MAX_HANDSHAKE_FRAME
                    && s.recv_buf.len() >= h.len as usize
                    && h.app_proto_id == 0
                    && h.flags & flags::REQ != 0
                    && h.cap_len == 0 =>
            {
                let payload = s
                    .recv_buf
                    .get(HEADER_LEN..h.len as usize)
                    .unwrap_or_default();
                matches!(
                    serde_json::from_slice::<serde_json::Value>(payload),
                    Ok(serde_json::Value::Object(body)) if !body.contains_key("peer_id")
                )
            }
            _ => false,
        };
        if !reference {
            return Some(s.recv_buf.split().freeze());
        }
        let session = self.sessions.remove(key)?;
        self.dirty.retain(|k| *k != key);
        self.stats.clients.from_certificate += 1;
        self.on_client_connection_up(conn, session.remote, session.kx_group.clone());
        if let Some(c) = self.clients.get_mut(&conn) {
            // The pre-auth slot moves with the connection (it was admitted as a peer).
            if c.holds_preauth && session.holds_preauth {
                self.preauth.release(session.remote.ip());
            } else if !c.holds_preauth {
                c.holds_preauth = session.holds_preauth;
            }
            c.opened_at = session.opened_at;
            c.recv_buf = session.recv_buf;
            c.counted = c.recv_buf.len();
            self.client_buffered += c.counted;
        } else if session.holds_preauth {
            self.preauth.release(session.remote.ip());
        }
        self.process_client_frames(conn);
        self.settle_client_buffer(conn);
        self.maybe_credit_client(conn);
        None
    }

    /// True when `conn` is a client session.
    pub(super) fn is_client(&self, conn: &ConnId) -> bool {
        self.clients.contains_key(conn)
    }

    /// Ends a client session: its last bytes (and an error frame for `why`), `Close`, and
    /// `ClientEvent::Down` if it had started.
    pub(super) fn close_client(&mut self, conn: ConnId, why: Option<Why>, reason: CloseReason) {
        let Some(mut c) = self.clients.remove(&conn) else {
            return;
        };
        self.subscribers.remove(&conn);
        self.client_dirty.retain(|k| *k != conn);
        self.client_buffered = self.client_buffered.saturating_sub(c.counted);
        if c.holds_preauth {
            self.preauth.release(c.remote.ip());
        }
        if let Some(why) = why {
            self.stats.clients.rejected.bump(why);
        }
        let transport_gone = reason == CloseReason::TransportClosed;
        if !transport_gone {
            let code = why.map(Why::wire_code).or(reason.wire_code());
            let label = why.map_or(reason.label(), Why::label);
            if let Some(code) = code {
                super::send::write_error_frame(&self.config, c.out.tail_mut(), code, label);
            }
            if !c.out.is_empty() {
                self.stats.bytes_out += c.out.len() as u64;
                self.actions.push_back(Action::Transmit {
                    conn,
                    data: c.out.take(),
                });
            }
        }
        if c.phase == ClientPhase::Running {
            self.stats.clients.closed += 1;
            self.actions
                .push_back(Action::Client(ClientEvent::Down { conn, reason }));
        }
        if !transport_gone {
            self.actions.push_back(Action::Close {
                conn,
                reason,
                winner: None,
            });
        }
    }

    // ---- receive ------------------------------------------------------------------------

    /// Bytes from a client connection.
    pub(super) fn on_client_received(&mut self, conn: ConnId, mut data: Bytes) {
        let now = self.now;
        self.stats.bytes_in += data.len() as u64;
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        c.last_heard = now;
        if c.skip > 0 {
            let n = c.skip.min(data.len());
            data.advance(n);
            c.skip -= n;
        }
        c.recv_buf.extend_from_slice(&data);
        c.counted += data.len();
        self.client_buffered += data.len();
        self.process_client_frames(conn);
        self.settle_client_buffer(conn);
        self.maybe_credit_client(conn);
    }

    /// Updates the node-wide total of bytes buffered for clients (partial frames) after
    /// `conn`'s frames were handled, and closes the client (503 `busy`) when the total is over
    /// `max_buffered_bytes`: what one client's half-sent frames hold is bounded per client by
    /// the frame limit, and across clients by this budget.
    fn settle_client_buffer(&mut self, conn: ConnId) {
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        let now_len = c.recv_buf.len();
        self.client_buffered = self.client_buffered.saturating_sub(c.counted) + now_len;
        c.counted = now_len;
        if now_len > 0 && self.client_buffered > self.config.clients.max_buffered_bytes {
            self.close_client(
                conn,
                Some(Why::Busy),
                CloseReason::Violation(OverlayError::Busy),
            );
        }
    }

    fn process_client_frames(&mut self, conn: ConnId) {
        let app = self.config.app_proto_id;
        loop {
            let Some(c) = self.clients.get_mut(&conn) else {
                return;
            };
            if c.skip > 0 {
                let n = c.skip.min(c.recv_buf.len());
                c.recv_buf.advance(n);
                c.skip -= n;
                if c.skip > 0 {
                    return;
                }
            }
            let h = match frame::peek(&c.recv_buf) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    let why = match e {
                        frame::FrameError::FrameTooLarge { .. } => Why::Oversize,
                        _ => Why::Malformed,
                    };
                    let err = if why == Why::Oversize {
                        OverlayError::TooLarge
                    } else {
                        OverlayError::Malformed
                    };
                    self.close_client(conn, Some(why), CloseReason::Violation(err));
                    return;
                }
            };
            let len = h.len as usize;
            let kind = if c.phase == ClientPhase::Running {
                if h.flags & flags::RESP != 0 && h.code >= 400 {
                    // The client closes with an error.
                    self.close_client(
                        conn,
                        None,
                        CloseReason::PeerError(OverlayError::from_wire_code(h.code)),
                    );
                    return;
                }
                let Some(kind) = ClientFrame::of(&h, app) else {
                    self.close_client(
                        conn,
                        Some(Why::Malformed),
                        CloseReason::Violation(OverlayError::Malformed),
                    );
                    return;
                };
                let body = len.saturating_sub(HEADER_LEN);
                if kind != ClientFrame::Credit && !c.recv_allowance.fits(len) {
                    self.close_client(
                        conn,
                        Some(Why::Credits),
                        CloseReason::Violation(OverlayError::Quota),
                    );
                    return;
                }
                let limit = match kind {
                    ClientFrame::Publish | ClientFrame::Direct => c.max_message_bytes,
                    ClientFrame::Subscribe | ClientFrame::Unsubscribe => MAX_CONTROL_REQUEST_BODY,
                    ClientFrame::Credit => 8,
                    ClientFrame::Ping | ClientFrame::Pong => 0,
                };
                if body > limit {
                    if kind == ClientFrame::Publish && h.corr_id != 0 {
                        // Answered 413; the body is dropped as it arrives, never buffered.
                        c.recv_allowance.take(len);
                        c.recv_since_grant.add(1, len as u64);
                        let n = len.min(c.recv_buf.len());
                        c.recv_buf.advance(n);
                        c.skip = len - n;
                        self.stats.clients.rejected.bump(Why::Oversize);
                        self.answer_error(conn, h.corr_id, Why::Oversize);
                        continue;
                    }
                    self.close_client(
                        conn,
                        Some(Why::Oversize),
                        CloseReason::Violation(OverlayError::TooLarge),
                    );
                    return;
                }
                Some(kind)
            } else {
                if len > MAX_HANDSHAKE_FRAME {
                    self.close_client(
                        conn,
                        Some(Why::Oversize),
                        CloseReason::Violation(OverlayError::TooLarge),
                    );
                    return;
                }
                None
            };
            let Some(c) = self.clients.get_mut(&conn) else {
                return;
            };
            if c.recv_buf.len() < len {
                return;
            }
            if kind.is_some_and(|k| k != ClientFrame::Credit) {
                c.recv_allowance.take(len);
                c.recv_since_grant.add(1, len as u64);
            }
            let decoded = frame::decode(&mut c.recv_buf);
            let frame = match decoded {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(_) => {
                    self.close_client(
                        conn,
                        Some(Why::Malformed),
                        CloseReason::Violation(OverlayError::Malformed),
                    );
                    return;
                }
            };
            self.stats.frames_in += 1;
            match kind {
                Some(kind) => self.on_client_frame(conn, kind, frame),
                None => self.on_client_handshake_frame(conn, frame),
            }
        }
    }

    // ---- handshake ----------------------------------------------------------------------

    fn on_client_handshake_frame(&mut self, conn: ConnId, frame: Frame) {
        let Some(phase) = self.clients.get(&conn).map(|c| c.phase) else {
            return;
        };
        let h = frame.header;
        if h.flags & flags::RESP != 0 && h.code >= 400 {
            self.close_client(
                conn,
                None,
                CloseReason::PeerError(OverlayError::from_wire_code(h.code)),
            );
            return;
        }
        let result = match phase {
            ClientPhase::AwaitHello if h.app_proto_id == 0 && h.flags & flags::REQ != 0 => {
                self.on_client_hello(conn, &frame)
            }
            ClientPhase::AwaitStart
                if h.app_proto_id == self.config.app_proto_id && h.flags & flags::START != 0 =>
            {
                self.on_client_start(conn, &frame)
            }
            _ => Err(Why::Unauth),
        };
        if let Err(why) = result {
            let err = match why.wire_code() {
                400 => OverlayError::Malformed,
                401 => OverlayError::Unauthorized,
                403 => OverlayError::Forbidden,
                413 => OverlayError::TooLarge,
                _ => OverlayError::Busy,
            };
            self.close_client(conn, Some(why), CloseReason::Violation(err));
        }
    }

    fn on_client_hello(&mut self, conn: ConnId, frame: &Frame) -> Result<(), Why> {
        let payload = frame.payload.as_deref().unwrap_or_default();
        let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(payload) else {
            return Err(Why::Malformed);
        };
        if body.contains_key("peer_id") {
            // A peer's HELLO: peers prove their identity with a certificate.
            return Err(Why::NoCertificate);
        }
        let limits = &self.config.clients;
        let window = |key: &str, default: u32| match body.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(Why::Malformed),
        };
        let frames = window("credit_frames", limits.default_client_window_frames)?;
        let bytes = window("credit_bytes", limits.default_client_window_bytes)?;
        if frames < self.config.min_peer_window_frames || bytes < self.config.min_peer_window_bytes
        {
            return Err(Why::SmallWindow);
        }
        let (our_frames, our_bytes) = (limits.window_frames, limits.window_bytes);
        let mut reply = HelloReply::default_for_server();
        reply.max_inflight = u64::from(our_frames);
        let ext = &mut reply.extensions;
        ext.insert("credit_bytes".into(), our_bytes.into());
        ext.insert("credit_frames".into(), our_frames.into());
        ext.insert("overlay".into(), 1.into());
        ext.insert("peer_id".into(), self.identity.peer_id.to_string().into());
        ext.insert("session".into(), "client".into());
        let header = Header {
            len: 0,
            ver: 1,
            flags: flags::RESP,
            code: 200,
            app_proto_id: 0,
            tenant_id: self.config.tenant_id,
            cap_len: 0,
            corr_id: frame.header.corr_id,
        };
        let payload = reply.to_payload();
        let Some(c) = self.clients.get_mut(&conn) else {
            return Ok(());
        };
        c.send_window.add(frames, u64::from(bytes));
        c.recv_allowance.add(our_frames, u64::from(our_bytes));
        c.phase = ClientPhase::AwaitStart;
        self.client_raw(conn, &header, &[], &payload);
        Ok(())
    }

    fn on_client_start(&mut self, conn: ConnId, frame: &Frame) -> Result<(), Why> {
        let Some(remote) = self.clients.get(&conn).map(|c| c.remote) else {
            return Ok(());
        };
        let limits = match self.verify_start_token(frame.cap.as_ref(), remote, None) {
            Ok(limits) => limits,
            Err((_, reason)) => {
                return Err(match reason {
                    crate::stats::RejectReason::WrongPeer => Why::WrongPeer,
                    crate::stats::RejectReason::Forbidden => Why::Forbidden,
                    _ => Why::Unauth,
                })
            }
        };
        let running = self.clients.len() - self.clients_handshaking();
        if running >= self.config.clients.max_clients {
            return Err(Why::MaxClients);
        }
        let now = self.now;
        let cfg = &self.config.clients;
        let (mut rate, mut burst) = (cfg.rate_per_s, cfg.rate_burst);
        let (ops, max_bytes, expires_at) = match &limits {
            None => (OP_ALL, self.config.max_message_bytes, None),
            Some(l) => {
                if let Some((r, b)) = l.rate_cap {
                    rate = rate.min(r);
                    burst = burst.min(b);
                }
                (client_ops(l), l.max_message_bytes, l.expires_at)
            }
        };
        let header = Header {
            len: 0,
            ver: 1,
            flags: flags::START | flags::RESP,
            code: 200,
            app_proto_id: self.config.app_proto_id,
            tenant_id: self.config.tenant_id,
            cap_len: 0,
            corr_id: frame.header.corr_id,
        };
        let Some(c) = self.clients.get_mut(&conn) else {
            return Ok(());
        };
        c.ops = ops;
        c.max_message_bytes = max_bytes;
        c.rate = TokenBucket::new(now, rate, burst);
        c.expires_at = expires_at;
        c.phase = ClientPhase::Running;
        c.last_heard = now;
        let released = std::mem::take(&mut c.holds_preauth).then_some(c.remote.ip());
        if let Some(ip) = released {
            self.preauth.release(ip);
        }
        self.client_raw(conn, &header, &[], &[]);
        self.stats.clients.opened += 1;
        self.actions
            .push_back(Action::Client(ClientEvent::Up { conn, remote }));
        Ok(())
    }

    fn clients_handshaking(&self) -> usize {
        self.clients
            .values()
            .filter(|c| c.phase != ClientPhase::Running)
            .count()
    }

    // ---- running ------------------------------------------------------------------------

    fn on_client_frame(&mut self, conn: ConnId, kind: ClientFrame, frame: Frame) {
        let now = self.now;
        let corr = frame.header.corr_id;
        let body = frame.payload.unwrap_or_default();
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        let ops = c.ops;
        match kind {
            ClientFrame::Publish | ClientFrame::Subscribe | ClientFrame::Unsubscribe
                if corr == 0 =>
            {
                self.close_client(
                    conn,
                    Some(Why::Malformed),
                    CloseReason::Violation(OverlayError::Malformed),
                );
            }
            ClientFrame::Publish => {
                if ops & OP_PUBLISH == 0 {
                    self.stats.clients.rejected.bump(Why::Forbidden);
                    self.answer_error(conn, corr, Why::Forbidden);
                    return;
                }
                if !c.rate.try_take(now) {
                    self.stats.clients.rejected.bump(Why::Rate);
                    self.answer_error(conn, corr, Why::Rate);
                    return;
                }
                match self.broadcast(crate::topic::TopicId::DEFAULT, body.clone()) {
                    Ok(id) => {
                        self.stats.clients.published += 1;
                        let answer = format!("{{\"id\":\"{}\"}}", id.to_hex());
                        self.answer_ok(conn, corr, answer.as_bytes());
                        let origin = self.identity.peer_id;
                        // The store's copy, not a slice pinning the client's receive block.
                        let body = self.cache.newest_payload(&id).unwrap_or(body);
                        self.deliver_to_clients(Some(conn), &id, &origin, 0, &body);
                    }
                    Err(e) => {
                        let why = match e {
                            OverlayError::TooLarge => Why::Oversize,
                            _ => Why::Busy,
                        };
                        self.stats.clients.rejected.bump(why);
                        self.answer_error(conn, corr, why);
                    }
                }
            }
            ClientFrame::Subscribe | ClientFrame::Unsubscribe => {
                if ops & OP_SUBSCRIBE == 0 {
                    self.stats.clients.rejected.bump(Why::Forbidden);
                    self.answer_error(conn, corr, Why::Forbidden);
                    return;
                }
                let on = kind == ClientFrame::Subscribe;
                c.subscribed = on;
                if on {
                    self.subscribers.insert(conn);
                } else {
                    self.subscribers.remove(&conn);
                }
                self.answer_ok(conn, corr, b"{}");
            }
            ClientFrame::Direct => {
                if ops & OP_DIRECT == 0 {
                    self.close_client(
                        conn,
                        Some(Why::Forbidden),
                        CloseReason::Violation(OverlayError::Forbidden),
                    );
                    return;
                }
                if !c.rate.try_take(now) {
                    self.stats.clients.rejected.bump(Why::Rate);
                    return;
                }
                self.stats.clients.direct_in += 1;
                self.actions.push_back(Action::ClientMessage {
                    client: conn,
                    payload: body,
                });
            }
            ClientFrame::Credit => match wire::parse_credit(&body) {
                Ok(CreditGrant { frames, bytes }) => {
                    c.send_window.add(frames, u64::from(bytes));
                    self.drain_client_queue(conn);
                }
                Err(_) => self.close_client(
                    conn,
                    Some(Why::Malformed),
                    CloseReason::Violation(OverlayError::Malformed),
                ),
            },
            ClientFrame::Ping => {
                self.send_client(
                    conn,
                    Out {
                        flags: flags::EVENT,
                        code: Kind::Pong.code(),
                        corr: 0,
                        parts: &[],
                        shared: None,
                        droppable: false,
                    },
                );
            }
            ClientFrame::Pong => {}
        }
    }

    fn answer_ok(&mut self, conn: ConnId, corr: u64, body: &[u8]) {
        self.send_client(
            conn,
            Out {
                flags: flags::RESP,
                code: 200,
                corr,
                parts: &[body],
                shared: None,
                droppable: false,
            },
        );
    }

    fn answer_error(&mut self, conn: ConnId, corr: u64, why: Why) {
        let body = format!("{{\"error\":\"{}\"}}", why.label());
        self.send_client(
            conn,
            Out {
                flags: flags::RESP,
                code: why.wire_code(),
                corr,
                parts: &[body.as_bytes()],
                shared: None,
                droppable: false,
            },
        );
    }

    // ---- deliveries and DIRECT ----------------------------------------------------------

    /// Queues a DELIVER for every subscribed client except `except` (the publisher).
    pub(super) fn deliver_to_clients(
        &mut self,
        except: Option<ConnId>,
        id: &MessageId,
        origin: &PeerId,
        hops: u8,
        payload: &Bytes,
    ) {
        if self.subscribers.is_empty() {
            return;
        }
        if HEADER_LEN + DELIVER_HEADER_LEN + payload.len() > MAX_FRAME_BYTES {
            return;
        }
        let mut head = [0u8; DELIVER_HEADER_LEN];
        head[..32].copy_from_slice(&id.0);
        head[32..64].copy_from_slice(&origin.0);
        head[64] = hops;
        let targets: Vec<ConnId> = self
            .subscribers
            .iter()
            .copied()
            .filter(|c| Some(*c) != except)
            .collect();
        for conn in targets {
            self.send_client(
                conn,
                Out {
                    flags: flags::EVENT,
                    code: CODE_DELIVER,
                    corr: 0,
                    parts: &[&head],
                    shared: Some(payload),
                    droppable: true,
                },
            );
        }
    }

    /// The application sends a DIRECT message to a client session.
    pub(super) fn on_send_to_client(&mut self, request: u64, client: ConnId, payload: Bytes) {
        let result = match self.clients.get(&client) {
            Some(c) if c.phase == ClientPhase::Running => {
                if payload.len() > self.config.max_message_bytes {
                    Err(OverlayError::TooLarge)
                } else if self.send_client(
                    client,
                    Out {
                        flags: flags::EVENT,
                        code: Kind::Direct.code(),
                        corr: 0,
                        parts: &[&payload],
                        shared: None,
                        droppable: true,
                    },
                ) {
                    self.stats.clients.direct_out += 1;
                    Ok(())
                } else {
                    Err(OverlayError::Busy)
                }
            }
            _ => Err(OverlayError::NotConnected),
        };
        self.actions
            .push_back(Action::SendResult { request, result });
    }

    // ---- send ---------------------------------------------------------------------------

    /// Writes a frame now if the client's window allows, else queues it. A droppable frame
    /// (a delivery) is dropped when the queue is full and counted for LAGGED; other frames
    /// (answers, PONG, LAGGED) always queue: they are bounded because the node returns
    /// credit to a client only while its queue is under the limit. Returns false if dropped.
    fn send_client(&mut self, conn: ConnId, out: Out<'_>) -> bool {
        let body = Body {
            parts: out.parts,
            shared: out.shared,
        };
        let len = HEADER_LEN + body.byte_len();
        let header = Header {
            len: len as u32,
            ver: 1,
            flags: out.flags,
            code: out.code,
            app_proto_id: self.config.app_proto_id,
            tenant_id: self.config.tenant_id,
            cap_len: 0,
            corr_id: out.corr,
        };
        let (max_frames, max_bytes) = (
            self.config.clients.queue_frames,
            self.config.clients.queue_bytes,
        );
        let Some(c) = self.clients.get_mut(&conn) else {
            return false;
        };
        if c.phase != ClientPhase::Running {
            return false;
        }
        let is_deliver = out.code == CODE_DELIVER && out.flags == flags::EVENT;
        if out.droppable {
            if c.queue.frames() > 0 && !c.queue_has_room(len, max_frames, max_bytes) {
                c.lagged += 1;
                self.stats.clients.lagged += 1;
                return false;
            }
            if c.lagged > 0 {
                // Tell the client what it missed before the next delivery.
                let dropped = std::mem::take(&mut c.lagged).to_be_bytes();
                let lagged = Header {
                    len: (HEADER_LEN + 8) as u32,
                    code: CODE_LAGGED,
                    corr_id: 0,
                    flags: flags::EVENT,
                    ..header
                };
                push_client_frame(c, &lagged, Body::copied(&[&dropped]));
            }
        }
        let credit = out.code == Kind::Credit.code() && out.flags == flags::EVENT;
        if credit {
            write_frame(&mut c.out, &header, body);
        } else {
            push_client_frame(c, &header, body);
        }
        if is_deliver {
            self.stats.clients.delivered += 1;
        }
        self.stats.frames_out += 1;
        self.mark_client_dirty(conn);
        true
    }

    fn mark_client_dirty(&mut self, conn: ConnId) {
        if let Some(c) = self.clients.get_mut(&conn) {
            if !c.dirty {
                c.dirty = true;
                self.client_dirty.push(conn);
            }
        }
    }

    /// A handshake frame (no credit).
    fn client_raw(&mut self, conn: ConnId, header: &Header, cap: &[u8], payload: &[u8]) {
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        if frame::encode_strict(header, cap, payload, c.out.tail_mut()).is_ok() {
            self.stats.frames_out += 1;
            self.mark_client_dirty(conn);
        }
    }

    fn drain_client_queue(&mut self, conn: ConnId) {
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        let mut moved = false;
        while let Some(len) = c.queue.front_len() {
            if !c.send_window.fits(len) {
                break;
            }
            c.send_window.take(len);
            c.queue.pop_into(&mut c.out);
            moved = true;
        }
        let (max_frames, max_bytes) = (
            self.config.clients.queue_frames,
            self.config.clients.queue_bytes,
        );
        if c.lagged > 0 && c.queue_has_room(HEADER_LEN + 8, max_frames, max_bytes) {
            // Report the drops as soon as there is room, not only with the next delivery.
            let dropped = std::mem::take(&mut c.lagged).to_be_bytes();
            let header = Header {
                len: (HEADER_LEN + 8) as u32,
                ver: 1,
                flags: flags::EVENT,
                code: CODE_LAGGED,
                app_proto_id: self.config.app_proto_id,
                tenant_id: self.config.tenant_id,
                cap_len: 0,
                corr_id: 0,
            };
            push_client_frame(c, &header, Body::copied(&[&dropped]));
            self.stats.frames_out += 1;
            moved = true;
        }
        if moved {
            self.mark_client_dirty(conn);
        }
        // Room again: the credit held back while the queue was full can go.
        self.maybe_credit_client(conn);
    }

    /// Returns consumed window to the client once half of it is used — but only while the
    /// node's queue toward the client is under its limit (a client that does not read gets
    /// no more credit, so what it can make the node queue stays bounded).
    fn maybe_credit_client(&mut self, conn: ConnId) {
        let cfg = &self.config.clients;
        let (half_frames, half_bytes) = (
            (cfg.window_frames / 2).max(1),
            u64::from(cfg.window_bytes / 2).max(1),
        );
        let (max_frames, max_bytes) = (cfg.queue_frames, cfg.queue_bytes);
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        if c.phase != ClientPhase::Running {
            return;
        }
        let used = c.recv_since_grant;
        if used.frames < half_frames && used.bytes < half_bytes {
            return;
        }
        if !c.queue_has_room(0, max_frames, max_bytes) {
            return;
        }
        c.recv_allowance.add(used.frames, used.bytes);
        c.recv_since_grant = Window::default();
        let mut body = [0u8; 8];
        let mut cursor = &mut body[..];
        wire::put_credit(
            &mut cursor,
            CreditGrant {
                frames: used.frames,
                bytes: used.bytes.min(u64::from(u32::MAX)) as u32,
            },
        );
        self.send_client(
            conn,
            Out {
                flags: flags::EVENT,
                code: Kind::Credit.code(),
                corr: 0,
                parts: &[&body],
                shared: None,
                droppable: false,
            },
        );
    }

    /// One `Transmit` per client with bytes waiting (end of every input).
    pub(super) fn flush_clients(&mut self) {
        let dirty = std::mem::take(&mut self.client_dirty);
        for conn in &dirty {
            if let Some(c) = self.clients.get_mut(conn) {
                c.dirty = false;
                if !c.out.is_empty() {
                    self.stats.bytes_out += c.out.len() as u64;
                    self.actions.push_back(Action::Transmit {
                        conn: *conn,
                        data: c.out.take(),
                    });
                }
            }
        }
        self.client_dirty = dirty;
        self.client_dirty.clear();
    }

    // ---- timers -------------------------------------------------------------------------

    /// Maintenance tick: handshake deadline, idle limit, token expiry; idle memory released.
    pub(super) fn client_tick(&mut self) {
        let now = self.now;
        let handshake = self.config.handshake_timeout;
        let idle = self.config.clients.idle_timeout;
        let mut ended = Vec::new();
        for (conn, c) in self.clients.iter_mut() {
            if c.phase != ClientPhase::Running {
                if now - c.opened_at >= handshake {
                    ended.push((*conn, Why::HandshakeTimeout, CloseReason::HandshakeTimeout));
                }
                continue;
            }
            if c.expires_at.is_some_and(|at| now >= at) {
                ended.push((*conn, Why::Expired, CloseReason::TokenExpired));
            } else if now - c.last_heard >= idle {
                ended.push((*conn, Why::Idle, CloseReason::PeerUnresponsive));
            } else {
                if c.recv_buf.is_empty() && c.recv_buf.capacity() > 0 {
                    c.recv_buf = BytesMut::new();
                }
                if c.out.is_empty() && c.out.capacity() > 0 {
                    c.out.clear();
                }
                c.queue.shrink_if_idle();
            }
        }
        for (conn, why, reason) in ended {
            self.close_client(conn, Some(why), reason);
        }
    }

    /// Shutdown: every client session is closed with 503.
    pub(super) fn close_all_clients(&mut self) {
        let conns: Vec<ConnId> = self.clients.keys().copied().collect();
        for conn in conns {
            self.close_client(conn, None, CloseReason::Shutdown);
        }
    }

    // ---- views --------------------------------------------------------------------------

    /// Every client session, in connection order.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.clients
            .iter()
            .map(|(conn, c)| ClientInfo {
                conn: *conn,
                remote: c.remote,
                running: c.phase == ClientPhase::Running,
                subscribed: c.subscribed,
                queued_frames: c.queue.frames(),
                kx_group: c.kx_group.clone(),
            })
            .collect()
    }

    /// Client gauges for [`Node::stats`].
    pub(super) fn client_gauges(&self, stats: &mut crate::client::ClientStats) {
        let handshaking = self.clients_handshaking();
        stats.handshaking = handshaking;
        stats.sessions = self.clients.len() - handshaking;
        stats.subscribers = self.subscribers.len();
        stats.buffered_bytes = self.client_buffered;
    }
}

/// The subscribed set type (ordered: deliveries go out in connection order).
pub(super) type Subscribers = BTreeSet<ConnId>;

/// Writes a frame now if the window allows and nothing waits, else queues it.
fn push_client_frame(c: &mut ClientSession, header: &Header, body: Body<'_>) {
    let len = header.len as usize;
    if c.queue.frames() == 0 && c.send_window.fits(len) {
        c.send_window.take(len);
        write_frame(&mut c.out, header, body);
    } else {
        write_frame(c.queue.buf_mut(), header, body);
        c.queue.commit(len, 0);
    }
}

/// The client operations a token allows: `publish`, `subscribe`, `direct` in
/// `scope.methods` (an empty list allows all three); `publish` and `subscribe` only when the
/// token covers the default topic.
fn client_ops(limits: &TokenLimits) -> u8 {
    let mut ops = 0;
    // Client sessions publish and subscribe in the default topic: a token that does not
    // cover it allows neither.
    let default_topic = limits.covers(&crate::topic::TopicId::DEFAULT);
    for (method, bit) in [
        (METHOD_PUBLISH, OP_PUBLISH),
        (METHOD_SUBSCRIBE, OP_SUBSCRIBE),
        (METHOD_DIRECT, OP_DIRECT),
    ] {
        if limits.allows(method) && (bit == OP_DIRECT || default_topic) {
            ops |= bit;
        }
    }
    ops
}
