//! Trace replay: feed every recorded input into a fresh core built from the trace header
//! (config, identity, seed) and check each produced action against the recording.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::rc::Rc;

use overlay_proto::trace::{ActionDigest, Divergence, Replayer, TraceError, TraceReader};
use overlay_proto::Input;
use overlay_proto::{Action, SessionEvent};

use crate::SimError;

/// How to replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Print every input and its actions (a readable timeline).
    pub verbose: bool,
    /// Stop after this many inputs.
    pub until: Option<u64>,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutcome {
    /// Inputs replayed (the diverging one included).
    pub inputs: u64,
    /// Actions the fresh core produced.
    pub actions: u64,
    /// The first divergence, if any (the replay stops there).
    pub divergence: Option<Box<Divergence>>,
    /// Digest of every action the fresh core produced, in order.
    pub digest: [u8; 32],
    /// True when `--until` stopped the replay before the end of the trace.
    pub stopped_early: bool,
    /// True when the trace ends in a partly written record (the writer stopped mid-record);
    /// everything before it was replayed.
    pub truncated: bool,
}

impl ReplayOutcome {
    /// True when no divergence was found.
    pub fn passed(&self) -> bool {
        self.divergence.is_none()
    }
}

/// A reader that remembers whether it hit the end of its input, to tell a trace cut short
/// mid-record from a corrupt one.
struct EofAware<R> {
    inner: R,
    eof: Rc<Cell<bool>>,
}

impl<R: Read> Read for EofAware<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        Ok(n)
    }
}

