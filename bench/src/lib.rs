//! tidegate's benchmark harness.
//!
//! Each benchmark runs in process, measures, and writes a Markdown results file that
//! starts with the machine's description (date, CPU, cores, kernel, compiler, profile)
//! and the exact command, so numbers are never separated from where they came from.
//!
//! * [`aggregate`]: records/s through the collector's sharded aggregation at 1 and N
//!   shards (corpus and synthetic records) and memory per active flow
//!   (`cargo run --release -p tidegate-bench --bin aggregate`).
//! * [`peers`]: loss vs offered rate over a veth, tidegate's XDP probe against the
//!   libpcap flow exporters Debian ships (`sudo target/release/peers`).
//! * `scaling` (binary): cost and memory as concurrent flows grow, probe and collector side
//!   (`sudo target/release/scaling`).
//! * `results` (binary): `bench/RESULTS.md` from every results file (`target/release/results`).
#![deny(missing_docs)]

pub mod aggregate;
pub mod error;
pub mod machine;
pub mod numbers;
pub mod peers;
pub mod procfs;
pub mod report;
pub mod xdp;

pub use error::BenchError;
