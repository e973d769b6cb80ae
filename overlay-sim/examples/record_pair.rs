//! Records the two traces of a short two-node run (no daemon needed), to try `overlay-sim
//! replay` on: `cargo run -p overlay-sim --example record_pair -- a.trace b.trace`.

use std::process::ExitCode;

use overlay_sim::pair::{record_pair, PairScript};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        eprintln!("usage: record_pair A.trace B.trace [SEED]");
        return ExitCode::from(2);
    };
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(42);
    let traces = match record_pair(&PairScript::demo(seed)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("record_pair: {e}");
            return ExitCode::from(1);
        }
    };
    for (path, bytes) in [(a, &traces.a), (b, &traces.b)] {
        if let Err(e) = std::fs::write(path, bytes) {
            eprintln!("writing {path}: {e}");
            return ExitCode::from(1);
        }
    }
    println!(
        "{a}: {} inputs, {b}: {} inputs",
        traces.inputs[0], traces.inputs[1]
    );
    ExitCode::SUCCESS
}
