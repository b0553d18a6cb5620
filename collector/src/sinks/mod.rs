//! Sinks: where collected data goes.

pub mod clickhouse;
