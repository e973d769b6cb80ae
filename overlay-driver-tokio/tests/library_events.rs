//! The library's event stream ([`svc_overlay::Topic`]) with real nodes over loopback TLS:
//! deliveries, neighbours up and down in order, and lag reported as an item.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use bytes::Bytes;
use futures_util::StreamExt;
use overlay_proto::PeerId;
use runtime_common::*;
use svc_overlay::{CloseReason, Event, NeighborDownReason, Overlay};

/// Reads the next event, bounded.
async fn next(stream: &mut svc_overlay::EventStream, what: &str) -> Event {
    bounded(what, stream.next()).await.expect("stream open")
}

/// Reads the next event that is not a neighbour change of `other` (membership may connect
/// the ends of the chain directly at any time).
async fn next_skipping(stream: &mut svc_overlay::EventStream, other: PeerId, what: &str) -> Event {
    loop {
        match next(stream, what).await {
            Event::NeighborUp(p) | Event::NeighborDown { peer: p, .. } if p == other => {}
            event => return event,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_neighbours_deliveries_and_departures_in_order() {
    let a = overlay(11).await;
    let b = overlay(12).await;
    let c = overlay(13).await;
    let (_, mut b_events) = b.topic().split();
    let (c_send, mut c_events) = c.topic().split();

    // Chain A — B — C.
    bounded("a dials b", a.dial(b.local_addr())).await.unwrap();
    assert_eq!(
        next(&mut b_events, "b: a up").await,
        Event::NeighborUp(a.peer_id())
    );
    bounded("c dials b", c.dial(b.local_addr())).await.unwrap();
    assert_eq!(
        next(&mut c_events, "c: b up").await,
        Event::NeighborUp(b.peer_id())
    );
    assert_eq!(
        next(&mut b_events, "b: c up").await,
        Event::NeighborUp(c.peer_id())
    );

    // A's broadcast reaches C (through B, unless membership linked A and C meanwhile).
    let id = bounded("a broadcasts", a.broadcast(Bytes::from_static(b"from a")))
        .await
        .unwrap();
    match next_skipping(&mut c_events, a.peer_id(), "c receives").await {
        Event::Received(d) => {
            assert_eq!(d.id, id);
            assert_eq!(d.origin, a.peer_id());
            assert!(d.hops >= 1);
            assert_eq!(&d.payload[..], b"from a");
        }
        other => panic!("expected a delivery at C, got {other:?}"),
    }
    // The sender half broadcasts for C; B sees A's message first, then C's.
    let from_c = bounded(
        "c broadcasts",
        c_send.broadcast(Bytes::from_static(b"from c")),
    )
    .await
    .unwrap();
    match next(&mut b_events, "b receives a's").await {
        Event::Received(d) => assert_eq!(d.id, id),
        other => panic!("expected A's message at B, got {other:?}"),
    }
    match next(&mut b_events, "b receives c's").await {
        Event::Received(d) => {
            assert_eq!(d.id, from_c);
            assert_eq!(d.origin, c.peer_id());
        }
        other => panic!("expected C's message at B, got {other:?}"),
    }

    // A leaves: B reports the neighbour down, with a reason.
    a.shutdown().await;
    match next(&mut b_events, "b: a down").await {
        Event::NeighborDown { peer, reason } => {
            assert_eq!(peer, a.peer_id());
            assert!(
                matches!(reason, NeighborDownReason::Closed(r) if r != CloseReason::Duplicate),
                "{reason:?}"
            );
        }
        other => panic!("expected A down at B, got {other:?}"),
    }
    // B stops: C's stream reports B down and then ends.
    b.shutdown().await;
    match next_skipping(&mut c_events, a.peer_id(), "c: b down").await {
        Event::NeighborDown { peer, .. } => assert_eq!(peer, b.peer_id()),
        other => panic!("expected B down at C, got {other:?}"),
    }
    c.shutdown().await;
    bounded("c stream ends", async {
        while let Some(event) = c_events.next().await {
            assert!(!matches!(event, Event::Received(_)), "{event:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_lagged_with_the_count_then_the_newest() {
    let a = overlay(21).await;
    let b = Overlay::builder()
        .bind(loopback())
        .seed(22)
        .event_buffer(2)
        .build()
        .await
        .unwrap();
    let mut topic = b.topic();
    let mut plain = b.deliveries();
    bounded("dial", a.dial(b.local_addr())).await.unwrap();
    wait_stats(&b, "b has a session", |s| s.sessions_running >= 1).await;

    let mut ids = Vec::new();
    for i in 0..10u8 {
        ids.push(bounded("broadcast", a.broadcast(vec![i; 8])).await.unwrap());
    }
    wait_stats(&b, "b got all ten", |s| s.gossip_delivered >= 10).await;

    // 11 events were sent (A up, ten deliveries) into a buffer of 2: 9 lost, said once.
    assert_eq!(topic.recv().await, Some(Event::Lagged { dropped: 9 }));
    for want in &ids[8..] {
        match bounded("newest", topic.recv()).await {
            Some(Event::Received(d)) => assert_eq!(&d.id, want),
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
    assert!(
        b.driver_stats().subscriber_lagged >= 9,
        "{:?}",
        b.driver_stats()
    );
    // The plain subscription has room for all ten: nothing lost.
    for want in &ids {
        assert_eq!(&bounded("plain", plain.recv()).await.unwrap().id, want);
    }
    assert_eq!(plain.lost(), 0);
    a.shutdown().await;
    b.shutdown().await;
}
