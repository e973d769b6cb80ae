//! The send path: encode overlay frames straight into per-session buffers, respecting the
//! peer's credit window and the bounded queue; flush one `Transmit` per session per input.

use bytes::{Bytes, BytesMut};

use super::{Node, SessionKey};
use crate::action::Action;
use crate::config::NodeConfig;
use crate::frame::{self, flags, Header, HEADER_LEN, MAX_FRAME_BYTES};
pub(super) use crate::session::Sent;
use crate::session::{Body, QueueLimits, Session, Window};
use crate::stats::RejectReason;
use crate::wire::{self, Kind};

fn event_header(config: &NodeConfig, kind: Kind, len: usize) -> Header {
    Header {
        len: len as u32,
        ver: 1,
        flags: flags::EVENT,
        code: kind.code(),
        app_proto_id: config.app_proto_id,
        tenant_id: config.tenant_id,
        cap_len: 0,
        corr_id: 0,
    }
}

/// Appends an error response (`RESP|END`, `code`, JSON `{"error":label}`) that ends a session.
pub(super) fn write_error_frame(config: &NodeConfig, out: &mut BytesMut, code: u16, label: &str) {
    let body = format!("{{\"error\":\"{label}\"}}");
    let header = Header {
        len: (HEADER_LEN + body.len()) as u32,
        ver: 1,
        flags: flags::RESP | flags::END,
        code,
        app_proto_id: config.app_proto_id,
        tenant_id: config.tenant_id,
        cap_len: 0,
        corr_id: 0,
    };
    header.write(out);
    out.extend_from_slice(body.as_bytes());
}

impl Node {
    /// Sends one overlay frame made of `parts` to a running session
    /// ([`Session::send`]: credit, bounded queue), counting it.
    pub(super) fn send_frame(&mut self, key: SessionKey, kind: Kind, parts: &[&[u8]]) -> Sent {
        self.send_body(key, kind, Body::copied(parts))
    }

    /// Sends one overlay frame made of `parts` then `payload`, which every session's buffer
    /// shares instead of copying (a gossip payload forwarded to several peers).
    pub(super) fn send_frame_sharing(
        &mut self,
        key: SessionKey,
        kind: Kind,
        parts: &[&[u8]],
        payload: &Bytes,
    ) -> Sent {
        self.send_body(
            key,
            kind,
            Body {
                parts,
                shared: Some(payload),
            },
        )
    }

    fn send_body(&mut self, key: SessionKey, kind: Kind, body: Body<'_>) -> Sent {
        let len = HEADER_LEN + body.byte_len();
        let limits = queue_limits(&self.config);
        let degrade = self.config.degrade_ratio;
        let header = event_header(&self.config, kind, len);
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key) else {
            return Sent::Dropped;
        };
        if !s.is_running() || len > MAX_FRAME_BYTES {
            self.stats.rejected.bump(RejectReason::Oversize);
            return Sent::Dropped;
        }
        let sent = s.send(
            now,
            &header,
            body,
            kind.uses_credit(),
            kind.index() as u8,
            limits,
        );
        match sent {
            Sent::Now => {
                self.stats.frames_out += 1;
                self.stats.frames_out_by_kind[kind.index()] += 1;
                if s.mark_dirty() {
                    self.dirty.push(key);
                }
            }
            Sent::Queued => {
                if limits.load(&s.queue) > degrade {
                    self.readiness_dirty = true;
                }
            }
            Sent::Dropped => {
                self.stats.rejected.bump(RejectReason::Credits);
                self.readiness_dirty = true;
            }
        }
        sent
    }

    /// Moves queued frames into the transmit buffer while the peer's window allows.
    pub(super) fn drain_queue(&mut self, key: SessionKey) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let by_kind = &mut self.stats.frames_out_by_kind;
        let moved = s.drain_queue(now, |kind| {
            if let Some(c) = by_kind.get_mut(kind as usize) {
                *c += 1;
            }
        });
        if moved > 0 {
            self.stats.frames_out += moved;
            if s.mark_dirty() {
                self.dirty.push(key);
            }
            // A degraded node recovers as soon as its queues drain (at the end of this
            // input), not at the next maintenance tick: until then every broadcast is refused.
            if !self.ready {
                self.readiness_dirty = true;
            }
        }
    }

    /// Returns consumed window to the peer once half of it is used.
    pub(super) fn maybe_grant_credit(&mut self, key: SessionKey) {
        let window = Window {
            frames: self.config.credit_window_frames,
            bytes: u64::from(self.config.credit_window_bytes),
        };
        if self.session(key).is_some_and(|s| s.credit_due(window)) {
            self.grant_credit(key);
        }
    }

    /// Sends a CREDIT frame returning everything consumed since the last grant (possibly
    /// nothing: a `0/0` CREDIT is the failure detector's heartbeat). CREDIT needs no credit.
    pub(super) fn grant_credit(&mut self, key: SessionKey) -> Sent {
        let Some(s) = self.session_mut(key) else {
            return Sent::Dropped;
        };
        let grant = s.take_credit_grant();
        let mut body = [0u8; 8];
        let mut cursor = &mut body[..];
        wire::put_credit(&mut cursor, grant);
        self.send_frame(key, Kind::Credit, &[&body])
    }

    /// Emits one `Transmit` per session that has bytes waiting, in the order they got dirty.
    pub(super) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in &dirty {
            if let Some(s) = self.sessions.get_mut(*key) {
                s.dirty = false;
                if !s.out.is_empty() {
                    self.stats.bytes_out += s.out.len() as u64;
                    self.actions.push_back(Action::Transmit {
                        conn: s.conn,
                        data: s.out.take(),
                    });
                }
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Writes a handshake-phase frame (not subject to credit) into a session's buffer.
    pub(super) fn send_raw(
        &mut self,
        key: SessionKey,
        header: &Header,
        cap: &[u8],
        payload: &[u8],
    ) -> bool {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key) else {
            return false;
        };
        if frame::encode_strict(header, cap, payload, s.out.tail_mut()).is_err() {
            return false;
        }
        s.liveness.sent(now);
        self.stats.frames_out += 1;
        if s.mark_dirty() {
            self.dirty.push(key);
        }
        true
    }
}

/// The bounds of every session's send queue.
pub(super) fn queue_limits(config: &NodeConfig) -> QueueLimits {
    QueueLimits {
        frames: config.max_queue_frames,
        bytes: config.max_queue_bytes,
    }
}

/// Ratio of a session's queue to its limits (0 = empty, 1 = full).
pub(super) fn queue_load(config: &NodeConfig, s: &Session) -> f64 {
    queue_limits(config).load(&s.queue)
}
