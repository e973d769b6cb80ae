//! Trace capture and replay: a recorded node replays to identical actions; a corrupted record
//! is reported as a divergence at the right place.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)] // test code

use bytes::Bytes;
use core::net::SocketAddr;
use core::time::Duration;
use overlay_proto::trace::{
    Replayer, TraceError, TraceHeader, TraceReader, TraceWriter, TRACE_FORMAT_VERSION,
};
use overlay_proto::{
    Action, ConnId, Direction, Input, Instant, Node, NodeConfig, NodeIdentity, PeerId,
};

fn cfg() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.auth.require_token = false;
    c.origin_auth = overlay_proto::OriginAuth::None;
    c
}

fn identity(id: u8) -> NodeIdentity {
    NodeIdentity::new(
        PeerId([id; 32]),
        Some(SocketAddr::from(([127, 0, 0, id], 9415))),
    )
}

/// Runs two connected nodes for a while, recording node A; returns the trace bytes.
fn record() -> Vec<u8> {
    record_as(TRACE_FORMAT_VERSION)
}

/// [`record`] as a writer of trace format `version` would have written it (format 4 and
/// older did not record `Action::TopicNeighbor`).
fn record_as(version: u32) -> Vec<u8> {
    let mut header = TraceHeader::new(cfg(), identity(1), 11);
    header.format_version = version;
    let mut writer = TraceWriter::new(Vec::new(), &header).unwrap();
    let mut a = header.build_node().unwrap();
    let mut b = Node::new(cfg(), identity(2), 22).unwrap();
    let mut now = Instant::ZERO;
    let mut to_a: Vec<Input> = vec![Input::ConnectionUp {
        conn: ConnId(1),
        peer: PeerId([2; 32]),
        direction: Direction::Outbound,
        remote: SocketAddr::from(([127, 0, 0, 2], 9415)),
        dial: None,
        kx_group: None,
    }];
    b.handle(
        now,
        Input::ConnectionUp {
            conn: ConnId(2),
            peer: PeerId([1; 32]),
            direction: Direction::Inbound,
            remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
            dial: None,
            kx_group: None,
        },
    );
    for step in 0..200u64 {
        now += Duration::from_millis(7);
        if step % 20 == 5 {
            to_a.push(Input::Broadcast {
                request: step,
                payload: Bytes::from(vec![step as u8; 300]),
            });
        }
        to_a.push(Input::Timeout);
        for input in std::mem::take(&mut to_a) {
            a.handle(now, input.clone());
            let mut actions = Vec::new();
            while let Some(act) = a.poll_action() {
                if version < 5 && matches!(act, Action::TopicNeighbor { .. }) {
                    continue;
                }
                actions.push(act);
            }
            writer.record(now, &input, &actions).unwrap();
            for act in actions {
                if let Action::Transmit { data, .. } = act {
                    b.handle(
                        now,
                        Input::Received {
                            conn: ConnId(2),
                            data: data.to_bytes(),
                        },
                    );
                }
            }
        }
        b.handle(now, Input::Timeout);
        while let Some(act) = b.poll_action() {
            if let Action::Transmit { data, .. } = act {
                to_a.push(Input::Received {
                    conn: ConnId(1),
                    data: data.to_bytes(),
                });
            }
        }
    }
    writer.flush().unwrap();
    writer.into_inner()
}

fn replay(bytes: &[u8]) -> Result<(u64, u64), Box<overlay_proto::trace::Divergence>> {
    let (mut reader, header) = TraceReader::open(bytes).unwrap();
    let mut replayer = Replayer::new(&header).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        replayer.step(&record)?;
    }
    Ok((replayer.inputs(), replayer.actions()))
}

#[test]
fn a_recorded_node_replays_with_zero_divergences() {
    let bytes = record();
    let (inputs, actions) = replay(&bytes).unwrap();
    assert!(inputs > 200, "inputs {inputs}");
    // HELLO, START, session up, then per broadcast a result and a transmit.
    assert!(actions >= 3 + 2 * 10, "actions {actions}");
}

#[test]
fn neighbour_actions_are_recorded_and_traces_of_older_builds_are_refused() {
    let bytes = record();
    let (mut reader, _) = TraceReader::open(&bytes[..]).unwrap();
    let mut neighbours = 0;
    while let Some(record) = reader.next_record().unwrap() {
        neighbours += record
            .actions
            .iter()
            .filter(|a| matches!(a, Action::TopicNeighbor { .. }))
            .count();
    }
    assert_eq!(neighbours, 1, "B comes up in the default topic");
    // A format 5 trace was recorded by a node whose HELLO had no `graft_miss` key: this
    // build could only diverge from it, so it is refused up front.
    let old = record_as(5);
    assert!(matches!(
        TraceReader::open(&old[..]),
        Err(TraceError::UnsupportedVersion(5))
    ));
}

#[test]
fn a_changed_record_is_reported_at_its_sequence_number() {
    let bytes = record();
    let (mut reader, header) = TraceReader::open(&bytes[..]).unwrap();
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        records.push(r);
    }
    // Change the payload of the first broadcast input.
    let target = records
        .iter()
        .position(|r| matches!(r.input, Input::Broadcast { .. }))
        .unwrap();
    if let Input::Broadcast { payload, .. } = &mut records[target].input {
        *payload = Bytes::from_static(b"tampered");
    }
    let mut rewritten = TraceWriter::new(Vec::new(), &header).unwrap();
    for r in &records {
        rewritten.record(r.now, &r.input, &r.actions).unwrap();
    }
    let divergence = replay(&rewritten.into_inner()).unwrap_err();
    assert_eq!(divergence.seq, target as u64);
    assert_ne!(divergence.expected, divergence.actual);
}

#[test]
fn bad_magic_and_truncated_records_are_typed_errors() {
    assert!(matches!(
        TraceReader::open(&b"not a trace"[..]),
        Err(TraceError::BadMagic)
    ));
    let bytes = record();
    let cut = &bytes[..bytes.len() - 5];
    let (mut reader, _) = TraceReader::open(cut).unwrap();
    let mut last = Ok(None);
    for _ in 0..100_000 {
        last = reader.next_record();
        if !matches!(last, Ok(Some(_))) {
            break;
        }
    }
    assert!(
        matches!(last, Err(TraceError::Corrupt(_))),
        "truncation must be reported"
    );
}
