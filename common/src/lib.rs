//! Types shared by tidegate's kernel programs (`tidegate-ebpf`) and its userspace crates.
//!
//! Everything here is `no_std` and `repr(C)` so the eBPF object and the probe agree on
//! layout byte for byte. The packet parser lives here too: the XDP/TC programs, the
//! AF_PACKET backend and pcap replay all run the *same* parsing code, which is what makes
//! the flow semantics identical on every capture path.
#![cfg_attr(not(any(feature = "user", test)), no_std)]
#![deny(missing_docs)]

pub mod counters;
pub mod enforce;
pub mod flow;
pub mod maps;
pub mod parse;
pub mod slot;

pub use counters::{COUNTER_SLOTS, Counter, CounterBlock};
pub use flow::{
    APP_SAMPLE_BYTES, AppSample, Direction, FallbackRecord, FlowKey, FlowStats, NO_VLAN,
    OUTER_IP_SAMPLE_BYTES, SAMPLE_OUTER_IP, SAMPLE_PAYLOAD,
};
pub use parse::{
    PacketBytes, ParseError, Parsed, Tunnel, Tunnels, WireFrame, parse_ethernet, parse_frame,
};
pub use slot::FlowSlot;
