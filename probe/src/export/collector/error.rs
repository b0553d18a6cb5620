//! Errors of the collector exporter.

use std::path::PathBuf;

use tidegate_wire::WireError;

/// The on-disk spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A spool file or the directory failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the spool directory.
    #[error("spool {dir} is in use by another process (lock held on {dir}/lock)")]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// The spool holds batches of another probe id.
    #[error(
        "spool {path} holds batches of probe {found:?}, not {expected:?}: use another spool directory"
    )]
    ForeignProbe {
        /// The batch file.
        path: PathBuf,
        /// Probe id in the file.
        found: String,
        /// This probe's id.
        expected: String,
    },
    /// The persisted sequence high-water mark is unreadable.
    #[error("spool {path}: {reason}")]
    BadMark {
        /// The mark file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A spooled batch's header cannot be rewritten.
    #[error("spool {path}: {source}")]
    Batch {
        /// The batch file.
        path: PathBuf,
        /// The header problem.
        #[source]
        source: WireError,
    },
}

/// The collector exporter cannot start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// An option has an unusable value.
    #[error("collector option {what}: {reason}")]
    Option {
        /// The option.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The certificates or key are unusable (unreadable, empty, mismatched, ...).
    #[error(transparent)]
    Tls(#[from] tidegate_base::tls::TlsError),
    /// The spool cannot be used.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The sender thread could not be started.
    #[error("cannot start the sender thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The sender thread panicked (a bug); spooled batches stay on disk.
    #[error("the collector sender thread panicked")]
    SenderPanicked,
}

/// Why a connection to the collector ended (logged; the sender reconnects).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// TCP connect, TLS or stream failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be read or written.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The collector refused this probe.
    #[error("collector refused this probe: {0}")]
    Rejected(String),
    /// The collector reported an error and closed.
    #[error("collector error: {0}")]
    Collector(String),
    /// The collector sent something out of protocol.
    #[error("protocol violation by the collector: {0}")]
    Protocol(String),
    /// Nothing came back for a batch in time.
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(std::time::Duration),
    /// Connecting (TCP + TLS + Hello) took too long.
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// The local spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl SendError {
    /// Label for the session-error metric.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SendError::Io(_) => "io",
            SendError::Wire(WireError::Closed) => "closed",
            SendError::Wire(_) => "wire",
            SendError::Rejected(_) => "rejected",
            SendError::Collector(_) => "collector_error",
            SendError::Protocol(_) => "protocol",
            SendError::AckTimeout(_) => "ack_timeout",
            SendError::ConnectTimeout(_) => "connect_timeout",
            SendError::Spool(_) => "spool",
        }
    }
}
