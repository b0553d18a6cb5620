//! Helpers for tests that need a real kernel: network namespaces with a veth pair, and
//! exact frames sent through AF_PACKET.
#![allow(dead_code)]

pub mod frames;
pub mod netns;
pub mod probe_cli;
pub mod trafgen;
