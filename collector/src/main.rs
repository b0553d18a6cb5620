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
/// heap gives back its top only beyond 256 MiB free. No transparent huge pages (see
/// [`tidegate_base::memory::no_transparent_huge_pages`]).
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    tidegate_base::memory::no_transparent_huge_pages();
}

fn main() -> ExitCode {
    tune_allocator();
    let args = cli::Cli::parse();
    tidegate_base::cli::run("tidegate-collector", args.verbosity, || cli::dispatch(args))
}
