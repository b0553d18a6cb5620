//! Real-kernel plumbing: a namespace pair joined by a veth, trafgen workloads with an
//! exactly known flow truth, interface counters read inside a namespace, and a
//! process-wide cleanup that removes namespaces and kills tools on drop, on panic and on
//! SIGINT/SIGTERM/SIGHUP.
//!
//! Everything stays inside namespaces named `tg*-...` that this module creates; the
//! root namespace's interfaces, addresses and routes are never touched.

pub mod cleanup;
pub mod frames;
pub mod trafgen;
pub mod veth;

use std::process::Command;

pub use cleanup::{ChildGuard, install_signal_cleanup};
pub use trafgen::UdpWorkload;
pub use veth::{LinkCounters, VethPair};

/// `program` run by `ip netns exec NS` when `ns` is given, else directly.
pub fn in_netns(ns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}
