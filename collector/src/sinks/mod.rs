//! Sinks: where collected data goes.

pub mod alerts;
pub mod clickhouse;
pub mod syslog;
