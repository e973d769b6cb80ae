//! The sessions machine alone (no `Node`): the table and its indexes, the handshake rules
//! (both directions), the duplicate tie-break from both ends, the self-connection, HELLO
//! refusals and the reasons they close with, the handshake deadline and the failure detector.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design

use core::net::SocketAddr;
use core::time::Duration;

use super::handshake::{
    check_hello, new_session_wins, our_hello, step, Admission, HelloRefusal, Started, Step,
    WindowFloor,
};
use super::{SessionKey, Sessions, SessionsOutput};
use crate::action::{CloseReason, SessionEvent};
use crate::error::OverlayError;
use crate::frame::{flags, Header};
use crate::liveness::{Heartbeat, LivenessConfig};
use crate::peer::{ConnId, DialId, Direction, PeerId};
use crate::session::{ConnectionInfo, Grant, Phase, Session};
use crate::time::Instant;
use crate::wire::HelloOverlay;

const APP: u16 = crate::OVERLAY_APP_PROTO_ID;
const FLOOR: WindowFloor = WindowFloor {
    frames: 16,
    bytes: 64 * 1024,
};

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// Every operation allowed, messages up to `max_message_bytes`.
fn grant(max_message_bytes: usize) -> Grant {
    Grant {
        operations: 0x0F,
        max_message_bytes,
        rate_cap: None,
    }
}

fn session(now: Instant, conn: u64, who: PeerId, direction: Direction) -> Session {
    let info = ConnectionInfo {
        conn: ConnId(conn),
        peer: who,
        remote: SocketAddr::from(([10, 0, 0, conn as u8], 9415)),
        direction,
        dial: (direction == Direction::Outbound).then_some(DialId(conn)),
        kx_group: None,
    };
    Session::with_test_buckets(now, info, grant(1 << 20))
}

fn admitted(table: &mut Sessions, s: Session, me: &PeerId) -> SessionKey {
    match table.admit(s, me) {
        Admission::Admitted(key) => key,
        Admission::InUse(_) => panic!("connection in use"),
    }
}

fn header(flags: u16, code: u16, app: u16) -> Header {
    Header {
        len: 38,
        ver: 1,
        flags,
        code,
        app_proto_id: app,
        tenant_id: 0,
        cap_len: 0,
        corr_id: 1,
    }
}

fn hello(who: &PeerId, frames: u32, bytes: u32) -> HelloOverlay {
    HelloOverlay {
        overlay: 1,
        peer_id: who.to_string(),
        listen: Some("10.0.0.9:9415".into()),
        credit_frames: frames,
        credit_bytes: bytes,
        graft_miss: true,
        running_peers: true,
    }
}

/// Runs session `key` with `grant` and takes the `Up` the machine queued for it.
fn run(table: &mut Sessions, key: SessionKey, grant: Grant) -> Started {
    table.start_running(key, grant);
    match table.poll_output() {
        Some(SessionsOutput::Up { key: k, started }) if k == key => started,
        other => panic!("expected Up for {key}, got {other:?}"),
    }
}

fn outputs(table: &mut Sessions) -> Vec<SessionsOutput> {
    std::iter::from_fn(|| table.poll_output()).collect()
}

fn close(key: SessionKey, reason: CloseReason, winner: Option<u64>) -> SessionsOutput {
    SessionsOutput::Close {
        key,
        reason,
        winner: winner.map(ConnId),
    }
}

