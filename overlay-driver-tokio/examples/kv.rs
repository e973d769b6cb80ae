//! A replicated key/value state: each node broadcasts the `set KEY VALUE` lines typed on its
//! stdin and applies every `set` (its own included) in message order per origin, then prints
//! its state. Gossip may deliver one origin's messages out of order (they can travel different
//! paths), so each `set` carries the origin's sequence number and a node holds early ones
//! until the gap is filled (bounded: past `MAX_EARLY` held updates it gives up on the gap).
//!
//! ```text
//! cargo run -p svc-overlay --example kv -- 127.0.0.1:9601
//! cargo run -p svc-overlay --example kv -- 127.0.0.1:9602 127.0.0.1:9601
//! set colour blue
//! ```

use std::collections::BTreeMap;

use futures_util::StreamExt;
use svc_overlay::{Event, Overlay, PeerId};

/// One update on the wire: `<seq> <key> <value>`.
fn encode(seq: u64, key: &str, value: &str) -> Vec<u8> {
    format!("{seq} {key} {value}").into_bytes()
}

fn decode(payload: &[u8]) -> Option<(u64, String, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(3, ' ');
    let seq = parts.next()?.parse().ok()?;
    Some((seq, parts.next()?.to_string(), parts.next()?.to_string()))
}

/// Updates of one origin held until the ones before them arrive, at most.
const MAX_EARLY: usize = 1024;

/// One origin's place in its sequence.
#[derive(Default)]
struct Origin {
    /// The next sequence number to apply (`None` before the first update seen: a node that
    /// joins late starts from there).
    next: Option<u64>,
    /// Updates that came before their turn.
    early: BTreeMap<u64, (String, String)>,
}

/// The state: each key's value, with the origin that set it last.
#[derive(Default)]
struct State {
    origins: BTreeMap<PeerId, Origin>,
    values: BTreeMap<String, (PeerId, String)>,
}

impl State {
    /// Takes an update; applies it and any held ones now in order. True when something changed.
    fn apply(&mut self, origin: PeerId, seq: u64, key: String, value: String) -> bool {
        let o = self.origins.entry(origin).or_default();
        let next = *o.next.get_or_insert(seq);
        if seq < next {
            return false; // stale (a copy, or one given up on)
        }
        o.early.insert(seq, (key, value));
        if o.early.len() > MAX_EARLY {
            // The gap is not coming: move on to the oldest held update.
            if let Some((&first, _)) = o.early.first_key_value() {
                o.next = Some(first);
            }
        }
        let mut changed = false;
        while let Some(expected) = o.next {
            let Some((key, value)) = o.early.remove(&expected) else {
                break;
            };
            self.values.insert(key, (origin, value));
            o.next = Some(expected + 1);
            changed = true;
        }
        changed
    }

    fn print(&self) {
        println!("# state:");
        for (key, (origin, value)) in &self.values {
            println!("  {key} = {value} (from {})", origin.short());
        }
    }
}

/// Lines typed on stdin (read on a blocking thread; `None` at end of input).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let ov = Overlay::bind(listen.parse()?).await?;
    let me = ov.peer_id();
    println!("# {} listening on {}", me.short(), ov.local_addr());
    for peer in args {
        ov.dial(peer.as_str()).await?;
    }
    let (sender, mut events) = ov.topic().split();
    let (local_tx, mut local_rx) = tokio::sync::mpsc::channel::<(u64, String, String)>(64);
    tokio::spawn(async move {
        let mut lines = stdin_lines();
        let mut seq = 0u64;
        while let Some(line) = lines.recv().await {
            let mut words = line.split_whitespace();
            let (Some("set"), Some(key), Some(value)) = (words.next(), words.next(), words.next())
            else {
                eprintln!("# usage: set KEY VALUE");
                continue;
            };
            seq += 1;
            match sender.broadcast(encode(seq, key, value)).await {
                Ok(_) => {
                    let _ = local_tx
                        .send((seq, key.to_string(), value.to_string()))
                        .await;
                }
                Err(e) => eprintln!("# not sent: {e}"),
            }
        }
    });
    let mut state = State::default();
    loop {
        tokio::select! {
            local = local_rx.recv() => match local {
                Some((seq, key, value)) => {
                    if state.apply(me, seq, key, value) {
                        state.print();
                    }
                }
                None => break,
            },
            event = events.next() => match event {
                Some(Event::Received(msg)) => {
                    if let Some((seq, key, value)) = decode(&msg.payload) {
                        if state.apply(msg.origin, seq, key, value) {
                            state.print();
                        }
                    }
                }
                Some(Event::Lagged { dropped }) => eprintln!("# missed {dropped} updates"),
                Some(_) => {}
                None => break,
            },
        }
    }
    ov.shutdown().await;
    Ok(())
}
