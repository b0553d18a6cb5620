//! Process memory settings.

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`).
///
/// mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`, honoured under
/// the usual `madvise` system setting), so each first touch of 2 MiB of heap faults in
/// and zeroes a whole huge page, most of it memory the program has not asked for yet. On
/// a VM whose host backs guest memory lazily that zeroing dominated the collector's CPU:
/// with huge pages it spent 1 340 ns per record with detection off and 3 090 with it on,
/// a third of it in `clear_page_erms`; without, 720 and 2 350
/// (bench/src/bin/collector_e2e.rs, same machine and hour). The aggregation's 1 M-flow
/// tables showed no difference either way (bench/src/bin/aggregate.rs). Page faults
/// check the flag when they happen, so calling this first thing covers every later page.
/// A kernel without the flag (before 3.15) refuses it, which only leaves huge pages
/// allowed. Child processes inherit it.
pub fn no_transparent_huge_pages() {
    // SAFETY: a process-wide flag with integer arguments; nothing is read from memory.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_off_for_the_process_afterwards() {
        super::no_transparent_huge_pages();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        // Kernels that do not report the flag there leave nothing to check.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
