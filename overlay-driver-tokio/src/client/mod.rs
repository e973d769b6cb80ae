//! A Rust client of svc-overlay's **client sessions** (issue #9): TLS without a client
//! certificate, the reference HELLO, START with a capability token, then PUBLISH, SUBSCRIBE,
//! DIRECT and deliveries. The same protocol as the Python and TypeScript clients in
//! `clients/`; the wire format is `docs/PROTOCOL.md`, "Client sessions".
//!
//! The client is one connection driven by the caller: every method reads what the node sent
//! meanwhile (deliveries wait in a bounded inbox) and answers credit and PING on the way.
//!
//! ```no_run
//! # async fn demo(token: &str) -> Result<(), svc_overlay::client::ClientError> {
//! use svc_overlay::client::{Client, ClientOptions, ClientEvent};
//! let addr = "127.0.0.1:9415".parse().expect("address");
//! let mut c = Client::connect(addr, token, ClientOptions::default()).await?;
//! let id = c.publish(&b"hello"[..]).await?;
//! c.subscribe().await?;
//! if let ClientEvent::Message(m) = c.recv().await? {
//!     println!("{} from {}", m.id, m.origin);
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use overlay_proto::client::{
    CODE_DELIVER, CODE_LAGGED, CODE_PUBLISH, CODE_SUBSCRIBE, CODE_UNSUBSCRIBE, DELIVER_HEADER_LEN,
};
use overlay_proto::frame::{self, flags, Frame, FrameParser, Header};
use overlay_proto::wire::Kind;
use overlay_proto::{MessageId, PeerId, OVERLAY_APP_PROTO_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls::{client_session_config, server_name, TlsOptions};

/// Deliveries held for the caller; beyond it the oldest are dropped and reported as lag.
const INBOX_LIMIT: usize = 10_000;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Require the node to be this PeerId (recommended); `None` accepts any node certificate.
    pub server_id: Option<PeerId>,
    /// Key exchange and CA trust, as for peers.
    pub tls: TlsOptions,
    /// HELLO `ua`.
    pub user_agent: String,
    /// The window this client grants the node (HELLO `credit_frames`).
    pub window_frames: u32,
    /// The window this client grants the node (HELLO `credit_bytes`).
    pub window_bytes: u32,
    /// Deadline of the connect + HELLO + START and of every request.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            server_id: None,
            tls: TlsOptions::default(),
            user_agent: concat!("svc-overlay-client-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            window_frames: 256,
            window_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The node answered with an error status (`fatal`: it closed the session).
    #[error("node answered {code} ({label})")]
    Status {
        /// 400, 401, 403, 408, 413, 429 or 503.
        code: u16,
        /// The `error` label.
        label: String,
        /// The session is over.
        fatal: bool,
    },
    /// The node sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection closed.
    #[error("the node closed the session")]
    Closed,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
}

/// A gossip message delivered to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// Message id.
    pub id: MessageId,
    /// The node that broadcast it.
    pub origin: PeerId,
    /// Overlay hops from the origin to the node serving this client.
    pub hops: u8,
    /// The message.
    pub payload: Bytes,
}

/// Something the node pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A delivery (after [`Client::subscribe`]).
    Message(ClientMessage),
    /// Deliveries were dropped because this client read too slowly.
    Lagged(u64),
    /// A DIRECT message from the node's application.
    Direct(Bytes),
}

/// One client session. See the module docs.
pub struct Client {
    stream: TlsStream<TcpStream>,
    parser: FrameParser,
    out: BytesMut,
    pending: VecDeque<Bytes>,
    send_frames: u64,
    send_bytes: u64,
    grant: (u32, u32),
    used: (u64, u64),
    next_corr: u64,
    answers: HashMap<u64, Result<Bytes, ClientError>>,
    inbox: VecDeque<ClientEvent>,
    dropped: u64,
    timeout: Duration,
    server_id: Option<PeerId>,
    closed: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server_id", &self.server_id)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn header(flags: u16, code: u16, app: u16, corr: u64) -> Header {
    Header {
        len: 0,
        ver: 1,
        flags,
        code,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: corr,
    }
}

fn encode(h: &Header, cap: &[u8], payload: &[u8]) -> Result<Bytes, ClientError> {
    let mut out = BytesMut::new();
    frame::encode(h, cap, payload, &mut out)
        .map_err(|e| ClientError::Protocol(format!("cannot encode: {e}")))?;
    Ok(out.freeze())
}

fn error_label(payload: Option<&Bytes>) -> String {
    payload
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_default()
}

