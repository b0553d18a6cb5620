//! What must not outlive a test or benchmark: namespaces it created and processes it
//! started.
//!
//! Normal exits and panics clean up through `Drop` ([`super::VethPair`],
//! [`ChildGuard`]); SIGINT/SIGTERM/SIGHUP through [`install_signal_cleanup`].

use std::{
    collections::BTreeSet,
    process::{Child, Command},
    sync::Mutex,
    time::{Duration, Instant},
};

static NAMESPACES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Remembers a namespace to delete if the process is interrupted.
pub(crate) fn register_namespace(ns: &str) {
    NAMESPACES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(ns.to_string());
}

/// Forgets a namespace (it was deleted normally).
pub(crate) fn forget_namespace(ns: &str) {
    NAMESPACES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(ns);
}

/// Deletes a namespace with `ip netns del` (ignoring "does not exist").
pub(crate) fn delete_namespace(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

fn cleanup_all() {
    let pids: Vec<u32> = PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    for pid in pids {
        // SAFETY: signalling a child we started (still registered, so not yet reaped).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let nss: Vec<String> = NAMESPACES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    for ns in nss {
        delete_namespace(&ns);
    }
}

/// Starts the thread that, on SIGINT, SIGTERM or SIGHUP, kills the registered processes,
/// deletes the registered namespaces and exits with 128 + signal. (signal-hook's
/// self-pipe: no signal is blocked, and children start with default dispositions.)
pub fn install_signal_cleanup() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    eprintln!("tidegate: signal {sig}: removing namespaces and stopping tools");
                    cleanup_all();
                    std::process::exit(128 + sig);
                }
            });
        }
        Err(e) => eprintln!("tidegate: no signal cleanup ({e}); Drop still cleans up"),
    }
}

/// A started process that is killed (SIGKILL) and reaped on drop unless it already
/// exited; registered for the signal cleanup meanwhile.
pub struct ChildGuard {
    child: Option<Child>,
    pid: u32,
}

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> ChildGuard {
        let pid = child.id();
        PIDS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
        ChildGuard {
            child: Some(child),
            pid,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig` (if the process has not been reaped yet).
    pub fn signal(&self, sig: libc::c_int) {
        if self.child.is_some() {
            // SAFETY: signalling our own, not yet reaped child.
            unsafe { libc::kill(self.pid as i32, sig) };
        }
    }

    /// Has it exited? (Reaps it if so.)
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok().flatten();
        if st.is_some() {
            self.release();
        }
        st
    }

    /// Waits up to `timeout` for the exit, then kills it; returns the exit status if it
    /// exited by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            PIDS.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.pid);
        }
    }

    fn release(&mut self) {
        self.child = None;
        PIDS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pid);
    }

    /// The child's stdout/stderr handles, if piped.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
