//! eBPF capture backend: loads `tidegate-ebpf` (XDP ingress + TCX egress), flips and
//! drains the flow-map generations, and reads the fallback ring buffer and counters.
//!
//! Why no packet is lost between reading and deleting a flow: the programs only write
//! to the generation named by `CONTROL[0]`. A sweep flips it, then waits for an RCU grace
//! period ([`grace::wait`]); BPF programs run inside RCU read-side sections, so after the
//! grace period no program can still be writing the old generation, and userspace drains
//! it with `BPF_MAP_LOOKUP_AND_DELETE_BATCH` while nothing else touches it.

mod batch;
mod enforce;
mod error;
pub mod grace;
mod loader;

pub use enforce::{Enforcer, Installed, RuleTotal, SharedEnforcer, dup};
pub use error::EbpfError;
pub use loader::{
    AttachReport, EbpfCapture, EbpfOptions, LINEAR_MAX_MTU, OBJECT, TICK_PERIOD, Timestamps,
    XdpModeChoice, ifindex,
};