impl Client {
    /// Connects over TLS without a certificate, runs HELLO and START with `token`.
    pub async fn connect(
        addr: SocketAddr,
        token: &str,
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let deadline = opts.timeout;
        timeout(deadline, Client::open(addr, token.trim(), opts))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn open(
        addr: SocketAddr,
        token: &str,
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let config = client_session_config(&opts.tls, opts.server_id)?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(config)
            .connect(server_name(), tcp)
            .await?;
        let mut c = Client {
            stream,
            parser: FrameParser::new(),
            out: BytesMut::new(),
            pending: VecDeque::new(),
            send_frames: 0,
            send_bytes: 0,
            grant: (opts.window_frames, opts.window_bytes),
            used: (0, 0),
            next_corr: 3,
            answers: HashMap::new(),
            inbox: VecDeque::new(),
            dropped: 0,
            timeout: opts.timeout,
            server_id: opts.server_id,
            closed: false,
        };
        let hello = serde_json::json!({
            "ua": opts.user_agent,
            "credit_frames": opts.window_frames,
            "credit_bytes": opts.window_bytes,
        });
        let hello = serde_json::to_vec(&hello).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let frame = encode(&header(flags::REQ, 0, 0, 1), &[], &hello)?;
        c.stream.write_all(&frame).await?;
        let reply = c.next_frame().await?;
        let h = reply.header;
        if h.flags & flags::RESP == 0 || h.corr_id != 1 {
            return Err(ClientError::Protocol("expected the HELLO reply".into()));
        }
        if h.code != 200 {
            return Err(ClientError::Status {
                code: h.code,
                label: error_label(reply.payload.as_ref()),
                fatal: true,
            });
        }
        let body: serde_json::Value = reply
            .payload
            .as_ref()
            .and_then(|p| serde_json::from_slice(p).ok())
            .ok_or_else(|| ClientError::Protocol("HELLO reply is not JSON".into()))?;
        let num = |k: &str| body.get(k).and_then(serde_json::Value::as_u64);
        c.send_frames = num("credit_frames")
            .or_else(|| num("max_inflight"))
            .unwrap_or(0);
        c.send_bytes = num("credit_bytes").unwrap_or(frame::MAX_FRAME_BYTES as u64);
        let start = encode(
            &header(flags::START | flags::REQ, 0, OVERLAY_APP_PROTO_ID, 2),
            token.as_bytes(),
            &[],
        )?;
        c.stream.write_all(&start).await?;
        let reply = c.next_frame().await?;
        let h = reply.header;
        if h.flags & flags::RESP != 0 && h.code >= 400 {
            return Err(ClientError::Status {
                code: h.code,
                label: error_label(reply.payload.as_ref()),
                fatal: true,
            });
        }
        if h.flags != flags::START | flags::RESP || h.corr_id != 2 || h.code != 200 {
            return Err(ClientError::Protocol("expected the START reply".into()));
        }
        Ok(c)
    }

    /// The node's PeerId as pinned in the options, if any.
    pub fn server_id(&self) -> Option<PeerId> {
        self.server_id
    }

    /// Publishes `payload` to the overlay; returns the message id.
    pub async fn publish(&mut self, payload: impl Into<Bytes>) -> Result<MessageId, ClientError> {
        let body = self.call(CODE_PUBLISH, payload.into()).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let hex = v
            .get("id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| ClientError::Protocol("PUBLISH answer has no id".into()))?;
        parse_id(hex).ok_or_else(|| ClientError::Protocol(format!("bad id {hex}")))
    }

    /// Asks the node to deliver every message it receives (and those other clients publish).
    pub async fn subscribe(&mut self) -> Result<(), ClientError> {
        self.call(CODE_SUBSCRIBE, Bytes::new()).await.map(|_| ())
    }

    /// Stops deliveries.
    pub async fn unsubscribe(&mut self) -> Result<(), ClientError> {
        self.call(CODE_UNSUBSCRIBE, Bytes::new()).await.map(|_| ())
    }

    /// Sends a DIRECT message to the node's application (no answer).
    pub async fn direct(&mut self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        let frame = encode(
            &header(flags::EVENT, Kind::Direct.code(), OVERLAY_APP_PROTO_ID, 0),
            &[],
            &payload.into(),
        )?;
        self.send_counted(frame);
        self.flush().await
    }

    /// Sends a PING (keeps an idle session open: the node closes clients silent for its
    /// `idle_ms`).
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let frame = encode(
            &header(flags::EVENT, Kind::Ping.code(), OVERLAY_APP_PROTO_ID, 0),
            &[],
            &[],
        )?;
        self.send_counted(frame);
        self.flush().await
    }

    /// The next delivery, lag report or DIRECT message.
    pub async fn recv(&mut self) -> Result<ClientEvent, ClientError> {
        loop {
            if self.dropped > 0 {
                return Ok(ClientEvent::Lagged(std::mem::take(&mut self.dropped)));
            }
            if let Some(ev) = self.inbox.pop_front() {
                return Ok(ev);
            }
            self.read_some().await?;
        }
    }

    /// [`Client::recv`] with a deadline.
    pub async fn recv_timeout(&mut self, wait: Duration) -> Result<ClientEvent, ClientError> {
        timeout(wait, self.recv())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    // ---- plumbing ----

    async fn call(&mut self, code: u16, payload: Bytes) -> Result<Bytes, ClientError> {
        let corr = self.next_corr;
        self.next_corr += 1;
        let frame = encode(
            &header(flags::REQ, code, OVERLAY_APP_PROTO_ID, corr),
            &[],
            &payload,
        )?;
        self.send_counted(frame);
        self.flush().await?;
        let wait = self.timeout;
        timeout(wait, async {
            loop {
                if let Some(answer) = self.answers.remove(&corr) {
                    return answer;
                }
                self.read_some().await?;
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)?
    }

    fn send_counted(&mut self, frame: Bytes) {
        self.pending.push_back(frame);
        self.move_pending();
    }

    fn move_pending(&mut self) {
        while let Some(front) = self.pending.front() {
            let len = front.len() as u64;
            if self.send_frames == 0 || self.send_bytes < len {
                break;
            }
            self.send_frames -= 1;
            self.send_bytes -= len;
            if let Some(frame) = self.pending.pop_front() {
                self.out.extend_from_slice(&frame);
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            let data = self.out.split();
            self.stream.write_all(&data).await?;
        }
        Ok(())
    }

    async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            match self.parser.try_next() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(format!("undecodable frame: {e}"))),
            }
            let mut buf = [0u8; 16 * 1024];
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                self.closed = true;
                return Err(ClientError::Closed);
            }
            self.parser
                .push(&buf[..n])
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
        }
    }

