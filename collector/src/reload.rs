//! Reloading the policy on SIGHUP.

use std::path::PathBuf;

use tidegate_threat::policy::PolicyHandle;

/// Installs a SIGHUP handler that reloads `path` into `handle` and logs the outcome (an
/// invalid file is logged with its `file:line` error and the old policy kept). Needs a
/// tokio runtime; the task runs until the runtime stops.
pub fn spawn_sighup_reload(
    handle: PolicyHandle,
    path: PathBuf,
    evidence: Option<std::sync::Arc<tidegate_evidence::EvidenceLog>>,
    enforce: Option<std::sync::Arc<crate::enforce::EnforceHub>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A policy whose drop rules cannot be enforced is refused like a bad file.
            let outcome = handle.reload_checked(&path, |p| match &enforce {
                Some(hub) => hub.check(p).map(|_| ()),
                None => Ok(()),
            });
            match &outcome {
                Ok(()) => tracing::info!(
                    path = %path.display(),
                    rules = handle.current().rules.len(),
                    "policy reloaded"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "policy reload refused; keeping the old policy")
                }
            }
            if outcome.is_ok()
                && let Some(hub) = &enforce
                && let Err(e) = hub.republish("reload")
            {
                tracing::error!(error = %e, "enforcement policy not republished after the reload");
            }
            if let Some(log) = &evidence {
                let data = serde_json::json!({
                    "event": if outcome.is_ok() { "policy_reload" } else { "policy_reload_refused" },
                    "policy": crate::evidence::file_digest(&path),
                    "rules": handle.current().rules.len(),
                    "error": outcome.err().map(|e| e.to_string()),
                });
                crate::evidence::record(log, crate::evidence::CONFIG, data);
            }
        }
    }))
}
