//! eBPF capture backend.
