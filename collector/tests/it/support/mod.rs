//! Helpers only the collector's tests need (the shared ones are in `tidegate-testkit`).

pub mod aggregate;
pub mod alerts;
pub mod analysis;
pub mod clickhouse;
pub mod evidence;
pub mod netflow;
pub mod policy;
pub mod proc_status;
pub mod records;
pub mod syslog;
pub mod ui;
