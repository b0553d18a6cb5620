//! tidegate's collector.
//!
//! Data path: probes connect over mutually-authenticated TLS ([`transport`]); every batch
//! is made durable in the collector's write-ahead spool ([`spool`]) before it is
//! acknowledged ([`ingest`] also drops duplicates by (probe, sequence)); from the spool,
//! records fan out to the aggregation shards ([`aggregate`]) and are written to ClickHouse
//! ([`sinks::clickhouse`]) with a per-batch deduplication token, so storage sees every
//! record exactly once. Routers' NetFlow v5/v9 and IPFIX exports enter the same spool
//! through [`netflow`]'s UDP listeners, and the collector's flows can leave as IPFIX.

pub mod aggregate;
pub mod analysis;
pub mod api;
pub mod certs;
pub mod config;
pub mod decoded;
pub mod enforce;
pub mod evidence;
pub mod ingest;
pub mod netflow;
pub mod pipeline;
pub mod reload;
pub mod sinks;
pub mod spool;
pub mod transport;
