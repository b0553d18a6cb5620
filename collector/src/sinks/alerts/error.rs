//! Errors of the alert delivery sinks (JSONL file, webhook, outbox).

use std::path::PathBuf;

/// What can go wrong in an alert sink.
#[derive(Debug, thiserror::Error)]
pub enum AlertSinkError {
    /// A webhook configuration field is invalid.
    #[error("webhook.{field}: {reason}")]
    Config {
        /// Field of [`super::WebhookConfig`], e.g. `url`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// [`super::WebhookSink::start`] was called outside a Tokio runtime.
    #[error("the webhook sink must be started inside a Tokio runtime")]
    NoRuntime,
    /// A notification id cannot be used (it names the outbox file).
    #[error("notification id {id:?}: {reason}")]
    InvalidId {
        /// The offending id.
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `fsync outbox file`.
        op: &'static str,
        /// File or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A notification could not be (de)serialized.
    #[error("{what}: {source}")]
    Json {
        /// What was being (de)serialized, with the file when there is one.
        what: String,
        /// The serde_json error.
        #[source]
        source: serde_json::Error,
    },
}

impl AlertSinkError {
    /// An [`AlertSinkError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AlertSinkError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
