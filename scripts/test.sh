#!/usr/bin/env bash
# Runs every tidegate test on this machine (as root: the tests load eBPF programs into
# veth pairs inside network namespaces they create). Sets up the toolchain first.
#
#   scripts/test.sh        (from a root shell; see need_root in lib.sh)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"

need_root "the test suite" scripts/test.sh
# A clean checkout's run builds the tests, the release binaries and the fuzz targets
# (about 10 GiB under target/ and fuzz/target/, measured on a clean clone) beside the
# toolchain and ClickHouse: say so up front rather than fail mid-build on a full disk.
free_kib=$(df --output=avail -k "$root" 2>/dev/null | tail -1 | tr -d ' ' || true)
if [[ $free_kib =~ ^[0-9]+$ ]] && (( free_kib / 1048576 < 12 )); then
  log "warning: $(( free_kib / 1048576 )) GiB free under $root; a run from a clean checkout needs about 12 GiB (it may stop with 'No space left on device')"
fi
setup_toolchain
# A clean build gains nothing from incremental compilation, and its caches were the
# larger half of target/debug (~6 GB): CI's disk filled with them.
export CARGO_INCREMENTAL=0

log "checking formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "checking the committed web UI bundle is what dashboards/ui builds"
rm -rf "$TIDEGATE_STATE/ui-dist"
(cd dashboards/ui && OUTDIR="$TIDEGATE_STATE/ui-dist" npm run --silent build >/dev/null)
diff -r dashboards/ui/dist "$TIDEGATE_STATE/ui-dist"

log "building"
cargo build --workspace --all-targets --locked

log "running the Rust test suites (unit, real kernel, real captures; one process per test)"
# cargo-nextest runs every test in a process of its own (tests that capture the process's
# logs or start real servers stay apart); .config/nextest.toml keeps the ones that drive
# the kernel flat out from running beside each other.
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --locked --doc

log "benchmark harness smoke runs (they assert nothing about speed)"
cargo build --release --locked -p tidegate-probe -p tidegate-collector -p tidegate-bench
smoke="$TIDEGATE_STATE/bench-smoke"
mkdir -p "$smoke"
target/release/aggregate --smoke >/dev/null
target/release/xdp_cost --smoke --out "$smoke/xdp_cost.md" >/dev/null
target/release/collector_e2e --smoke --out "$smoke/collector_e2e.md" >/dev/null
target/release/evidence --smoke --out "$smoke/evidence.md" >/dev/null
target/release/enforce_cost --smoke --out "$smoke/enforce_cost.md" >/dev/null
target/release/detect_throughput --smoke >"$smoke/detect_throughput.md"
target/release/netflow_ingest --smoke --out "$smoke/netflow_ingest.md" 2>/dev/null
target/release/peers --smoke --out "$smoke/peers.md" && target/release/scaling --smoke --out "$smoke/scaling.md"
target/release/veth_cpu --smoke --out "$smoke/veth_cpu.md" >/dev/null
target/release/cluster_scaleout --smoke --out "$smoke/cluster_scaleout.md" >/dev/null
target/release/detect_latency --smoke --out "$smoke/detect_latency.md" >/dev/null
target/release/ui_overview --smoke --out "$smoke/ui_overview.md" >/dev/null

log "building and checking the Debian packages (systemd units, postinst)"
"$here/tests/package_test.sh"

log "fuzzing every parser briefly (scripts/fuzz.sh --smoke; campaigns: scripts/fuzz.sh --runs N)"
"$here/fuzz.sh" --smoke

log "running the ClickHouse launcher test"
"$here/tests/clickhouse_launcher_test.sh"

log "running the demo (bounded) and checking what it reports"
"$here/tests/demo_test.sh"

log "all tests passed"
