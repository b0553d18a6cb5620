//! Errors of the benchmark harness.

use std::path::PathBuf;

/// Why a benchmark could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The capture corpus is missing or gave no records.
    #[error("corpus {}: {reason}", path.display())]
    Corpus {
        /// The corpus folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The aggregator refused its configuration or could not start.
    #[error(transparent)]
    Aggregate(#[from] tidegate_collector::aggregate::AggregateError),
    /// A benchmark parameter is out of range.
    #[error("invalid benchmark parameter: {0}")]
    Invalid(String),
}
