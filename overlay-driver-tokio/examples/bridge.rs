//! A bridge from the overlay's broadcast stream to stdout, one JSON object per line:
//! `{"event":"ready",...}` once listening (and connected to the peers given), then
//! `{"event":"received","id":..,"origin":..,"hops":..,"payload":..}` per message (the payload
//! as UTF-8 text when it is, else base64 in `payload_b64`), neighbour changes and lag.
//!
//! ```text
//! cargo run -p svc-overlay --example bridge -- 127.0.0.1:0 127.0.0.1:9415 | jq .
//! ```

use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::json;
use svc_overlay::{Event, Overlay};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_string());
    let ov = Overlay::bind(listen.parse()?).await?;
    let (_sender, mut events) = ov.topic().split();
    for peer in args {
        ov.dial(peer.as_str()).await?;
    }
    println!(
        "{}",
        json!({"event": "ready", "peer_id": ov.peer_id().to_string(), "addr": ov.local_addr()})
    );
    while let Some(event) = events.next().await {
        let line = match event {
            Event::Received(msg) => {
                let mut line = json!({
                    "event": "received",
                    "id": msg.id.to_string(),
                    "origin": msg.origin.to_string(),
                    "from": msg.from.to_string(),
                    "hops": msg.hops,
                });
                match std::str::from_utf8(&msg.payload) {
                    Ok(text) => line["payload"] = json!(text),
                    Err(_) => {
                        line["payload_b64"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(&msg.payload))
                    }
                }
                line
            }
            Event::NeighborUp(peer) => json!({"event": "neighbor_up", "peer": peer.to_string()}),
            Event::NeighborDown { peer, reason } => json!({
                "event": "neighbor_down",
                "peer": peer.to_string(),
                "reason": reason.label(),
            }),
            Event::Lagged { dropped } => json!({"event": "lagged", "dropped": dropped}),
            _ => continue,
        };
        println!("{line}");
    }
    Ok(())
}
