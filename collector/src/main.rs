//! `tidegate-collector`: receive flow records from probes, aggregate, store in ClickHouse.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// Rust's allocations go to mimalloc: thread-local free lists make the detection
/// stage's many small, short-lived allocations (window accumulators, sample flows,
/// per-key state) cheap, where glibc's malloc and free cost a tenth of the collector's
/// CPU (perf, bench/src/bin/collector_e2e.rs). C libraries (zstd) keep glibc's malloc,
/// tuned below.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps memory that glibc's malloc frees (the C libraries' now; before mimalloc, every
/// batch's buffers too) in the process instead of handing it back to the kernel after
/// each batch. With glibc's defaults every batch's buffers were fresh pages the kernel
/// had to zero: a third of the collector's CPU was `clear_page` (perf,
/// bench/src/bin/collector_e2e.rs). Allocations up to 64 MiB come from the heap, and the
/// heap gives back its top only beyond 256 MiB free.
///
/// No transparent huge pages for the process: mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`, honoured under the usual `madvise` system setting), so each
/// first touch of 2 MiB of heap faulted in and zeroed a whole huge page, most of it for
/// memory the collector had not asked for yet. On a VM whose host backs guest memory
/// lazily that zeroing dominated: with huge pages the collector spent 1 340 ns of CPU per
/// record with detection off, 3 090 with it on, a third of it in `clear_page_erms`;
/// without, 720 and 2 350 (bench/src/bin/collector_e2e.rs, same machine and hour). The
/// aggregation's 1 M-flow tables showed no difference either way
/// (bench/src/bin/aggregate.rs). Faults check the flag when they happen, so setting it
/// first thing covers every later page.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    // SAFETY: a process-wide flag with integer arguments; nothing is read from memory.
    // A kernel without it (before 3.15) refuses, which only leaves huge pages allowed.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> ExitCode {
    tune_allocator();
    let args = cli::Cli::parse();
    tidegate_base::cli::run("tidegate-collector", args.verbosity, || cli::dispatch(args))
}
