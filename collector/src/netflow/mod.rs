//! NetFlow v5/v9 and IPFIX: flows the lines' routers already export come in through UDP
//! listeners ([`listener`], decoded by [`decode`]) and join the probes' records in the
//! spool, so aggregation, enrichment, policy, detection, ClickHouse and the console treat
//! them alike (their `source` and `sampling` say where they came from); and the
//! collector's flows go out as IPFIX to the collectors operators already run
//! ([`export`], encoded by [`ipfix`]).

pub mod config;
pub mod decode;
pub mod export;
pub mod ipfix;
pub mod listener;
pub mod metrics;

pub use config::{ExportTarget, ExporterConfig, NetflowConfig, RawNetflow};
pub use decode::{Decoded, Decoder, Problem};
pub use metrics::NetflowMetrics;
