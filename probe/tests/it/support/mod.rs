//! Helpers only the probe's tests need (the shared ones — corpus paths, namespaces with
//! veth pairs, trafgen workloads, the in-process collector transport, certificates, log
//! capture — are in `tidegate-testkit`).

pub mod corpus;
pub mod files;
pub mod pcap;
pub mod probe_cli;
pub mod replay;
