//! One adversary connection as seen from outside its core: the frames in both directions, the
//! peer's real credit window, and the bookkeeping that keeps the wrapped core's own window view
//! consistent when the adversary drops, rewrites or injects frames.
//!
//! The adversary respects the honest peer's credit window (sending past it would only get it
//! closed with 429, which is no attack): every frame it lets out is charged against the window
//! the peer granted (its HELLO, then its CREDIT frames). Frames the core sends that do not fit
//! wait here until the peer grants more.
//!
//! Two balances reconcile the core's view with the wire:
//! - **refund**: the core was charged for a frame that never went out (dropped, or rewritten
//!   smaller). It is given back to the core at once with a CREDIT frame the shim feeds it.
//! - **debt**: frames went out that the core was not charged for (injected, or rewritten
//!   larger). The peer's next CREDIT frames pay the debt before the rest reaches the core.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use overlay_proto::frame::{flags, Frame, FrameParser, Header, HEADER_LEN};
use overlay_proto::wire::{self, CreditGrant, Kind};
use overlay_proto::{PeerId, OVERLAY_APP_PROTO_ID};

/// A frame and byte amount of credit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    /// Frames.
    pub frames: i64,
    /// Bytes.
    pub bytes: i64,
}

impl Amount {
    /// The cost of one frame of `len` bytes.
    pub fn frame(len: usize) -> Amount {
        Amount {
            frames: 1,
            bytes: len as i64,
        }
    }

    fn is_zero(&self) -> bool {
        self.frames <= 0 && self.bytes <= 0
    }
}

/// The `credit_frames` / `credit_bytes` keys of a HELLO or HELLO reply payload.
#[derive(Debug, serde::Deserialize)]
struct HelloCredit {
    credit_frames: u32,
    credit_bytes: u32,
}

/// How a frame of the overlay is classed for accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// A running-session overlay message of this kind.
    Overlay(Kind),
    /// Handshake (HELLO, START) and error (`RESP|END`) frames: never charged.
    Control,
}

/// Classifies a frame.
pub fn classify(frame: &Frame) -> FrameClass {
    let h = &frame.header;
    if h.flags & flags::EVENT != 0 && h.app_proto_id == OVERLAY_APP_PROTO_ID {
        if let Some(kind) = Kind::from_code(h.code) {
            return FrameClass::Overlay(kind);
        }
    }
    FrameClass::Control
}

/// True when the frame consumes the receiver's credit window.
pub fn charged(frame: &Frame) -> bool {
    matches!(classify(frame), FrameClass::Overlay(k) if k.uses_credit())
}

/// Appends the frame's bytes to `out` unchanged.
pub fn put_frame(out: &mut BytesMut, frame: &Frame) {
    frame.header.write(out);
    if let Some(cap) = &frame.cap {
        out.put_slice(cap);
    }
    if let Some(p) = &frame.payload {
        out.put_slice(p);
    }
}

