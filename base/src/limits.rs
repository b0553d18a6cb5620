//! Process resource limits: a daemon that serves many peers raises its open-file limit
//! at start, and sizes its connection caps from what it got.

/// The open-file limit after raising the soft limit to the hard one: `(soft, hard)`.
/// An error names the system call that failed (the limit is then unchanged).
pub fn raise_open_files() -> std::io::Result<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if l.rlim_cur < l.rlim_max {
        let want = libc::rlimit {
            rlim_cur: l.rlim_max,
            rlim_max: l.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            l.rlim_cur = l.rlim_max;
        } else {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((l.rlim_cur, l.rlim_max))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (soft, hard) = super::raise_open_files().unwrap();
        assert_eq!(soft, hard);
        assert!(soft >= 64);
    }
}
