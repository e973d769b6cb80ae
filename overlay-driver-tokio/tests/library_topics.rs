//! Topics through the library with real nodes over loopback TLS: `subscribe(topic)` joins,
//! members receive the topic's messages and a node outside it does not, dropping the last
//! handle leaves the topic, and each topic's stream reports only its own neighbours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runtime_common;

use std::time::Duration;
use svc_overlay::OverlayError;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use runtime_common::*;
use svc_overlay::{Error, Event, NeighborDownReason, TopicId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_reaches_its_members_only_and_is_left_when_dropped() {
    let a = overlay(21).await;
    let b = overlay(22).await;
    let c = overlay(23).await;
    let chat = TopicId::from_name("chat");
    // A — B — C, with A and B in the topic and C not.
    bounded("a dials b", a.dial(b.local_addr())).await.unwrap();
    bounded("c dials b", c.dial(b.local_addr())).await.unwrap();
    let a_chat = bounded("a joins", a.subscribe(chat)).await.unwrap();
    let b_chat = bounded("b joins", b.subscribe(chat)).await.unwrap();
    assert_eq!(a_chat.id(), chat);
    let (a_send, _a_events) = a_chat.split();
    let (_b_send, mut b_events) = b_chat.split();
    let mut c_plain = c.deliveries();
    assert!(bounded("a topics", a.topics()).await.contains(&chat));

    // Publishing before B's TOPICS arrives would find no member link: retry until it lands.
    let got = bounded("b receives", async {
        loop {
            let id = a_send
                .broadcast(Bytes::from_static(b"in chat"))
                .await
                .unwrap();
            let next = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    match b_events.next().await {
                        Some(Event::Received(d)) => return d,
                        Some(_) => {}
                        None => panic!("stream ended"),
                    }
                }
            })
            .await;
            if let Ok(d) = next {
                assert_eq!(d.id, id);
                return d;
            }
        }
    })
    .await;
    assert_eq!(got.topic, chat);
    assert_eq!(got.payload, Bytes::from_static(b"in chat"));

    // C is not in the topic: a default broadcast reaches it, the topic never does.
    let d = bounded("default", a.broadcast(Bytes::from_static(b"to all")))
        .await
        .unwrap();
    let seen = bounded("c gets default", c_plain.recv()).await.unwrap();
    assert_eq!(seen.id, d);
    assert_eq!(seen.topic, TopicId::DEFAULT);
    let c_stats = bounded("c stats", c.stats()).await;
    assert_eq!(
        c_stats.frames_in_by_kind[overlay_proto::wire::Kind::TopicGossip.index()],
        0
    );
    assert!(matches!(
        bounded("c publishes", c.publish(chat, Bytes::from_static(b"x"))).await,
        Err(Error::Overlay(OverlayError::NotJoined))
    ));

    // Dropping B's handles leaves the topic.
    drop(b_events);
    drop(_b_send);
    bounded("b leaves", async {
        while b.topics().await.contains(&chat) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The operator's hold outlives subscriptions: join, subscribe, drop, still in.
    assert!(bounded("join", b.join(chat)).await.unwrap());
    drop(bounded("sub", b.subscribe(chat)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(bounded("held", b.topics()).await.contains(&chat));
    assert!(bounded("leave", b.leave(chat)).await.unwrap());
    assert!(!bounded("left", b.topics()).await.contains(&chat));
    assert!(matches!(
        bounded("default", b.leave(TopicId::DEFAULT)).await,
        Err(Error::Overlay(OverlayError::NotJoined))
    ));
}

/// The next neighbour change on `stream` (deliveries skipped), bounded.
async fn next_neighbor(stream: &mut svc_overlay::EventStream, what: &str) -> Event {
    bounded(what, async {
        loop {
            match stream.next().await {
                Some(Event::Received(_)) => {}
                Some(event) => return event,
                None => panic!("stream ended: {what}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_reports_only_its_own_neighbours() {
    let a = overlay(31).await;
    let b = overlay(32).await;
    let chat = TopicId::from_name("chat");
    let news = TopicId::from_name("news");
    // A is in chat and news, B in chat only.
    let (_a_chat_send, mut a_chat) = bounded("a chat", a.subscribe(chat)).await.unwrap().split();
    let (_a_news_send, mut a_news) = bounded("a news", a.subscribe(news)).await.unwrap().split();
    let (_, mut a_default) = a.topic().split();
    let b_chat = bounded("b chat", b.subscribe(chat)).await.unwrap();
    bounded("a dials b", a.dial(b.local_addr())).await.unwrap();

    assert_eq!(
        next_neighbor(&mut a_default, "default: b up").await,
        Event::NeighborUp(b.peer_id())
    );
    assert_eq!(
        next_neighbor(&mut a_chat, "chat: b up").await,
        Event::NeighborUp(b.peer_id())
    );
    // B leaves chat: A's chat stream says so, with the reason.
    b_chat.leave();
    assert_eq!(
        next_neighbor(&mut a_chat, "chat: b left").await,
        Event::NeighborDown {
            peer: b.peer_id(),
            reason: NeighborDownReason::Left,
        }
    );
    // News has had no neighbour so far. B joins it: B's new stream starts with A (a member
    // already connected), and A's news stream learns B from B's announcement.
    assert!(
        a_news.next().now_or_never().is_none(),
        "news never saw B yet"
    );
    let (_b_news_send, mut b_news) = bounded("b news", b.subscribe(news)).await.unwrap().split();
    assert_eq!(
        next_neighbor(&mut b_news, "b news: a up").await,
        Event::NeighborUp(a.peer_id())
    );
    assert_eq!(
        next_neighbor(&mut a_news, "a news: b up").await,
        Event::NeighborUp(b.peer_id())
    );
    // B stops: the topics they still share (default, news) report the session's end.
    b.shutdown().await;
    for (stream, what) in [(&mut a_default, "default"), (&mut a_news, "news")] {
        match next_neighbor(stream, what).await {
            Event::NeighborDown {
                peer,
                reason: NeighborDownReason::Closed(_),
            } => assert_eq!(peer, b.peer_id()),
            other => panic!("expected B down in {what}, got {other:?}"),
        }
    }
    // The node task routes every event before the next one: whatever the core said about
    // chat is buffered by now, and it said nothing more there after B left it.
    assert!(a_chat.next().now_or_never().is_none(), "chat saw B once");
    a.shutdown().await;
}
