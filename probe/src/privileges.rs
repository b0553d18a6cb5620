//! Least privilege: once its programs are loaded and attached, its capture sockets and
//! maps open and its spool and TLS files read, the probe needs no privilege at all — it
//! reads and updates maps, polls ring buffers and sockets through descriptors it already
//! holds (kernels from 6.5 check BPF privileges when objects are created, not on their
//! descriptors). So it becomes an ordinary user: supplementary groups cleared, gid and
//! uid switched in every thread (every capability is lost with uid 0), no new privileges
//! through exec. Files it must go on writing (the spool) are handed to that user first.

use std::{ffi::CString, path::Path};

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user.
    #[error("probe.user {0:?}: no such user")]
    NoUser(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The process still holds privileges after dropping them.
    #[error("still privileged after dropping to {user}: {status}")]
    Kept {
        /// The user.
        user: String,
        /// What /proc/self/status says.
        status: String,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PrivilegeError {
    let what = what.into();
    move |source| PrivilegeError::Sys { what, source }
}

fn check(rc: libc::c_int, what: &str) -> Result<(), PrivilegeError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(sys(what)(std::io::Error::last_os_error()))
    }
}

/// The uid and gid of `user`.
pub fn lookup(user: &str) -> Result<(u32, u32), PrivilegeError> {
    let name = CString::new(user).map_err(|_| PrivilegeError::NoUser(user.into()))?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; the result points into `pw`/`buf`.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return Err(PrivilegeError::NoUser(user.into()));
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

/// Gives `dir` and the files directly in it to `uid:gid` (the spool: flat).
fn hand_over(dir: &Path, uid: u32, gid: u32) -> Result<(), PrivilegeError> {
    let mut paths = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).map_err(sys(format!("reading {}", dir.display())))? {
        paths.push(e.map_err(sys(format!("reading {}", dir.display())))?.path());
    }
    for p in paths {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(sys(format!("handing {} to uid {uid}", p.display())))?;
    }
    Ok(())
}

/// Becomes `user` for good (all threads), after handing `writable` directories to it.
/// Returns its uid and gid.
pub fn drop_to(user: &str, writable: &[&Path]) -> Result<(u32, u32), PrivilegeError> {
    let (uid, gid) = lookup(user)?;
    refuse_root(uid, user)?;
    for d in writable {
        hand_over(d, uid, gid)?;
    }
    // SAFETY: plain system calls; glibc applies setgid/setuid to every thread.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()), "setgroups")?;
        check(libc::setgid(gid), "setgid")?;
        check(libc::setuid(uid), "setuid")?;
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            "prctl(PR_SET_NO_NEW_PRIVS)",
        )?;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let (eff, prm) = (field("CapEff:"), field("CapPrm:"));
    let uids = field("Uid:");
    let zero = |c: &str| c.chars().all(|ch| ch == '0') && !c.is_empty();
    if !zero(&eff) || !zero(&prm) || uids.split_whitespace().any(|u| u == "0") {
        return Err(PrivilegeError::Kept {
            user: user.into(),
            status: format!("Uid {uids}, CapPrm {prm}, CapEff {eff}"),
        });
    }
    Ok((uid, gid))
}

/// Refuses to "drop" to root.
fn refuse_root(uid: u32, user: &str) -> Result<(), PrivilegeError> {
    if uid == 0 {
        return Err(PrivilegeError::Kept {
            user: user.into(),
            status: "that user is uid 0".into(),
        });
    }
    Ok(())
}