    /// Reads at least one frame and handles it.
    async fn read_some(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let f = self.next_frame().await?;
        self.on_frame(f)?;
        self.flush().await
    }

    fn on_frame(&mut self, f: Frame) -> Result<(), ClientError> {
        let h = f.header;
        if h.flags & flags::RESP != 0 && h.code >= 400 {
            let err = || ClientError::Status {
                code: h.code,
                label: error_label(f.payload.as_ref()),
                fatal: h.flags & flags::END != 0,
            };
            if h.flags & flags::END != 0 {
                self.closed = true;
                return Err(err());
            }
            self.count(&f);
            self.answers.insert(h.corr_id, Err(err()));
            return Ok(());
        }
        if h.app_proto_id != OVERLAY_APP_PROTO_ID {
            return Err(ClientError::Protocol(format!(
                "frame for app {:#06x}",
                h.app_proto_id
            )));
        }
        let is_credit = h.flags == flags::EVENT && h.code == Kind::Credit.code();
        if !is_credit {
            self.count(&f);
        }
        let body = f.payload.clone().unwrap_or_default();
        if h.flags & flags::RESP != 0 {
            self.answers.insert(h.corr_id, Ok(body));
            return Ok(());
        }
        match h.code {
            c if c == Kind::Credit.code() => {
                if body.len() != 8 {
                    return Err(ClientError::Protocol("CREDIT body must be 8 bytes".into()));
                }
                let frames = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let bytes = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                self.send_frames += u64::from(frames);
                self.send_bytes += u64::from(bytes);
                self.move_pending();
            }
            c if c == Kind::Ping.code() => {
                let pong = encode(
                    &header(flags::EVENT, Kind::Pong.code(), OVERLAY_APP_PROTO_ID, 0),
                    &[],
                    &[],
                )?;
                self.send_counted(pong);
            }
            CODE_DELIVER => {
                if body.len() < DELIVER_HEADER_LEN {
                    return Err(ClientError::Protocol("short DELIVER".into()));
                }
                let mut id = [0u8; 32];
                id.copy_from_slice(&body[..32]);
                let mut origin = [0u8; 32];
                origin.copy_from_slice(&body[32..64]);
                self.push_event(ClientEvent::Message(ClientMessage {
                    id: MessageId(id),
                    origin: PeerId(origin),
                    hops: body[64],
                    payload: body.slice(DELIVER_HEADER_LEN..),
                }));
            }
            CODE_LAGGED => {
                if body.len() != 8 {
                    return Err(ClientError::Protocol("LAGGED body must be 8 bytes".into()));
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&body);
                self.push_event(ClientEvent::Lagged(u64::from_be_bytes(n)));
            }
            c if c == Kind::Direct.code() => self.push_event(ClientEvent::Direct(body)),
            // PONG and kinds a newer node may add.
            _ => {}
        }
        Ok(())
    }

    fn push_event(&mut self, ev: ClientEvent) {
        if self.inbox.len() >= INBOX_LIMIT {
            self.inbox.pop_front();
            self.dropped += 1;
        }
        self.inbox.push_back(ev);
    }

    /// Counts a received frame against the window we granted; returns CREDIT once half of it
    /// is used.
    fn count(&mut self, f: &Frame) {
        self.used.0 += 1;
        self.used.1 += u64::from(f.header.len);
        let (frames, bytes) = self.grant;
        if self.used.0 * 2 >= u64::from(frames) || self.used.1 * 2 >= u64::from(bytes) {
            let mut body = [0u8; 8];
            body[..4].copy_from_slice(&(self.used.0.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            body[4..].copy_from_slice(&(self.used.1.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            self.used = (0, 0);
            if let Ok(credit) = encode(
                &header(flags::EVENT, Kind::Credit.code(), OVERLAY_APP_PROTO_ID, 0),
                &[],
                &body,
            ) {
                // CREDIT needs no credit.
                self.out.extend_from_slice(&credit);
            }
        }
    }
}

fn parse_id(hex: &str) -> Option<MessageId> {
    if hex.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(MessageId(id))
}
