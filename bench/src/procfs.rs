//! Process measurements: resident memory and CPU time.

use std::time::Duration;

/// Resident set size of this process (`VmRSS` of `/proc/self/status`), bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Returns freed heap memory to the kernel where the allocator can (glibc
/// `malloc_trim`), so a following RSS baseline is not inflated by reusable free memory.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// User + system CPU time used by every thread of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage; RUSAGE_SELF is always a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User + system CPU time used so far by process `pid` (every thread; fields 14 and 15
/// of `/proc/<pid>/stat`), or `None` when it cannot be read.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime) = (
        f.get(11)?.parse::<u64>().ok()?,
        f.get(12)?.parse::<u64>().ok()?,
    );
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_process_cpu_time_is_read_from_proc() {
        let me = process_cpu_time(std::process::id()).expect("own stat");
        // Spin until the kernel's own CPU clock of this process says 120 ms more (on a
        // loaded machine wall time says little about CPU time), at most 20 s.
        let cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer to a timespec.
            unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let (c0, t) = (cpu(), std::time::Instant::now());
        let mut x = 0u64;
        while cpu() < c0 + Duration::from_millis(120) && t.elapsed() < Duration::from_secs(20) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let later = process_cpu_time(std::process::id()).unwrap();
        assert!(
            later >= me + Duration::from_millis(50),
            "{me:?} -> {later:?}"
        );
        assert_eq!(process_cpu_time(u32::MAX), None);
    }

    #[test]
    fn rss_grows_with_touched_memory_and_cpu_time_with_work() {
        let before = rss_bytes().expect("VmRSS");
        // Kept observable, or an optimised build never allocates it.
        let v = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = rss_bytes().expect("VmRSS");
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        drop(v);
        let c0 = cpu_time();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_time() > c0);
    }
}
