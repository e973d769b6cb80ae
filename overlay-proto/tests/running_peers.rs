//! RUNNING_PEERS: a peer's running sessions as link-optimisation candidates. A request is
//! answered with the node's other running peers (never the asker) within the SHUFFLE rate;
//! an answer nobody asked for is ignored and scored; a probe round asks a running peer and
//! dials, from its answer, the entry SHUFFLEs named least; only peers whose HELLO said
//! `running_peers` are asked; with only inbound links (none of ours to give up) no round
//! asks at all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

mod support;

use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::frame::flags;
use overlay_proto::wire::{self, HelloOverlay, HelloRequestBody, Kind, PeerEntry};
use overlay_proto::{
    Action, ConnId, DialId, Direction, Input, NodeConfig, OriginAuth, PeerId, RejectReason,
    OVERLAY_APP_PROTO_ID,
};
use support::{event, peer, raw_frame, start, Bed};

fn cfg() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = OriginAuth::None;
    c.active_target = 3;
    c.link_optimization = true;
    c
}

fn listen_of(conn: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 100 + conn as u8], 9415))
}

/// An inbound session from `who` on `conn` (from `10.0.0.(100 + conn)`, listening on port
/// 9415 there), whose HELLO says `running_peers` or not.
fn open(bed: &mut Bed, conn: u64, who: PeerId, running_peers: bool) {
    bed.up(conn, who, [10, 0, 0, 100 + conn as u8]);
    let hello = HelloRequestBody {
        ua: None,
        overlay: HelloOverlay {
            overlay: 1,
            peer_id: who.to_string(),
            listen: Some(listen_of(conn).to_string()),
            credit_frames: 1 << 20,
            credit_bytes: 1 << 30,
            graft_miss: true,
            running_peers,
        },
    };
    bed.send(
        conn,
        raw_frame(flags::REQ, 0, 0, &[], &serde_json::to_vec(&hello).unwrap()),
    );
    bed.send(conn, start(""));
    assert!(bed.is_up(conn));
}

/// An outbound session of ours to `who` at `listen_of(conn)` (only the links we dialed may
/// be given up for a faster one): the peer answers our HELLO and START as a server would,
/// saying `running_peers`.
fn open_outbound(bed: &mut Bed, conn: u64, who: PeerId) {
    open_outbound_dial(bed, conn, who, None);
}

/// [`open_outbound`] as the connection of our dial `dial`, when given.
fn open_outbound_dial(bed: &mut Bed, conn: u64, who: PeerId, dial: Option<DialId>) {
    bed.input(Input::ConnectionUp {
        conn: ConnId(conn),
        peer: who,
        direction: Direction::Outbound,
        remote: listen_of(conn),
        dial,
        kx_group: None,
    });
    let reply = serde_json::json!({
        "max_frame": 1_048_576,
        "max_inflight": 1 << 20,
        "flags_supported": 255,
        "versions": [1],
        "transports": ["tcp+tls"],
        "credit_bytes": 1u32 << 30,
        "credit_frames": 1 << 20,
        "graft_miss": true,
        "listen": listen_of(conn).to_string(),
        "overlay": 1,
        "peer_id": who.to_string(),
        "running_peers": true,
    });
    bed.send(
        conn,
        raw_frame(
            flags::RESP,
            200,
            0,
            &[],
            &serde_json::to_vec(&reply).unwrap(),
        ),
    );
    bed.send(
        conn,
        raw_frame(
            flags::START | flags::RESP,
            200,
            OVERLAY_APP_PROTO_ID,
            &[],
            &[],
        ),
    );
    assert!(bed.is_up(conn), "outbound session {conn} should open");
}

fn request() -> Vec<u8> {
    let mut body = Vec::new();
    wire::put_shuffle(&mut body, &[]);
    event(Kind::RunningPeers, &body)
}

