//! The caller's dial tag: every tagged `Input::Dial` is answered by the core exactly once with a
//! final answer — a final `DialAnswer` (`Connected`, `Refused`), the session's
//! `SessionEvent::Up`, or `Action::DialResult` (dial failed, session closed first, duplicate
//! won by a session that already runs) — so a driver keeps no session state of its own.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::field_reassign_with_default
)] // test code

mod support;

use core::net::SocketAddr;
use overlay_proto::{
    Action, CloseReason, ConnId, DialId, DialOutcome, Direction, Input, Instant, Node, NodeConfig,
    OverlayError, PeerId, SessionEvent,
};
use support::node;

fn config() -> NodeConfig {
    support::token_config()
}

fn listen(id: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, id], 9415))
}

/// Nodes 1 (`a`) and 2 (`b`), joined by the connections in `links` (a's conn, b's conn); every
/// action either node produced is kept in its log.
struct Bed {
    a: Node,
    b: Node,
    links: Vec<(ConnId, ConnId)>,
    a_log: Vec<Action>,
    b_log: Vec<Action>,
    /// Actions of `b` drained by [`Bed::b_dial`], still to be carried out by [`Bed::pump`].
    b_held: Vec<Action>,
}

impl Bed {
    fn new() -> Self {
        Bed {
            a: node(1, config()),
            b: node(2, config()),
            links: Vec::new(),
            a_log: Vec::new(),
            b_log: Vec::new(),
            b_held: Vec::new(),
        }
    }

    /// A connection dialed by `b` (its `dial`, if any) to `a`, up on b's side only.
    fn b_dialed_up(&mut self, b_conn: ConnId, a_conn: ConnId, dial: Option<DialId>) {
        self.links.push((a_conn, b_conn));
        self.b.handle(
            Instant::ZERO,
            Input::ConnectionUp {
                conn: b_conn,
                peer: PeerId([1; 32]),
                direction: Direction::Outbound,
                remote: listen(1),
                dial,
                kx_group: None,
            },
        );
    }

    /// The far end (on `a`) of a connection `b` dialed.
    fn a_accepted_up(&mut self, a_conn: ConnId) {
        self.a.handle(
            Instant::ZERO,
            Input::ConnectionUp {
                conn: a_conn,
                peer: PeerId([2; 32]),
                direction: Direction::Inbound,
                remote: SocketAddr::from(([127, 0, 0, 2], 50_000 + a_conn.0 as u16)),
                dial: None,
                kx_group: None,
            },
        );
    }

    /// A connection `a` dialed to `b`, up on both sides.
    fn a_dialed(&mut self, a_conn: ConnId, b_conn: ConnId) {
        self.links.push((a_conn, b_conn));
        self.a.handle(
            Instant::ZERO,
            Input::ConnectionUp {
                conn: a_conn,
                peer: PeerId([2; 32]),
                direction: Direction::Outbound,
                remote: listen(2),
                dial: None,
                kx_group: None,
            },
        );
        self.b.handle(
            Instant::ZERO,
            Input::ConnectionUp {
                conn: b_conn,
                peer: PeerId([1; 32]),
                direction: Direction::Inbound,
                remote: SocketAddr::from(([127, 0, 0, 1], 50_000 + b_conn.0 as u16)),
                dial: None,
                kx_group: None,
            },
        );
    }

    /// Moves bytes and closes between the two nodes until both are quiet.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            for from_a in [true, false] {
                let (src, dst, log) = if from_a {
                    (&mut self.a, &mut self.b, &mut self.a_log)
                } else {
                    (&mut self.b, &mut self.a, &mut self.b_log)
                };
                let mut out = if from_a {
                    Vec::new()
                } else {
                    std::mem::take(&mut self.b_held)
                };
                while let Some(act) = src.poll_action() {
                    out.push(act);
                }
                for act in out {
                    moved = true;
                    let peer_conn = |conn: ConnId| {
                        self.links
                            .iter()
                            .find(|(a, b)| if from_a { *a == conn } else { *b == conn })
                            .map(|(a, b)| if from_a { *b } else { *a })
                    };
                    match &act {
                        Action::Transmit { conn, data } => {
                            if let Some(to) = peer_conn(*conn) {
                                dst.handle(
                                    Instant::ZERO,
                                    Input::Received {
                                        conn: to,
                                        data: data.to_bytes(),
                                    },
                                );
                            }
                        }
                        Action::Close { conn, .. } => {
                            if let Some(to) = peer_conn(*conn) {
                                dst.handle(
                                    Instant::ZERO,
                                    Input::ConnectionClosed {
                                        conn: to,
                                        error: None,
                                    },
                                );
                            }
                        }
                        _ => {}
                    }
                    log.push(act);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the two nodes never went quiet");
    }

