//! The signals the daemon acts on: SIGTERM and SIGINT drain and stop, SIGHUP reloads.

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT (named): drain and stop.
    Shutdown(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
}

/// Listens for the daemon's signals from creation on (a SIGHUP then no longer kills the
/// process).
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers. A handler that cannot be installed is logged and skipped
    /// (SIGINT through `ctrl_c` always works).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate())
                .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
                .ok();
            let hup = signal(SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; no live reload"))
                .ok();
            Signals { term, hup }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// The next signal. Cancel-safe.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let term = async {
                match self.term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let hup = async {
                match self.hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Shutdown("SIGINT"),
                _ = term => Signal::Shutdown("SIGTERM"),
                _ = hup => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Shutdown("SIGINT")
        }
    }
}