#[test]
fn an_inbound_handshake_runs_hello_then_start_and_reports_the_session_up() {
    let me = peer(1);
    let mut table = Sessions::new();
    let mut s = session(at(0), 7, peer(2), Direction::Inbound);
    s.holds_preauth = true;
    let key = admitted(&mut table, s, &me);
    table.claim_peer(key);
    assert_eq!(table.key_of(&ConnId(7)), Some(key));
    assert_eq!(table.key_of_peer(&peer(2)), Some(key));
    assert_eq!(table.get(key).unwrap().phase, Phase::AwaitHello);
    // HELLO: the request the phase waits for; acceptable; its window and keys apply.
    assert_eq!(
        step(Phase::AwaitHello, &header(flags::REQ, 0, 0), APP),
        Step::Hello
    );
    let offered = hello(&peer(2), 64, 1 << 20);
    assert_eq!(check_hello(&peer(2), &offered, FLOOR), Ok(()));
    let listen: SocketAddr = "10.0.0.9:9415".parse().unwrap();
    table.apply_hello(key, &offered, Some(listen));
    table.set_phase(key, Phase::AwaitStart);
    let s = table.get(key).unwrap();
    assert_eq!((s.send_window.frames, s.send_window.bytes), (64, 1 << 20));
    assert!(s.graft_miss);
    assert_eq!(s.listen, Some(listen));
    assert_eq!(
        table.membership_count(),
        0,
        "inbound before START does not count"
    );
    // START with the token (checked by the node): the session runs.
    let start = header(flags::START | flags::REQ, 0, APP);
    assert_eq!(step(Phase::AwaitStart, &start, APP), Step::Start);
    let started = run(&mut table, key, grant(4096));
    assert_eq!(started.released_preauth, Some("10.0.0.7".parse().unwrap()));
    assert_eq!(
        started.event,
        SessionEvent::Up {
            conn: ConnId(7),
            peer: peer(2),
            direction: Direction::Inbound,
            dial: None,
            requests: Vec::new(),
        }
    );
    let s = table.get(key).unwrap();
    assert!(s.is_running() && !s.holds_preauth);
    assert_eq!(s.grant.max_message_bytes, 4096);
    assert_eq!((table.running_count(), table.membership_count()), (1, 1));
    assert!(outputs(&mut table).is_empty(), "nothing to close");
}

#[test]
fn an_outbound_handshake_waits_for_the_replies_and_hands_the_callers_their_session() {
    let me = peer(1);
    let mut table = Sessions::new();
    let mut s = session(at(0), 3, peer(2), Direction::Outbound);
    s.dial_requests = vec![11, 12];
    let key = admitted(&mut table, s, &me);
    assert_eq!(table.get(key).unwrap().phase, Phase::AwaitHelloReply);
    assert_eq!(
        table.membership_count(),
        1,
        "our own dial counts while handshaking"
    );
    // A request where a reply is due is refused before the token is verified.
    assert_eq!(
        step(Phase::AwaitHelloReply, &header(flags::REQ, 0, 0), APP),
        Step::Unexpected
    );
    let reply = header(flags::RESP, 200, 0);
    assert_eq!(step(Phase::AwaitHelloReply, &reply, APP), Step::HelloReply);
    table.set_phase(key, Phase::AwaitStartReply);
    let start_reply = header(flags::START | flags::RESP, 200, APP);
    assert_eq!(
        step(Phase::AwaitStartReply, &start_reply, APP),
        Step::StartReply
    );
    // The START reply of another application protocol is not the overlay's.
    assert_eq!(
        step(Phase::AwaitStartReply, &header(flags::RESP, 200, 9), APP),
        Step::Unexpected
    );
    let started = run(&mut table, key, grant(1));
    assert_eq!(started.released_preauth, None);
    assert!(matches!(
        started.event,
        SessionEvent::Up { dial: Some(DialId(3)), ref requests, .. } if *requests == vec![11, 12]
    ));
    assert!(table.get(key).unwrap().dial_requests.is_empty());
}

#[test]
fn the_session_dialed_by_the_smaller_peer_id_survives_a_duplicate_on_both_ends() {
    // We are peer 1, the peer is 2: the session we dialed wins, whichever came first.
    let (me, them) = (peer(1), peer(2));
    let mut table = Sessions::new();
    let theirs = admitted(&mut table, session(at(0), 1, them, Direction::Inbound), &me);
    table.claim_peer(theirs);
    let ours = admitted(
        &mut table,
        session(at(5), 2, them, Direction::Outbound),
        &me,
    );
    let outcome = table.resolve_duplicate(&me, theirs, ours);
    assert!(outcome.new_wins);
    assert_eq!(
        outputs(&mut table),
        vec![close(theirs, CloseReason::Duplicate, Some(2))]
    );
    // The same two connections seen from peer 2: the session peer 1 dialed is its inbound
    // one, and it survives there too.
    let mut other = Sessions::new();
    let dialed_by_1 = admitted(&mut other, session(at(0), 2, me, Direction::Inbound), &them);
    other.claim_peer(dialed_by_1);
    let dialed_by_2 = admitted(
        &mut other,
        session(at(5), 1, me, Direction::Outbound),
        &them,
    );
    let outcome = other.resolve_duplicate(&them, dialed_by_1, dialed_by_2);
    assert!(!outcome.new_wins);
    assert_eq!(
        outputs(&mut other),
        vec![close(dialed_by_2, CloseReason::Duplicate, Some(2))]
    );
    // Both ends keep connection 2. Two sessions dialed the same way: the first one stays.
    let a = session(at(0), 1, them, Direction::Inbound);
    let b = session(at(0), 2, them, Direction::Inbound);
    assert!(!new_session_wins(&me, &a, &b));
}

