//! Alert delivery sinks: where alerts and policy violations are sent.
//!
//! Both sinks take [`Notification`]s (an alert or a violation as JSON, with a stable id):
//! - [`JsonlSink`] appends one JSON object per line to a file, fsync'd per batch;
//! - [`WebhookSink`] POSTs each notification, signed with HMAC-SHA256, to an HTTP
//!   receiver. Notifications are first written to an on-disk [`Outbox`] (one file each),
//!   so nothing is lost when the receiver is down or the collector restarts; delivery is
//!   retried with exponential backoff and jitter, in arrival order. Receivers deduplicate
//!   on the `X-Tidegate-Id` header and check the signature with [`verify_signature`].

mod error;
mod jsonl;
mod metrics;
mod outbox;
mod signature;
mod webhook;

pub use error::AlertSinkError;
pub use jsonl::JsonlSink;
pub use metrics::WebhookMetrics;
pub use outbox::{Outbox, OutboxEntry};
pub use signature::{sign, verify_signature};
pub use webhook::{WebhookConfig, WebhookSink};

use serde::{Deserialize, Serialize};
use tidegate_threat::Finding;

/// Longest accepted notification id (it names the outbox file).
pub const MAX_ID_LEN: usize = 128;

/// One alert or policy violation, ready for delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id: `alert-<alert id>` or `violation-<hash>`; the same event gives the same
    /// id (replays included), so sinks and receivers deduplicate on it.
    pub id: String,
    /// `"alert"` or `"violation"`.
    pub kind: String,
    /// The alert or violation as JSON.
    pub body: serde_json::Value,
}

impl Notification {
    /// A notification with a checked id (1 to [`MAX_ID_LEN`] of `A-Z a-z 0-9 _ . -`, not
    /// starting with `.`).
    pub fn new(
        id: impl Into<String>,
        kind: impl Into<String>,
        body: serde_json::Value,
    ) -> Result<Self, AlertSinkError> {
        let id = id.into();
        check_id(&id)?;
        Ok(Notification {
            id,
            kind: kind.into(),
            body,
        })
    }

    /// The first notification of a finding: id [`Finding::notification_id`], kind
    /// `"alert"` or `"violation"`, the finding's JSON as body. Later states of an open
    /// finding keep its id, so sinks deliver only the first state they see.
    pub fn from_finding(finding: Finding<'_>) -> Result<Self, AlertSinkError> {
        let body = finding.to_json().map_err(|source| AlertSinkError::Json {
            what: format!("{} {}", finding.class(), finding.id()),
            source,
        })?;
        Notification::new(finding.notification_id(), finding.class(), body)
    }
}

/// Refuses ids that cannot safely name a file.
pub(crate) fn check_id(id: &str) -> Result<(), AlertSinkError> {
    let bad = |reason| {
        Err(AlertSinkError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 128 bytes");
    }
    if id.starts_with('.') {
        return bad("starts with '.'");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return bad("only A-Z a-z 0-9 _ . - are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_name_a_file_are_refused() {
        for id in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(129)] {
            let e = Notification::new(id, "alert", serde_json::json!({})).unwrap_err();
            assert!(e.to_string().contains("notification id"), "{e}");
        }
        assert!(Notification::new("alert-00ff.x_y", "alert", serde_json::json!({})).is_ok());
    }
}