/// Encodes an overlay EVENT frame of `kind` with `body`.
pub fn overlay_frame(kind: Kind, body: &[u8]) -> Bytes {
    let header = Header {
        len: (HEADER_LEN + body.len()) as u32,
        ver: 1,
        flags: flags::EVENT,
        code: kind.code(),
        app_proto_id: OVERLAY_APP_PROTO_ID,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    header.write(&mut out);
    out.put_slice(body);
    out.freeze()
}

/// A CREDIT frame granting `amount`.
pub fn credit_frame(amount: Amount) -> Bytes {
    let mut body = BytesMut::with_capacity(8);
    wire::put_credit(
        &mut body,
        CreditGrant {
            frames: amount.frames.clamp(0, i64::from(u32::MAX)) as u32,
            bytes: amount.bytes.clamp(0, i64::from(u32::MAX)) as u32,
        },
    );
    overlay_frame(Kind::Credit, &body)
}

/// One adversary connection.
#[derive(Debug)]
pub struct Conn {
    /// The peer's identity.
    pub peer: PeerId,
    /// True when the peer is a fellow attacker (left alone).
    pub colluder: bool,
    /// True once the START exchange succeeded (START|RESP 200 seen either way).
    pub running: bool,
    inbound: FrameParser,
    window: Option<Amount>,
    debt: Amount,
    refund: Amount,
    held: VecDeque<Bytes>,
    /// Frames ready to go out on the next `Transmit` for this connection.
    pub outbox: BytesMut,
    /// The parsers failed once: pass everything through untouched from now on.
    pub opaque: bool,
    /// When bytes last went out on this connection (its core's or the attack's).
    pub last_sent: Option<overlay_proto::Instant>,
}

impl Conn {
    /// A new connection to `peer`.
    pub fn new(peer: PeerId, colluder: bool) -> Conn {
        Conn {
            peer,
            colluder,
            running: false,
            inbound: FrameParser::new(),
            window: None,
            debt: Amount::default(),
            refund: Amount::default(),
            held: VecDeque::new(),
            outbox: BytesMut::new(),
            opaque: false,
            last_sent: None,
        }
    }

    /// True when frames can be injected now (running, window known, nothing waiting).
    pub fn can_inject(&self, len: usize) -> bool {
        self.running && !self.opaque && self.held.is_empty() && self.fits(len)
    }

    fn fits(&self, len: usize) -> bool {
        self.window
            .is_some_and(|w| w.frames >= 1 && w.bytes >= len as i64)
    }

    fn take(&mut self, len: usize) {
        if let Some(w) = self.window.as_mut() {
            w.frames -= 1;
            w.bytes -= len as i64;
        }
    }

    /// Parses bytes from the peer into frames (empty and `opaque` on a parse error).
    pub fn parse_inbound(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        if self.opaque {
            return frames;
        }
        let ok = self.inbound.push(data).is_ok() && self.inbound.drain_into(&mut frames).is_ok();
        if !ok {
            self.opaque = true;
            frames.clear();
        }
        frames
    }

    /// Learns the window and the session state from an inbound frame.
    pub fn observe_inbound(&mut self, frame: &Frame) {
        let h = &frame.header;
        if h.app_proto_id == 0 && h.flags & (flags::REQ | flags::RESP) != 0 {
            if let Some(c) = frame
                .payload
                .as_ref()
                .and_then(|p| serde_json::from_slice::<HelloCredit>(p).ok())
            {
                self.window = Some(Amount {
                    frames: i64::from(c.credit_frames),
                    bytes: i64::from(c.credit_bytes),
                });
            }
        }
        self.observe_start(h);
    }

    /// Notes a successful START reply in either direction.
    pub fn observe_start(&mut self, h: &Header) {
        if h.flags & flags::START != 0 && h.flags & flags::RESP != 0 && h.code == 200 {
            self.running = true;
        }
    }

    /// A CREDIT from the peer: the real window grows; what is left after paying the debt is
    /// what the core may see (`None`: swallow the frame).
    pub fn on_peer_credit(&mut self, grant: CreditGrant) -> Option<Amount> {
        let got = Amount {
            frames: i64::from(grant.frames),
            bytes: i64::from(grant.bytes),
        };
        if let Some(w) = self.window.as_mut() {
            w.frames += got.frames;
            w.bytes += got.bytes;
        }
        let pay_f = self.debt.frames.clamp(0, got.frames);
        let pay_b = self.debt.bytes.clamp(0, got.bytes);
        self.debt.frames -= pay_f;
        self.debt.bytes -= pay_b;
        let pass = Amount {
            frames: got.frames - pay_f,
            bytes: got.bytes - pay_b,
        };
        (!pass.is_zero()).then_some(pass)
    }

    /// Sends a frame the core wrote and was charged `core_cost` for (`None`: uncharged).
    /// `frame` may differ from what the core wrote; the difference is reconciled.
    pub fn send_from_core(&mut self, frame: Bytes, charged: bool, core_cost: Option<Amount>) {
        if let Some(core) = core_cost {
            let real = Amount::frame(frame.len());
            self.settle(core, real);
        }
        self.send(frame, charged);
    }

    /// The core was charged `core_cost` for a frame that is not sent at all.
    pub fn drop_from_core(&mut self, core_cost: Amount) {
        self.settle(core_cost, Amount::default());
    }

    /// Sends a frame the core knows nothing about (its cost becomes debt). The caller checks
    /// [`Conn::can_inject`] first.
    pub fn inject(&mut self, frame: Bytes) {
        let cost = Amount::frame(frame.len());
        self.debt.frames += cost.frames;
        self.debt.bytes += cost.bytes;
        self.send(frame, true);
    }

    fn settle(&mut self, core: Amount, real: Amount) {
        let diff_f = core.frames - real.frames;
        let diff_b = core.bytes - real.bytes;
        if diff_f > 0 {
            self.refund.frames += diff_f;
        } else {
            self.debt.frames -= diff_f;
        }
        if diff_b > 0 {
            self.refund.bytes += diff_b;
        } else {
            self.debt.bytes -= diff_b;
        }
    }

    fn send(&mut self, frame: Bytes, charged: bool) {
        if !charged {
            self.outbox.put_slice(&frame);
            return;
        }
        if self.held.is_empty() && (self.window.is_none() || self.fits(frame.len())) {
            self.take(frame.len());
            self.outbox.put_slice(&frame);
        } else {
            self.held.push_back(frame);
        }
    }

    /// Moves held frames that now fit the window to the outbox.
    pub fn release_held(&mut self) {
        while let Some(len) = self.held.front().map(Bytes::len) {
            if !self.fits(len) {
                break;
            }
            self.take(len);
            if let Some(f) = self.held.pop_front() {
                self.outbox.put_slice(&f);
            }
        }
    }

    /// The credit owed back to the core, as a CREDIT frame to feed it (and clears it).
    pub fn take_refund(&mut self) -> Option<Bytes> {
        if self.refund.is_zero() || !self.running {
            return None;
        }
        // A refund pays debt first, like a peer's credit.
        let pay_f = self.debt.frames.clamp(0, self.refund.frames);
        let pay_b = self.debt.bytes.clamp(0, self.refund.bytes);
        self.debt.frames -= pay_f;
        self.debt.bytes -= pay_b;
        let give = Amount {
            frames: self.refund.frames - pay_f,
            bytes: self.refund.bytes - pay_b,
        };
        self.refund = Amount::default();
        (!give.is_zero()).then(|| credit_frame(give))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_conn(frames: u32, bytes: u32) -> Conn {
        let mut c = Conn::new(PeerId([1; 32]), false);
        let hello = format!(r#"{{"credit_frames":{frames},"credit_bytes":{bytes}}}"#);
        let frame = Frame {
            header: Header {
                len: (HEADER_LEN + hello.len()) as u32,
                ver: 1,
                flags: flags::RESP,
                code: 200,
                ..Header::default()
            },
            cap: None,
            payload: Some(Bytes::from(hello)),
        };
        c.observe_inbound(&frame);
        c.observe_start(&Header {
            flags: flags::START | flags::RESP,
            code: 200,
            ..Header::default()
        });
        c
    }

    #[test]
    fn injected_frames_respect_the_window_and_are_repaid_from_credit() {
        let mut c = running_conn(2, 1000);
        let f = overlay_frame(Kind::IHave, &[0u8; 33]);
        assert!(c.can_inject(f.len()));
        c.inject(f.clone());
        c.inject(f.clone());
        assert!(!c.can_inject(f.len()), "window of 2 frames used up");
        // The core sends one frame it was charged for: it waits for credit.
        let g = overlay_frame(Kind::Ping, &[]);
        c.send_from_core(g.clone(), true, Some(Amount::frame(g.len())));
        assert_eq!(c.outbox.len(), 2 * f.len());
        // The peer returns 2 frames: both pay the injection debt; the core sees nothing.
        let pass = c.on_peer_credit(CreditGrant {
            frames: 2,
            bytes: 2 * f.len() as u32,
        });
        assert_eq!(pass, None);
        c.release_held();
        assert_eq!(c.outbox.len(), 2 * f.len() + g.len());
    }

    #[test]
    fn dropped_core_frames_are_refunded_to_the_core() {
        let mut c = running_conn(10, 10_000);
        c.drop_from_core(Amount::frame(100));
        let refund = c.take_refund().expect("refund");
        let mut buf = BytesMut::from(&refund[..]);
        let frame = overlay_proto::frame::decode(&mut buf).unwrap().unwrap();
        assert_eq!(classify(&frame), FrameClass::Overlay(Kind::Credit));
        let grant = wire::parse_credit(frame.payload.as_deref().unwrap()).unwrap();
        assert_eq!((grant.frames, grant.bytes), (1, 100));
        assert!(c.take_refund().is_none());
    }
}
