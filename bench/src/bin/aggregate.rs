//! `aggregate`: the aggregation benchmark (see `tidegate_bench::aggregate`).
//!
//! ```sh
//! cargo run --release -p tidegate-bench --bin aggregate            # writes bench/results/aggregate.md
//! cargo run --release -p tidegate-bench --bin aggregate -- --smoke # seconds; prints the report
//! ```

use std::process::ExitCode;

use clap::Parser;
use tidegate_bench::aggregate::cli::{Args, main as run};

/// Aggregation records/s at 1 and N shards, and memory per active flow.
#[derive(Debug, Parser)]
#[command(name = "aggregate", version, about)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn main() -> ExitCode {
    match run(Cli::parse().args, "aggregate") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aggregate: error: {e}");
            ExitCode::from(1)
        }
    }
}
