//! Lock-free sharded aggregation of flow records.
//!
//! ```text
//!  submit(probe, records) ──hash(flow key)──► shard 0 queue ──► shard 0 thread (flows, lines)
//!   (caller's thread)        one sub-batch  ► shard 1 queue ──► shard 1 thread
//!                            per shard      ► ...
//!  snapshot() ──request──► every shard ──partial views──► merged AggregateSnapshot
//! ```
//!
//! * **Fan-out** ([`Aggregator::submit`]): records are routed by a fixed-seed hash of
//!   their flow key (src, dst, sport, dport, proto, vlan, line, direction), so every
//!   record of a flow reaches the same shard, in submission order, whatever the probe.
//!   Queues are bounded crossbeam channels; a full queue blocks the submitter, which is
//!   the backpressure the collector passes on to its probes (they spool). Nothing is
//!   dropped and nothing grows without bound.
//! * **Shards** own their state alone — no mutex anywhere on the path. Each
//!   keeps a merged-flow table (records of one key from any probe and interval merged:
//!   counters summed, first = min, last = max, flags OR, probe set), bounded by
//!   `max_flows_per_shard` with CLOCK (second-chance) eviction, and per line: totals and
//!   per-second rates by direction, and hdrhistograms of flow size, flow duration and
//!   mean packet size.
//! * **Event time**: only record timestamps move the clock (idle expiry, rate window), so
//!   replaying the same records gives the same numbers, whatever the shard count.
//! * **Snapshots** ([`Aggregator::snapshot`]) ask every shard for its partial view over a
//!   reply channel and merge: totals, rates and histograms add up; top talkers are summed
//!   exactly per address across shards before the top N is taken (see [`TopTalkers`]).
//!
//! Results are independent of the shard count and of how records are batched, as long as
//! no record arrives more than `flow_idle` (event time) behind the newest record
//! submitted before it; beyond that, line totals, rates and histograms stay exact and
//! only the grouping of that record into merged flows can differ.

mod aggregator;
pub mod config;
mod error;
mod flow_table;
mod flows;
mod histograms;
mod key;
mod line_stats;
mod message;
mod metrics;
mod rates;
mod shard;
mod snapshot;
mod top_talkers;

pub use aggregator::{AHEAD_NS, Aggregator};
pub use config::AggregateConfig;
pub use error::{AggregateError, Full};
pub use flows::{FlowCounters, MergedFlow};
pub use histograms::LineHistograms;
pub use key::AggregateKey;
pub use line_stats::Totals;
pub use metrics::{AggregateMetrics, ShardLabel};
pub use rates::RateCell;
pub use shard::{MAX_LINES, MAX_PROBES, OTHER_LINES, OTHER_PROBES};
pub use snapshot::{AggregateSnapshot, DirectionStats, LineSnapshot};
pub use top_talkers::{Conversation, Talker, TopTalkers};
