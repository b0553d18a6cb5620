//! The current policy, swapped atomically on reload (and on SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::Policy;
use super::error::PolicyError;

/// Shared handle to the current policy. Readers take a snapshot ([`PolicyHandle::current`]:
/// a read lock held only to clone an `Arc`), so evaluation never blocks on a reload and a
/// record is always evaluated against one whole policy.
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: Policy) -> Self {
        PolicyHandle {
            current: Arc::new(RwLock::new(Arc::new(policy))),
        }
    }

    /// Loads `path` into a new handle.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Policy::load(path).map(Self::new)
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads `path` and, only if it is valid, makes it the policy in force; on error the
    /// old policy stays.
    pub fn reload(&self, path: &Path) -> Result<(), PolicyError> {
        let new = Arc::new(Policy::load(path)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }
}

/// Installs a SIGHUP handler that reloads `path` into `handle` and logs the outcome (an
/// invalid file is logged with its `file:line` error and the old policy kept). Needs a
/// tokio runtime; the task runs until the runtime stops.
pub fn spawn_sighup_reload(
    handle: PolicyHandle,
    path: PathBuf,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match handle.reload(&path) {
                Ok(()) => tracing::info!(
                    path = %path.display(),
                    rules = handle.current().rules.len(),
                    "policy reloaded"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "policy reload refused; keeping the old policy")
                }
            }
        }
    }))
}
