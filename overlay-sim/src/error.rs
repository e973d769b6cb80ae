//! Errors of the simulator: bad scenarios, unreadable traces, IO.

use std::path::PathBuf;

use overlay_proto::trace::TraceError;
use overlay_proto::ConfigError;

/// Anything that stops a run before it can report figures or a replay verdict.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Writing the report failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A scenario file is not valid TOML for a scenario.
    #[error("scenario file {path}: {message}")]
    ScenarioFile {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A scenario parameter is out of range.
    #[error("invalid scenario: {0}")]
    Scenario(String),
    /// The node configuration derived from the scenario does not validate.
    #[error("node configuration: {0}")]
    Config(#[from] ConfigError),
    /// The trace could not be read.
    #[error("trace: {0}")]
    Trace(#[from] TraceError),
    /// A trace record's sequence number is not the next one (a record is missing or was
    /// edited).
    #[error("trace record out of sequence: expected #{expected}, found #{found}")]
    Sequence {
        /// The sequence number that should come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// Serialising the JSON report failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
