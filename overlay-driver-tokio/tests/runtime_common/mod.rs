//! Helpers shared by the `runtime_*` tests: overlays on loopback, a hand-driven TLS client that
//! speaks raw OAP/1, bounded waits, and the [`Bed`] of the hostile-input tests.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

mod bed;
pub use bed::Bed;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use overlay_proto::capability::{mint, Caveat, Scope};
use overlay_proto::frame::{self, flags, Frame, Header};
use overlay_proto::wire::{HelloOverlay, HelloRequestBody};
use overlay_proto::{MacKey, NodeConfig, NodeStats, OVERLAY_APP_PROTO_ID};
use rustls::ClientConfig;
use svc_overlay::tls::{client_config, server_name, Identity, TlsOptions};
use svc_overlay::Overlay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Upper bound of every test step.
pub const STEP: Duration = Duration::from_secs(20);

/// `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Runs a future with the test step bound.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Polls `check` every 10 ms until it returns true (bounded by [`STEP`]).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    bounded(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Polls the overlay's core stats until `check` holds; returns them.
pub async fn wait_stats(ov: &Overlay, what: &str, check: impl Fn(&NodeStats) -> bool) -> NodeStats {
    bounded(what, async {
        loop {
            let s = ov.stats().await;
            if check(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A dev-mode overlay on loopback with a fixed seed and `cfg`.
pub async fn overlay_with(cfg: NodeConfig, seed: u64) -> Overlay {
    Overlay::builder()
        .bind(loopback())
        .node_config(cfg)
        .seed(seed)
        .build()
        .await
        .expect("overlay starts")
}

/// A dev-mode overlay on loopback with default settings.
pub async fn overlay(seed: u64) -> Overlay {
    overlay_with(NodeConfig::default(), seed).await
}

/// A token for the dev key ring of an overlay (tenant `overlay`, kid `dev`).
pub fn dev_token(caveats: Vec<Caveat>) -> String {
    token_with(&MacKey::DEV, caveats)
}

/// A token minted with `key` for `(dev, overlay)`.
pub fn token_with(key: &MacKey, caveats: Vec<Caveat>) -> String {
    let scope = Scope {
        prefix: None,
        methods: Vec::new(),
        max_bytes: None,
    };
    mint(key, "overlay", "dev", scope, caveats)
}

/// One raw OAP/1 frame (length fields computed).
pub fn raw_frame(fl: u16, code: u16, app: u16, cap: &[u8], body: &[u8]) -> Vec<u8> {
    let header = Header {
        len: 0,
        ver: 1,
        flags: fl,
        code,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 0,
    };
    let mut out = BytesMut::new();
    frame::encode(&header, cap, body, &mut out).expect("encodable frame");
    out.to_vec()
}

/// An overlay EVENT frame of `kind` code with `body`.
pub fn event_frame(code: u16, body: &[u8]) -> Vec<u8> {
    raw_frame(flags::EVENT, code, OVERLAY_APP_PROTO_ID, &[], body)
}

/// The TLS client configuration of a fresh dev identity (server pinned to `expect`).
pub fn raw_client_config(
    identity: &Identity,
    expect: Option<overlay_proto::PeerId>,
) -> Arc<ClientConfig> {
    client_config(identity, &TlsOptions::default(), expect).unwrap()
}

/// A hand-driven client: mutual TLS with its own dev identity, then raw frames.
pub struct RawClient {
    pub stream: TlsStream<TcpStream>,
    pub identity: Identity,
    buf: BytesMut,
}

impl RawClient {
    /// TCP + TLS to the overlay.
    pub async fn connect(ov: &Overlay) -> RawClient {
        Self::connect_as(ov, Identity::generate_dev().unwrap()).await
    }

    /// TCP + TLS to the overlay with a given identity.
    pub async fn connect_as(ov: &Overlay, identity: Identity) -> RawClient {
        let config = raw_client_config(&identity, Some(ov.peer_id()));
        let tcp = TcpStream::connect(ov.local_addr()).await.unwrap();
        let stream = TlsConnector::from(config)
            .connect(server_name(), tcp)
            .await
            .expect("TLS handshake with the overlay");
        RawClient {
            stream,
            identity,
            buf: BytesMut::new(),
        }
    }

    /// Writes bytes (a write error means the server closed already: ignored).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next frame, or `None` at EOF / error.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match frame::decode(&mut self.buf) {
                Ok(Some(f)) => return Some(f),
                Ok(None) => {}
                Err(_) => return None,
            }
            self.buf.reserve(64 * 1024);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until the server closes; returns every frame received.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = bounded("server closes", self.next_frame()).await {
            frames.push(f);
        }
        frames
    }

    /// Sends HELLO granting `credit_frames`, returns the HELLO reply.
    pub async fn hello(&mut self, credit_frames: u32) -> Frame {
        let hello = HelloRequestBody {
            ua: Some("raw-test".into()),
            overlay: HelloOverlay {
                overlay: 1,
                peer_id: self.identity.peer_id().to_string(),
                listen: None,
                credit_frames,
                credit_bytes: 1 << 24,
                graft_miss: false,
                running_peers: false,
            },
        };
        let json = serde_json::to_vec(&hello).unwrap();
        let f = raw_frame(flags::REQ, 0, 0, &[], &json);
        self.send(&f).await;
        bounded("hello reply", self.next_frame())
            .await
            .expect("hello reply")
    }

    /// Sends START with `token`, returns the reply.
    pub async fn start(&mut self, token: &str) -> Option<Frame> {
        let f = raw_frame(
            flags::START | flags::REQ,
            0,
            OVERLAY_APP_PROTO_ID,
            token.as_bytes(),
            &[],
        );
        self.send(&f).await;
        bounded("start reply", self.next_frame()).await
    }

    /// HELLO + START with a valid dev token; panics unless the session opens.
    pub async fn open(ov: &Overlay) -> RawClient {
        let mut c = RawClient::connect(ov).await;
        let reply = c.hello(64).await;
        assert_eq!(reply.header.code, 200);
        let start = c.start(&dev_token(Vec::new())).await.expect("start reply");
        assert_eq!(start.header.code, 200, "session should open");
        c
    }
}

/// The status code of the last error frame (`RESP`, code >= 400) among `frames`.
pub fn last_error_code(frames: &[Frame]) -> Option<u16> {
    frames
        .iter()
        .rev()
        .find(|f| f.header.flags & flags::RESP != 0 && f.header.code >= 400)
        .map(|f| f.header.code)
}
