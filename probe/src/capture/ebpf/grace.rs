//! Waiting for every in-flight BPF program run to finish.
//!
//! `membarrier(MEMBARRIER_CMD_GLOBAL)` runs `synchronize_rcu()` in the kernel, and XDP and
//! TC programs run inside RCU read-side critical sections: when it returns, every program
//! run that could have read the old generation number has completed, and every later
//! run sees the new one.

use std::{sync::OnceLock, thread, time::Duration};

const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;

/// How the grace period is obtained on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraceMethod {
    /// `membarrier(MEMBARRIER_CMD_GLOBAL)`, i.e. `synchronize_rcu()`.
    Membarrier,
    /// membarrier unavailable (e.g. nohz_full): a conservative sleep.
    Sleep,
}

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes (cmd, flags, cpu_id) integers only.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
}

/// The method this kernel supports (probed once).
pub fn method() -> GraceMethod {
    static M: OnceLock<GraceMethod> = OnceLock::new();
    *M.get_or_init(|| {
        let mask = membarrier(MEMBARRIER_CMD_QUERY);
        if mask >= 0 && mask & MEMBARRIER_CMD_GLOBAL as libc::c_long != 0 && membarrier(MEMBARRIER_CMD_GLOBAL) == 0 {
            GraceMethod::Membarrier
        } else {
            tracing::warn!("membarrier(MEMBARRIER_CMD_GLOBAL) unavailable; using a 200 ms sleep as the generation grace period");
            GraceMethod::Sleep
        }
    })
}

/// Blocks until every BPF program run that started before the call has finished.
pub fn wait() {
    match method() {
        GraceMethod::Membarrier => {
            if membarrier(MEMBARRIER_CMD_GLOBAL) != 0 {
                thread::sleep(Duration::from_millis(200));
            }
        }
        GraceMethod::Sleep => thread::sleep(Duration::from_millis(200)),
    }
}
