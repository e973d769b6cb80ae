//! Hostile *authenticated* peers over real TLS: a zero window with GRAFT spam, an IHAVE flood,
//! a pre-auth connection flood, a token that expires during the session and a token bound to
//! another PeerId. Each case gets a typed reject and a counter, and an honest session on the
//! same node keeps working: readiness stays up and broadcasts are accepted and delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use overlay_proto::capability::{peer_caveat, Caveat};
use overlay_proto::wire::{self, Kind};
use overlay_proto::{MessageId, NodeConfig, PeerId, RejectReason};
use runtime_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_hello_is_400_and_graft_spam_is_banned() {
    let bed = Bed::new(NodeConfig::default(), 21).await;

    // A HELLO granting no window at all.
    let mut c = RawClient::connect(&bed.server).await;
    let reply = c.hello(0).await;
    assert_eq!(reply.header.code, 400);
    assert!(c.until_closed().await.is_empty());
    assert_eq!(bed.rejected(RejectReason::SmallWindow).await, 1);

    // The smallest accepted window, then one GRAFT frame repeating a held id 8192 times.
    let mut c = RawClient::connect(&bed.server).await;
    assert_eq!(c.hello(16).await.header.code, 200);
    let start = c.start(&dev_token(Vec::new())).await.expect("start reply");
    assert_eq!(start.header.code, 200);
    let id = bounded(
        "broadcast",
        bed.server.broadcast(Bytes::from_static(b"held")),
    )
    .await
    .unwrap();
    let body: Vec<u8> = std::iter::repeat_n(id.0, 8192).flatten().collect();
    c.send(&event_frame(Kind::Graft.code(), &body)).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(403));
    let stats = wait_stats(&bed.server, "ban counted", |s| s.peers_banned == 1).await;
    assert_eq!(stats.rejected.get(RejectReason::GraftFlood), 8191);
    assert_eq!(stats.rejected.get(RejectReason::Banned), 1);
    assert_eq!(stats.bans_active, 1);

    // The banned identity cannot come back.
    let same = svc_overlay::tls::Identity::new(
        c.identity.cert_chain().to_vec(),
        zeroize::Zeroizing::new(c.identity.private_key().clone_key()),
    )
    .unwrap();
    let mut again = RawClient::connect_as(&bed.server, same).await;
    assert_eq!(again.hello(64).await.header.code, 403);
    assert_eq!(bed.rejected(RejectReason::Banned).await, 2);
    bed.still_ready_and_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ihave_flood_is_cut_and_the_node_stays_ready() {
    let bed = Bed::new(NodeConfig::default(), 21).await;
    let mut c = RawClient::open(&bed.server).await;
    let mut body = Vec::with_capacity(8192 * 33);
    for i in 0u32..8192 {
        body.extend_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
        body.push(1);
    }
    c.send(&event_frame(Kind::IHave.code(), &body)).await;
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(403));
    let stats = wait_stats(&bed.server, "flood counted", |s| s.peers_banned == 1).await;
    // Half the ids fit the peer's share of the missing table (4096); the rest are refused.
    assert_eq!(stats.rejected.get(RejectReason::IhaveFlood), 4096);
    bed.still_ready_and_healthy().await;
    // The honest peer's score shows in the peer list and is not negative.
    let row = bed
        .server
        .peers()
        .await
        .into_iter()
        .find(|s| s.peer == bed.good.peer_id())
        .unwrap();
    assert!(row.score.score >= 0.0, "{:?}", row.score);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_auth_flood_exhausts_only_its_own_budget() {
    let cfg = NodeConfig {
        max_preauth: 4,
        max_preauth_per_ip: 3,
        handshake_timeout: Duration::from_millis(800),
        ..NodeConfig::default()
    };
    let bed = Bed::new(cfg, 21).await;
    // Twenty connections that start a TLS record and never finish it: three hold slots, the
    // rest are refused before any TLS work.
    let mut flood = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(bed.server.local_addr()).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
        flood.push(s);
    }
    wait_until("flood refused at accept", || async {
        bed.server.driver_stats().rejected("preauth_per_ip") >= 17
    })
    .await;
    // The established session is untouched, readiness stays up.
    bed.still_ready_and_healthy().await;
    assert_eq!(bed.server.stats().await.sessions_running, 1);
    // The held connections are cut at the deadline; then a new peer can join.
    for s in &mut flood {
        let mut buf = [0u8; 8];
        let n = bounded("cut", s.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0);
    }
    let late = overlay(23).await;
    bounded("late peer dials", late.dial(bed.server.local_addr()))
        .await
        .expect("a new peer joins after the flood");
    bounded("shutdown", late.shutdown()).await;
    bed.still_ready_and_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_during_the_session_closes_it_with_401() {
    // The raw client sends no heartbeats: give the failure detector more time than the token.
    let bed = Bed::new(
        NodeConfig {
            liveness_timeout: Duration::from_secs(10),
            ..NodeConfig::default()
        },
        21,
    )
    .await;
    // Exp 59 s ago: still inside the verifier's 60 s skew, outside it within about 2 s.
    let token = dev_token(vec![Caveat::Exp(unix_now() - 59)]);
    let mut c = RawClient::connect(&bed.server).await;
    assert_eq!(c.hello(64).await.header.code, 200);
    assert_eq!(c.start(&token).await.expect("start reply").header.code, 200);
    let frames = c.until_closed().await;
    assert_eq!(last_error_code(&frames), Some(401));
    wait_stats(&bed.server, "expiry counted", |s| {
        s.rejected.get(RejectReason::Expired) == 1
    })
    .await;
    bed.still_ready_and_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bound_to_another_peer_is_403() {
    let bed = Bed::new(NodeConfig::default(), 21).await;
    let mut c = RawClient::connect(&bed.server).await;
    assert_eq!(c.hello(64).await.header.code, 200);
    let stolen = dev_token(vec![peer_caveat(&PeerId([0x42; 32]))]);
    let reply = c.start(&stolen).await.expect("an error reply");
    assert_eq!(reply.header.code, 403);
    assert!(c.until_closed().await.is_empty());
    assert_eq!(bed.rejected(RejectReason::WrongPeer).await, 1);

    // The same binding to the client's own identity opens the session.
    let mut c = RawClient::connect(&bed.server).await;
    assert_eq!(c.hello(64).await.header.code, 200);
    let own = dev_token(vec![peer_caveat(&c.identity.peer_id())]);
    assert_eq!(c.start(&own).await.expect("start reply").header.code, 200);
    bed.still_ready_and_healthy().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_show_in_the_peer_list() {
    let bed = Bed::new(NodeConfig::default(), 21).await;
    let mut sub = bed.server.deliveries();
    let id = bounded(
        "broadcast",
        bed.good.broadcast(Bytes::from_static(b"first")),
    )
    .await
    .unwrap();
    let d = bounded("delivery", sub.recv()).await.unwrap();
    assert_eq!(d.id, id);
    let row = bed
        .server
        .peers()
        .await
        .into_iter()
        .find(|s| s.peer == bed.good.peer_id())
        .unwrap();
    assert!(row.score.components.first_deliveries >= 1.0);
    assert!(row.score.score > 0.0);
    // A GOSSIP body that does not parse is a violation: scored, and the session closed.
    let mut c = RawClient::open(&bed.server).await;
    let mut body = Vec::new();
    wire::put_gossip_header(&mut body, &MessageId([1; 32]), &bed.good.peer_id(), 1, 0);
    c.send(&event_frame(Kind::Gossip.code(), &body[..10])).await;
    assert_eq!(last_error_code(&c.until_closed().await), Some(400));
    let stats = wait_stats(&bed.server, "penalty counted", |s| {
        s.score_penalties[overlay_proto::score::Penalty::Violation as usize] == 1
    })
    .await;
    assert_eq!(stats.peers_banned, 0, "one violation is not a ban");
    bed.still_ready_and_healthy().await;
    bed.stop().await;
}
