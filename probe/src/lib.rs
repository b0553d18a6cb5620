//! tidegate's edge probe.
//!
//! Data path: a capture backend ([`capture`]) turns packets into flow observations, the
//! [`table::FlowTable`] merges them and applies the active/idle timeouts, and an exporter
//! ([`export`]) ships the resulting [`record::FlowRecord`]s.
//!
//! Backends share one flow definition (the parser in `tidegate-common`):
//! - `capture::ebpf` — XDP ingress + TCX egress programs with per-CPU flow maps;
//! - `capture::afpacket` — AF_PACKET live capture for hosts without eBPF;
//! - `capture::pcap` — pcap/pcapng replay for forensics and tests.

pub mod app;
pub mod capture;
pub mod clock;
pub mod config;
pub mod export;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod privileges;
pub mod record;
pub mod sink;
pub mod table;
