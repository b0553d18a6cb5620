//! tidegate's test kit — dev-only, shared by every crate's integration tests and by the
//! benchmarks, so each helper exists once:
//!
//! - [`paths`]: the repository, its scripts, the shared corpus (`../shared/corpus`, or
//!   `$TIDEGATE_CORPUS`), the GeoLite2 database, the workspace's built binaries;
//! - [`ports`], [`wait`]: free ports, polling with a deadline, a one-off runtime;
//! - [`clickhouse::TestClickHouse`]: a throwaway ClickHouse from `scripts/clickhouse.sh`;
//! - [`certs::Certs`]: CA, collector and probe certificates;
//! - [`collector`]: a `tidegate-collector run` process and its configuration;
//! - [`probe`]: the probe library replaying corpus captures into a collector;
//! - [`stack::Stack`]: all of the above at once (temporary directory, ClickHouse,
//!   certificates, collector, probe exporters);
//! - [`transport`]: an in-process collector transport with an in-memory sink, a raw TLS
//!   client and synthetic batches; [`logs`]: capture of this process's logs;
//! - [`net`]: network namespaces joined by veth pairs, trafgen workloads, cleanup on
//!   panic and on signals. Traffic never leaves the namespaces a test creates.
#![deny(missing_docs)]

pub mod certs;
pub mod cli;
pub mod clickhouse;
pub mod collector;
pub mod http;
pub mod logs;
pub mod net;
pub mod paths;
pub mod ports;
pub mod probe;
pub mod stack;
pub mod transport;
pub mod wait;

pub use certs::Certs;
pub use clickhouse::TestClickHouse;
pub use collector::CollectorProcess;
pub use ports::{free_addr, free_port};
pub use stack::Stack;
pub use wait::{block_on, eventually, eventually_async};
