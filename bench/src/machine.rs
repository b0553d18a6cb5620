//! The machine a result was measured on.

use std::fmt::Write as _;

/// Description of the host, for results files.
#[derive(Clone, Debug)]
pub struct Machine {
    /// UTC date and time of the run (RFC 3339, seconds).
    pub date: String,
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// Distribution (`PRETTY_NAME` of `/etc/os-release`).
    pub os: String,
    /// Total memory (`MemTotal` of `/proc/meminfo`), bytes.
    pub memory_bytes: u64,
    /// Compiler that built the benchmark.
    pub rustc: String,
    /// `release` or `debug` (debug numbers are not representative).
    pub profile: &'static str,
    /// `/proc/loadavg` at the start (other work on the machine skews results).
    pub loadavg: String,
    /// Seconds per GiB to write memory the process touches for the first time (page
    /// faults, and on a VM whose host backs guest memory lazily, the host's work too),
    /// and to write it again: see [`first_touch`].
    pub first_touch: Option<(f64, f64)>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Machine {
    /// Describes the current host.
    pub fn describe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let date = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            date,
            cpu_model,
            cores: online_cpus(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            memory_bytes,
            rustc: env!("TIDEGATE_BENCH_RUSTC").to_string(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            loadavg: read("/proc/loadavg").trim().to_string(),
            first_touch: first_touch(),
        }
    }

    /// A Markdown table of the description.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| | |\n|---|---|\n");
        for (k, v) in [
            ("Date (UTC)", self.date.clone()),
            ("CPU", self.cpu_model.clone()),
            ("Logical CPUs", self.cores.to_string()),
            (
                "Memory",
                format!("{:.1} GiB", self.memory_bytes as f64 / (1u64 << 30) as f64),
            ),
            ("Kernel", self.kernel.clone()),
            ("OS", self.os.clone()),
            ("Compiler", self.rustc.clone()),
            ("Profile", self.profile.to_string()),
            ("Load average at start", self.loadavg.clone()),
            (
                "Memory write, first touch / again",
                self.first_touch.map_or_else(
                    || "not measured".into(),
                    |(fresh, again)| {
                        format!(
                            "{fresh:.2} / {again:.2} s per GiB (4 KiB pages; every benchmark \
                             that grows a fresh process's state pays the first)"
                        )
                    },
                ),
            ),
        ] {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        s
    }
}

/// Bytes [`first_touch`] writes.
const TOUCH_BYTES: usize = 256 << 20;

/// Times writing [`TOUCH_BYTES`] of fresh anonymous memory (4 KiB pages, as the collector
/// runs without transparent huge pages), then writing them again; seconds per GiB each.
/// Machines differ most in the first: page faults and zeroing, and on a VM whose host
/// backs guest memory lazily (and takes back what the guest frees) the host's work as
/// well, which depends on what the guest freed lately: one such VM measured 2-3 s per
/// GiB one day and 0.4 another. Any benchmark that starts a process and grows its state
/// pays it, so the figure goes beside the results.
pub fn first_touch() -> Option<(f64, f64)> {
    // SAFETY: a private anonymous mapping of our own, written only within its length,
    // and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            TOUCH_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return None;
        }
        libc::madvise(p, TOUCH_BYTES, libc::MADV_NOHUGEPAGE);
        let mut secs = [0.0f64; 2];
        for (i, fill) in [0x5au8, 0xa5].into_iter().enumerate() {
            let t = std::time::Instant::now();
            std::ptr::write_bytes(p.cast::<u8>(), fill, TOUCH_BYTES);
            std::hint::black_box(p);
            secs[i] = t.elapsed().as_secs_f64();
        }
        libc::munmap(p, TOUCH_BYTES);
        let per_gib = (1u64 << 30) as f64 / TOUCH_BYTES as f64;
        Some((secs[0] * per_gib, secs[1] * per_gib))
    }
}

/// The machine's online CPUs (not this thread's affinity mask, which a benchmark may
/// have narrowed to one CPU).
fn online_cpus() -> usize {
    // SAFETY: sysconf reads a system value; -1 on error.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_linux_host() {
        let m = Machine::describe();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        assert!(m.rustc.starts_with("rustc "), "{}", m.rustc);
        assert!(m.memory_bytes > 0);
        assert!(m.date.ends_with('Z'), "{}", m.date);
        let md = m.markdown();
        let profile = if cfg!(debug_assertions) {
            "| Profile | debug |"
        } else {
            "| Profile | release |"
        };
        assert!(md.contains(&m.kernel) && md.contains(profile), "{md}");
        let (fresh, again) = m.first_touch.expect("an anonymous mapping");
        assert!(fresh > 0.0 && again > 0.0, "{fresh} {again}");
        assert!(md.contains("first touch"), "{md}");
    }
}
