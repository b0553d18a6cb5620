//! The probe's integration tests, one binary: a module per thing a user does. They run
//! the real thing — the `tidegate-probe` binary, the eBPF programs attached to veth pairs
//! in network namespaces the tests create, a collector transport over mutual TLS, the
//! shared corpus and its tshark-made truth — through the workspace's test kit
//! (`tidegate-testkit`). They need root (namespaces, XDP). Run them with
//! `cargo nextest run -p tidegate-probe` (one process per test) or
//! `cargo test -p tidegate-probe --test it`.

mod support;

mod cli_help_and_examples;
mod ebpf_counts_on_veth;
mod ebpf_under_load;
mod enforce_on_veth;
mod export_to_collector;
mod export_to_collector_live;
mod export_to_collector_restarts;
mod export_to_collector_wire_figures;
mod replay_cli;
mod replay_is_deterministic;
mod replay_matches_corpus_truth;
mod replay_names_match_tshark;
mod run_live_cli;
mod tunnels;
mod xdp_matches_replay;
mod xdp_names_match_replay;
