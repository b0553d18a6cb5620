//! tidegate's threat side, shared by the live collector and offline `analyze`:
//!
//! - [`enrich`]: country and ASN of both ends (MaxMind databases, operator ranges) and the
//!   policy zone of each;
//! - [`policy`]: zones and rules from a TOML file, stateless checks per flow and
//!   event-time byte caps, and the book that merges repeats of a violation;
//! - [`detect`]: the event-time anomaly detectors and the book that merges repeats of an
//!   alert;
//! - [`finding`]: what both report, on one [`Severity`] scale — a [`Finding`] is what
//!   every sink (ClickHouse, JSONL, webhook, syslog) takes.
#![deny(missing_docs)]

pub mod detect;
pub mod enrich;
pub mod finding;
pub mod policy;

pub use finding::{Finding, Severity};
