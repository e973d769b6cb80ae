//! Trace replay: traces recorded from two hand-driven cores replay without divergence; a
//! corrupted record is caught at its sequence number, by the library and by the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on failure by design

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use overlay_proto::trace::{TraceHeader, TraceReader, TraceRecord, TraceWriter};
use overlay_proto::Action;
use overlay_proto::Input;
use overlay_sim::pair::{record_pair, PairScript};
use overlay_sim::replay::{replay, ReplayOptions};

const MARKER: &[u8] = b"pair demo: first from A";

fn traces() -> overlay_sim::pair::PairTraces {
    let t = record_pair(&PairScript::demo(42)).unwrap();
    // The session opened and gossip flowed both ways.
    assert!(
        t.delivered[1].iter().any(|p| p.as_ref() == MARKER),
        "B got A's broadcast"
    );
    assert_eq!(t.delivered[0].len(), 1, "A got B's broadcast");
    assert_eq!(t.delivered[1].len(), 3);
    t
}

fn read_all(bytes: &[u8]) -> (TraceHeader, Vec<TraceRecord>) {
    let (mut reader, header) = TraceReader::open(bytes).unwrap();
    let mut records = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        records.push(r);
    }
    (header, records)
}

fn rewrite(header: &TraceHeader, records: &[TraceRecord]) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), header).unwrap();
    for r in records {
        w.record(r.now, &r.input, &r.actions).unwrap();
    }
    w.into_inner()
}

fn run(bytes: &[u8], options: ReplayOptions) -> (overlay_sim::replay::ReplayOutcome, String) {
    let mut out = Vec::new();
    let outcome = replay(bytes, &options, &mut out).unwrap();
    (outcome, String::from_utf8(out).unwrap())
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

#[test]
fn recorded_traces_replay_without_divergence() {
    let t = traces();
    for (bytes, inputs) in [(&t.a, t.inputs[0]), (&t.b, t.inputs[1])] {
        let (outcome, text) = run(bytes, ReplayOptions::default());
        assert!(outcome.passed(), "{text}");
        assert_eq!(outcome.inputs, inputs);
        assert!(outcome.actions > 0);
        let summary = format!(
            "replay: {} inputs, {} actions, 0 divergences",
            inputs, outcome.actions
        );
        assert!(text.contains(&summary), "{text}");
        assert_eq!(
            last_line(&text),
            format!("digest: {}", hex::encode(outcome.digest))
        );
        // Same trace, same digest.
        let (again, _) = run(bytes, ReplayOptions::default());
        assert_eq!(again.digest, outcome.digest);
    }
    let (a, _) = run(&t.a, ReplayOptions::default());
    let (b, _) = run(&t.b, ReplayOptions::default());
    assert_ne!(a.digest, b.digest);
}

#[test]
fn verbose_prints_a_timeline_and_until_stops_early() {
    let t = traces();
    let (outcome, text) = run(
        &t.b,
        ReplayOptions {
            verbose: true,
            until: None,
        },
    );
    assert!(outcome.passed());
    let timeline: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(timeline.len() as u64, outcome.inputs);
    assert!(
        timeline[0].starts_with("#0 t=0.000000s "),
        "{}",
        timeline[0]
    );
    assert!(
        timeline
            .iter()
            .any(|l| l.contains(" received c") && l.contains(" -> transmit c")),
        "{text}"
    );
    assert!(
        timeline
            .iter()
            .any(|l| l.contains("deliver id=") && l.contains("hops=1")),
        "{text}"
    );
    assert!(timeline
        .iter()
        .any(|l| l.contains("connection_up c") && l.contains("inbound")));

    let (short, text) = run(
        &t.b,
        ReplayOptions {
            verbose: false,
            until: Some(5),
        },
    );
    assert!(short.passed() && short.stopped_early);
    assert_eq!(short.inputs, 5);
    assert!(text.contains("replay: 5 inputs"), "{text}");
}

#[test]
fn a_modified_recorded_action_is_a_divergence_at_its_record() {
    let t = traces();
    let (header, mut records) = read_all(&t.b);
    let idx = records
        .iter()
        .position(|r| r.actions.iter().any(|a| matches!(a, Action::Deliver(_))))
        .unwrap();
    let target = records[idx].seq;
    for a in &mut records[idx].actions {
        if let Action::Deliver(d) = a {
            d.payload = Bytes::from_static(b"not what was delivered");
        }
    }
    let corrupted = rewrite(&header, &records);
    let (outcome, text) = run(&corrupted, ReplayOptions::default());
    let d = outcome.divergence.as_ref().expect("divergence");
    assert_eq!(d.seq, target);
    assert_eq!(outcome.inputs, target + 1, "stops at the divergence");
    assert!(
        text.contains(&format!("divergence at #{target} ")),
        "{text}"
    );
    assert!(text.contains("  input: received c"), "{text}");
    assert!(
        text.contains("  expected (") && text.contains("  actual ("),
        "{text}"
    );
    assert!(
        !text.contains("0 divergences") && text.contains(", 1 divergence\n"),
        "{text}"
    );
    assert!(last_line(&text).starts_with("digest: "));
}

#[test]
fn a_flipped_byte_in_a_received_payload_is_a_divergence_at_its_record() {
    let t = traces();
    let (_, records) = read_all(&t.b);
    let target = records
        .iter()
        .find(|r| match &r.input {
            Input::Received { data, .. } => data.windows(MARKER.len()).any(|w| w == MARKER),
            _ => false,
        })
        .map(|r| r.seq)
        .unwrap();
    // The first occurrence of the marker in the file is that record's input (records are
    // written input first, and no earlier record carries this payload).
    let mut bytes = t.b.clone();
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .unwrap();
    bytes[at + 11] ^= 0x20;
    let (outcome, text) = run(&bytes, ReplayOptions::default());
    let d = outcome.divergence.as_ref().expect("divergence");
    assert_eq!(d.seq, target, "{text}");
    // Ids are content-checked: the replayed node sees a message whose id no longer matches
    // its payload and rejects it (400, bad_id) where the recording delivered it.
    assert!(text.contains("rejected c2 bad_id"), "{text}");
    assert!(d.actual.iter().any(|a| matches!(
        a,
        Action::Rejected {
            reason: overlay_proto::RejectReason::BadId,
            ..
        }
    )));
    assert!(d
        .expected
        .iter()
        .any(|a| matches!(a, Action::Deliver(x) if x.payload.as_ref() == MARKER)));

    // A flipped byte in the recorded delivery (the marker's second occurrence, in that
    // record's actions) is a payload difference.
    let mut bytes = t.b.clone();
    let second = at
        + 1
        + bytes[at + 1..]
            .windows(MARKER.len())
            .position(|w| w == MARKER)
            .unwrap();
    bytes[second + 11] ^= 0x20;
    let (outcome, text) = run(&bytes, ReplayOptions::default());
    let d = outcome.divergence.as_ref().expect("divergence");
    assert_eq!(d.seq, target, "{text}");
    assert!(
        text.contains("delivered payloads differ from offset 11"),
        "{text}"
    );
}

#[test]
fn a_trace_cut_mid_record_replays_what_it_has() {
    let t = traces();
    let cut = &t.a[..t.a.len() - 3];
    let (outcome, text) = run(cut, ReplayOptions::default());
    assert!(outcome.passed() && outcome.truncated, "{text}");
    assert_eq!(outcome.inputs, t.inputs[0] - 1);
    assert!(text.contains("partly written record"), "{text}");
}

#[test]
fn not_a_trace_is_an_error() {
    let mut out = Vec::new();
    assert!(replay(&b"hello"[..], &ReplayOptions::default(), &mut out).is_err());
}

static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);

