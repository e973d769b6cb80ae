//! `overlay-sim`: the simulator's command line. See [`overlay_sim::cli`].

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use overlay_sim::cli::{run, Cli};
use overlay_sim::EXIT_ERROR;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Progress bars on stderr, drawn only when it is a terminal.
    overlay_sim::progress::enable();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = match run(&cli, &mut out) {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            eprintln!("overlay-sim: {e}");
            EXIT_ERROR
        }
    };
    let _ = out.flush();
    ExitCode::from(code)
}
