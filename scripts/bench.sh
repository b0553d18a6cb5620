#!/usr/bin/env bash
# Runs every tidegate benchmark on this machine and generates bench/RESULTS.md.
#
#   scripts/bench.sh           # full run (~15-20 min on 2 cores): writes bench/results/*.md,
#                                   # bench/results/loss_vs_rate.png and bench/RESULTS.md
#   scripts/bench.sh --smoke   # CI: a minute or two, small sizes; proves the harness still
#                                   # works and asserts nothing about speed; writes everything under
#                                   # $TIDEGATE_STATE/bench-smoke instead of bench/
#
# Root is needed: the eBPF benchmarks load programs, and the peers benchmark creates a
# network namespace pair (tgb-peer-*) joined by a veth, removed again on exit or Ctrl-C.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

smoke=0
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) die "usage: scripts/bench.sh [--smoke]" ;;
esac
need_root "the benchmarks" scripts/bench.sh "$@"
command_line="scripts/bench.sh${1:+ $1}"
started=$(date +%s)

"$here/setup.sh"
"$here/setup-bench.sh"
export PATH="$HOME/.cargo/bin:$PATH"

log "building (release)"
cargo build --release --locked -p tidegate-probe -p tidegate-collector -p tidegate-bench

bin=target/release
failed=()
# Runs one benchmark; a failure is recorded (RESULTS.md says so) and the run goes on.
bench() {
  local name=$1
  shift
  if ! "$@"; then
    log "warning: $name failed"
    failed+=("$name")
  fi
}
if ((smoke)); then
  out="$TIDEGATE_STATE/bench-smoke"
  mkdir -p "$out"
  log "benchmark harness smoke runs into $out (they assert nothing about speed)"
  bench xdp_cost "$bin/xdp_cost" --smoke --out "$out/xdp_cost.md" >/dev/null
  bench peers "$bin/peers" --smoke --out "$out/peers.md"
  bench veth_cpu "$bin/veth_cpu" --smoke --out "$out/veth_cpu.md" >/dev/null
  bench scaling "$bin/scaling" --smoke --out "$out/scaling.md"
  bench aggregate "$bin/aggregate" --smoke --out "$out/aggregate.md"
  bench collector_e2e "$bin/collector_e2e" --smoke --out "$out/collector_e2e.md" >/dev/null
  bench cluster_scaleout "$bin/cluster_scaleout" --smoke --out "$out/cluster_scaleout.md" >/dev/null
  bench evidence "$bin/evidence" --smoke --out "$out/evidence.md" >/dev/null
  bench enforce_cost "$bin/enforce_cost" --smoke --out "$out/enforce_cost.md" >/dev/null
  bench netflow_ingest "$bin/netflow_ingest" --smoke --out "$out/netflow_ingest.md" 2>/dev/null
  bench detect_throughput "$bin/detect_throughput" --smoke --out "$out/detect_throughput.md" >"$out/detect_throughput.md"
  if [[ -x "$bin/detect_latency" ]]; then
    bench detect_latency "$bin/detect_latency" --smoke --out "$out/detect_latency.md" >/dev/null
  fi
  "$bin/results" --command "$command_line" --dir "$out" --out "$out/RESULTS.md" \
    --elapsed-s $(($(date +%s) - started)) ${failed[@]+"${failed[@]/#/--failed=}"}
  log "smoke results: $out/RESULTS.md"
else
  out="$root/bench/results"
  mkdir -p "$out"
  log "1/6 eBPF per-packet cost (xdp_cost)"
  bench xdp_cost "$bin/xdp_cost" --out "$out/xdp_cost.md" >/dev/null
  log "2/6 loss at the generator's rates, tidegate vs softflowd, nfpcapd, pmacctd, argus (peers)"
  bench peers "$bin/peers" --out "$out/peers.md"
  log "2/6 machine CPU per packet over a veth, tidegate vs softflowd, nfpcapd (veth_cpu)"
  bench veth_cpu "$bin/veth_cpu" --out "$out/veth_cpu.md" >/dev/null
  log "3/6 flow-table scaling, probe and collector (scaling)"
  bench scaling "$bin/scaling" --out "$out/scaling.md"
  log "4/6 aggregation throughput and memory per flow (aggregate)"
  bench aggregate "$bin/aggregate" --out "$out/aggregate.md"
  log "4/6 collector end to end vs a plain ClickHouse insert (collector_e2e)"
  bench collector_e2e "$bin/collector_e2e" --out "$out/collector_e2e.md" >/dev/null
  bench collector_e2e_no_detect "$bin/collector_e2e" --no-detect --out "$out/collector_e2e_no_detect.md" >/dev/null
  log "4/6 scale-out: rows/s into 1, 2, 3 shards; records/s with 1 and 2 collectors (cluster_scaleout)"
  bench cluster_scaleout "$bin/cluster_scaleout" --out "$out/cluster_scaleout.md" >/dev/null
  log "4/6 evidence log: append, proofs, verify 1 M entries, collector with the log off vs on (evidence)"
  bench evidence "$bin/evidence" --out "$out/evidence.md" >/dev/null
  log "4/6 enforcement: XDP cost by policy size, policy change to enforcement (enforce_cost)"
  bench enforce_cost "$bin/enforce_cost" --out "$out/enforce_cost.md" >/dev/null
  log "4/6 NetFlow/IPFIX ingest per core, tidegate vs nfcapd (netflow_ingest)"
  bench netflow_ingest "$bin/netflow_ingest" --out "$out/netflow_ingest.md" 2>/dev/null
  log "4/6 detection throughput, every rule and each alone (detect_throughput)"
  bench detect_throughput "$bin/detect_throughput" --out "$out/detect_throughput.md"
  if [[ -x "$bin/detect_latency" ]]; then
    log "5/6 detection latency (detect_latency)"
    bench detect_latency "$bin/detect_latency" --out "$out/detect_latency.md" >/dev/null
  fi
  log "6/6 bench/RESULTS.md"
  "$bin/results" --command "$command_line" --dir "$out" --out "$root/bench/RESULTS.md" \
    --elapsed-s $(($(date +%s) - started)) ${failed[@]+"${failed[@]/#/--failed=}"}
fi
((${#failed[@]} == 0)) || die "benchmarks that failed: ${failed[*]} (the others' results are written)"
