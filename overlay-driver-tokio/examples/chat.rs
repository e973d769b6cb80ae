//! Chat over the overlay: every line typed on stdin is broadcast, every message received is
//! printed with its sender.
//!
//! ```text
//! cargo run -p svc-overlay --example chat -- 127.0.0.1:9501
//! cargo run -p svc-overlay --example chat -- 127.0.0.1:9502 127.0.0.1:9501
//! ```
//! The first argument is where this node listens (loopback: dev identity and dev key), the
//! others are peers to dial (`host:port`, names allowed).

use futures_util::StreamExt;
use svc_overlay::{Event, Overlay};

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
    println!(
        "# {} listening on {}",
        ov.peer_id().short(),
        ov.local_addr()
    );
    let (sender, mut events) = ov.topic().split();
    for peer in args {
        let session = ov.dial(peer.as_str()).await?;
        println!("# connected to {}", session.peer_id().short());
    }
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::Received(msg) => println!(
                    "<{}> {}",
                    msg.origin.short(),
                    String::from_utf8_lossy(&msg.payload)
                ),
                Event::NeighborUp(peer) => println!("# {} joined", peer.short()),
                Event::NeighborDown { peer, reason } => {
                    println!("# {} left ({})", peer.short(), reason.label())
                }
                Event::Lagged { dropped } => println!("# missed {dropped} messages"),
                _ => {}
            }
        }
    });
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        if let Err(e) = sender.broadcast(line.into_bytes()).await {
            eprintln!("# not sent: {e}");
        }
    }
    ov.shutdown().await;
    Ok(())
}
