//! The current policy, swapped atomically on reload (the collector reloads on SIGHUP).

use std::path::Path;
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
        self.reload_checked(path, |_| Ok(()))
    }

    /// [`PolicyHandle::reload`] with one more check of the parsed policy (the collector
    /// compiles its enforcement plan): refused, the old policy stays.
    pub fn reload_checked(
        &self,
        path: &Path,
        check: impl FnOnce(&Policy) -> Result<(), PolicyError>,
    ) -> Result<(), PolicyError> {
        let new = Policy::load(path)?;
        check(&new)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(())
    }
}
