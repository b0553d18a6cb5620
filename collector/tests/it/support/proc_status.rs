//! Fields of a process's `/proc/<pid>/status`.

/// Field `name` of the status file at `path` (`/proc/<pid>/status`, `/proc/self/status`),
/// its unit left out; `None` when this kernel does not report it.
pub fn status_field(path: &str, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
