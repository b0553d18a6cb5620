//! eBPF capture backend: loads `tidegate-ebpf` (XDP ingress + TCX egress), reads the
//! shared flow table in place (`slots`), the fallback ring buffer and the counters.
//!
//! Why no packet is lost or counted twice: see [`slots`] (counters only grow; each sweep
//! exports their growth; an idle flow is removed only after an RCU grace period, which
//! [`grace::wait`] provides: BPF programs run inside RCU read-side sections).

mod enforce;
mod error;
pub mod grace;
mod loader;
mod mapped;
pub mod slots;

pub use enforce::{Enforcer, Installed, RuleTotal, SharedEnforcer, dup};
pub use error::EbpfError;
pub use loader::{
    AttachReport, EbpfCapture, EbpfOptions, LINEAR_MAX_MTU, OBJECT, RETIRE_IDLE, TICK_PERIOD,
    Timestamps, XdpModeChoice, ifindex,
};