fn answer(entries: &[PeerEntry]) -> Vec<u8> {
    let mut body = Vec::new();
    wire::put_shuffle(&mut body, entries);
    event(Kind::RunningPeers, &body)
}

/// The entries of the RUNNING_PEERS answers sent on `conn` (requests, with no entry, left out).
fn answers_sent(bed: &Bed, conn: u64) -> Vec<Vec<PeerEntry>> {
    bed.sent(conn, Kind::RunningPeers)
        .iter()
        .map(|b| wire::parse_shuffle(Kind::RunningPeers, b).unwrap())
        .filter(|e| !e.is_empty())
        .collect()
}

fn flood_rejects(bed: &Bed) -> u64 {
    bed.node.stats().rejected.get(RejectReason::ShuffleFlood)
}

#[test]
fn a_request_is_answered_with_the_other_running_peers_within_the_rate() {
    let mut bed = Bed::new(cfg());
    for conn in 1..=3 {
        open(&mut bed, conn, peer(10 + conn as u8), true);
    }
    bed.send(1, request());
    let answers = answers_sent(&bed, 1);
    assert_eq!(answers.len(), 1);
    let mut listed: Vec<(PeerId, SocketAddr)> =
        answers[0].iter().map(|e| (e.peer, e.addr)).collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![(peer(12), listen_of(2)), (peer(13), listen_of(3))],
        "the other running peers at their listen addresses, never the asker"
    );
    // The SHUFFLE rate (1 per second, burst 4) bounds the answers: three more fit the burst,
    // the fifth request is ignored and scored.
    for _ in 0..4 {
        bed.send(1, request());
    }
    assert_eq!(answers_sent(&bed, 1).len(), 4);
    assert_eq!(flood_rejects(&bed), 1);
}

#[test]
fn a_node_with_no_other_running_peer_answers_nothing() {
    let mut bed = Bed::new(cfg());
    open(&mut bed, 1, peer(11), true);
    bed.send(1, request());
    assert!(bed.sent(1, Kind::RunningPeers).is_empty());
    assert_eq!(flood_rejects(&bed), 0);
}

#[test]
fn an_answer_nobody_asked_for_is_ignored_and_scored() {
    let mut bed = Bed::new(cfg());
    open(&mut bed, 1, peer(11), true);
    bed.clear();
    bed.send(
        1,
        answer(&[PeerEntry {
            peer: peer(50),
            addr: SocketAddr::from(([10, 0, 0, 50], 9415)),
        }]),
    );
    assert_eq!(flood_rejects(&bed), 1);
    assert!(!bed.actions().any(|a| matches!(a, Action::Connect { .. })));
}

/// The remote ends of sessions `conns`: each answers the node's PINGs with a PONG `rtt`
/// later (the k-th PING on a session `rtts[k]` later, the last for all after) and sends a
/// heartbeat every 500 ms.
struct Remotes {
    conns: Vec<u64>,
    rtts: Vec<Duration>,
    answered: Vec<usize>,
    pongs_due: Vec<(overlay_proto::Instant, u64)>,
    next_beat: overlay_proto::Instant,
}

impl Remotes {
    fn new(conns: &[u64], rtt: Duration) -> Remotes {
        Remotes::with_rtts(conns, &[rtt])
    }

    fn with_rtts(conns: &[u64], rtts: &[Duration]) -> Remotes {
        Remotes {
            conns: conns.to_vec(),
            rtts: rtts.to_vec(),
            answered: vec![0; conns.len()],
            pongs_due: Vec::new(),
            next_beat: overlay_proto::Instant::ZERO,
        }
    }

