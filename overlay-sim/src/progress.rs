//! Progress bars for long single runs (`scale` at 1000 nodes, `chaos` at 64 nodes), drawn on
//! stderr with `indicatif`. Quiet unless the `overlay-sim` command line turned them on with
//! [`enable`] *and* stderr is a terminal: library callers, tests, pipes and CI logs see nothing,
//! and stdout (the report) is never touched.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets runs started from now on draw progress bars (when stderr is a terminal).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// A progress bar, or nothing when progress is off.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `len` steps counted in `unit`, labelled `label`; hidden when progress is off.
    pub fn new(len: u64, unit: &str, label: &str) -> Progress {
        if !ENABLED.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let template = format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}}) {{msg}}"
        );
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress(Some(bar))
    }

    /// A bar that never draws.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Moves to step `pos`.
    pub fn set_position(&self, pos: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(pos);
        }
    }

    /// Shows `msg` after the bar (the current phase).
    pub fn set_message(&self, msg: &'static str) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_enabled_and_on_a_terminal() {
        // Under `cargo test` stderr is captured or piped in CI; before `enable` it is off
        // everywhere.
        if !ENABLED.load(Ordering::Relaxed) {
            assert!(Progress::new(10, "steps", "test").0.is_none());
        }
        let p = Progress::hidden();
        p.inc(1);
        p.set_position(5);
        p.set_message("phase");
        assert!(p.0.is_none());
    }
}
