//! Typed errors of the library API: payloads over the node's `max_message_bytes` fail with
//! `TooLarge` on every sending path (nothing is sent), and `dial` takes `host:port` names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use bytes::Bytes;
use overlay_proto::NodeConfig;
use runtime_common::*;
use svc_overlay::Error;
use svc_overlay::OverlayError;

const LIMIT: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_payloads_fail_with_too_large_on_every_path_and_nothing_is_sent() {
    let a = overlay_with(
        NodeConfig {
            max_message_bytes: LIMIT,
            ..NodeConfig::default()
        },
        41,
    )
    .await;
    let b = overlay(42).await;
    let session = bounded("dial", a.dial(b.local_addr())).await.unwrap();
    let big = Bytes::from(vec![7u8; LIMIT + 1]);
    let fits = Bytes::from(vec![7u8; LIMIT]);

    let err = bounded("broadcast", a.broadcast(big.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::TooLarge)),
        "{err:?}"
    );
    assert_eq!(err.label(), "too_large");
    assert_eq!(
        err.retry_after(),
        None,
        "retrying the same payload cannot help"
    );
    let (sender, _events) = a.topic().split();
    let err = bounded("topic", sender.broadcast(big.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::TooLarge)),
        "{err:?}"
    );
    let err = bounded("send_to", a.send_to(b.peer_id(), big.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::TooLarge)),
        "{err:?}"
    );
    let err = bounded("session send", session.send(big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overlay(OverlayError::TooLarge)),
        "{err:?}"
    );
    let stats = a.stats().await;
    assert_eq!(stats.gossip_originated, 0);

    // At the limit it goes through.
    bounded("broadcast at the limit", a.broadcast(fits.clone()))
        .await
        .unwrap();
    bounded("send at the limit", session.send(fits))
        .await
        .unwrap();
    assert_eq!(a.stats().await.gossip_originated, 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_takes_names_and_refuses_text_that_is_not_host_port() {
    let a = overlay(43).await;
    let b = overlay(44).await;
    let port = b.local_addr().port();

    // A name (`localhost` from /etc/hosts: no query leaves the machine).
    let session = bounded("dial by name", a.dial(format!("localhost:{port}")))
        .await
        .unwrap();
    assert_eq!(session.peer_id(), b.peer_id());
    // The literal forms still work and join the same session.
    let again = bounded(
        "dial by text",
        a.dial(format!(" 127.0.0.1:{port} ").as_str()),
    )
    .await
    .unwrap();
    assert_eq!(again.peer_id(), b.peer_id());

    for bad in [
        "localhost",
        "localhost:",
        ":9415",
        "localhost:notaport",
        "127.0.0.1:70000",
    ] {
        let err = bounded("bad dial", a.dial(bad)).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{bad}: {err:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}