#[test]
fn callers_waiting_on_the_losing_duplicate_move_to_the_winner_or_are_answered_at_once() {
    let (me, them) = (peer(1), peer(2));
    let mut table = Sessions::new();
    let theirs = admitted(&mut table, session(at(0), 1, them, Direction::Inbound), &me);
    table.claim_peer(theirs);
    let mut dial = session(at(0), 2, them, Direction::Outbound);
    dial.dial_requests = vec![7];
    let ours = admitted(&mut table, dial, &me);
    // Still handshaking: our session wins and keeps its own caller.
    let outcome = table.resolve_duplicate(&me, theirs, ours);
    assert_eq!(outcome.answer_now, None);
    assert_eq!(table.get(ours).unwrap().dial_requests, vec![7]);
    let _ = outputs(&mut table);
    table.remove(theirs);
    // A running winner: a loser's callers are answered with the winner's connection now.
    table.claim_peer(ours);
    let _ = run(&mut table, ours, grant(1));
    let mut late = session(at(9), 3, them, Direction::Outbound);
    late.dial_requests = vec![8, 9];
    let late = admitted(&mut table, late, &me);
    let outcome = table.resolve_duplicate(&me, ours, late);
    assert!(!outcome.new_wins, "both ours: the first stays");
    assert_eq!(outcome.answer_now, Some((ConnId(2), vec![8, 9])));
    assert_eq!(
        outputs(&mut table),
        vec![close(late, CloseReason::Duplicate, Some(2))]
    );
}

#[test]
fn a_connection_to_ourselves_is_closed_and_a_handle_in_use_is_refused_untouched() {
    let me = peer(1);
    let mut table = Sessions::new();
    let key = admitted(&mut table, session(at(0), 1, me, Direction::Outbound), &me);
    assert_eq!(
        outputs(&mut table),
        vec![close(key, CloseReason::SelfConnection, None)]
    );
    // A second connection on the same handle is handed back; the first is kept.
    let mut again = session(at(1), 1, peer(2), Direction::Inbound);
    again.dial_requests = vec![5];
    match table.admit(again, &me) {
        Admission::InUse(s) => assert_eq!((s.peer, s.dial_requests), (peer(2), vec![5])),
        Admission::Admitted(_) => panic!("the handle is in use"),
    }
    assert_eq!(table.get(key).unwrap().peer, me);
    assert!(outputs(&mut table).is_empty());
}

#[test]
fn our_hello_passes_the_checks_we_apply_to_peers() {
    let me = peer(1);
    let ours = our_hello(&me, Some("10.0.0.1:9415".parse().unwrap()), 64, 1 << 20);
    assert_eq!(check_hello(&me, &ours, FLOOR), Ok(()));
    assert!(ours.graft_miss);
    assert_eq!(ours.listen.as_deref(), Some("10.0.0.1:9415"));
    let tiny = our_hello(&me, None, 1, 1);
    assert_eq!(
        check_hello(&me, &tiny, FLOOR),
        Err(HelloRefusal::SmallWindow)
    );
}

#[test]
fn a_hello_is_refused_for_its_version_identity_or_a_window_below_the_floor() {
    let who = peer(2);
    let mut bad_version = hello(&who, 64, 1 << 20);
    bad_version.overlay = 2;
    assert_eq!(
        check_hello(&who, &bad_version, FLOOR),
        Err(HelloRefusal::Version)
    );
    assert_eq!(
        check_hello(&peer(3), &hello(&who, 64, 1 << 20), FLOOR),
        Err(HelloRefusal::Identity),
        "the peer id must be the TLS-proven one"
    );
    assert_eq!(
        check_hello(&who, &hello(&who, 15, 1 << 20), FLOOR),
        Err(HelloRefusal::SmallWindow)
    );
    assert_eq!(
        check_hello(&who, &hello(&who, 16, 64 * 1024 - 1), FLOOR),
        Err(HelloRefusal::SmallWindow)
    );
    assert_eq!(
        check_hello(&who, &hello(&who, 16, 64 * 1024), FLOOR),
        Ok(())
    );
    // The reasons the session closes with (400, 401, 400).
    let malformed = CloseReason::Violation(OverlayError::Malformed);
    assert_eq!(HelloRefusal::Version.close_reason(), malformed);
    assert_eq!(HelloRefusal::SmallWindow.close_reason(), malformed);
    assert_eq!(
        HelloRefusal::Identity.close_reason(),
        CloseReason::Violation(OverlayError::Crypto)
    );
}

