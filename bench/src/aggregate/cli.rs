//! Command-line options of the aggregation benchmark.

use std::path::PathBuf;

use super::{Plan, default_corpus, default_results, markdown, run};
use crate::BenchError;

/// Aggregation benchmark options.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Aggregation records/s at 1 and N shards, and memory per active flow")]
pub struct Args {
    /// A run of a few seconds (small workloads) for CI; prints the report and writes a
    /// file only with --out.
    #[arg(long)]
    pub smoke: bool,
    /// Shard count of the parallel runs (default: number of CPUs).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Folder of the capture corpus.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Results file (default: bench/results/aggregate.md for a full run).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs the benchmark; `bin` names the binary in the recorded command.
pub fn main(args: Args, bin: &str) -> Result<(), BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = args.shards.unwrap_or(cores);
    if n == 0 {
        return Err(BenchError::Invalid("--shards must be at least 1".into()));
    }
    let mut plan = if args.smoke {
        Plan::smoke(n)
    } else {
        Plan::full(n)
    };
    if n == 1 {
        plan.shard_counts = vec![1];
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        "--release "
    };
    let command = format!(
        "cargo run {profile}-p tidegate-bench --bin {bin}{}",
        if argv.is_empty() {
            String::new()
        } else {
            format!(" -- {}", argv.join(" "))
        }
    );
    let corpus = args.corpus.clone().unwrap_or_else(default_corpus);
    let results = run(&plan, &corpus, command, |l| eprintln!("{l}"))?;
    let text = markdown(&results);
    let out = args
        .out
        .clone()
        .or_else(|| (!args.smoke).then(default_results));
    match out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, &text).map_err(|source| BenchError::Io {
                path: path.clone(),
                source,
            })?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
