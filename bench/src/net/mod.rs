//! Real-kernel benchmark plumbing: a namespace pair joined by a veth, trafgen workloads
//! with an exactly known flow truth, interface counters read inside a namespace, and a
//! process-wide cleanup that removes namespaces and kills tools on drop, on panic and on
//! SIGINT/SIGTERM/SIGHUP.
//!
//! Everything stays inside namespaces named `tgb-...` that this module creates; the
//! root namespace's interfaces are never touched.

pub mod cleanup;
pub mod trafgen;
pub mod veth;

pub use cleanup::{ChildGuard, install_signal_cleanup};
pub use trafgen::UdpWorkload;
pub use veth::{LinkCounters, VethPair};