    /// Runs the bed 5 ms further and answers what is due.
    fn step(&mut self, bed: &mut Bed) {
        bed.advance(Duration::from_millis(5));
        for (i, &conn) in self.conns.iter().enumerate() {
            let pings = bed.sent(conn, Kind::Ping).len();
            while self.answered[i] < pings {
                let k = self.answered[i].min(self.rtts.len() - 1);
                self.answered[i] += 1;
                self.pongs_due.push((bed.now + self.rtts[k], conn));
            }
        }
        let now = bed.now;
        let due: Vec<u64> = self
            .pongs_due
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, c)| *c)
            .collect();
        self.pongs_due.retain(|(at, _)| *at > now);
        for conn in due {
            bed.send(conn, event(Kind::Pong, &[]));
        }
        if now >= self.next_beat {
            for &conn in &self.conns {
                bed.heartbeat(conn);
            }
            self.next_beat = now + Duration::from_millis(500);
        }
    }

    fn run(&mut self, bed: &mut Bed, d: Duration) {
        let until = bed.now + d;
        while bed.now < until {
            self.step(bed);
        }
    }
}

#[test]
fn a_probe_round_asks_a_running_peer_and_dials_the_least_named_entry_of_its_answer() {
    let mut bed = Bed::new(cfg());
    // Peer 11 does not answer RUNNING_PEERS (its HELLO did not say so): never asked.
    open(&mut bed, 1, peer(11), false);
    open_outbound(&mut bed, 2, peer(12));
    open_outbound(&mut bed, 3, peer(13));
    // SHUFFLEs name 10.0.0.60–67 twice (within peer 12's SHUFFLE rate): 10.0.0.70 is the one
    // entry of the answer no SHUFFLE named.
    let named: Vec<PeerEntry> = (60..68)
        .map(|n| PeerEntry {
            peer: peer(n),
            addr: SocketAddr::from(([10, 0, 0, n], 9415)),
        })
        .collect();
    let quiet = SocketAddr::from(([10, 0, 0, 70], 9415));
    for _ in 0..2 {
        let mut body = Vec::new();
        wire::put_shuffle(&mut body, &named);
        bed.send(2, event(Kind::Shuffle, &body));
    }
    // Until the first round asks (links must be 2 s old before any may be dropped).
    let mut remotes = Remotes::new(&[1, 2, 3], Duration::from_millis(40));
    while bed.node.stats().link_probe_asks == 0 {
        assert!(bed.now < overlay_proto::Instant::ZERO + Duration::from_secs(10));
        remotes.step(&mut bed);
    }
    assert!(
        bed.sent(1, Kind::RunningPeers).is_empty(),
        "peer 11 is never asked"
    );
    let asked: Vec<u64> = [2, 3]
        .into_iter()
        .filter(|c| !bed.sent(*c, Kind::RunningPeers).is_empty())
        .collect();
    assert_eq!(asked.len(), 1, "one request per round, one round at a time");
    assert_eq!(bed.node.stats().link_probe_asks, 1);
    assert_eq!(
        bed.node.stats().link_probes,
        0,
        "no probe before the answer"
    );
    bed.clear();
    bed.send(
        asked[0],
        answer(
            &named
                .iter()
                .copied()
                .chain([
                    PeerEntry {
                        peer: peer(70),
                        addr: quiet,
                    },
                    // Already a session: never a probe.
                    PeerEntry {
                        peer: peer(11),
                        addr: listen_of(1),
                    },
                ])
                .collect::<Vec<_>>(),
        ),
    );
    let dialed: Vec<SocketAddr> = bed
        .actions()
        .filter_map(|a| match a {
            Action::Connect { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(dialed, vec![quiet], "the entry SHUFFLEs named least");
    assert_eq!(bed.node.stats().link_probes, 1);
    assert_eq!(flood_rejects(&bed), 0, "an answer we asked for is welcome");
    // A second answer on the same session was not asked for.
    bed.send(
        asked[0],
        answer(&[PeerEntry {
            peer: peer(62),
            addr: SocketAddr::from(([10, 0, 0, 62], 9415)),
        }]),
    );
    assert_eq!(flood_rejects(&bed), 1);
}

#[test]
fn an_unanswered_request_ends_the_round_and_the_next_asks_again() {
    let mut bed = Bed::new(cfg());
    for conn in 1..=3 {
        open_outbound(&mut bed, conn, peer(10 + conn as u8));
    }
    Remotes::new(&[1, 2, 3], Duration::from_millis(40)).run(&mut bed, Duration::from_secs(6));
    // Nobody answers: each request is given up after 1 s and a later round asks again
    // (rounds can start from 2 s, when the links are old enough to be dropped).
    let asks = bed.node.stats().link_probe_asks;
    assert!((3..=4).contains(&asks), "asks {asks}");
    assert_eq!(bed.node.stats().link_probes, 0);
}

#[test]
fn with_only_links_the_peers_dialed_no_round_runs() {
    let mut bed = Bed::new(cfg());
    for conn in 1..=3 {
        open(&mut bed, conn, peer(10 + conn as u8), true);
    }
    Remotes::new(&[1, 2, 3], Duration::from_millis(40)).run(&mut bed, Duration::from_secs(6));
    // A link a peer dialed is the peer's: it may be its only way in (a node whose own dials
    // all reached attackers), so a node gives up only links it dialed itself.
    assert_eq!(bed.node.stats().link_probe_asks, 0);
}

#[test]
fn a_link_is_judged_by_its_lowest_round_trip_sample() {
    // Each session's first PING is answered 40 ms later (both nodes busy starting), the
    // second 1 ms later: the links are fast, and no link is slow enough (over 5 ms) for a
    // probe to be worth a round.
    let mut bed = Bed::new(cfg());
    for conn in 1..=3 {
        open_outbound(&mut bed, conn, peer(10 + conn as u8));
    }
    let (busy, fast) = (Duration::from_millis(40), Duration::from_millis(1));
    let mut remotes = Remotes::with_rtts(&[1, 2, 3], &[busy, fast]);
    remotes.run(&mut bed, Duration::from_secs(6));
    for conn in 1..=3 {
        assert!(
            bed.sent(conn, Kind::Ping).len() >= 2,
            "two early PINGs on session {conn}"
        );
    }
    assert_eq!(bed.node.stats().link_probe_asks, 0);
    // The same links measured slow both times are worth a round (as in the tests above).
    let mut bed = Bed::new(cfg());
    for conn in 1..=3 {
        open_outbound(&mut bed, conn, peer(10 + conn as u8));
    }
    Remotes::with_rtts(&[1, 2, 3], &[busy, busy]).run(&mut bed, Duration::from_secs(6));
    assert!(bed.node.stats().link_probe_asks > 0);
}

#[test]
fn a_dialed_link_is_sampled_once_more_before_it_may_be_dropped() {
    // Our dial measured 40 ms (TCP + TLS take two round trips: 80 ms from connect to up), as
    // a node busy starting does; the link is fast.
    let mut bed = Bed::new(cfg());
    let dial = bed.dial(listen_of(1));
    bed.advance(Duration::from_millis(80));
    open_outbound_dial(&mut bed, 1, peer(11), Some(dial));
    let opened = bed.now;
    bed.clear();
    let mut remotes = Remotes::new(&[1], Duration::from_millis(1));
    // (An idle session's first heartbeat, at 500 ms, is a PING of its own.)
    remotes.run(&mut bed, Duration::from_millis(450));
    assert!(
        bed.sent(1, Kind::Ping).is_empty(),
        "the dial measured the round trip: no PING at once"
    );
    remotes.run(&mut bed, Duration::from_millis(1000));
    let before = bed.sent(1, Kind::Ping).len();
    remotes.run(&mut bed, Duration::from_millis(550));
    assert_eq!(
        bed.sent(1, Kind::Ping).len(),
        before + 1,
        "one more sample 1.5 s after the session runs, before it is 2 s old"
    );
    assert!(bed.now - opened <= Duration::from_secs(2));
}
