//! Capture backends. All of them produce [`tidegate_common::FlowKey`]-keyed observations
//! with the same semantics (the shared parser in `tidegate-common`).

pub mod afpacket;
pub mod ebpf;
pub mod pcap;
