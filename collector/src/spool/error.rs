//! Spool errors.

use std::path::PathBuf;

/// What can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A filesystem operation failed.
    #[error("spool {path}: {op}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Operation.
        op: &'static str,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (a second collector) holds the spool directory.
    #[error("spool: {0}")]
    Locked(#[source] tidegate_base::LockError),
    /// A state file could not be parsed.
    #[error("spool {path}: corrupt state file: {msg}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An entry is larger than a segment may hold.
    #[error("spool entry of {size} bytes exceeds the segment size {max}")]
    TooLarge {
        /// Entry size.
        size: usize,
        /// Limit.
        max: u64,
    },
    /// The spool was closed.
    #[error("spool closed")]
    Closed,
    /// The detection stage stopped with stored batches it had not processed: the spool
    /// is not committed past them (they replay through detection at the next start).
    #[error(
        "the detection stage stopped before processing stored batches; the spool keeps them for the next start"
    )]
    DetectionStopped,
}

impl SpoolError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> SpoolError {
        let path = path.into();
        move |source| SpoolError::Io { path, op, source }
    }
}
