//! The aggregation benchmark: records/s through the collector's sharded aggregation and
//! memory per active flow.
//!
//! Workloads (all records built before timing starts; one submitting thread, batches of
//! [`Plan::batch`] records alternating two probe ids):
//! * `corpus`: every capture of the shared corpus replayed with the probe's default
//!   export timeouts, rebased to a common start and repeated with a 60 s shift per round
//!   (the same flows reported interval after interval), about 100 records/key.
//! * `synthetic-<K>`: records over K distinct flow keys, each key seen several times.
//!
//! Each runs at 1 shard and at N shards (N = CPUs). Throughput is wall time from the
//! first submit to the end of `flush`; "records per CPU-second" divides by the CPU time
//! of the whole process (submitter and shards), which is the per-core cost. Memory per
//! active flow is the RSS growth (`/proc/self/status`) of an aggregator holding M
//! distinct flows, divided by M.

pub mod cli;
mod measure;
mod report;
pub mod workload;

use std::path::PathBuf;

pub use measure::{Memory, Throughput, median_throughput, memory, throughput};
pub use report::markdown;

use crate::BenchError;
use crate::machine::Machine;

/// Sizes of one benchmark run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Records submitted in the corpus workload (the corpus repeated as needed).
    pub corpus_records: usize,
    /// Synthetic workloads: (distinct keys, records).
    pub synthetic: Vec<(usize, usize)>,
    /// Distinct flows held for the memory measurement.
    pub memory_flows: usize,
    /// Shard counts to run every workload at.
    pub shard_counts: Vec<usize>,
    /// Records per submitted batch.
    pub batch: usize,
    /// Runs of every throughput measurement (the median is reported).
    pub repeats: usize,
}

impl Plan {
    /// The full run: 10K/100K/1M-key synthetic workloads, 1M flows for memory.
    pub fn full(cores: usize) -> Plan {
        Plan {
            corpus_records: 2_000_000,
            synthetic: vec![
                (10_000, 2_000_000),
                (100_000, 2_000_000),
                (1_000_000, 3_000_000),
            ],
            memory_flows: 1_000_000,
            shard_counts: shard_counts(cores),
            batch: 1000,
            repeats: 5,
        }
    }

    /// A run of a few seconds for CI.
    pub fn smoke(cores: usize) -> Plan {
        Plan {
            corpus_records: 50_000,
            synthetic: vec![(10_000, 50_000), (100_000, 200_000)],
            memory_flows: 100_000,
            shard_counts: shard_counts(cores),
            batch: 1000,
            repeats: 1,
        }
    }
}

fn shard_counts(cores: usize) -> Vec<usize> {
    if cores > 1 { vec![1, cores] } else { vec![1] }
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// The command that produced it.
    pub command: String,
    /// The sizes.
    pub plan: Plan,
    /// Distinct records the corpus replay gave (before repetition).
    pub corpus_base_records: usize,
    /// One entry per workload and shard count.
    pub throughput: Vec<Throughput>,
    /// Memory per active flow.
    pub memory: Memory,
}

/// Runs every workload of `plan` with the corpus at `corpus_dir`; `progress` gets a line
/// per finished measurement.
pub fn run(
    plan: &Plan,
    corpus_dir: &std::path::Path,
    command: String,
    mut progress: impl FnMut(&str),
) -> Result<Results, BenchError> {
    if plan.shard_counts.is_empty() || plan.batch == 0 {
        return Err(BenchError::Invalid(
            "need at least one shard count and a batch size above 0".into(),
        ));
    }
    let machine = Machine::describe();
    // Memory first, while no earlier aggregator's freed memory can be reused (that would
    // hide the growth from RSS).
    let recs = workload::synthetic(plan.memory_flows, plan.memory_flows, 120);
    let shards = *plan.shard_counts.last().unwrap_or(&1);
    let memory = memory(&recs, shards, plan.batch)?;
    progress(&format!(
        "memory: {} flows, {:.0} bytes/flow",
        memory.flows,
        memory.per_flow()
    ));
    let mut out = Vec::new();
    let base = workload::corpus(corpus_dir)?;
    let corpus = workload::repeat(&base, plan.corpus_records, 60);
    // Every shard count on one workload.
    let mut each_shard_count =
        |name: &str, keys: usize, recs: &[tidegate_wire::record::FlowRecord]| {
            for &shards in &plan.shard_counts {
                let t = median_throughput(name, keys, recs, shards, plan.batch, plan.repeats)?;
                progress(&line(&t));
                out.push(t);
            }
            Ok::<(), BenchError>(())
        };
    each_shard_count("corpus", distinct_keys(&corpus), &corpus)?;
    drop(corpus);
    for &(keys, records) in &plan.synthetic {
        let recs = workload::synthetic(keys, records, 120);
        each_shard_count(&format!("synthetic-{}", si(keys)), keys, &recs)?;
    }
    Ok(Results {
        machine,
        command,
        plan: plan.clone(),
        corpus_base_records: base.len(),
        throughput: out,
        memory,
    })
}

fn distinct_keys(recs: &[tidegate_wire::record::FlowRecord]) -> usize {
    let set: std::collections::HashSet<_> = recs
        .iter()
        .map(tidegate_collector::aggregate::AggregateKey::of)
        .collect();
    set.len()
}

fn line(t: &Throughput) -> String {
    format!(
        "{} at {} shard(s): {} records in {:.3} s = {:.0} records/s, {:.0} records/CPU-s",
        t.workload,
        t.shards,
        t.records,
        t.wall.as_secs_f64(),
        t.per_sec(),
        t.per_cpu_sec()
    )
}

/// `10K`, `1M`, ...
pub fn si(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}K", n / 1_000),
        n => n.to_string(),
    }
}

/// The default corpus folder: `$TIDEGATE_CORPUS/pcap`, else `../shared/corpus/pcap`
/// beside the repository.
pub fn default_corpus() -> PathBuf {
    std::env::var_os("TIDEGATE_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcap"),
        |root| PathBuf::from(root).join("pcap"),
    )
}

/// The default results file of a full run.
pub fn default_results() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/aggregate.md")
}