#[test]
fn an_error_from_the_peer_ends_the_handshake_in_any_phase_and_stray_frames_are_unexpected() {
    for phase in [
        Phase::AwaitHello,
        Phase::AwaitHelloReply,
        Phase::AwaitStart,
        Phase::AwaitStartReply,
    ] {
        let refusal = header(flags::RESP, 401, APP);
        assert_eq!(
            step(phase, &refusal, APP),
            Step::PeerError(OverlayError::from_wire_code(401))
        );
        assert_eq!(
            step(phase, &header(flags::EVENT, 1, APP), APP),
            Step::Unexpected,
            "an overlay event before the token is verified"
        );
    }
    // START before HELLO is out of order.
    assert_eq!(
        step(
            Phase::AwaitHello,
            &header(flags::START | flags::REQ, 0, APP),
            APP
        ),
        Step::Unexpected
    );
}

#[test]
fn removing_a_session_frees_its_key_and_its_indexes() {
    let me = peer(1);
    let mut table = Sessions::new();
    let a = admitted(
        &mut table,
        session(at(0), 1, peer(2), Direction::Inbound),
        &me,
    );
    table.claim_peer(a);
    // A duplicate beside it does not own the peer's slot: removing it leaves the slot.
    let b = admitted(
        &mut table,
        session(at(0), 2, peer(2), Direction::Inbound),
        &me,
    );
    assert_eq!(table.remove(b).unwrap().conn, ConnId(2));
    assert_eq!(table.key_of_peer(&peer(2)), Some(a));
    assert!(!table.has_conn(&ConnId(2)));
    assert_eq!(table.remove(a).unwrap().conn, ConnId(1));
    assert!(!table.has_peer(&peer(2)) && table.is_empty());
    assert!(table.remove(a).is_none());
    // The last freed key is reused first.
    let c = admitted(
        &mut table,
        session(at(1), 3, peer(3), Direction::Inbound),
        &me,
    );
    assert_eq!(c, a);
    assert_eq!(table.keys(), vec![a]);
}

fn liveness() -> LivenessConfig {
    LivenessConfig {
        heartbeat: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
        max_timeout: Duration::from_secs(10),
        granularity: Duration::from_millis(100),
    }
}

#[test]
fn a_handshake_past_its_deadline_and_a_silent_peer_are_closed_and_idle_links_get_heartbeats() {
    let me = peer(1);
    let mut table = Sessions::new();
    let slow = admitted(
        &mut table,
        session(at(0), 1, peer(2), Direction::Inbound),
        &me,
    );
    let quiet = admitted(
        &mut table,
        session(at(0), 2, peer(3), Direction::Inbound),
        &me,
    );
    let _ = run(&mut table, quiet, grant(1));
    let (timeout, tick) = (Duration::from_secs(2), Duration::from_millis(100));
    // At 1 s: nothing sent to the running peer for a heartbeat interval.
    let check = table.check_timers(at(1_000), timeout, &liveness(), Duration::ZERO, tick);
    assert_eq!(check.heartbeats, vec![(quiet, Heartbeat::Credit)]);
    assert!(outputs(&mut table).is_empty());
    // At 2 s the handshake is overdue; at 3 s the running peer was silent for its limit.
    let _ = table.check_timers(at(2_000), timeout, &liveness(), Duration::ZERO, tick);
    assert_eq!(
        outputs(&mut table),
        vec![close(slow, CloseReason::HandshakeTimeout, None)]
    );
    table.remove(slow);
    let _ = table.check_timers(at(3_000), timeout, &liveness(), Duration::ZERO, tick);
    assert_eq!(
        outputs(&mut table),
        vec![close(quiet, CloseReason::PeerUnresponsive, None)]
    );
}

#[test]
fn time_the_node_itself_did_not_run_is_not_the_peers_silence() {
    let me = peer(1);
    let mut table = Sessions::new();
    let key = admitted(
        &mut table,
        session(at(0), 1, peer(2), Direction::Inbound),
        &me,
    );
    let _ = run(&mut table, key, grant(1));
    let (timeout, tick) = (Duration::from_secs(2), Duration::from_millis(100));
    // The node was suspended for 2.9 s of the 3 s: only 0.1 s of silence counts.
    let late = Duration::from_millis(2_900);
    let check = table.check_timers(at(3_000), timeout, &liveness(), late, tick);
    assert!(outputs(&mut table).is_empty(), "excused");
    assert_eq!(check.heartbeats, vec![(key, Heartbeat::Credit)]);
}
