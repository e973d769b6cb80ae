//! Hostile input at the socket level against a running overlay: every case closes the
//! offending connection with a typed status, is counted, and leaves other sessions alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::sync::Arc;
use std::time::Duration;

use overlay_proto::capability::Caveat;
use overlay_proto::wire::{self, Kind};
use overlay_proto::{MacKey, MessageId, NodeConfig, RejectReason};
use runtime_common::*;
use svc_overlay::tls::{server_name, Identity};
use svc_overlay::{Overlay, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_tls_is_malformed() {
    let bed = Bed::new(NodeConfig::default(), 11).await;
    let mut c = RawClient::connect(&bed.server).await;
    c.send(&[0xFF; 64]).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(400));
    assert_eq!(bed.rejected(RejectReason::Malformed).await, 1);

    // Garbage inside a running session too.
    let mut c = RawClient::open(&bed.server).await;
    c.send(&event_frame(Kind::Gossip.code(), &[1, 2, 3])).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(400));
    assert_eq!(bed.rejected(RejectReason::Malformed).await, 2);
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_u32_max_length_header_is_refused_without_buffering() {
    let bed = Bed::new(NodeConfig::default(), 11).await;
    let mut c = RawClient::open(&bed.server).await;
    let mut header = event_frame(Kind::Gossip.code(), &[0; 80])[..38].to_vec();
    header[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    c.send(&header).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(413));
    assert_eq!(bed.rejected(RejectReason::Oversize).await, 1);
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_before_the_token_are_401() {
    let bed = Bed::new(NodeConfig::default(), 11).await;
    let mut body = Vec::new();
    wire::put_gossip_header(&mut body, &MessageId([9; 32]), &bed.good.peer_id(), 1, 0);
    body.extend_from_slice(b"sneaky");

    // Straight after TLS, before HELLO.
    let mut c = RawClient::connect(&bed.server).await;
    c.send(&event_frame(Kind::Gossip.code(), &body)).await;
    assert_eq!(last_error_code(&c.until_closed().await), Some(401));

    // After HELLO, before START.
    let mut c = RawClient::connect(&bed.server).await;
    assert_eq!(c.hello(64).await.header.code, 200);
    c.send(&event_frame(Kind::Gossip.code(), &body)).await;
    assert_eq!(last_error_code(&c.until_closed().await), Some(401));

    assert_eq!(bed.rejected(RejectReason::Unauth).await, 2);
    assert_eq!(bed.server.stats().await.gossip_delivered, 0);
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_and_denied_tokens_403() {
    let bed = Bed::new(NodeConfig::default(), 11).await;
    let wrong_key = token_with(&MacKey([0x42; 32]), Vec::new());
    let expired = dev_token(vec![Caveat::Exp(1_000)]);
    let mut tampered = dev_token(Vec::new()).into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_tenant = dev_token(vec![Caveat::Tenant("someone-else".into())]);

    for (token, code) in [
        (wrong_key.as_str(), 401),
        (expired.as_str(), 401),
        (tampered.as_str(), 401),
        ("", 401),
        (other_tenant.as_str(), 403),
    ] {
        let mut c = RawClient::connect(&bed.server).await;
        assert_eq!(c.hello(64).await.header.code, 200);
        let reply = c.start(token).await.expect("an error reply");
        assert_eq!(reply.header.code, code, "token {token:?}");
        assert!(c.until_closed().await.is_empty());
    }
    assert_eq!(bed.rejected(RejectReason::Unauth).await, 4);
    assert_eq!(bed.rejected(RejectReason::Forbidden).await, 1);
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_past_the_credit_window_is_429() {
    // The smallest window a default peer accepts (`min_peer_window_frames`).
    let cfg = NodeConfig {
        credit_window_frames: 16,
        ..NodeConfig::default()
    };
    let bed = Bed::new(cfg, 11).await;
    let mut c = RawClient::open(&bed.server).await;
    let ping = event_frame(Kind::Ping.code(), &[]);
    // Far more frames than the window in one write.
    c.send(&ping.repeat(400)).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(429));
    assert!(bed.rejected(RejectReason::Credits).await >= 1);
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_the_handshake_deadline() {
    let cfg = NodeConfig {
        handshake_timeout: Duration::from_millis(300),
        ..NodeConfig::default()
    };
    let bed = Bed::new(cfg, 11).await;
    let addr = bed.server.local_addr();

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Starts a TLS record and never finishes it.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();

    for s in [&mut silent, &mut partial] {
        let mut buf = [0u8; 64];
        let n = bounded("cut by the server", s.read(&mut buf))
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "the server sends nothing and closes");
    }
    wait_until("timeouts counted", || async {
        bed.server.driver_stats().handshake_failures("timeout") >= 2
    })
    .await;
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_max_conns_is_refused_at_accept() {
    let server = Overlay::builder()
        .bind(loopback())
        .max_conns(3)
        .node_config(NodeConfig {
            handshake_timeout: Duration::from_secs(15),
            ..NodeConfig::default()
        })
        .seed(13)
        .build()
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_until("three connections counted", || async {
        server.driver_stats().live_connections == 3
    })
    .await;
    for _ in 0..5 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 8];
        let n = bounded("refused at once", extra.read(&mut buf))
            .await
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    assert_eq!(server.driver_stats().rejected("max_conns"), 5);
    // Closing the held ones frees their slots.
    drop(held);
    wait_until("slots released", || async {
        server.driver_stats().live_connections == 0
    })
    .await;
    let peer = overlay(14).await;
    bounded("dial after the flood", peer.dial(addr))
        .await
        .unwrap();
    bounded("shutdown", server.shutdown()).await;
    bounded("shutdown", peer.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_alpn_is_refused() {
    let bed = Bed::new(NodeConfig::default(), 11).await;
    let identity = Identity::generate_dev().unwrap();
    let base = raw_client_config(&identity, Some(bed.server.peer_id()));

    for alpn in [vec![b"h2".to_vec()], Vec::new()] {
        let mut config = (*base).clone();
        config.alpn_protocols = alpn;
        let tcp = TcpStream::connect(bed.server.local_addr()).await.unwrap();
        let connected = TlsConnector::from(Arc::new(config))
            .connect(server_name(), tcp)
            .await;
        if let Ok(mut tls) = connected {
            // No ALPN at all passes rustls; the overlay drops it right after the handshake.
            let mut buf = [0u8; 16];
            let n = bounded("dropped", tls.read(&mut buf)).await.unwrap_or(0);
            assert_eq!(n, 0);
        }
    }
    wait_until("alpn failures counted", || async {
        bed.server.driver_stats().handshake_failures("alpn") >= 2
    })
    .await;
    assert_eq!(bed.server.stats().await.sessions_handshaking, 0);
    bed.still_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_to_the_handler_or_is_closed() {
    // Without a handler: closed.
    let server = overlay(15).await;
    let mut http = TcpStream::connect(server.local_addr()).await.unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(bounded("closed", http.read(&mut buf)).await.unwrap_or(0), 0);
    bounded("shutdown", server.shutdown()).await;

    // With a handler: the stream arrives unread.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let handler: svc_overlay::HttpHandler<TcpStream> = Arc::new(move |stream, remote| {
        let _ = tx.try_send((stream, remote));
    });
    let server = Overlay::builder()
        .bind(loopback())
        .http_handler(handler)
        .timeouts(Timeouts::default())
        .seed(16)
        .build()
        .await
        .unwrap();
    let mut http = TcpStream::connect(server.local_addr()).await.unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (mut got, remote) = bounded("handler called", rx.recv()).await.unwrap();
    assert_eq!(remote, http.local_addr().unwrap());
    let mut first = [0u8; 3];
    got.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"GET");
    // Overlay sessions still work on the same port.
    let peer = overlay(17).await;
    bounded("dial", peer.dial(server.local_addr()))
        .await
        .unwrap();
    bounded("shutdown", server.shutdown()).await;
    bounded("shutdown", peer.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_connection_is_cut_at_the_read_timeout() {
    let server = Overlay::builder()
        .bind(loopback())
        .timeouts(Timeouts {
            read: Duration::from_millis(300),
            ..Timeouts::default()
        })
        .seed(18)
        .build()
        .await
        .unwrap();
    let mut c = RawClient::connect(&server).await;
    // Nothing sent after TLS: no frame comes back, the connection is closed.
    assert!(c.until_closed().await.is_empty());
    wait_until("read timeout counted", || async {
        server
            .driver_stats()
            .errors
            .get(&("read".to_string(), "timeout".to_string()))
            .copied()
            == Some(1)
    })
    .await;
    assert_eq!(server.stats().await.sessions_handshaking, 0);
    bounded("shutdown", server.shutdown()).await;
}