    /// `b` handles a tagged dial; returns the answer's outcome (exactly one answer).
    fn b_dial(&mut self, request: u64, addr: SocketAddr) -> DialOutcome {
        self.b.handle(
            Instant::ZERO,
            Input::Dial {
                request: Some(request),
                addr,
            },
        );
        let mut answers = Vec::new();
        while let Some(act) = self.b.poll_action() {
            if let Action::DialAnswer {
                request: r,
                addr: at,
                outcome,
            } = &act
            {
                assert_eq!((*r, *at), (Some(request), addr));
                answers.push(*outcome);
                self.b_log.push(act);
            } else {
                self.b_held.push(act);
            }
        }
        assert_eq!(answers.len(), 1, "one DialAnswer per Input::Dial");
        answers[0]
    }

    /// `b`'s `SessionEvent::Up` actions: (conn, requests).
    fn b_ups(&self) -> Vec<(ConnId, Vec<u64>)> {
        self.b_log
            .iter()
            .filter_map(|a| match a {
                Action::Session(SessionEvent::Up { conn, requests, .. }) => {
                    Some((*conn, requests.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// `b`'s `DialResult` actions.
    fn b_results(&self) -> Vec<(Vec<u64>, Result<ConnId, OverlayError>)> {
        self.b_log
            .iter()
            .filter_map(|a| match a {
                Action::DialResult { requests, result } => Some((requests.clone(), *result)),
                _ => None,
            })
            .collect()
    }
}

fn dialing(outcome: DialOutcome) -> DialId {
    match outcome {
        DialOutcome::Dialing(dial) => dial,
        other => panic!("expected Dialing, got {other:?}"),
    }
}

#[test]
fn dialing_requests_are_answered_by_the_session_up() {
    let mut bed = Bed::new();
    let dial = dialing(bed.b_dial(5, listen(1)));
    assert!(bed.b_held.iter().any(
        |a| matches!(a, Action::Connect { dial: d, addr, .. } if *d == dial && *addr == listen(1))
    ));
    // A second caller while the dial is in flight waits on the same dial.
    assert_eq!(bed.b_dial(6, listen(1)), DialOutcome::Dialing(dial));
    bed.b_dialed_up(ConnId(3), ConnId(4), Some(dial));
    // A third caller while the session handshakes waits on the session.
    assert_eq!(
        bed.b_dial(7, listen(1)),
        DialOutcome::Handshaking(ConnId(3))
    );
    bed.a_accepted_up(ConnId(4));
    bed.pump();
    assert_eq!(bed.b_ups(), vec![(ConnId(3), vec![5, 6, 7])]);
    assert!(bed.b_results().is_empty(), "{:?}", bed.b_results());
}

#[test]
fn a_running_session_answers_connected_at_once() {
    let mut bed = Bed::new();
    bed.a_dialed(ConnId(1), ConnId(2));
    bed.pump();
    assert_eq!(bed.b.stats().sessions_running, 1);
    // A listens at 127.0.0.1:9415 (its HELLO says so): the session reaches that address.
    assert_eq!(bed.b_dial(8, listen(1)), DialOutcome::Connected(ConnId(2)));
    bed.pump();
    assert!(bed.b_results().is_empty());
    assert!(!bed
        .b_log
        .iter()
        .any(|a| matches!(a, Action::Connect { .. })));
}

#[test]
fn refused_dials_are_final() {
    let mut cfg = config();
    cfg.max_concurrent_dials = 1;
    let mut n = node(2, cfg);
    let ask = |n: &mut Node, request: u64, addr: SocketAddr| {
        n.handle(
            Instant::ZERO,
            Input::Dial {
                request: Some(request),
                addr,
            },
        );
        let mut actions = Vec::new();
        while let Some(a) = n.poll_action() {
            actions.push(a);
        }
        actions
    };
    let answer = |actions: &[Action]| {
        actions.iter().find_map(|a| match a {
            Action::DialAnswer { outcome, .. } => Some(*outcome),
            _ => None,
        })
    };
    // Its own address.
    let own = ask(&mut n, 1, listen(2));
    assert_eq!(
        answer(&own),
        Some(DialOutcome::Refused(OverlayError::Refused))
    );
    // Over max_concurrent_dials.
    assert!(matches!(
        answer(&ask(&mut n, 2, listen(7))),
        Some(DialOutcome::Dialing(_))
    ));
    let busy = ask(&mut n, 3, listen(8));
    assert_eq!(
        answer(&busy),
        Some(DialOutcome::Refused(OverlayError::Busy))
    );
    // Shutting down: the dial in flight (request 2) ends with ShuttingDown, new ones are refused.
    n.handle(Instant::ZERO, Input::Shutdown);
    let mut actions = Vec::new();
    while let Some(a) = n.poll_action() {
        actions.push(a);
    }
    assert!(actions.contains(&Action::DialResult {
        requests: vec![2],
        result: Err(OverlayError::ShuttingDown),
    }));
    let late = ask(&mut n, 4, listen(7));
    assert_eq!(
        answer(&late),
        Some(DialOutcome::Refused(OverlayError::ShuttingDown))
    );
    for refused in [own, busy, late] {
        assert!(!refused
            .iter()
            .any(|a| matches!(a, Action::DialResult { .. } | Action::Connect { .. })));
    }
}

#[test]
fn a_failed_dial_fails_its_callers_with_the_drivers_error() {
    let mut bed = Bed::new();
    let dial = dialing(bed.b_dial(9, listen(1)));
    assert_eq!(bed.b_dial(10, listen(1)), DialOutcome::Dialing(dial));
    bed.b.handle(
        Instant::ZERO,
        Input::DialFailed {
            dial,
            error: OverlayError::Timeout,
        },
    );
    bed.pump();
    assert_eq!(
        bed.b_results(),
        vec![(vec![9, 10], Err(OverlayError::Timeout))]
    );
    // A late failure report of the same dial answers nobody twice.
    bed.b.handle(
        Instant::ZERO,
        Input::DialFailed {
            dial,
            error: OverlayError::Timeout,
        },
    );
    bed.pump();
    assert_eq!(bed.b_results().len(), 1);
}

#[test]
fn a_connection_closed_before_start_fails_its_callers() {
    let mut bed = Bed::new();
    let dial = dialing(bed.b_dial(12, listen(1)));
    bed.b_dialed_up(ConnId(3), ConnId(4), Some(dial));
    bed.b.handle(
        Instant::ZERO,
        Input::ConnectionClosed {
            conn: ConnId(3),
            error: Some(OverlayError::Crypto),
        },
    );
    bed.pump();
    assert_eq!(bed.b_results(), vec![(vec![12], Err(OverlayError::Crypto))]);
    assert!(bed.b_ups().is_empty());
}

#[test]
fn a_duplicate_lost_to_a_running_session_answers_with_the_winner() {
    let mut bed = Bed::new();
    let dial = dialing(bed.b_dial(11, listen(1)));
    // Meanwhile a (the smaller peer id, whose dial wins ties) dialed b; that session runs.
    bed.a_dialed(ConnId(1), ConnId(2));
    bed.pump();
    // b's own dial comes up second and loses.
    bed.b_dialed_up(ConnId(3), ConnId(4), Some(dial));
    bed.a_accepted_up(ConnId(4));
    bed.pump();
    assert_eq!(bed.b_results(), vec![(vec![11], Ok(ConnId(2)))]);
    assert!(bed.b_log.iter().any(|a| *a
        == Action::Close {
            conn: ConnId(3),
            reason: CloseReason::Duplicate,
            winner: Some(ConnId(2)),
        }));
    // The session that answered the dial is a's (no Up carries the tag).
    assert!(bed.b_ups().iter().all(|(_, requests)| requests.is_empty()));
    assert_eq!(bed.b.stats().sessions_running, 1);
}

#[test]
fn a_duplicate_lost_to_a_handshaking_session_moves_its_callers_there() {
    let mut bed = Bed::new();
    let dial = dialing(bed.b_dial(13, listen(1)));
    bed.b_dialed_up(ConnId(3), ConnId(4), Some(dial));
    // Before b's dial finishes its handshake, a's dial arrives and wins the tie-break.
    bed.a_dialed(ConnId(1), ConnId(2));
    bed.a_accepted_up(ConnId(4));
    bed.pump();
    assert!(bed.b_log.iter().any(|a| *a
        == Action::Close {
            conn: ConnId(3),
            reason: CloseReason::Duplicate,
            winner: Some(ConnId(2)),
        }));
    assert_eq!(bed.b_ups(), vec![(ConnId(2), vec![13])]);
    assert!(bed.b_results().is_empty(), "{:?}", bed.b_results());
}

#[test]
fn untagged_dials_record_nothing_new() {
    // `request: None` (old traces, membership-style callers) never yields a DialResult or tags.
    let mut bed = Bed::new();
    bed.b.handle(
        Instant::ZERO,
        Input::Dial {
            request: None,
            addr: listen(1),
        },
    );
    let mut dial = None;
    while let Some(a) = bed.b.poll_action() {
        if let Action::DialAnswer {
            request, outcome, ..
        } = &a
        {
            assert_eq!(*request, None);
            dial = Some(dialing(*outcome));
        }
        bed.b_log.push(a);
    }
    let dial = dial.unwrap();
    bed.b.handle(
        Instant::ZERO,
        Input::DialFailed {
            dial,
            error: OverlayError::Refused,
        },
    );
    bed.pump();
    assert!(bed.b_results().is_empty());
}
