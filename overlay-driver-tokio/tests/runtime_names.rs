//! Configured peer names in the runtime: a name is re-resolved before every dial of one of its
//! addresses, so a seed whose name moves is found at its new address; a pinned identity is
//! required at the name's addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use overlay_proto::{NodeConfig, SessionState};
use runtime_common::*;
use svc_overlay::{Net, Overlay, OverlayBuilder, TokioNet};
use tokio::net::{TcpListener, TcpStream};

/// Loopback TCP with a name service the test controls.
#[derive(Clone, Default)]
struct NamedNet {
    names: Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>,
}

impl NamedNet {
    fn set(&self, name: &str, addrs: Vec<SocketAddr>) {
        self.names.lock().unwrap().insert(name.to_string(), addrs);
    }
}

impl Net for NamedNet {
    type Listener = TcpListener;
    type Stream = TcpStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TokioNet.bind(addr).await
    }
    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        TokioNet.accept(listener).await
    }
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TokioNet.connect(addr).await
    }
    fn local_addr(&self, listener: &TcpListener) -> io::Result<SocketAddr> {
        TokioNet.local_addr(listener)
    }
    async fn resolve(&self, target: &str) -> io::Result<Vec<SocketAddr>> {
        self.names
            .lock()
            .unwrap()
            .get(target)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{target}: unknown")))
    }
}

async fn running_with(ov: &Overlay, peer: overlay_proto::PeerId) -> bool {
    ov.peers()
        .await
        .iter()
        .any(|s| s.peer == peer && s.state == SessionState::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_seed_name_is_followed_at_the_next_dial() {
    let a = overlay(1).await;
    let b = overlay(2).await;
    let net = NamedNet::default();
    net.set("seed.test:9415", vec![a.local_addr()]);
    let c = OverlayBuilder::with_net(net.clone())
        .bind(loopback())
        .node_config(NodeConfig::default())
        .peer_names(vec!["seed.test:9415".to_string()])
        .seed(3)
        .build()
        .await
        .unwrap();
    wait_until("C runs a session with A (by name)", || {
        running_with(&c, a.peer_id())
    })
    .await;

    // The name moves to B, and A goes away: C's next dial of A's address re-resolves the name,
    // does not dial the stale address, and finds B.
    net.set("seed.test:9415", vec![b.local_addr()]);
    a.shutdown().await;
    wait_until("C runs a session with B (the name's new address)", || {
        running_with(&c, b.peer_id())
    })
    .await;
    let stale = c
        .driver_stats()
        .errors
        .get(&("dial".to_string(), "stale_name".to_string()))
        .copied()
        .unwrap_or(0);
    assert!(stale >= 1, "{:?}", c.driver_stats());
    c.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_later_is_found_and_a_pin_refuses_other_identities() {
    let a = overlay(4).await;
    let b = overlay(5).await;
    let net = NamedNet::default();
    let pinned_a = format!("{}@seed.test:1", a.peer_id());
    let c = OverlayBuilder::with_net(net.clone())
        .bind(loopback())
        .peer_names(vec![pinned_a])
        .seed(6)
        .build()
        .await
        .unwrap();
    // Unknown at first: retried with backoff. It now points at B, which is not the pinned
    // identity: refused, counted, no session.
    net.set("seed.test:1", vec![b.local_addr()]);
    wait_until("C counts a pinned-identity mismatch", || async {
        c.driver_stats().handshake_failures("peer_id_mismatch") >= 1
    })
    .await;
    assert!(!running_with(&c, b.peer_id()).await);
    // Pointed at A: accepted.
    net.set("seed.test:1", vec![a.local_addr(), b.local_addr()]);
    wait_until("C runs a session with the pinned A", || {
        running_with(&c, a.peer_id())
    })
    .await;
    assert!(!running_with(&c, b.peer_id()).await);
    for ov in [&a, &b, &c] {
        ov.shutdown().await;
    }
}

/// Production-mode settings (a token configured), so a wildcard bind is allowed.
fn with_token() -> NodeConfig {
    let mut cfg = NodeConfig::default();
    svc_overlay::api::install_dev_auth(&mut cfg.auth);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_bind_is_never_advertised_and_advertise_is() {
    let a = overlay(7).await;
    let wildcard: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let silent = OverlayBuilder::new()
        .bind(wildcard)
        .node_config(with_token())
        .seed(8)
        .build()
        .await
        .unwrap();
    let advertised: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    let loud = OverlayBuilder::new()
        .bind(wildcard)
        .advertise(advertised)
        .node_config(with_token())
        .seed(9)
        .build()
        .await
        .unwrap();
    for ov in [&silent, &loud] {
        bounded("dial A", ov.dial(a.local_addr())).await.unwrap();
    }
    wait_until("A runs both sessions", || async {
        let peers = a.peers().await;
        [silent.peer_id(), loud.peer_id()].iter().all(|id| {
            peers
                .iter()
                .any(|s| s.peer == *id && s.state == SessionState::Running)
        })
    })
    .await;
    let peers = a.peers().await;
    let listen_of = |id| peers.iter().find(|s| s.peer == id).and_then(|s| s.listen);
    assert_eq!(
        listen_of(silent.peer_id()),
        None,
        "0.0.0.0 is never advertised"
    );
    assert_eq!(listen_of(loud.peer_id()), Some(advertised));
    // An unspecified advertise address is refused by the builder.
    let refused = OverlayBuilder::new()
        .bind(loopback())
        .advertise(wildcard)
        .node_config(with_token())
        .build()
        .await;
    assert!(refused.is_err());
    for ov in [&a, &silent, &loud] {
        ov.shutdown().await;
    }
}