/// Replays the trace file at `path`, writing the report to `out`.
pub fn replay_file(
    path: &Path,
    options: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<ReplayOutcome, SimError> {
    let file = File::open(path).map_err(|source| SimError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    replay(BufReader::new(file), options, out)
}

/// Replays a trace from `input`, writing the report (timeline when verbose, the divergence if
/// any, the `replay:` summary line and the `digest:` line) to `out`.
pub fn replay<R: Read>(
    input: R,
    options: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<ReplayOutcome, SimError> {
    let eof = Rc::new(Cell::new(false));
    let (mut reader, header) = TraceReader::open(EofAware {
        inner: input,
        eof: eof.clone(),
    })?;
    writeln!(
        out,
        "trace: format {}, written by overlay-proto {}, node {}, seed {}",
        header.format_version, header.crate_version, header.identity.peer_id, header.seed
    )?;
    if header.crate_version != env!("CARGO_PKG_VERSION") {
        writeln!(
            out,
            "warning: the trace was written by overlay-proto {}, this is {}; a divergence may \
             come from a changed core",
            header.crate_version,
            env!("CARGO_PKG_VERSION")
        )?;
    }
    let mut replayer = Replayer::new(&header)?;
    let mut digest = ActionDigest::new();
    let mut outcome = ReplayOutcome {
        inputs: 0,
        actions: 0,
        divergence: None,
        digest: [0; 32],
        stopped_early: false,
        truncated: false,
    };
    let mut expected_seq = 0u64;
    loop {
        if options.until.is_some_and(|n| replayer.inputs() >= n) {
            outcome.stopped_early = true;
            break;
        }
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(TraceError::Corrupt(_)) if eof.get() => {
                outcome.truncated = true;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if record.seq != expected_seq {
            return Err(SimError::Sequence {
                expected: expected_seq,
                found: record.seq,
            });
        }
        expected_seq += 1;
        match replayer.step(&record) {
            Ok(actions) => {
                for a in &actions {
                    digest.update(a);
                }
                if options.verbose {
                    writeln!(
                        out,
                        "{}",
                        timeline_line(record.seq, record.now, &record.input, &actions)
                    )?;
                }
            }
            Err(divergence) => {
                for a in &divergence.actual {
                    digest.update(a);
                }
                write_divergence(out, &divergence)?;
                outcome.divergence = Some(divergence);
                break;
            }
        }
    }
    outcome.inputs = replayer.inputs();
    outcome.actions = replayer.actions();
    outcome.digest = digest.finish();
    if outcome.truncated {
        writeln!(
            out,
            "note: the trace ends in a partly written record after #{} (the writer stopped \
             mid-record); everything before it was replayed",
            expected_seq.saturating_sub(1)
        )?;
    }
    if outcome.stopped_early {
        writeln!(out, "stopped after {} inputs (--until)", outcome.inputs)?;
    }
    let divergences = usize::from(outcome.divergence.is_some());
    writeln!(
        out,
        "replay: {} inputs, {} actions, {} divergence{}",
        outcome.inputs,
        outcome.actions,
        divergences,
        if divergences == 1 { "" } else { "s" }
    )?;
    writeln!(out, "digest: {}", hex::encode(outcome.digest))?;
    Ok(outcome)
}

/// One line of the `--verbose` timeline:
/// `#12 t=1.234567s received c3 (1084 bytes) -> transmit c5 1122 bytes, deliver id=ab12… hops=2`.
pub fn timeline_line(
    seq: u64,
    now: overlay_proto::Instant,
    input: &Input,
    actions: &[Action],
) -> String {
    let acts = if actions.is_empty() {
        "(no actions)".to_string()
    } else {
        actions
            .iter()
            .map(describe_action)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "#{seq} t={:.6}s {} -> {acts}",
        now.since_epoch().as_secs_f64(),
        describe_input(input)
    )
}

/// A short description of an input.
pub fn describe_input(input: &Input) -> String {
    match input {
        Input::ConnectionUp {
            conn,
            peer,
            direction,
            remote,
            dial,
            ..
        } => {
            let dial = dial.map_or_else(String::new, |d| format!(" {d}"));
            format!(
                "connection_up {conn} {} peer={} remote={remote}{dial}",
                direction.as_str(),
                peer.short()
            )
        }
        Input::DialFailed { dial, error } => format!("dial_failed {dial} ({})", error.label()),
        Input::Received { conn, data } | Input::ReceivedPrechecked { conn, data, .. } => {
            format!("received {conn} ({} bytes)", data.len())
        }
        Input::ConnectionClosed { conn, error } => match error {
            Some(e) => format!("connection_closed {conn} ({})", e.label()),
            None => format!("connection_closed {conn}"),
        },
        Input::Timeout => "timeout".to_string(),
        Input::Broadcast { request, payload } => {
            format!("broadcast r{request} ({} bytes)", payload.len())
        }
        Input::Publish {
            request,
            topic,
            payload,
        } => format!(
            "publish r{request} topic={} ({} bytes)",
            short_topic(topic),
            payload.len()
        ),
        Input::Join(topic) => format!("join {}", short_topic(topic)),
        Input::Leave(topic) => format!("leave {}", short_topic(topic)),
        Input::SendDirect {
            request,
            peer,
            payload,
        } => {
            format!(
                "send_direct r{request} to {} ({} bytes)",
                peer.short(),
                payload.len()
            )
        }
        Input::Dial { request, addr } => match request {
            Some(r) => format!("dial r{r} {addr}"),
            None => format!("dial {addr}"),
        },
        Input::PeersDiscovered { addrs } => {
            let list: Vec<String> = addrs.iter().take(4).map(ToString::to_string).collect();
            let more = if addrs.len() > 4 {
                format!(" +{}", addrs.len() - 4)
            } else {
                String::new()
            };
            format!("peers_discovered [{}{more}]", list.join(" "))
        }
        Input::Reconfigure(live) => format!(
            "reconfigure alpha={} beta={} rate={}/s burst={}",
            live.alpha, live.beta, live.peer_rate_per_s, live.peer_rate_burst
        ),
        Input::Shutdown => "shutdown".to_string(),
        Input::Verdict { id, verdict } => format!("verdict v{id} {verdict:?}"),
        Input::ClientConnectionUp { conn, remote, .. } => format!("client up {conn} from {remote}"),
        Input::SendToClient {
            request,
            client,
            payload,
        } => format!(
            "send #{request} to client {client} ({} bytes)",
            payload.len()
        ),
    }
}

fn short_id(id: &overlay_proto::MessageId) -> String {
    format!("{}…", hex::encode(&id.0[..2]))
}

fn short_topic(topic: &overlay_proto::TopicId) -> String {
    format!("{}…", hex::encode(&topic.0[..4]))
}

/// A short description of an action.
pub fn describe_action(action: &Action) -> String {
    match action {
        Action::Transmit { conn, data } => format!("transmit {conn} {} bytes", data.len()),
        Action::Connect { dial, addr, peer } => match peer {
            Some(p) => format!("connect {dial} {addr} peer={}", p.short()),
            None => format!("connect {dial} {addr}"),
        },
        Action::Close {
            conn,
            reason,
            winner,
        } => match winner {
            Some(w) => format!("close {conn} ({}, winner {w})", reason.label()),
            None => format!("close {conn} ({})", reason.label()),
        },
        Action::DialAnswer {
            request,
            addr,
            outcome,
        } => match request {
            Some(r) => format!("dial r{r} {addr}: {outcome:?}"),
            None => format!("dial {addr}: {outcome:?}"),
        },
        Action::DialResult { requests, result } => match result {
            Ok(conn) => format!("dial_result {requests:?} {conn}"),
            Err(e) => format!("dial_result {requests:?} error={}", e.label()),
        },
        Action::Deliver(d) => format!("deliver id={} hops={}", short_id(&d.id), d.hops),
        Action::Validate { id, delivery } => {
            format!("validate v{id} id={}", short_id(&delivery.id))
        }
        Action::DirectMessage { from, payload } => {
            format!("direct from={} ({} bytes)", from.short(), payload.len())
        }
        Action::BroadcastResult { request, result } => match result {
            Ok(id) => format!("broadcast_result r{request} id={}", short_id(id)),
            Err(e) => format!("broadcast_result r{request} error={}", e.label()),
        },
        Action::Joined { topic, result } => match result {
            Ok(new) => format!("joined {} new={new}", short_topic(topic)),
            Err(e) => format!("joined {} error={}", short_topic(topic), e.label()),
        },
        Action::Left { topic, result } => match result {
            Ok(was) => format!("left {} was_in={was}", short_topic(topic)),
            Err(e) => format!("left {} error={}", short_topic(topic), e.label()),
        },
        Action::SendResult { request, result } => match result {
            Ok(()) => format!("send_result r{request} ok"),
            Err(e) => format!("send_result r{request} error={}", e.label()),
        },
        Action::Session(SessionEvent::Up {
            conn,
            peer,
            direction,
            ..
        }) => {
            format!(
                "session_up {conn} {} peer={}",
                direction.as_str(),
                peer.short()
            )
        }
        Action::Session(SessionEvent::Down { conn, peer, reason }) => {
            format!(
                "session_down {conn} peer={} ({})",
                peer.short(),
                reason.label()
            )
        }
        Action::TopicNeighbor {
            topic,
            peer,
            change,
        } => match change {
            overlay_proto::NeighborChange::Up => {
                format!("neighbor_up {} peer={}", short_topic(topic), peer.short())
            }
            overlay_proto::NeighborChange::Down(reason) => format!(
                "neighbor_down {} peer={} ({})",
                short_topic(topic),
                peer.short(),
                reason.label()
            ),
        },
        Action::Rejected { conn, reason, .. } => match conn {
            Some(c) => format!("rejected {c} {}", reason.label()),
            None => format!("rejected {}", reason.label()),
        },
        Action::Readiness { ready, saturated } => {
            if *ready {
                "readiness ready".to_string()
            } else {
                format!("readiness degraded [{}]", saturated.join(" "))
            }
        }
        Action::Reconfigured(result) => match result.as_ref() {
            Ok(_) => "reconfigured".to_string(),
            Err(e) => format!("reconfigure refused: {e}"),
        },
        Action::ShutdownComplete => "shutdown_complete".to_string(),
        Action::Client(overlay_proto::ClientEvent::Up { conn, remote }) => {
            format!("client {conn} up from {remote}")
        }
        Action::Client(overlay_proto::ClientEvent::Down { conn, reason }) => {
            format!("client {conn} down ({})", reason.label())
        }
        Action::ClientMessage { client, payload } => {
            format!("direct from client {client} ({} bytes)", payload.len())
        }
    }
}

fn write_action_list(out: &mut dyn Write, label: &str, actions: &[Action]) -> std::io::Result<()> {
    writeln!(out, "  {label} ({} actions):", actions.len())?;
    for (i, a) in actions.iter().enumerate() {
        writeln!(out, "    [{i}] {}", describe_action(a))?;
    }
    Ok(())
}

/// Prints a divergence: the input, the expected and the actual actions, and where they first
/// differ.
pub fn write_divergence(out: &mut dyn Write, d: &Divergence) -> Result<(), SimError> {
    writeln!(
        out,
        "divergence at #{} t={:.6}s",
        d.seq,
        d.now.since_epoch().as_secs_f64()
    )?;
    writeln!(out, "  input: {}", describe_input(&d.input))?;
    write_action_list(out, "expected", &d.expected)?;
    write_action_list(out, "actual", &d.actual)?;
    let first = d.expected.iter().zip(&d.actual).position(|(e, a)| e != a);
    match first {
        Some(i) => {
            writeln!(out, "  first difference: action [{i}]")?;
            let (expected, actual) = (d.expected.get(i), d.actual.get(i));
            match (expected, actual) {
                (
                    Some(Action::Transmit { data: e, .. }),
                    Some(Action::Transmit { data: a, .. }),
                ) => write_byte_difference(out, "transmitted bytes", &e.to_bytes(), &a.to_bytes())?,
                (Some(Action::Deliver(e)), Some(Action::Deliver(a))) => {
                    write_byte_difference(out, "delivered payloads", &e.payload, &a.payload)?
                }
                (Some(e), Some(a)) if describe_action(e) == describe_action(a) => {
                    writeln!(out, "  expected [{i}]: {}", clip(&format!("{e:?}")))?;
                    writeln!(out, "  actual   [{i}]: {}", clip(&format!("{a:?}")))?;
                }
                _ => {}
            }
        }
        None if d.expected.len() != d.actual.len() => writeln!(
            out,
            "  first difference: action [{}] (expected {} actions, got {})",
            d.expected.len().min(d.actual.len()),
            d.expected.len(),
            d.actual.len()
        )?,
        None => writeln!(
            out,
            "  the actions are equal but the recorded digest does not match them (the record's \
             digest field was altered)"
        )?,
    }
    Ok(())
}

fn clip(s: &str) -> String {
    const MAX: usize = 400;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn write_byte_difference(
    out: &mut dyn Write,
    what: &str,
    expected: &[u8],
    actual: &[u8],
) -> std::io::Result<()> {
    match expected.iter().zip(actual).position(|(x, y)| x != y) {
        Some(b) => writeln!(
            out,
            "  {what} differ from offset {b}: expected {:02x}, actual {:02x} ({} and {} bytes)",
            expected.get(b).copied().unwrap_or(0),
            actual.get(b).copied().unwrap_or(0),
            expected.len(),
            actual.len()
        ),
        None if expected.len() != actual.len() => writeln!(
            out,
            "  {what} differ in length: expected {} bytes, actual {}",
            expected.len(),
            actual.len()
        ),
        None => Ok(()),
    }
}
