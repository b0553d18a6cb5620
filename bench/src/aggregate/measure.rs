//! Timed runs of the aggregator.

use std::time::{Duration, Instant};

use tidegate_collector::aggregate::{AggregateConfig, AggregateMetrics, Aggregator, ShardLabel};
use tidegate_wire::record::FlowRecord;

use crate::BenchError;
use crate::procfs::{cpu_time, rss_bytes};

/// Result of pushing one workload through one aggregator.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Workload name.
    pub workload: String,
    /// Distinct flow keys in the workload.
    pub keys: usize,
    /// Records submitted.
    pub records: u64,
    /// Shards.
    pub shards: usize,
    /// From the first submit to the end of `flush`.
    pub wall: Duration,
    /// CPU time of the whole process (submitter + shards) meanwhile.
    pub cpu: Duration,
    /// Records every shard processed, summed (must equal `records`).
    pub processed: u64,
    /// Merged flows held at the end.
    pub active_flows: u64,
    /// Flows evicted (the tables are sized so this is 0).
    pub evictions: u64,
    /// Runs this is the median of (by wall time).
    pub runs: usize,
    /// Slowest and fastest run, records/s.
    pub per_sec_range: (f64, f64),
}

impl Throughput {
    /// Records per second of wall time.
    pub fn per_sec(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Records per CPU-second: the cost per core, whatever the parallelism.
    pub fn per_cpu_sec(&self) -> f64 {
        self.records as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// Resident memory of an aggregator holding a known number of flows.
#[derive(Clone, Debug)]
pub struct Memory {
    /// Shards.
    pub shards: usize,
    /// Merged flows held when measured.
    pub flows: u64,
    /// RSS before the aggregator started (the input records already built).
    pub rss_before: u64,
    /// RSS with every flow aggregated.
    pub rss_after: u64,
}

impl Memory {
    /// RSS growth per held flow, bytes.
    pub fn per_flow(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / (self.flows.max(1) as f64)
    }
}

fn config(shards: usize, max_flows_per_shard: usize, queue_depth: usize) -> AggregateConfig {
    AggregateConfig {
        shards,
        queue_depth,
        max_flows_per_shard,
        ..AggregateConfig::default()
    }
}

fn submit_all(agg: &Aggregator, records: &[FlowRecord], batch: usize) {
    for (n, chunk) in records.chunks(batch.max(1)).enumerate() {
        agg.submit(if n % 2 == 0 { "probe-a" } else { "probe-b" }, chunk);
    }
    agg.flush();
}

fn sum_shards(shards: usize, f: impl Fn(&ShardLabel) -> u64) -> u64 {
    (0..shards).map(|i| f(&ShardLabel::of(i))).sum()
}

/// Submits `records` in batches of `batch` from one thread and times it to the end of
/// the flush. Flow tables are sized to hold `keys` flows on any shard (no eviction).
pub fn throughput(
    workload: &str,
    keys: usize,
    records: &[FlowRecord],
    shards: usize,
    batch: usize,
) -> Result<Throughput, BenchError> {
    let metrics = AggregateMetrics::default();
    let agg = Aggregator::start(config(shards, keys.max(1), 64), metrics.clone())?;
    let (t0, c0) = (Instant::now(), cpu_time());
    submit_all(&agg, records, batch);
    let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
    let processed = sum_shards(shards, |l| metrics.shard_records.get_or_create(l).get());
    let active = sum_shards(shards, |l| {
        metrics.active_flows.get_or_create(l).get().max(0) as u64
    });
    let result = Throughput {
        workload: workload.to_string(),
        keys,
        records: records.len() as u64,
        shards,
        wall,
        cpu,
        processed,
        active_flows: active,
        evictions: metrics.evictions.get(),
        runs: 1,
        per_sec_range: (0.0, 0.0),
    };
    agg.shutdown();
    let r = result.per_sec();
    Ok(Throughput {
        per_sec_range: (r, r),
        ..result
    })
}

/// [`throughput`] `runs` times (at least once); the median run by wall time, with the
/// range of all runs.
pub fn median_throughput(
    workload: &str,
    keys: usize,
    records: &[FlowRecord],
    shards: usize,
    batch: usize,
    runs: usize,
) -> Result<Throughput, BenchError> {
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        all.push(throughput(workload, keys, records, shards, batch)?);
    }
    all.sort_by_key(|t| t.wall);
    let (slowest, fastest) = (all[all.len() - 1].per_sec(), all[0].per_sec());
    let mut m = all.swap_remove(all.len() / 2);
    m.runs = runs.max(1);
    m.per_sec_range = (slowest, fastest);
    Ok(m)
}

/// RSS growth of an aggregator taking every record of `records` (each a distinct flow).
pub fn memory(records: &[FlowRecord], shards: usize, batch: usize) -> Result<Memory, BenchError> {
    let metrics = AggregateMetrics::default();
    let rss =
        || rss_bytes().ok_or_else(|| BenchError::Invalid("no VmRSS in /proc/self/status".into()));
    crate::procfs::release_free_memory();
    let rss_before = rss()?;
    // A short queue: in-flight batches are not what is measured.
    let agg = Aggregator::start(config(shards, records.len().max(1), 2), metrics.clone())?;
    submit_all(&agg, records, batch);
    let rss_after = rss()?;
    let flows = sum_shards(shards, |l| {
        metrics.active_flows.get_or_create(l).get().max(0) as u64
    });
    agg.shutdown();
    Ok(Memory {
        shards,
        flows,
        rss_before,
        rss_after,
    })
}
