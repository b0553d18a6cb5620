//! tidegate's benchmark harness.
//!
//! Each benchmark runs in process, measures, and writes a Markdown results file that
//! starts with the machine's description (date, CPU, cores, kernel, compiler, profile)
//! and the exact command, so numbers are never separated from where they came from.
//!
//! * [`aggregate`]: records/s through the collector's sharded aggregation at 1 and N
//!   shards (corpus and synthetic records) and memory per active flow
//!   (`cargo run --release -p tidegate-bench --bin aggregate`).
//! * `detect_latency` (binary): first attack packet on a veth → alert in the JSONL sink
//!   and in ClickHouse, over repeated runs, using [`net`] and [`stack`].
#![deny(missing_docs)]

pub mod aggregate;
pub mod error;
pub mod machine;
pub mod net;
pub mod procfs;
pub mod stack;

pub use error::BenchError;
