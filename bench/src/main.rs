//! `tidegate-bench`: every benchmark as a subcommand (`tidegate-bench aggregate --smoke`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tidegate benchmarks.
#[derive(Debug, Parser)]
#[command(name = "tidegate-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Aggregation records/s at 1 and N shards, and memory per active flow.
    Aggregate(tidegate_bench::aggregate::cli::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Aggregate(a) => tidegate_bench::aggregate::cli::main(a, "tidegate-bench"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidegate-bench: error: {e}");
            ExitCode::from(1)
        }
    }
}
