#!/usr/bin/env bash
# Idempotent install of what the benchmark harness (scripts/bench.sh) needs beyond the
# build/test toolchain: the libpcap-based flow exporters tidegate is compared with, and a
# TrueType font for the generated plot. Debian 12 packages only; seconds when present.
#
#   scripts/setup-bench.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_PACKAGES=(
  # Traffic generators (also in setup.sh) and the peers: softflowd, nfdump
  # (nfpcapd/nfcapd/nfdump), pmacct (pmacctd), argus (argus server + ra client).
  tcpreplay netsniff-ng softflowd nfdump pmacct argus-server argus-client
  # The loss-vs-rate plot is drawn in Rust (plotters) with this font loaded at run time.
  fonts-dejavu-core
)

need=()
for p in "${BENCH_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  log "installing benchmark packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt run (setup.sh, another engineer) instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The packaged daemons must not run as services: the harness starts its own instances
# on the interfaces it creates, each for one measurement.
for svc in softflowd nfdump pmacctd argus-server argus; do
  if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
    systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
  fi
done