fn temp_file(bytes: &[u8]) -> PathBuf {
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "overlay-sim-replay-test-{}-{n}.trace",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn binary(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overlay-sim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_binary_exits_0_for_a_clean_trace_and_1_at_a_divergence() {
    let t = traces();
    let good = temp_file(&t.b);
    let (code, text) = binary(&["replay", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 0 divergences"), "{text}");
    assert!(last_line(&text).starts_with("digest: "));
    let (code, verbose) = binary(&[
        "replay",
        good.to_str().unwrap(),
        "--verbose",
        "--until",
        "3",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        verbose.lines().filter(|l| l.starts_with('#')).count(),
        3,
        "{verbose}"
    );

    let (header, mut records) = read_all(&t.b);
    let idx = records
        .iter()
        .position(|r| {
            r.actions
                .iter()
                .any(|a| matches!(a, Action::Transmit { .. }))
        })
        .unwrap();
    for a in &mut records[idx].actions {
        if let Action::Transmit { data, .. } = a {
            let mut v = data.to_bytes().to_vec();
            v[0] ^= 0xff;
            *data = Bytes::from(v).into();
            break;
        }
    }
    let bad = temp_file(&rewrite(&header, &records));
    let (code, text) = binary(&["replay", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("divergence at #{} ", records[idx].seq)),
        "{text}"
    );
    assert!(
        text.contains("transmitted bytes differ from offset 0"),
        "{text}"
    );
    let (code, _) = binary(&["replay", "/nonexistent/overlay-sim.trace"]);
    assert_eq!(code, 2);
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}
