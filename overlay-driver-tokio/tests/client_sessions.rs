//! Client sessions through the real driver (issue #9): a TLS client without a certificate is
//! a client session; the Rust client publishes on one node and another client receives it on
//! the other; DIRECT both ways; refusals are typed; clients never show as peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::time::Duration;

use bytes::Bytes;
use overlay_proto::capability::{peer_caveat, Caveat};
use overlay_proto::PeerId;
use runtime_common::*;
use svc_overlay::client::{Client, ClientError, ClientEvent, ClientOptions};
use svc_overlay::KernelEvent;

fn opts(server: PeerId) -> ClientOptions {
    ClientOptions {
        server_id: Some(server),
        timeout: STEP,
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_publish_and_receive_across_two_nodes() {
    let a = overlay(1).await;
    let b = overlay(2).await;
    bounded("dial", a.dial(b.local_addr())).await.unwrap();
    let token = dev_token(vec![]);
    let mut events = a.events();
    let mut publisher = bounded(
        "client on A",
        Client::connect(a.local_addr(), &token, opts(a.peer_id())),
    )
    .await
    .unwrap();
    let mut subscriber = bounded(
        "client on B",
        Client::connect(b.local_addr(), &token, opts(b.peer_id())),
    )
    .await
    .unwrap();
    bounded("subscribe", subscriber.subscribe()).await.unwrap();
    let id = bounded("publish", publisher.publish(&b"from a client"[..]))
        .await
        .unwrap();
    match bounded("delivery", subscriber.recv()).await.unwrap() {
        ClientEvent::Message(m) => {
            assert_eq!(m.id, id);
            assert_eq!(m.origin, a.peer_id());
            assert_eq!(m.hops, 1);
            assert_eq!(&m.payload[..], b"from a client");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The node's own subscribers see it as a normal broadcast of node A.
    let stats = a.stats().await;
    assert_eq!(stats.clients.sessions, 1);
    assert_eq!(stats.clients.published, 1);
    assert_eq!(stats.sessions_running, 1, "clients are not peers");
    assert!(a.peers().await.iter().all(|s| s.peer == b.peer_id()));
    assert_eq!(a.clients().await.len(), 1);

    // DIRECT: client → node application, and back by the session handle.
    let mut directs = a.direct_messages();
    bounded("direct", publisher.direct(&b"hi node"[..]))
        .await
        .unwrap();
    let msg = bounded("direct in", directs.recv()).await.unwrap();
    assert_eq!(&msg.payload[..], b"hi node");
    let client = msg.client.expect("from a client session");
    loop {
        match bounded("client up event", events.recv()).await.unwrap() {
            KernelEvent::ClientUp { client: c, .. } => {
                assert_eq!(c, client);
                break;
            }
            _ => continue,
        }
    }
    bounded(
        "direct out",
        a.send_to_client(client, Bytes::from_static(b"hi client")),
    )
    .await
    .unwrap();
    match bounded("direct to client", publisher.recv()).await.unwrap() {
        ClientEvent::Direct(p) => assert_eq!(&p[..], b"hi client"),
        other => panic!("unexpected {other:?}"),
    }
    drop(publisher);
    wait_stats(&a, "client gone", |s| s.clients.sessions == 0).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bound_to_a_peer_or_a_bad_token_is_refused() {
    let a = overlay(3).await;
    let bound = dev_token(vec![peer_caveat(&PeerId([4; 32]))]);
    let err = bounded(
        "bound token",
        Client::connect(a.local_addr(), &bound, opts(a.peer_id())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { code: 403, label, .. } if label == "wrong_peer"),
        "{err:?}"
    );
    let expired = dev_token(vec![Caveat::Exp(1)]);
    let err = bounded(
        "expired token",
        Client::connect(a.local_addr(), &expired, opts(a.peer_id())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Status { code: 401, .. }),
        "{err:?}"
    );
    let s = wait_stats(&a, "counted", |s| {
        s.clients.rejected.iter().map(|(_, n)| n).sum::<u64>() >= 2
    })
    .await;
    assert_eq!(s.clients.sessions, 0);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pinning_another_node_fails_tls() {
    let a = overlay(5).await;
    let err = bounded(
        "pinned to another id",
        Client::connect(a.local_addr(), &dev_token(vec![]), opts(PeerId([9; 32]))),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a.stats().await.clients.opened, 0);
    a.shutdown().await;
}
