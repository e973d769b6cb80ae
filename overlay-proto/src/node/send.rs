//! The send path: encode overlay frames straight into per-session buffers, respecting the
//! peer's credit window and the bounded queue; flush one `Transmit` per session per input.

use bytes::{BufMut, BytesMut};

use super::{Node, SessionKey};
use crate::action::Action;
use crate::config::NodeConfig;
use crate::frame::{self, flags, Header, HEADER_LEN, MAX_FRAME_BYTES};
use crate::session::Session;
use crate::stats::RejectReason;
use crate::wire::{self, CreditGrant, Kind};

/// Outcome of trying to send one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Written to the transmit buffer.
    Now,
    /// Waiting in the queue for credit.
    Queued,
    /// Dropped (counted).
    Dropped,
}

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

fn write_frame(out: &mut BytesMut, header: &Header, parts: &[&[u8]]) {
    out.reserve(header.len as usize);
    header.write(out);
    for part in parts {
        out.put_slice(part);
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
    write_frame(out, &header, &[body.as_bytes()]);
}

impl Node {
    /// Sends one overlay frame made of `parts` to a running session.
    pub(super) fn send_frame(&mut self, key: SessionKey, kind: Kind, parts: &[&[u8]]) -> Sent {
        let body_len: usize = parts.iter().map(|p| p.len()).sum();
        let len = HEADER_LEN + body_len;
        let max_queue_frames = self.config.max_queue_frames;
        let max_queue_bytes = self.config.max_queue_bytes;
        let degrade = self.config.degrade_ratio;
        let header = event_header(&self.config, kind, len);
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key).and_then(Option::as_mut) else {
            return Sent::Dropped;
        };
        if !s.is_running() || len > MAX_FRAME_BYTES {
            self.stats.rejected.bump(RejectReason::Oversize);
            return Sent::Dropped;
        }
        let sent = if !kind.uses_credit() {
            write_frame(&mut s.out, &header, parts);
            Sent::Now
        } else if s.queue.frames() == 0 && s.send_window.fits(len) {
            s.send_window.take(len);
            s.inflight_frames = s.inflight_frames.saturating_add(1);
            write_frame(&mut s.out, &header, parts);
            Sent::Now
        } else if s.queue.frames() < max_queue_frames && s.queue.bytes() + len <= max_queue_bytes {
            if s.queue.frames() == 0 {
                // The stall clock starts when the queue stops being empty.
                s.queue_progress_at = now;
            }
            write_frame(s.queue.buf_mut(), &header, parts);
            s.queue.commit(len, kind.index() as u8);
            let ratio = (s.queue.frames() as f64 / max_queue_frames as f64)
                .max(s.queue.bytes() as f64 / max_queue_bytes as f64);
            if ratio > degrade {
                self.readiness_dirty = true;
            }
            Sent::Queued
        } else {
            self.stats.rejected.bump(RejectReason::Credits);
            self.readiness_dirty = true;
            return Sent::Dropped;
        };
        if sent == Sent::Now {
            s.liveness.sent(now);
            self.stats.frames_out += 1;
            self.stats.frames_out_by_kind[kind.index()] += 1;
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(key);
            }
        }
        sent
    }

    /// Moves queued frames into the transmit buffer while the peer's window allows.
    pub(super) fn drain_queue(&mut self, key: SessionKey) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let mut moved = 0u64;
        while let Some(len) = s.queue.front_len() {
            if !s.send_window.fits(len) {
                break;
            }
            s.send_window.take(len);
            s.inflight_frames = s.inflight_frames.saturating_add(1);
            if let Some(kind) = s.queue.pop_into(&mut s.out) {
                if let Some(c) = self.stats.frames_out_by_kind.get_mut(kind as usize) {
                    *c += 1;
                }
            }
            moved += 1;
        }
        if moved > 0 {
            s.queue_progress_at = now;
            s.liveness.sent(now);
            self.stats.frames_out += moved;
            if !s.dirty {
                s.dirty = true;
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
        let half_frames = self.config.credit_window_frames / 2;
        let half_bytes = u64::from(self.config.credit_window_bytes / 2);
        let Some(s) = self.session(key) else {
            return;
        };
        let used = s.recv_since_grant;
        if used.frames < half_frames.max(1) && used.bytes < half_bytes.max(1) {
            return;
        }
        self.grant_credit(key);
    }

    /// Sends a CREDIT frame returning everything consumed since the last grant (possibly
    /// nothing: a `0/0` CREDIT is the failure detector's heartbeat). CREDIT needs no credit.
    pub(super) fn grant_credit(&mut self, key: SessionKey) -> Sent {
        let Some(s) = self.session_mut(key) else {
            return Sent::Dropped;
        };
        let used = s.recv_since_grant;
        s.recv_allowance.add(used.frames, used.bytes);
        s.recv_since_grant = Default::default();
        let mut body = [0u8; 8];
        let mut cursor = &mut body[..];
        wire::put_credit(
            &mut cursor,
            CreditGrant {
                frames: used.frames,
                bytes: used.bytes.min(u64::from(u32::MAX)) as u32,
            },
        );
        self.send_frame(key, Kind::Credit, &[&body])
    }

    /// Emits one `Transmit` per session that has bytes waiting, in the order they got dirty.
    pub(super) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in &dirty {
            if let Some(s) = self.sessions.get_mut(*key).and_then(Option::as_mut) {
                s.dirty = false;
                if !s.out.is_empty() {
                    self.stats.bytes_out += s.out.len() as u64;
                    self.actions.push_back(Action::Transmit {
                        conn: s.conn,
                        data: s.out.split().freeze(),
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
        let Some(s) = self.sessions.get_mut(key).and_then(Option::as_mut) else {
            return false;
        };
        if frame::encode_strict(header, cap, payload, &mut s.out).is_err() {
            return false;
        }
        s.liveness.sent(now);
        self.stats.frames_out += 1;
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(key);
        }
        true
    }
}

/// Ratio of a session's queue to its limits (0 = empty, 1 = full).
pub(super) fn queue_load(config: &NodeConfig, s: &Session) -> f64 {
    (s.queue.frames() as f64 / config.max_queue_frames as f64)
        .max(s.queue.bytes() as f64 / config.max_queue_bytes as f64)
}
